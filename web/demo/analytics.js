/* Demo tagged script (purpose: analytics). candor.js runs it only once analytics is
 * granted; it then sends a Segment `page` event, which Candor's consent gate accepts. */
(function () {
  var out = document.getElementById('s-analytics');
  out.textContent = 'running: sending a page view';
  fetch('/v1/page', {
    method: 'POST',
    headers: { Authorization: 'Basic ' + btoa('demo-browser-write-key:'), 'Content-Type': 'application/json' },
    body: JSON.stringify({ anonymousId: window.candor.anonymousId(), name: 'App store', properties: { category: 'apps' } })
  }).then(function (r) { return r.json(); }).then(function (j) {
    out.textContent = 'running: page view ' + (j.accepted ? 'accepted' : 'dropped by the consent gate');
  }, function () { out.textContent = 'running: page view not sent'; });
})();

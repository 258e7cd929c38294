/*! Candor dashboard: the variant editor. Before a variant is saved, it is drawn here
 *  exactly as visitors would see it (candor.js in preview mode) and measured
 *  (candor-lint.js); the server lints the declaration and the measurements together. */
(function (d) {
  'use strict';
  var form = d.getElementById('variant-form');
  if (!form) return;
  var out = d.getElementById('editor-status');
  var csrf = form.elements.csrf.value;
  form.addEventListener('submit', function (e) {
    if (form.elements.rendered.value) return; // measured: let the form go
    e.preventDefault();
    var variant;
    try { variant = JSON.parse(form.elements.variant.value); } catch (x) {
      out.textContent = 'The variant is not valid JSON: ' + x.message;
      return;
    }
    out.textContent = 'Drawing the variant to measure it…';
    fetch('/admin/variants/preview', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ variant: variant })
    }).then(function (r) {
      return r.json().then(function (j) { if (!r.ok) throw new Error(j.message || r.status); return j; });
    }).then(function (config) {
      window.candor.preview(config);
      var measured = window.candorLint.measure();
      var host = d.getElementById('candor-prompt');
      if (host) host.remove();
      form.elements.rendered.value = JSON.stringify(measured);
      form.submit();
    }, function (x) { out.textContent = 'The variant could not be drawn: ' + x.message; });
  });
})(document);

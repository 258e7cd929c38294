/* Demo tagged script (purpose: ads_insights): runs only once it is granted. It only
 * marks itself: advertisers see differentially private totals, never this page. */
(function () {
  document.getElementById('s-ads_insights').textContent = 'running';
})();

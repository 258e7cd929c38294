/* Demo tagged script (purpose: personalization): runs only once it is granted. */
(function () {
  document.getElementById('s-personalization').textContent = 'running';
  document.getElementById('recommended').textContent = 'Because you like fitness apps: StepQuest, Sleep Well, Trail Maps.';
})();

/*! candor-lint.js: measures a prompt as the browser rendered it, for Candor's linter
 *  (POST /v1/admin/prompt/lint and /v1/admin/prompt/variants take what measure()
 *  returns). CSS can make a declared "Reject all" small, faint or out of view; only
 *  the rendering shows it. Apache-2.0. */
(function (w, d) {
  'use strict';
  function rgba(s) {
    var m = (s || '').match(/[\d.]+/g) || [0, 0, 0, 0];
    return [+m[0], +m[1], +m[2], m.length > 3 ? +m[3] : 1];
  }
  // What is visibly behind an element: its own background over its ancestors', each
  // composited by alpha (shadow roots crossed through their hosts), over white.
  function background(el) {
    var layers = [];
    for (var e = el; e; e = e.parentElement || (e.getRootNode && e.getRootNode().host)) {
      var c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    var out = [255, 255, 255];
    for (var i = layers.length - 1; i >= 0; i--) {
      var a = layers[i][3];
      out = out.map(function (v, k) { return layers[i][k] * a + v * (1 - a); });
    }
    return out.map(Math.round);
  }
  function textColor(el) {
    var c = rgba(getComputedStyle(el).color), b = background(el);
    return c.slice(0, 3).map(function (v, k) { return Math.round(v * c[3] + b[k] * (1 - c[3])); });
  }
  function visible(el) {
    var r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) return false;
    var opacity = 1;
    for (var e = el; e; e = e.parentElement || (e.getRootNode && e.getRootNode().host)) {
      var s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden') return false;
      opacity *= +s.opacity;
    }
    return opacity >= 0.5;
  }
  function button(el) {
    var r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return {
      role: el.getAttribute('data-action'),
      rect: [r.left, r.top, r.width, r.height],
      color: textColor(el),
      background: background(el),
      fontSize: parseFloat(s.fontSize),
      fontWeight: parseInt(s.fontWeight, 10) || 400,
      visible: visible(el),
      inViewport: r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth
    };
  }
  w.candorLint = {
    // Measures the prompt showing now, on its first layer; looks at the second layer
    // (the per-purpose choices) and puts the first back.
    measure: function () {
      var host = d.querySelector('#candor-prompt');
      var root = host && host.shadowRoot;
      if (!root) throw new Error('no candor prompt on this page');
      var dlg = root.querySelector('dialog');
      var l1 = root.querySelector('.l1'), l2 = root.querySelector('.l2');
      var first = Array.prototype.map.call(root.querySelectorAll('.l1 [data-action], dialog > .x'), button);
      l1.hidden = true; l2.hidden = false;
      var choices = Array.prototype.map.call(root.querySelectorAll('.l2 input[type=checkbox][data-purpose]'), function (b) {
        var label = root.querySelector('label[for="' + b.id + '"]');
        return { purposes: b.getAttribute('data-purpose').split(' '), checked: b.checked, label: label ? label.innerText : '' };
      });
      var notices = {};
      Array.prototype.forEach.call(root.querySelectorAll('.l2 .nt'), function (n) {
        notices[n.id.replace(/^cd-n-/, '')] = visible(n) ? n.innerText : '';
      });
      l1.hidden = false; l2.hidden = true;
      return { surface: background(dlg), firstLayer: first, choices: choices, notices: notices };
    }
  };
})(window, document);

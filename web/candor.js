/*! candor.js: Candor's consent prompt. One tag, no build step, no third-party asset.
 *  <script src="https://CANDOR/candor.js" data-write-key="BROWSER_KEY" async></script>
 *  Apache-2.0. */
(function (w, d) {
  'use strict';
  if (w.candor && w.candor.version) return;
  var me = d.currentScript || {};
  var conf = me.dataset || {};
  var base = conf.api || (me.src ? new URL(me.src, location.href).origin : location.origin);
  var auth = 'Basic ' + btoa((conf.writeKey || '') + ':');
  var gpc = navigator.globalPrivacyControl === true;
  // data-preview: render variants on demand (the dashboard, the linter); record nothing.
  var preview = conf.preview !== undefined;
  var KEY = 'candor';
  var CM = ['ad_storage', 'analytics_storage', 'ad_user_data', 'ad_personalization'];
  var CSS = '__CANDOR_CSS__'; // the server puts candor.css here

  // ---- what we keep: the anonymous id and the choice, nothing else ----------------
  function load() {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return {}; }
  }
  function save() {
    try { localStorage.setItem(KEY, JSON.stringify({ id: anon, choices: choices })); } catch (e) { /* storage off: the server still has the choice */ }
  }
  function uuid() {
    if (w.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16)), h = '';
    b[6] = b[6] & 15 | 64; b[8] = b[8] & 63 | 128;
    for (var i = 0; i < 16; i++) h += (b[i] + 256).toString(16).slice(1) + ([3, 5, 7, 9].indexOf(i) >= 0 ? '-' : '');
    return h;
  }
  // An existing Segment/RudderStack anonymous id ties the consent to the same person
  // as their events; otherwise a fresh random one.
  function segmentId() {
    try { var v = localStorage.getItem('ajs_anonymous_id'); return v && JSON.parse(v); } catch (e) { return null; }
  }
  var kept = load();
  var anon = conf.anonymousId || kept.id || segmentId() || uuid();
  var choices = kept.choices || null;
  if (!preview) save();

  // ---- state shared by every API ----------------------------------------------------
  var cfg = null;          // GET /v1/prompt
  var purposes = [];       // [{id,title,notice:{version,text,sha256,language},saleOrSharing,consentMode}]
  var granted = {};        // purpose id -> true, as the server answered
  var signals = null;      // {tcString, gppString, usPrivacy}
  var shown = false, decided = false, loaded = false, phase = 'tcloaded';
  var listeners = [];      // page callbacks for candor.on
  var tcfL = {}, gppL = {}, nextId = 1;

  function fire(kind) {
    phase = kind;
    var detail = { granted: Object.assign({}, granted), signals: signals, event: kind };
    listeners.forEach(function (f) { try { f(detail); } catch (e) { /* a page callback must not break us */ } });
    try { w.dispatchEvent(new CustomEvent('candor:consent', { detail: detail })); } catch (e) { /* old browser */ }
    tcfNotify();
    gppNotify(kind);
  }

  // ---- Google Consent Mode v2: denied by default, updated on every choice ------------
  w.dataLayer = w.dataLayer || [];
  var gtag = w.gtag || function () { w.dataLayer.push(arguments); };
  if (!w.gtag) w.gtag = gtag;
  function modeState() {
    var out = {}, all = CM.slice();
    purposes.forEach(function (p) { (p.consentMode || []).forEach(function (k) { if (all.indexOf(k) < 0) all.push(k); }); });
    all.forEach(function (k) {
      var mine = purposes.filter(function (p) { return (p.consentMode || []).indexOf(k) >= 0; });
      out[k] = mine.length && mine.every(function (p) { return granted[p.id]; }) ? 'granted' : 'denied';
    });
    return out;
  }
  gtag('consent', 'default', { ad_storage: 'denied', analytics_storage: 'denied', ad_user_data: 'denied', ad_personalization: 'denied', wait_for_update: 500 });

  // ---- tagged scripts: <script type="text/plain" data-candor-purpose="analytics"> ----
  function release() {
    var list = d.querySelectorAll('script[type="text/plain"][data-candor-purpose]');
    Array.prototype.forEach.call(list, function (s) {
      var need = s.getAttribute('data-candor-purpose').split(/[\s,]+/).filter(Boolean);
      if (!need.length || !need.every(function (p) { return granted[p]; })) return;
      var n = d.createElement('script');
      Array.prototype.forEach.call(s.attributes, function (a) {
        if (a.name !== 'type' && a.name !== 'data-candor-purpose' && a.name !== 'nonce') n.setAttribute(a.name, a.value);
      });
      if (s.getAttribute('data-candor-type')) n.type = s.getAttribute('data-candor-type');
      if (s.nonce) n.nonce = s.nonce; // the page's CSP nonce, hidden from getAttribute
      if (!s.src) n.text = s.text;
      n.setAttribute('data-candor-released', need.join(' '));
      s.parentNode.replaceChild(n, s);
    });
  }
  if (w.MutationObserver) new MutationObserver(function () { if (loaded) release(); }).observe(d.documentElement, { childList: true, subtree: true });

  // ---- talking to Candor ----------------------------------------------------------
  function call(method, path, body) {
    var h = { Authorization: auth };
    if (body) h['Content-Type'] = 'application/json';
    // Scripts cannot send Sec-GPC; this header relays the DOM signal, and the server
    // treats it exactly like Sec-GPC (it can only narrow).
    if (gpc) h['Candor-GPC'] = '1';
    return fetch(base + path, { method: method, headers: h, body: body && JSON.stringify(body), credentials: 'omit' })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw j; return j; }); });
  }
  function stat(event, extra) {
    if (!cfg || !cfg.measure) return;
    var b = Object.assign({ writeKey: conf.writeKey, variant: cfg.variant.id, event: event }, extra || {});
    // text/plain keeps this a simple request (no preflight); it carries no identifier.
    try { fetch(base + '/v1/prompt/events', { method: 'POST', body: JSON.stringify(b), credentials: 'omit', keepalive: true, headers: { 'Content-Type': 'text/plain' } }); } catch (e) { /* measurement is best effort */ }
  }
  function absorb(r) {
    granted = {};
    (r.purposes || []).forEach(function (p) { if (p.granted) granted[p.purpose] = true; });
    signals = r.signals;
    return r;
  }
  // Ask again only where no choice is in force: never decided, expired, or a grant
  // given under an older notice (a refusal stands whatever the notice says).
  function upToDate(r) {
    return r.purposes.length && r.purposes.every(function (p) {
      return p.recorded && p.status !== 'expired' && (!p.granted || p.noticeVersion === p.currentNoticeVersion);
    });
  }
  function record(kind, picked) {
    var versions = {};
    purposes.forEach(function (p) { versions[p.id] = p.notice.version; });
    var body = { anonymousId: anon, channel: 'prompt', noticeLanguage: cfg.language, evidence: { variant: cfg.variant.id, layer: picked ? '2' : '1' } };
    var path = '/v1/consent';
    if (kind === 'accept') path += '/accept-all';
    else if (kind === 'reject') path += '/reject-all';
    else {
      body.choices = {};
      purposes.forEach(function (p) { body.choices[p.id] = picked[p.id] ? 'grant' : 'refuse'; });
    }
    body.noticeVersions = versions;
    return call('POST', path, body).then(function (r) {
      absorb(r);
      decided = true;
      choices = {};
      r.purposes.forEach(function (p) { choices[p.purpose] = p.granted ? 'grant' : 'refuse'; });
      save();
      gtag('consent', 'update', modeState());
      release();
      var out = {};
      r.purposes.forEach(function (p) { out[p.purpose] = p.granted; });
      stat('choice', { action: kind === 'choose' ? 'choose' : kind + '_all', purposes: out });
      fire('useractioncomplete');
      return r;
    });
  }

  // ---- the prompt -------------------------------------------------------------------
  var host, root, dlg, opener, manageBtn, layer = 1;
  function el(tag, attrs, kids) {
    var e = d.createElement(tag);
    for (var k in attrs) {
      if (k === 'text') e.textContent = attrs[k];
      else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) e.setAttribute(k, attrs[k] === true ? '' : attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  function t(k) { return (cfg.variant.texts || {})[k] || ''; }
  function btn(action, text) { return el('button', { type: 'button', 'data-action': action, part: 'button ' + action, text: text }); }
  function buttons(list) { return el('div', { class: 'bt', role: 'group' }, list.map(function (a) { return btn(a, t(a)); })); }

  function build() {
    var v = cfg.variant;
    host = el('div', { id: 'candor-prompt', 'data-candor': 'prompt' });
    root = host.attachShadow({ mode: 'open' });
    var css = d.createElement('style');
    // A constructed sheet is not an inline <style> as far as a page's CSP goes.
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS + (v.css || ''));
      root.adoptedStyleSheets = [sheet];
    } catch (e) { css.textContent = CSS + (v.css || ''); root.appendChild(css); }
    var bundled = {};
    (v.bundles || []).forEach(function (b) { b.forEach(function (p) { bundled[p] = b; }); });
    var rows = [], done = {};
    purposes.forEach(function (p) {
      if (done[p.id]) return;
      var group = bundled[p.id] || [p.id];
      group.forEach(function (g) { done[g] = 1; });
      var members = purposes.filter(function (q) { return group.indexOf(q.id) >= 0; });
      var locked = gpc && members.some(function (q) { return q.saleOrSharing; });
      var li = (v.legitimateInterest || []).indexOf(p.id) >= 0;
      var on = li || (v.preticked || []).indexOf(p.id) >= 0 || members.every(function (q) { return granted[q.id]; });
      var id = 'cd-p-' + p.id;
      var notes = members.map(function (q) {
        return (v.hideNotices || []).indexOf(q.id) >= 0 ? null : el('p', { class: 'nt', id: 'cd-n-' + q.id, text: q.notice.text });
      });
      rows.push(el('div', { class: 'pp', 'data-purpose': group.join(' ') }, [
        el('div', { class: 'ph' }, [
          el('input', { type: 'checkbox', id: id, 'data-purpose': group.join(' '), checked: on && !locked, disabled: locked, 'aria-describedby': notes.filter(Boolean).map(function (n) { return n.id; }).join(' ') || null }),
          el('label', { for: id, text: members.map(function (q) { return q.title; }).join(' + ') + (li ? ' (' + t('legitimateInterest') + ')' : '') })
        ]),
        locked ? el('p', { class: 'gp', text: t('gpcLocked') }) : null
      ].concat(notes)));
    });
    var policy = cfg.operator.policyUrl ? el('a', { href: cfg.operator.policyUrl, target: '_blank', rel: 'noopener', text: t('policy') }) : null;
    var intro = el('p', { id: 'cd-i', text: t('intro') + ' ' });
    if (policy) intro.appendChild(policy);
    var l1 = el('section', { class: 'l1', 'data-layer': '1' }, [
      el('h2', { id: 'cd-t', tabindex: '-1', text: t('title') }),
      intro,
      el('ul', { class: 'pl' }, purposes.map(function (p) { return el('li', { text: p.title }); })),
      gpc ? el('p', { class: 'gp', text: t('gpcNote') }) : null,
      buttons(v.buttons)
    ]);
    var l2 = el('section', { class: 'l2', 'data-layer': '2', hidden: true }, [
      el('h2', { id: 'cd-t2', tabindex: '-1', text: t('chooseTitle') }),
      el('div', { class: 'ps', role: 'group', 'aria-labelledby': 'cd-t2' }, rows),
      buttons(['save', 'reject', 'accept']),
      el('button', { type: 'button', class: 'bk', 'data-action': 'back', text: t('back') }),
      // The person's own pages on Candor (issue 13), for this browser's anonymous id.
      conf.writeKey ? el('p', { class: 'md' }, [el('a', {
        href: base + '/me/enter?k=' + encodeURIComponent(conf.writeKey) + '&a=' + encodeURIComponent(anon),
        target: '_blank', rel: 'noopener', 'data-candor': 'my-data', text: t('myData')
      })]) : null
    ]);
    var close = v.closeButton && v.closeButton !== 'none' ? el('button', { type: 'button', class: 'x', 'data-action': 'close', 'aria-label': t('close'), text: '\u00d7' }) : null;
    dlg = el('dialog', { class: 'cd', 'data-layout': v.layout, 'aria-labelledby': 'cd-t', 'aria-describedby': 'cd-i', lang: cfg.language }, [close, l1, l2]);
    manageBtn = el('button', { type: 'button', class: 'mg', 'data-action': 'manage', part: 'manage', text: t('manage'), hidden: true });
    root.appendChild(dlg);
    root.appendChild(manageBtn);
    root.addEventListener('click', onClick);
    dlg.addEventListener('keydown', trap);
    // Escape never decides anything: it steps back from the second layer, else nothing.
    dlg.addEventListener('cancel', function (e) { e.preventDefault(); if (layer === 2) show(1); });
    d.body.appendChild(host);
  }
  function focusables() {
    return Array.prototype.filter.call(dlg.querySelectorAll('button,input,a[href]'), function (e) {
      return !e.disabled && !e.closest('[hidden]');
    });
  }
  function trap(e) {
    if (e.key !== 'Tab') return;
    var f = focusables();
    if (!f.length) return;
    var first = f[0], last = f[f.length - 1], at = root.activeElement;
    if (e.shiftKey && (at === first || f.indexOf(at) < 0)) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && at === last) { e.preventDefault(); first.focus(); }
  }
  function show(n) {
    layer = n;
    dlg.querySelector('.l1').hidden = n !== 1;
    dlg.querySelector('.l2').hidden = n !== 2;
    dlg.setAttribute('aria-labelledby', n === 1 ? 'cd-t' : 'cd-t2');
    dlg.querySelector(n === 1 ? '#cd-t' : '#cd-t2').focus();
  }
  function open(n) {
    if (!cfg) return;
    if (!host) build();
    else syncBoxes();
    opener = d.activeElement;
    manageBtn.hidden = true;
    if (!dlg.open) dlg.showModal();
    show(n || 1);
    if (!shown && !preview) { shown = true; stat('impression'); fire('cmpuishown'); }
  }
  function closeDlg() {
    dlg.close();
    manageBtn.hidden = false;
    if (opener && opener.focus && opener !== d.body) opener.focus();
    gppNotify('cmpDisplayStatus');
  }
  function syncBoxes() {
    Array.prototype.forEach.call(dlg.querySelectorAll('input[data-purpose]'), function (b) {
      if (!b.disabled) b.checked = b.getAttribute('data-purpose').split(' ').every(function (p) { return granted[p]; });
    });
  }
  function picked() {
    var out = {};
    Array.prototype.forEach.call(dlg.querySelectorAll('input[data-purpose]'), function (b) {
      b.getAttribute('data-purpose').split(' ').forEach(function (p) { out[p] = b.checked; });
    });
    return out;
  }
  function onClick(e) {
    var a = e.target.closest && e.target.closest('[data-action]');
    if (!a) return;
    var act = a.getAttribute('data-action');
    if (act === 'manage') return open(2);
    if (act === 'choose') return show(2);
    if (act === 'back') return show(1);
    if (preview) return;
    var kind = act === 'save' ? 'choose' : act === 'close' ? (cfg.variant.closeButton === 'accept' ? 'accept' : 'reject') : act;
    Array.prototype.forEach.call(dlg.querySelectorAll('button'), function (b) { b.disabled = true; });
    record(kind, kind === 'choose' ? picked() : null).then(function () {
      Array.prototype.forEach.call(dlg.querySelectorAll('button'), function (b) { b.disabled = false; });
      closeDlg();
    }, function (err) {
      Array.prototype.forEach.call(dlg.querySelectorAll('button'), function (b) { b.disabled = false; });
      var m = dlg.querySelector('.er') || dlg.appendChild(el('p', { class: 'er', role: 'alert' }));
      m.textContent = t('error') + (err && err.code ? ' (' + err.code + ')' : '');
    });
  }

  // ---- IAB TCF v2.2 (__tcfapi) and GPP v1.1 (__gpp), answered from Candor's strings --
  function reader(s) {
    var b = atob(s.replace(/-/g, '+').replace(/_/g, '/')), bits = '';
    for (var i = 0; i < b.length; i++) bits += (b.charCodeAt(i) + 256).toString(2).slice(1);
    var at = 0;
    var r = {
      int: function (n) { var v = parseInt(bits.substr(at, n), 2) || 0; at += n; return v; },
      bool: function () { return r.int(1) === 1; },
      flags: function (n) { var a = []; for (var i = 0; i < n; i++) a.push(r.bool()); return a; },
      date: function () { return new Date(r.int(36) * 100); },
      letters: function () { return String.fromCharCode(65 + r.int(6), 65 + r.int(6)); },
      fib: function () { var f = [1, 2], v = 0, prev = 0; for (var i = 0; ; i++) { if (i >= f.length) f.push(f[i - 1] + f[i - 2]); var x = r.int(1); if (x && prev) return v; if (x) v += f[i]; prev = x; if (at > bits.length) return v; } },
      // a TCF vendor section: a bitfield or ranges, as a list of ids
      vendors: function () {
        var max = r.int(16), ids = [];
        if (r.bool()) {
          for (var n = r.int(12); n > 0; n--) {
            var range = r.bool(), s = r.int(16), e = range ? r.int(16) : s;
            for (var v = s; v <= e; v++) ids.push(v);
          }
        } else for (var i = 1; i <= max; i++) if (r.bool()) ids.push(i);
        return ids;
      }
    };
    return r;
  }
  function tcCore(s) {
    var r = reader(s.split('.')[0]);
    var m = {
      Version: r.int(6), Created: r.date(), LastUpdated: r.date(), CmpId: r.int(12), CmpVersion: r.int(12),
      ConsentScreen: r.int(6), ConsentLanguage: r.letters(), VendorListVersion: r.int(12), PolicyVersion: r.int(6),
      IsServiceSpecific: r.bool(), UseNonStandardStacks: r.bool(), SpecialFeatureOptins: r.flags(12),
      PurposeConsents: r.flags(24), PurposeLegitimateInterests: r.flags(24), PurposeOneTreatment: r.bool(),
      PublisherCountryCode: r.letters(), VendorConsents: r.vendors(), VendorLegitimateInterests: r.vendors()
    };
    var restrictions = {};
    for (var n = r.int(12); n > 0; n--) {
      var purpose = r.int(6), type = r.int(2), ids = [];
      for (var k = r.int(12); k > 0; k--) { var range = r.bool(), a = r.int(16), b = range ? r.int(16) : a; for (var v = a; v <= b; v++) ids.push(v); }
      ids.forEach(function (id) { (restrictions[purpose] = restrictions[purpose] || {})[id] = type; });
    }
    m.restrictions = restrictions;
    return m;
  }
  function idMap(list, n) { var o = {}; for (var i = 1; i <= n; i++) o[i] = list.indexOf(i) >= 0; return o; }
  function flagMap(flags, n) { var o = {}; for (var i = 1; i <= n; i++) o[i] = !!flags[i - 1]; return o; }
  function tcData(status, listenerId) {
    var m = signals && tcCore(signals.tcString);
    var data = {
      tcString: signals ? signals.tcString : undefined, tcfPolicyVersion: m ? m.PolicyVersion : 5,
      cmpId: cfg ? cfg.iab.cmpId : 0, cmpVersion: cfg ? cfg.iab.cmpVersion : 0, gdprApplies: cfg ? cfg.gdprApplies : undefined,
      eventStatus: status || phase,
      cmpStatus: loaded ? 'loaded' : 'stub', listenerId: listenerId, isServiceSpecific: true, useNonStandardTexts: false,
      publisherCC: m ? m.PublisherCountryCode : 'AA', purposeOneTreatment: false,
      purpose: { consents: m ? flagMap(m.PurposeConsents, 11) : {}, legitimateInterests: m ? flagMap(m.PurposeLegitimateInterests, 11) : {} },
      vendor: { consents: {}, legitimateInterests: {} },
      specialFeatureOptins: m ? flagMap(m.SpecialFeatureOptins, 2) : {},
      publisher: { consents: {}, legitimateInterests: {}, customPurpose: { consents: {}, legitimateInterests: {} }, restrictions: m ? m.restrictions : {} }
    };
    if (m) {
      var max = Math.max.apply(null, [0].concat(m.VendorConsents, m.VendorLegitimateInterests));
      data.vendor.consents = idMap(m.VendorConsents, max);
      data.vendor.legitimateInterests = idMap(m.VendorLegitimateInterests, max);
    }
    return data;
  }
  function tcfNotify() {
    if (!loaded) return;
    for (var id in tcfL) tcfL[id](tcData(null, +id), true);
  }
  var tcfQueue = [];
  function tcfapi(cmd, version, cb, param) {
    if (typeof cb !== 'function') return;
    if (cmd === 'ping') {
      return cb({ gdprApplies: cfg ? cfg.gdprApplies : undefined, cmpLoaded: loaded, cmpStatus: loaded ? 'loaded' : 'stub', displayStatus: dlg && dlg.open ? 'visible' : shown ? 'hidden' : 'disabled', apiVersion: '2.2', cmpVersion: cfg ? cfg.iab.cmpVersion : undefined, cmpId: cfg ? cfg.iab.cmpId : undefined, gvlVersion: cfg ? cfg.iab.gvlVersion : undefined, tcfPolicyVersion: cfg ? cfg.iab.policyVersion : undefined });
    }
    if (!loaded) return tcfQueue.push([cmd, version, cb, param]);
    if (version && version !== 2) return cb(null, false);
    if (cmd === 'getTCData') {
      var data = tcData();
      if (Array.isArray(param)) { var c = {}; param.forEach(function (v) { c[v] = data.vendor.consents[v] || false; }); data.vendor.consents = c; }
      return cb(data, true);
    }
    if (cmd === 'addEventListener') { var id = nextId++; tcfL[id] = cb; return cb(tcData(null, id), true); }
    if (cmd === 'removeEventListener') { var ok = !!tcfL[param]; delete tcfL[param]; return cb(ok); }
    cb(null, false);
  }

  function usnat(s) {
    var seg = s.split('.'), r = reader(seg[0]), o = { Version: r.int(6) };
    var n = o.Version === 1 ? [12, 2] : [16, 3];
    'SharingNotice SaleOptOutNotice SharingOptOutNotice TargetedAdvertisingOptOutNotice SensitiveDataProcessingOptOutNotice SensitiveDataLimitUseNotice SaleOptOut SharingOptOut TargetedAdvertisingOptOut'.split(' ').forEach(function (f) { o[f] = r.int(2); });
    o.SensitiveDataProcessing = []; for (var i = 0; i < n[0]; i++) o.SensitiveDataProcessing.push(r.int(2));
    o.KnownChildSensitiveDataConsents = []; for (i = 0; i < n[1]; i++) o.KnownChildSensitiveDataConsents.push(r.int(2));
    'PersonalDataConsents MspaCoveredTransaction MspaOptOutOptionMode MspaServiceProviderMode'.split(' ').forEach(function (f) { o[f] = r.int(2); });
    if (seg[1]) { var g = reader(seg[1]); o.GpcSegmentType = g.int(2); o.Gpc = g.bool(); }
    return o;
  }
  var SECTIONS = { 2: 'tcfeuv2', 6: 'uspv1', 7: 'usnat' };
  function gppParsed() {
    var out = {}, ids = [];
    if (!signals) return { ids: ids, sections: out };
    var parts = signals.gppString.split('~'), h = reader(parts[0]);
    h.int(12);
    for (var n = h.int(12), last = 0; n > 0; n--) {
      var range = h.bool(), s = last + h.fib(), e = range ? s + h.fib() : s;
      for (var v = s; v <= e; v++) ids.push(v);
      last = e;
    }
    ids.forEach(function (id, i) {
      var str = parts[i + 1], name = SECTIONS[id];
      if (!name || !str) return;
      if (id === 2) { var m = tcCore(str); delete m.restrictions; out[name] = m; }
      else if (id === 6) out[name] = { Version: +str[0], Notice: str[1], OptOutSale: str[2], LspaCovered: str[3] };
      else out[name] = usnat(str);
    });
    return { ids: ids, sections: out };
  }
  function gppPing() {
    var p = gppParsed();
    return {
      gppVersion: '1.1', cmpStatus: loaded ? 'loaded' : 'stub', cmpDisplayStatus: dlg && dlg.open ? 'visible' : shown ? 'hidden' : 'disabled',
      signalStatus: loaded && (decided || !(dlg && dlg.open)) ? 'ready' : 'not ready', supportedAPIs: ['2:tcfeuv2', '6:uspv1', '7:usnat'],
      cmpId: cfg ? cfg.iab.cmpId : 0, sectionList: p.ids, applicableSections: p.ids.length ? p.ids : [-1],
      gppString: signals ? signals.gppString : '', parsedSections: p.sections
    };
  }
  // cmpuishown: the display and the signal (not ready) changed; a choice or a loaded
  // one: the sections and the signal (ready); a close: the display.
  function gppNotify(name) {
    if (!loaded) return;
    var ping = gppPing(), evs = name === 'cmpDisplayStatus' ? [['cmpDisplayStatus', ping.cmpDisplayStatus]]
      : name === 'cmpuishown' ? [['cmpDisplayStatus', ping.cmpDisplayStatus], ['signalStatus', ping.signalStatus]]
      : [['sectionChange', 'all'], ['signalStatus', ping.signalStatus]];
    for (var id in gppL) evs.forEach(function (e) { gppL[id]({ eventName: e[0], listenerId: +id, data: e[1], pingData: ping }, true); });
  }
  function gppapi(cmd, cb, param) {
    if (typeof cb !== 'function') return;
    if (cmd === 'ping') return cb(gppPing(), true);
    if (cmd === 'addEventListener') { var id = nextId++; gppL[id] = cb; return cb({ eventName: 'listenerRegistered', listenerId: id, data: true, pingData: gppPing() }, true); }
    if (cmd === 'removeEventListener') { var ok = !!gppL[param]; delete gppL[param]; return cb(ok, true); }
    var secs = gppParsed().sections;
    if (cmd === 'hasSection') return cb(!!secs[param], true);
    // As the IAB's reference: the EU TCF section is read through __tcfapi.
    if (cmd === 'getSection') return cb(param !== 'tcfeuv2' && secs[param] || null, true);
    if (cmd === 'getField') {
      var f = String(param).split('.'), sec = f[0] !== 'tcfeuv2' && secs[f[0]];
      return cb(sec && f[1] in sec ? sec[f[1]] : null, true);
    }
    cb(null, false);
  }

  // Frames reach both APIs through postMessage to a named locator frame in this window.
  function locator(name) {
    if (w.frames[name]) return;
    var add = function () { if (!w.frames[name]) d.body.appendChild(el('iframe', { name: name, title: name, hidden: true, 'aria-hidden': 'true', tabindex: '-1' })); };
    if (d.body) add(); else d.addEventListener('DOMContentLoaded', add);
  }
  w.addEventListener('message', function (e) {
    var str = typeof e.data === 'string', m;
    try { m = str ? JSON.parse(e.data) : e.data; } catch (x) { return; }
    if (!m || !e.source) return;
    var reply = function (key, ret) { return function (v, ok) { var o = {}; o[key] = { returnValue: v, success: ok !== false, callId: ret }; e.source.postMessage(str ? JSON.stringify(o) : o, '*'); }; };
    if (m.__tcfapiCall) { var c = m.__tcfapiCall; tcfapi(c.command, c.version, reply('__tcfapiReturn', c.callId), c.parameter); }
    if (m.__gppCall) { var g = m.__gppCall; gppapi(g.command, reply('__gppReturn', g.callId), g.parameter); }
  });
  w.__tcfapi = tcfapi;
  w.__gpp = gppapi;
  locator('__tcfapiLocator');
  locator('__gppLocator');

  w.candor = {
    version: '1',
    anonymousId: function () { return anon; },
    open: function () { open(2); },
    granted: function (p) { return !!granted[p]; },
    on: function (f) { listeners.push(f); },
    // Shows a prompt exactly as a visitor would see it for `config` (GET /v1/prompt's
    // shape), replacing any shown before. Only with data-preview.
    preview: function (config) {
      if (!preview) return;
      if (host) host.remove();
      host = null; cfg = config; purposes = config.purposes; loaded = true;
      open(1);
    }
  };
  if (preview) return;

  // ---- start ------------------------------------------------------------------------
  var lang = (d.documentElement.lang || navigator.language || '').trim();
  var q = '?anonymousId=' + encodeURIComponent(anon) + (lang ? '&lang=' + encodeURIComponent(lang) : '');
  Promise.all([
    fetch(base + '/v1/prompt' + q, { credentials: 'omit' }).then(function (r) { return r.json(); }),
    call('GET', '/v1/consent?anonymousId=' + encodeURIComponent(anon))
  ]).then(function (res) {
    cfg = res[0];
    purposes = cfg.purposes;
    absorb(res[1]);
    loaded = true;
    var ready = function () {
      var fresh = upToDate(res[1]);
      decided = fresh;
      // Someone who chose before: their choice replaces the denied defaults at once.
      if (fresh) gtag('consent', 'update', modeState());
      release();
      if (fresh) { build(); manageBtn.hidden = false; fire('tcloaded'); }
      else open(1);
      tcfQueue.splice(0).forEach(function (a) { tcfapi.apply(null, a); });
      Array.prototype.forEach.call(d.querySelectorAll('[data-candor-open]'), function (a) {
        a.addEventListener('click', function (e) { e.preventDefault(); open(2); });
      });
    };
    if (d.body) ready(); else d.addEventListener('DOMContentLoaded', ready);
  }, function (e) { if (w.console) console.warn('candor: the prompt could not load', e); });
})(window, document);

// Test publishers: plain HTTP servers on other origins than Candor's, serving a page
// that embeds candor.js with one tag, under a strict Content-Security-Policy that
// allows Candor's origin and nothing else.
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { BROWSER_KEY } from './candor.mjs';

function listen(handler) {
  return new Promise((ok) => {
    const s = createServer(handler);
    s.listen(0, '127.0.0.1', () => ok({ server: s, origin: `http://127.0.0.1:${s.address().port}` }));
  });
}

// The page: a gtag stub that records every call, tagged scripts for three purposes
// (inline with the page's nonce, and one loaded from the publisher), and a link that
// reopens the prompt.
function page({ candor, nonce, lang, frame }) {
  return `<!doctype html>
<html lang="${lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Test publisher</title>
<script nonce="${nonce}">
  window.dataLayer = window.dataLayer || [];
  window.gtagCalls = [];
  function gtag() { window.gtagCalls.push(Array.prototype.slice.call(arguments)); dataLayer.push(arguments); }
  window.ran = {};
</script>
<script src="${candor}/candor.js" data-write-key="${BROWSER_KEY}" async></script>
<style nonce="${nonce}">body { font: 16px/1.5 Georgia, serif; margin: 2rem; } main { max-width: 50rem; }</style>
</head>
<body>
<main>
<h1>Daily News</h1>
<p>A test page for the consent prompt. Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>
<p><a href="#" data-candor-open>Privacy choices</a></p>
${frame ? `<iframe id="vendor" title="vendor frame" src="${frame}/frame" width="300" height="80"></iframe>` : ''}
</main>
<script type="text/plain" data-candor-purpose="analytics" nonce="${nonce}">window.ran.analytics = (window.ran.analytics || 0) + 1;</script>
<script type="text/plain" data-candor-purpose="ads_insights" src="/tagged.js?p=ads_insights"></script>
<script type="text/plain" data-candor-purpose="analytics personalization" nonce="${nonce}">window.ran.both = (window.ran.both || 0) + 1;</script>
</body>
</html>`;
}

// A vendor's frame on a third origin: it finds the locator frames by name in its
// ancestors and asks both APIs through postMessage, as the IAB specifies.
function frame(nonce) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>vendor</title></head><body>
<script nonce="${nonce}">
  function locate(name) { for (var w = window; w; w = w === window.top ? null : w.parent) { try { if (w.frames[name]) return w; } catch (e) {} } return null; }
  var pending = {}, n = 0;
  window.addEventListener('message', function (e) {
    var d = typeof e.data === 'string' ? JSON.parse(e.data) : e.data;
    var r = d && (d.__tcfapiReturn || d.__gppReturn);
    if (r && pending[r.callId]) { pending[r.callId](r); delete pending[r.callId]; }
  });
  window.ask = function (api, command, parameter) {
    var target = locate(api === 'tcf' ? '__tcfapiLocator' : '__gppLocator');
    if (!target) return Promise.resolve({ noLocator: true });
    return new Promise(function (ok) {
      var id = 'c' + (++n);
      pending[id] = ok;
      var call = { command: command, parameter: parameter, callId: id, version: api === 'tcf' ? 2 : '1.1' };
      target.postMessage(api === 'tcf' ? { __tcfapiCall: call } : { __gppCall: call }, '*');
    });
  };
</script><p>vendor</p></body></html>`;
}

export async function startPublisher(candor) {
  const third = await listen((req, res) => {
    const nonce = randomBytes(12).toString('base64');
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': `default-src 'none'; script-src 'nonce-${nonce}'` });
    res.end(frame(nonce));
  });
  const pub = await listen((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/tagged.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      res.end(`window.ran[${JSON.stringify(url.searchParams.get('p'))}] = (window.ran[${JSON.stringify(url.searchParams.get('p'))}] || 0) + 1;`);
      return;
    }
    const nonce = randomBytes(12).toString('base64');
    if (url.pathname === '/preview') {
      // Renders variants on demand for the linter: candor.js in preview mode (records
      // nothing) and candor-lint.js to measure what it drew.
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': `default-src 'none'; script-src ${candor}` });
      res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>preview</title>
<script src="${candor}/candor.js" data-preview data-write-key="${BROWSER_KEY}"></script>
<script src="${candor}/candor-lint.js"></script></head><body><p>preview</p></body></html>`);
      return;
    }
    const csp = [
      "default-src 'none'",
      `script-src 'nonce-${nonce}' ${candor} 'self'`,
      `connect-src ${candor}`,
      `style-src 'nonce-${nonce}'`,
      `frame-src ${third.origin}`,
      "base-uri 'none'",
      "form-action 'none'",
    ].join('; ');
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': csp });
    res.end(page({ candor, nonce, lang: url.searchParams.get('lang') || 'en', frame: url.searchParams.get('frame') ? third.origin : null }));
  });
  return {
    origin: pub.origin,
    frameOrigin: third.origin,
    url: (q = '') => `${pub.origin}/page${q}`,
    previewUrl: `${pub.origin}/preview`,
    async stop() { pub.server.close(); third.server.close(); },
  };
}

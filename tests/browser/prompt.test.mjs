// candor.js end to end: the real candor binary, a publisher page on another origin
// under a strict CSP, Debian's headless Chromium. What a person does in the prompt must
// be exactly what the ledger holds, what the IAB APIs and Consent Mode say, and what
// tagged scripts are allowed to do.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { TCString } from '@iabtechlabtcf/core';
import { GppModel } from '@iabgpp/cmpapi';
import { startCandor, SERVER_KEY, ADMIN } from './lib/candor.mjs';
import { startPublisher } from './lib/publisher.mjs';
import { launch, ARTIFACTS, GPC_INIT } from './lib/browser.mjs';

const AXE = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const PURPOSES = ['analytics', 'personalization', 'ads_insights', 'email_marketing', 'loyalty'];
// The built-in catalog's TCF purposes per Candor purpose.
const TCF = { analytics: [1, 8, 9, 10], personalization: [1, 5, 6], ads_insights: [1, 7, 9], email_marketing: [], loyalty: [] };

let candor, publisher, browser;
before(async () => {
  candor = await startCandor();
  // The demo operator shows two variants; these tests look at the standard one (the
  // linter's tests render the other).
  const r = await candor.api('PATCH', '/v1/admin/prompt/variants/compact_bar', { bearer: ADMIN, body: { active: false } });
  assert.equal(r.status, 200, r.text);
  publisher = await startPublisher(candor.base);
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await publisher?.stop();
  await candor?.stop();
});

const DIALOG = '#candor-prompt dialog';

/** A fresh visitor (own storage) on the publisher page, with the prompt open. */
async function visit({ lang = 'en', gpc = false, viewport = { width: 1280, height: 800 }, frame = false, bypassCSP = false } = {}) {
  const ctx = await browser.newContext({ viewport, bypassCSP });
  if (gpc) await ctx.addInitScript(GPC_INIT);
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(publisher.url(`?lang=${lang}${frame ? '&frame=1' : ''}`));
  await page.locator(DIALOG).waitFor({ state: 'visible' });
  const anon = await page.evaluate(() => window.candor.anonymousId());
  return { ctx, page, anon, errors };
}

async function decided(page) {
  await page.locator(DIALOG).waitFor({ state: 'hidden' });
}

async function history(anon) {
  const r = await candor.api('GET', `/v1/consent/history?anonymousId=${encodeURIComponent(anon)}`, { basic: SERVER_KEY });
  assert.equal(r.status, 200, r.text);
  return r.json.records.map((x) => x.record);
}

async function state(anon, { gpc = false } = {}) {
  const r = await candor.api('GET', `/v1/consent?anonymousId=${encodeURIComponent(anon)}`, { basic: SERVER_KEY, headers: gpc ? { 'Sec-GPC': '1' } : {} });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

/** purpose → status of the latest ledger record, for records of one channel. */
function latest(records, channel) {
  const out = {};
  for (const r of records) if (!channel || r.collectionMethod === channel) out[r.purpose] = r.status;
  return out;
}

function sha256(text) {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function tcPurposes(granted) {
  return [...new Set(granted.flatMap((p) => TCF[p]))].sort((a, b) => a - b);
}

/** The notices as the page shows them on the second layer: purpose → text. */
async function shownNotices(page) {
  return page.evaluate(() => {
    const root = document.querySelector('#candor-prompt').shadowRoot;
    const out = {};
    root.querySelectorAll('.nt').forEach((n) => { out[n.id.replace('cd-n-', '')] = n.textContent; });
    return out;
  });
}

/** The ledger holds exactly `expect` (purpose → status) through the prompt, each with
 *  the notice version shown and the hash of the text shown. */
async function assertLedger(anon, expect, notices, { channel = 'prompt' } = {}) {
  const recs = await history(anon);
  const mine = recs.filter((r) => r.collectionMethod === channel);
  assert.deepEqual(latest(mine), expect);
  for (const r of mine) {
    assert.equal(r.noticeVersion, 1);
    assert.equal(r.noticeHash, sha256(notices[r.purpose]), `hash of the ${r.purpose} text shown`);
  }
  return recs;
}

async function storage(page) {
  return page.evaluate(() => ({
    local: Object.fromEntries(Object.keys(localStorage).map((k) => [k, localStorage.getItem(k)])),
    session: sessionStorage.length,
    cookies: document.cookie,
  }));
}

test('the prompt appears with three equal choices and nothing ticked, storing only an id', async () => {
  const { ctx, page, anon, errors } = await visit();
  const buttons = page.locator(`${DIALOG} section.l1 .bt button`);
  assert.deepEqual(await buttons.allTextContents(), ['Accept all', 'Reject all', 'Choose']);
  const boxes = await buttons.evaluateAll((bs) => bs.map((b) => {
    const r = b.getBoundingClientRect(); const s = getComputedStyle(b);
    return [Math.round(r.width), Math.round(r.height), Math.round(r.top), s.backgroundColor, s.color, s.fontSize, s.fontWeight];
  }));
  for (const b of boxes.slice(1)) assert.deepEqual(b, boxes[0], 'accept, reject and choose look alike');
  await page.screenshot({ path: `${ARTIFACTS}/prompt-desktop.png` });
  // Nothing pre-ticked on the second layer.
  await page.locator(`${DIALOG} button[data-action=choose]`).click();
  await page.screenshot({ path: `${ARTIFACTS}/prompt-desktop-choose.png` });
  const ticks = await page.locator(`${DIALOG} input[type=checkbox]`).evaluateAll((xs) => xs.map((x) => x.checked));
  assert.equal(ticks.length, PURPOSES.length);
  assert.ok(ticks.every((t) => !t));
  // Before any choice: the anonymous id and nothing else, no cookie, no session data.
  const s = await storage(page);
  assert.deepEqual(Object.keys(s.local), ['candor']);
  assert.deepEqual(JSON.parse(s.local.candor), { id: anon, choices: null });
  assert.equal(s.cookies, '');
  assert.equal(s.session, 0);
  assert.deepEqual(await history(anon), [], 'nothing recorded before a choice');
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('Reject all records refusals through the prompt, with the notice shown', async () => {
  const { ctx, page, anon } = await visit();
  await page.locator(`${DIALOG} button[data-action=choose]`).click();
  const notices = await shownNotices(page);
  await page.locator(`${DIALOG} button[data-action=back]`).click();
  await page.locator(`${DIALOG} section.l1 button[data-action=reject]`).click();
  await decided(page);
  await assertLedger(anon, Object.fromEntries(PURPOSES.map((p) => [p, 'refused'])), notices);
  const s = await storage(page);
  assert.deepEqual(Object.keys(s.local), ['candor']);
  assert.deepEqual(JSON.parse(s.local.candor).choices, Object.fromEntries(PURPOSES.map((p) => [p, 'refuse'])));
  await ctx.close();
});

test('Accept all records grants; Consent Mode goes default then update; IAB strings match', async () => {
  const { ctx, page, anon } = await visit();
  await page.locator(`${DIALOG} section.l1 button[data-action=accept]`).click();
  await decided(page);
  const recs = await history(anon);
  assert.deepEqual(latest(recs, 'prompt'), Object.fromEntries(PURPOSES.map((p) => [p, 'given'])));
  const calls = await page.evaluate(() => window.gtagCalls.filter((c) => c[0] === 'consent'));
  assert.deepEqual(calls.map((c) => c[1]), ['default', 'update']);
  assert.deepEqual(calls[0][2], { ad_storage: 'denied', analytics_storage: 'denied', ad_user_data: 'denied', ad_personalization: 'denied', wait_for_update: 500 });
  // No purpose of the built-in catalog consents to personalized ads: that stays denied.
  assert.deepEqual(calls[1][2], { ad_storage: 'granted', analytics_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'denied', personalization_storage: 'granted' });
  const tc = await page.evaluate(() => new Promise((ok) => window.__tcfapi('getTCData', 2, (d, s) => ok([d, s]))));
  assert.equal(tc[1], true);
  const server = await state(anon);
  assert.equal(tc[0].tcString, server.signals.tcString);
  const model = TCString.decode(tc[0].tcString);
  assert.deepEqual([...model.purposeConsents.set_].sort((a, b) => a - b), tcPurposes(PURPOSES));
  assert.equal(model.cmpId, 77);
  assert.equal(tc[0].eventStatus, 'useractioncomplete');
  for (const p of tcPurposes(PURPOSES)) assert.equal(tc[0].purpose.consents[p], true);
  assert.equal(tc[0].purpose.consents[2], false);
  await ctx.close();
});

test('Choose records exactly the boxes ticked, and tagged scripts run only when granted', async () => {
  const { ctx, page, anon } = await visit();
  const ran = () => page.evaluate(() => ({ ...window.ran }));
  assert.deepEqual(await ran(), {}, 'no tagged script before consent');
  await page.locator(`${DIALOG} button[data-action=choose]`).click();
  const notices = await shownNotices(page);
  await page.locator(`${DIALOG} input[data-purpose=analytics]`).check();
  await page.locator(`${DIALOG} input[data-purpose=loyalty]`).check();
  await page.locator(`${DIALOG} button[data-action=save]`).click();
  await decided(page);
  await assertLedger(anon, { analytics: 'given', personalization: 'refused', ads_insights: 'refused', email_marketing: 'refused', loyalty: 'given' }, notices);
  // analytics ran once; the script needing analytics + personalization and the
  // ads_insights one did not.
  await page.waitForFunction(() => window.ran.analytics === 1);
  assert.deepEqual(await ran(), { analytics: 1 });
  const tc = await page.evaluate(() => new Promise((ok) => window.__tcfapi('getTCData', 2, (d) => ok(d.tcString))));
  assert.deepEqual([...TCString.decode(tc).purposeConsents.set_].sort((a, b) => a - b), tcPurposes(['analytics']));
  // The persistent link reopens the choices as they stand; adding personalization
  // releases the script that needed both, and ads_insights' still waits.
  await page.locator('#candor-prompt button.mg').click();
  await page.locator(DIALOG).waitFor({ state: 'visible' });
  assert.equal(await page.locator(`${DIALOG} input[data-purpose=analytics]`).isChecked(), true);
  assert.equal(await page.locator(`${DIALOG} input[data-purpose=personalization]`).isChecked(), false);
  await page.locator(`${DIALOG} input[data-purpose=personalization]`).check();
  await page.locator(`${DIALOG} input[data-purpose=loyalty]`).uncheck();
  await page.locator(`${DIALOG} button[data-action=save]`).click();
  await decided(page);
  await page.waitForFunction(() => window.ran.both === 1);
  assert.deepEqual(await ran(), { analytics: 1, both: 1 });
  const recs = await history(anon);
  assert.deepEqual(latest(recs, 'prompt'), { analytics: 'given', personalization: 'given', ads_insights: 'refused', email_marketing: 'refused', loyalty: 'withdrawn' });
  // A reload with the choice in force: no prompt, scripts released at once.
  await page.reload();
  await page.waitForFunction(() => window.ran && window.ran.analytics === 1 && window.ran.both === 1);
  assert.equal(await page.locator(DIALOG).isVisible(), false);
  assert.equal(await page.locator('#candor-prompt button.mg').isVisible(), true);
  await ctx.close();
});

test('notices in the page language, each hash recorded; German falls back per purpose', async () => {
  const fr = await visit({ lang: 'fr' });
  assert.equal(await fr.page.locator(`${DIALOG} section.l1 button[data-action=reject]`).textContent(), 'Tout refuser');
  await fr.page.locator(`${DIALOG} button[data-action=choose]`).click();
  const notices = await shownNotices(fr.page);
  assert.match(notices.analytics, /^Nous comptons/);
  await fr.page.locator(`${DIALOG} input[data-purpose=ads_insights]`).check();
  await fr.page.locator(`${DIALOG} button[data-action=save]`).click();
  await decided(fr.page);
  const recs = await assertLedger(fr.anon, { analytics: 'refused', personalization: 'refused', ads_insights: 'given', email_marketing: 'refused', loyalty: 'refused' }, notices);
  assert.ok(recs.every((r) => r.evidence.noticeLanguage === 'fr'));
  // The hash is the one the catalog publishes for the French text.
  const cat = (await candor.api('GET', '/v1/purposes')).json.purposes;
  const ads = cat.find((p) => p.id === 'ads_insights');
  assert.equal(recs.find((r) => r.purpose === 'ads_insights').noticeHash, ads.translations.fr.notice.sha256);
  await fr.ctx.close();

  const de = await visit({ lang: 'de-AT' });
  await de.page.locator(`${DIALOG} button[data-action=choose]`).click();
  const deNotices = await shownNotices(de.page);
  assert.match(deNotices.analytics, /^Wir zählen/);
  assert.match(deNotices.ads_insights, /^Advertisers may learn/, 'no German text: the default');
  await de.page.locator(`${DIALOG} section.l2 button[data-action=accept]`).click();
  await decided(de.page);
  await assertLedger(de.anon, Object.fromEntries(PURPOSES.map((p) => [p, 'given'])), deNotices);
  await de.ctx.close();
});

test('with Global Privacy Control, sale/sharing purposes are refused and cannot be granted', async () => {
  const { ctx, page, anon } = await visit({ gpc: true });
  assert.match(await page.locator(`${DIALOG} section.l1 .gp`).textContent(), /Global Privacy Control/);
  await page.locator(`${DIALOG} button[data-action=choose]`).click();
  const box = page.locator(`${DIALOG} input[data-purpose=ads_insights]`);
  assert.equal(await box.isDisabled(), true);
  assert.equal(await box.isChecked(), false);
  await page.locator(`${DIALOG} button[data-action=back]`).click();
  await page.locator(`${DIALOG} section.l1 button[data-action=accept]`).click();
  await decided(page);
  const recs = await history(anon);
  assert.deepEqual(latest(recs), { analytics: 'given', personalization: 'given', ads_insights: 'refused', email_marketing: 'given', loyalty: 'given' });
  assert.deepEqual(latest(recs, 'gpc'), { ads_insights: 'refused' });
  // The strings a GPC browser reads say the same (GPC is a property of the request).
  const s = await state(anon, { gpc: true });
  assert.equal(s.purposes.find((p) => p.purpose === 'ads_insights').granted, false);
  const gpp = await page.evaluate(() => new Promise((ok) => window.__gpp('ping', (d) => ok(d.gppString))));
  assert.equal(gpp, s.signals.gppString);
  const usnat = new GppModel(s.signals.gppString).toObject().usnat;
  assert.equal(usnat.SaleOptOut, 1);
  assert.equal(usnat.Gpc, true);
  // Even a grant sent by hand from the page is overridden while the signal is on.
  const forced = await page.evaluate(async ([base, anonId]) => {
    const r = await fetch(base + '/v1/consent', { method: 'POST', headers: { Authorization: 'Basic ' + btoa('demo-browser-write-key:'), 'Content-Type': 'application/json', 'Candor-GPC': '1' }, body: JSON.stringify({ anonymousId: anonId, choices: { ads_insights: 'grant' } }) });
    return r.json();
  }, [candor.base, anon]);
  assert.deepEqual(forced.gpc.overridden, ['ads_insights']);
  assert.equal((await state(anon)).purposes.find((p) => p.purpose === 'ads_insights').granted, false);
  await ctx.close();
});

test('__tcfapi and __gpp answer on the page and from a cross-origin frame through the locators', async () => {
  const { ctx, page, anon } = await visit({ frame: true });
  const pageCall = (fn) => page.evaluate(fn);
  // Before a choice: loaded, the UI shown, nothing consented.
  const ping = await pageCall(() => new Promise((ok) => window.__tcfapi('ping', 2, ok)));
  assert.equal(ping.cmpLoaded, true);
  assert.equal(ping.displayStatus, 'visible');
  assert.equal(ping.cmpId, 77);
  const events = await pageCall(() => { window.tcfEvents = []; window.__tcfapi('addEventListener', 2, (d, ok) => window.tcfEvents.push([d.eventStatus, d.listenerId, ok])); return window.tcfEvents; });
  assert.deepEqual(events.map((e) => e[0]), ['cmpuishown']);
  await pageCall(() => { window.gppEvents = []; window.__gpp('addEventListener', (e) => window.gppEvents.push(e.eventName)); });
  await page.locator(`${DIALOG} button[data-action=choose]`).click();
  await page.locator(`${DIALOG} input[data-purpose=analytics]`).check();
  await page.locator(`${DIALOG} input[data-purpose=ads_insights]`).check();
  await page.locator(`${DIALOG} button[data-action=save]`).click();
  await decided(page);
  const server = (await state(anon)).signals;
  const want = tcPurposes(['analytics', 'ads_insights']);

  const tcPage = await pageCall(() => new Promise((ok) => window.__tcfapi('getTCData', 2, (d, s) => ok({ d, s }))));
  const vendor = page.frames().find((f) => f.url().startsWith(publisher.frameOrigin));
  assert.ok(vendor, 'the vendor frame loaded');
  const tcFrame = await vendor.evaluate(() => window.ask('tcf', 'getTCData'));
  assert.equal(tcFrame.success, true);
  for (const data of [tcPage.d, tcFrame.returnValue]) {
    assert.equal(data.tcString, server.tcString);
    assert.deepEqual([...TCString.decode(data.tcString).purposeConsents.set_].sort((a, b) => a - b), want);
    assert.deepEqual(Object.entries(data.purpose.consents).filter(([, v]) => v).map(([k]) => +k), want);
  }
  assert.equal((await vendor.evaluate(() => window.ask('tcf', 'ping'))).returnValue.cmpLoaded, true);
  const after = await pageCall(() => window.tcfEvents.map((e) => e[0]));
  assert.deepEqual(after, ['cmpuishown', 'useractioncomplete']);
  const listenerId = await pageCall(() => window.tcfEvents[0][1]);
  assert.equal(await page.evaluate((id) => new Promise((ok) => window.__tcfapi('removeEventListener', 2, ok, id)), listenerId), true);
  assert.equal(await page.evaluate((id) => new Promise((ok) => window.__tcfapi('removeEventListener', 2, ok, id)), listenerId), false);

  // GPP: the same string on the page and in the frame, sections as the IAB's own
  // library decodes them.
  const reference = new GppModel(server.gppString).toObject();
  const gppPage = await pageCall(() => new Promise((ok) => window.__gpp('ping', (d, s) => ok({ d, s }))));
  const gppFrame = (await vendor.evaluate(() => window.ask('gpp', 'ping'))).returnValue;
  for (const p of [gppPage.d, gppFrame]) {
    assert.equal(p.gppString, server.gppString);
    assert.equal(p.gppVersion, '1.1');
    assert.equal(p.signalStatus, 'ready');
    assert.deepEqual(p.sectionList, [2, 6, 7]);
    assert.deepEqual(p.parsedSections.usnat, reference.usnat);
    assert.deepEqual(p.parsedSections.uspv1, reference.uspv1);
    const tcf = JSON.parse(JSON.stringify(p.parsedSections.tcfeuv2));
    for (const [k, v] of Object.entries(tcf)) assert.deepEqual(v, JSON.parse(JSON.stringify(reference.tcfeuv2[k])), `tcfeuv2.${k}`);
  }
  // ads_insights granted: no sale opt-out.
  assert.equal(reference.usnat.SaleOptOut, 2);
  const frameAsk = (cmd, param) => vendor.evaluate(([c, x]) => window.ask('gpp', c, x), [cmd, param]);
  assert.deepEqual((await frameAsk('getSection', 'usnat')).returnValue, reference.usnat);
  assert.equal((await frameAsk('getField', 'usnat.SaleOptOut')).returnValue, 2);
  assert.equal((await frameAsk('hasSection', 'usnat')).returnValue, true);
  assert.equal((await frameAsk('hasSection', 'uscav1')).returnValue, false);
  assert.equal((await frameAsk('getSection', 'uscav1')).returnValue, null);
  const gppEvents = await pageCall(() => window.gppEvents);
  assert.deepEqual(gppEvents.slice(0, 1), ['listenerRegistered']);
  assert.ok(gppEvents.includes('sectionChange') && gppEvents.includes('signalStatus'), gppEvents.join());
  await ctx.close();
});

/** Presses Tab until the focused element in the prompt matches `selector`. */
async function tabTo(page, selector) {
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press('Tab');
    const at = await page.evaluate((sel) => {
      const a = document.querySelector('#candor-prompt').shadowRoot.activeElement;
      return !!a && a.matches(sel);
    }, selector);
    if (at) return;
  }
  throw new Error(`Tab never reached ${selector}`);
}

test('keyboard only: focus stays in the prompt and every choice can be made', async () => {
  const journeys = {
    reject: [['.l1 [data-action=reject]', 'Enter']],
    accept: [['.l1 [data-action=accept]', 'Space']],
    choose: [['.l1 [data-action=choose]', 'Enter'], ['[data-purpose=analytics]', 'Space'], ['[data-purpose=loyalty]', 'Space'], ['[data-action=save]', 'Enter']],
  };
  const expect = {
    reject: Object.fromEntries(PURPOSES.map((p) => [p, 'refused'])),
    accept: Object.fromEntries(PURPOSES.map((p) => [p, 'given'])),
    choose: { analytics: 'given', personalization: 'refused', ads_insights: 'refused', email_marketing: 'refused', loyalty: 'given' },
  };
  for (const [name, steps] of Object.entries(journeys)) {
    const { ctx, page, anon } = await visit();
    for (const [target, key] of steps) {
      await tabTo(page, target);
      await page.keyboard.press(key);
    }
    await decided(page);
    assert.deepEqual(latest(await history(anon), 'prompt'), expect[name], name);
    await ctx.close();
  }
  // The trap: twenty Tabs and Shift+Tabs never leave the dialog, and Escape decides nothing.
  const { ctx, page, anon } = await visit();
  const inside = () => page.evaluate(() => {
    const host = document.querySelector('#candor-prompt');
    const a = host.shadowRoot.activeElement;
    return document.activeElement === host && !!a && !!a.closest('dialog');
  });
  for (let i = 0; i < 20; i++) {
    await page.keyboard.press(i % 3 === 2 ? 'Shift+Tab' : 'Tab');
    assert.equal(await inside(), true, `after key ${i}`);
  }
  await page.keyboard.press('Escape');
  assert.equal(await page.locator(DIALOG).isVisible(), true);
  assert.deepEqual(await history(anon), []);
  await ctx.close();
});

test('accessibility: axe finds no serious or critical violation with the prompt open', async () => {
  for (const layer of [1, 2]) {
    // axe is injected as a script, which the publisher's CSP would block.
    const { ctx, page } = await visit({ bypassCSP: true });
    if (layer === 2) await page.locator(`${DIALOG} button[data-action=choose]`).click();
    await page.evaluate(AXE);
    const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), [], `layer ${layer}`);
    await ctx.close();
  }
});

test('phone width and 200% zoom: everything fits, accept and reject alike', async () => {
  for (const [name, viewport] of [['phone', { width: 375, height: 667 }], ['zoom200', { width: 640, height: 400 }]]) {
    const { ctx, page } = await visit({ viewport });
    const m = await page.evaluate(() => {
      const root = document.querySelector('#candor-prompt').shadowRoot;
      const d = root.querySelector('dialog');
      const box = (s) => { const r = root.querySelector(s).getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
      return { overflowX: d.scrollWidth - d.clientWidth, page: document.documentElement.scrollWidth - innerWidth, dialog: box('dialog'), accept: box('.l1 [data-action=accept]'), reject: box('.l1 [data-action=reject]'), vw: innerWidth };
    });
    assert.ok(m.overflowX <= 0, `${name}: dialog scrolls sideways by ${m.overflowX}`);
    assert.ok(m.dialog[0] >= 0 && m.dialog[0] + m.dialog[2] <= m.vw, `${name}: dialog inside the viewport`);
    assert.equal(Math.round(m.accept[2]), Math.round(m.reject[2]), `${name}: same width`);
    assert.equal(Math.round(m.accept[3]), Math.round(m.reject[3]), `${name}: same height`);
    await page.screenshot({ path: `${ARTIFACTS}/prompt-${name}.png` });
    // the choices must be reachable: scroll the dialog to the reject button and use it
    await page.locator(`${DIALOG} section.l1 button[data-action=reject]`).click();
    await decided(page);
    await ctx.close();
  }
});

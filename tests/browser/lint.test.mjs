// The prompt linter on what Chromium actually renders: a table of fair and unfair
// variants, each drawn by candor.js (preview mode), measured by candor-lint.js and
// judged by the server. Some unfair variants look fair in their declaration (only CSS
// makes "Reject all" small, faint, hidden or far away): those must pass the declared
// check and fail once measured. Then a fair variant is saved and shown to visitors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCandor, ADMIN } from './lib/candor.mjs';
import { startPublisher } from './lib/publisher.mjs';
import { launch, ARTIFACTS } from './lib/browser.mjs';

let candor, publisher, browser, page;
before(async () => {
  candor = await startCandor();
  publisher = await startPublisher(candor.base);
  browser = await launch();
  page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  await page.goto(publisher.previewUrl);
  await page.waitForFunction(() => window.candor && window.candorLint);
});
after(async () => {
  await browser?.close();
  await publisher?.stop();
  await candor?.stop();
});

const admin = (method, path, body) => candor.api(method, path, { bearer: ADMIN, body });

/** Renders `variant` in the browser and returns what candor-lint.js measured. */
async function render(variant, shot) {
  const cfg = await admin('POST', '/v1/admin/prompt/preview', { variant });
  assert.equal(cfg.status, 200, cfg.text);
  await page.evaluate((c) => window.candor.preview(c), cfg.json);
  if (shot) await page.screenshot({ path: `${ARTIFACTS}/lint-${shot}.png` });
  return page.evaluate(() => window.candorLint.measure());
}

/** The verdict as [rule, element] pairs, [] when fair. */
async function verdict(variant, rendered) {
  const r = await admin('POST', '/v1/admin/prompt/lint', rendered ? { variant, rendered } : { variant });
  if (r.status === 200) return [];
  assert.equal(r.status, 422, r.text);
  assert.equal(r.json.code, 'unfair_prompt');
  return [...new Set(r.json.violations.map((v) => `${v.rule} ${v.element}`))].sort();
}

const REJECT = '.l1 [data-action=reject]';
const TABLE = [
  // [name, variant, expected when only declared, expected once rendered]
  ['standard', {}, [], []],
  ['bar, reject first, French wording', { layout: 'bar', buttons: ['reject', 'accept', 'choose'], texts: { fr: { title: 'Vos choix' } } }, [], []],
  ['every button green alike', { css: '.bt button { background: #0b6b2f; border-color: #0b6b2f; }' }, [], []],
  ['a close button that refuses', { closeButton: 'reject' }, [], []],
  ['the demo compact bar', { layout: 'bar', texts: { en: { title: 'Your data, your choice', intro: '{operator} asks before using data about you. Refusing is as easy as accepting.' } } }, [], []],
  ['no reject on the first layer', { buttons: ['accept', 'choose'] }, ['reject_not_on_first_layer button.reject'], ['reject_not_on_first_layer button.reject']],
  ['reject hidden by CSS', { css: `${REJECT} { display: none; }` }, [], ['reject_not_on_first_layer button.reject']],
  ['a tiny reject', { css: `${REJECT} { font-size: 11px; min-height: 0; padding: 2px; }` }, [], ['unequal_prominence button.reject']],
  ['a ghost reject', { css: `${REJECT} { background: #fff; border-color: #fff; color: #b8b8b8; }` }, [], ['unequal_prominence button.reject']],
  ['reject pushed out of view', { css: `.l1 .bt { align-items: start; } ${REJECT} { margin-top: 900px; }` }, [], ['unequal_prominence button.reject']],
  ['choose between accept and reject', { buttons: ['accept', 'choose', 'reject'] }, ['unequal_prominence button.reject'], ['unequal_prominence button.reject']],
  ['pre-ticked analytics', { preticked: ['analytics'] }, ['pre_ticked checkbox analytics'], ['pre_ticked checkbox analytics']],
  ['analytics bundled with ads', { bundles: [['analytics', 'ads_insights']] }, ['bundled_purposes checkbox analytics+ads_insights'], ['bundled_purposes checkbox analytics+ads_insights']],
  ['loyalty without its notice', { hideNotices: ['loyalty'] }, ['missing_notice purpose loyalty'], ['missing_notice purpose loyalty']],
  ['notice hidden by CSS', { css: '#cd-n-analytics { visibility: hidden; }' }, [], ['missing_notice purpose analytics']],
  ['analytics as a legitimate interest', { legitimateInterest: ['analytics'] }, ['legitimate_interest purpose analytics'], ['legitimate_interest checkbox analytics', 'legitimate_interest purpose analytics', 'pre_ticked checkbox analytics']],
  ['closing accepts', { closeButton: 'accept' }, ['close_counts_as_consent button.close'], ['close_counts_as_consent button.close']],
  ['forbidden wording', { texts: { en: { intro: 'By continuing to browse you accept everything.' } } }, ['forbidden_wording text intro (en)'], ['forbidden_wording text intro (en)']],
];

test('the linter judges each variant on its declaration and on its rendering', async () => {
  for (const [name, extra, declared, rendered] of TABLE) {
    const variant = { id: 'v_' + name.replace(/[^a-z]+/gi, '_').toLowerCase().replace(/_+$/, ''), ...extra };
    assert.deepEqual(await verdict(variant), declared.slice().sort(), `${name} (declared)`);
    const measured = await render(variant, variant.id);
    assert.deepEqual(await verdict(variant, measured), rendered.slice().sort(), `${name} (rendered)`);
  }
});

test('only fair, measured variants are saved; saved ones are shown to visitors by a stable split', async () => {
  const unfair = { id: 'tiny_reject', css: `${REJECT} { font-size: 10px; min-height: 0; padding: 1px; }` };
  let r = await admin('POST', '/v1/admin/prompt/variants', { variant: unfair, rendered: await render(unfair) });
  assert.equal(r.status, 422);
  assert.ok(r.json.violations.length > 0 && r.json.violations.every((v) => v.rule === 'unequal_prominence' && v.element === 'button.reject'), r.text);
  r = await admin('POST', '/v1/admin/prompt/variants', { variant: { id: 'compact' } });
  assert.equal(r.status, 400, 'a save needs the rendering');
  // The demo operator starts with its two variants; nothing refused was added.
  const ids = async () => (await admin('GET', '/v1/admin/prompt/variants')).json.variants.map((v) => v.variant.id).sort();
  assert.deepEqual(await ids(), ['compact_bar', 'standard']);
  assert.equal((await admin('PATCH', '/v1/admin/prompt/variants/compact_bar', { active: false })).status, 200);
  const compact = { id: 'compact', layout: 'bar', texts: { en: { title: 'Privacy, briefly' } } };
  r = await admin('POST', '/v1/admin/prompt/variants', { variant: compact, rendered: await render(compact) });
  assert.equal(r.status, 201, r.text);
  const standard = { id: 'standard' };
  r = await admin('POST', '/v1/admin/prompt/variants', { variant: standard, rendered: await render(standard) });
  assert.equal(r.status, 201, r.text);
  // Visitors are split between the two, each always to the same one.
  const seen = {};
  for (let i = 0; i < 40; i++) {
    const a = (await candor.api('GET', `/v1/prompt?anonymousId=visitor-${i}`)).json.variant.id;
    const b = (await candor.api('GET', `/v1/prompt?anonymousId=visitor-${i}`)).json.variant.id;
    assert.equal(a, b);
    seen[a] = (seen[a] || 0) + 1;
  }
  assert.deepEqual(Object.keys(seen).sort(), ['compact', 'standard']);
  // Retired: everyone sees the other.
  r = await admin('PATCH', '/v1/admin/prompt/variants/compact', { active: false });
  assert.equal(r.status, 200);
  for (let i = 0; i < 10; i++) {
    assert.equal((await candor.api('GET', `/v1/prompt?anonymousId=visitor-${i}`)).json.variant.id, 'standard');
  }
});

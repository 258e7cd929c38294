// Segments, personalization and loyalty in Chromium (issue 14): the dashboard's
// audiences page (sizes over time as a server-drawn chart, a segment added through the
// form, one refused for naming data its purpose may not use), and the person's own
// page with their wallet, a redemption, and what is picked for them and why. axe-core
// on every page, screenshots kept, no console error (a CSP violation is one).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCandor, SERVER_KEY, ADMIN } from './lib/candor.mjs';
import { launch, ARTIFACTS, watchedPage, axe } from './lib/browser.mjs';

let candor, browser, base;
before(async () => {
  candor = await startCandor();
  browser = await launch();
  base = candor.base.replace('127.0.0.1', 'localhost');
});
after(async () => {
  await browser?.close();
  await candor?.stop();
});

async function signInAdmin(p) {
  await p.goto(`${base}/admin/login`);
  await p.fill('#token', ADMIN);
  await p.click('button[type=submit]');
  await p.waitForURL(`${base}/admin/`);
}

test('the audiences page: sizes by day, a segment added, one refused', async () => {
  // Two people in the demo's fitness segment's shape, one with the interest only.
  for (const user of ['fit-1', 'fit-2']) {
    const r = await candor.api('POST', '/v1/consent', { basic: SERVER_KEY, body: { userId: user, choices: { personalization: 'grant', analytics: 'grant' } } });
    assert.equal(r.status, 200, r.text);
  }
  const now = Date.now();
  const batch = [];
  for (let d = 0; d < 6; d++) {
    batch.push({ type: 'track', event: 'App Session', userId: 'fit-1', messageId: `fit-1-${d}`,
      timestamp: new Date(now - d * 86400000).toISOString(), properties: { app_category: 'health_fitness' } });
  }
  let r = await candor.api('POST', '/v1/batch', { basic: SERVER_KEY, body: { batch } });
  assert.equal(r.status, 200, r.text);

  const { ctx, p, errors } = await watchedPage(browser);
  await signInAdmin(p);
  await p.getByRole('link', { name: 'Audiences and loyalty' }).click();
  await p.waitForURL(`${base}/admin/segments`);
  assert.equal(await p.locator('.chart svg[role=img]').count(), 1, 'the sizes chart');
  const fitness = p.locator('tr', { hasText: 'fitness_fans' });
  assert.match(await fitness.innerText(), /\b1\s*$|\t1\t/m, 'one person in fitness_fans');

  // A new segment through the form.
  await p.fill('#seg-name', 'shoe_people');
  await p.selectOption('#seg-purpose', 'personalization');
  await p.fill('#seg-rule', 'field.shoe_size >= 40');
  await p.fill('#seg-desc', 'Bigger feet');
  await p.getByRole('button', { name: 'Save segment' }).click();
  await p.waitForURL(`${base}/admin/segments`);
  assert.equal(await p.locator('tr', { hasText: 'shoe_people' }).count(), 1);
  await p.screenshot({ path: `${ARTIFACTS}/audiences.png`, fullPage: true });
  assert.deepEqual(await axe(p), [], 'audiences page');

  // A rule naming a field email marketing may use but personalization may not.
  await p.fill('#seg-name', 'mailers');
  await p.selectOption('#seg-purpose', 'personalization');
  await p.fill('#seg-rule', 'field.contact_channels has "email"');
  await p.getByRole('button', { name: 'Save segment' }).click();
  const alert = await p.getByRole('alert').innerText();
  assert.match(alert, /contact_channels may not be used for purpose personalization/);
  assert.equal(await p.locator('#seg-rule').inputValue(), 'field.contact_channels has "email"', 'the form keeps what was typed');
  assert.deepEqual(await axe(p), [], 'audiences page with an error');
  await p.screenshot({ path: `${ARTIFACTS}/audiences-refused.png`, fullPage: true });
  r = await candor.api('GET', '/v1/admin/segments', { bearer: ADMIN });
  assert.ok(!r.json.segments.some((s) => s.name === 'mailers'));
  // The refusal is answered 422 (Chromium logs the status of the page itself); nothing
  // else may have gone wrong.
  const others = errors.filter((e) => !/status of 422/.test(e));
  assert.equal(errors.length - others.length, 1, 'the refused form was answered 422');
  assert.deepEqual(others, [], 'no other console error, no CSP violation');
  await ctx.close();
});

test("a person's wallet, a redemption, and what is picked for them and why", async () => {
  const user = 'wallet-1';
  let r = await candor.api('POST', '/v1/consent', { basic: SERVER_KEY, body: { userId: user, choices: { personalization: 'grant', loyalty: 'grant' } } });
  assert.equal(r.status, 200, r.text);
  r = await candor.api('POST', '/v1/batch', { basic: SERVER_KEY, body: { batch: [
    { type: 'track', event: 'Order Completed', userId: user, messageId: 'w-o1', properties: { revenue: 180.4 } },
    { type: 'identify', userId: user, traits: { interests: ['travel'] } },
  ] } });
  assert.equal(r.status, 200, r.text);
  r = await candor.api('POST', '/v1/admin/subject-links', { bearer: ADMIN, body: { userId: user } });
  assert.equal(r.status, 200, r.text);
  const { ctx, p, errors } = await watchedPage(browser);
  await p.goto(`${base}${r.json.path}`);
  await p.getByRole('button', { name: 'Continue' }).click();
  await p.waitForURL(`${base}/me`);
  const loyalty = p.locator('#loyalty');
  assert.match(await loyalty.innerText(), /Your points: 180/);
  assert.match(await loyalty.innerText(), /Notice of financial incentive/);
  const picked = await p.locator('#picked').innerText();
  assert.match(picked, /City breaks for the season: because you told us your interests include travel/);
  await p.screenshot({ path: `${ARTIFACTS}/my-wallet.png`, fullPage: true });
  assert.deepEqual(await axe(p), [], 'my page with the wallet');

  await p.getByRole('button', { name: 'Redeem A free coffee for 150 points' }).click();
  await p.waitForURL(`${base}/me#loyalty`);
  assert.match(await p.locator('#loyalty').innerText(), /Your points: 30/);
  // The same form sent again (a double click, a reload) is the same redemption.
  const w = await candor.api('GET', `/v1/me/loyalty?userId=${user}`, { basic: SERVER_KEY });
  assert.equal(w.json.balance, 30);
  assert.equal(w.json.history.filter((t) => t.type === 'redeem').length, 1);
  assert.deepEqual(errors, [], 'no console error, no CSP violation');
  await ctx.close();
});

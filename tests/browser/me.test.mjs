// The person's own pages in Chromium (issue 13): a sign-in link the operator minted,
// the page read with axe-core on a desktop and a phone-width viewport, a consent
// changed from the page, the export downloaded, and candor.js's link to the same
// pages for an anonymous visitor. No console error (a CSP violation is one).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { startCandor, SERVER_KEY, ADMIN } from './lib/candor.mjs';
import { launch, ARTIFACTS, watchedPage, axe } from './lib/browser.mjs';
import { startPublisher } from './lib/publisher.mjs';

let candor, browser, base;
before(async () => {
  candor = await startCandor();
  browser = await launch();
  // localhost: a secure context, where Chromium keeps Secure cookies over plain HTTP.
  base = candor.base.replace('127.0.0.1', 'localhost');
});
after(async () => {
  await browser?.close();
  await candor?.stop();
});

/** A page that fails the test on any console error (a CSP violation is one). */
function page(viewport) {
  return watchedPage(browser, viewport, { acceptDownloads: true });
}

/** A person with an account, an anonymous id, an email and two events. */
async function person(user) {
  let r = await candor.api('POST', '/v1/consent', {
    basic: SERVER_KEY,
    body: { userId: user, anonymousId: `${user}-anon`, choices: { analytics: 'grant', personalization: 'grant' } },
  });
  assert.equal(r.status, 200, r.text);
  r = await candor.api('POST', '/v1/batch', {
    basic: SERVER_KEY,
    body: {
      batch: [
        { type: 'identify', userId: user, traits: { email: `${user}@example.com` } },
        { type: 'track', event: 'App Session', userId: user, properties: { note: `${user}-marker` } },
        { type: 'track', event: 'App Session', userId: user, properties: { note: `${user}-marker` } },
      ],
    },
  });
  assert.equal(r.status, 200, r.text);
}

async function link(user) {
  const r = await candor.api('POST', '/v1/admin/subject-links', { bearer: ADMIN, body: { userId: user } });
  assert.equal(r.status, 200, r.text);
  return r.json.path;
}

async function signIn(p, path) {
  await p.goto(`${base}${path}`);
  assert.deepEqual(await axe(p), [], 'sign-in page');
  // The keyboard alone: the one button is the first control.
  await p.keyboard.press('Tab');
  await p.keyboard.press('Enter');
  await p.waitForURL(`${base}/me`);
}

test('a person signs in with a link, changes a consent and downloads everything', async () => {
  await person('zoe');
  await person('yan');
  const { ctx, p, errors } = await page();
  const path = await link('zoe');
  await signIn(p, path);
  const body = await p.locator('main').innerText();
  assert.ok(body.includes('zoe@example.com') && body.includes('zoe-anon'), body);
  assert.ok(!body.includes('yan@example.com') && !body.includes('yan-marker'), 'only her own data');
  await p.screenshot({ path: `${ARTIFACTS}/my-data.png`, fullPage: true });
  assert.deepEqual(await axe(p), [], 'my data page');

  // Change a consent from the page: analytics stops, with a receipt to download.
  await p.getByRole('button', { name: 'Stop allowing Product analytics' }).click();
  await p.waitForURL(`${base}/me#choices`);
  assert.equal(await p.getByRole('button', { name: 'Allow Product analytics' }).count(), 1);
  const state = await candor.api('GET', '/v1/consent?userId=zoe', { basic: SERVER_KEY });
  assert.equal(state.json.purposes.find((x) => x.purpose === 'analytics').granted, false);
  await p.locator('details', { hasText: 'History' }).first().locator('summary').click();
  const [receipt] = await Promise.all([
    p.waitForEvent('download'),
    p.getByRole('link', { name: /Download receipt/ }).last().click(),
  ]);
  const signed = JSON.parse(await readFile(await receipt.path(), 'utf8'));
  assert.equal(signed.record.collectionMethod, 'preference_center');
  assert.ok(signed.signature && signed.publicKey);

  // Add a volunteered answer, then remove it, one by one.
  await p.getByLabel('Your answer (16 to 52)').fill('41');
  await p.getByRole('button', { name: 'Save Shoe size' }).click();
  await p.waitForURL(`${base}/me#told`);
  assert.match(await p.locator('#told').innerText(), /Your answer: 41 \(you told us/);
  let fields = await candor.api('GET', '/v1/me/fields?userId=zoe', { basic: SERVER_KEY });
  assert.equal(fields.json.fields.find((f) => f.name === 'shoe_size').value, 41);
  await p.getByRole('button', { name: 'Remove Shoe size' }).click();
  await p.waitForURL(`${base}/me#told`);
  fields = await candor.api('GET', '/v1/me/fields?userId=zoe', { basic: SERVER_KEY });
  assert.equal(fields.json.fields.find((f) => f.name === 'shoe_size').value, null);
  await p.getByLabel('Your answer (16 to 52)').fill('42');
  await p.getByRole('button', { name: 'Save Shoe size' }).click();
  await p.waitForURL(`${base}/me#told`);

  // The whole export, decrypted, as a file.
  const [download] = await Promise.all([
    p.waitForEvent('download'),
    p.getByRole('link', { name: 'Download everything as JSON' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'my-data.json');
  const doc = JSON.parse(await readFile(await download.path(), 'utf8'));
  assert.equal(doc.schema, 'candor-my-data-v1');
  assert.equal(doc.events.total, 3, 'the identify and two sessions');
  assert.equal(doc.events.items.filter((e) => e.message.properties?.note === 'zoe-marker').length, 2);
  assert.ok(doc.identifiers.some((i) => i.value === 'zoe@example.com'));
  assert.equal(doc.fields.find((f) => f.name === 'shoe_size').value, 42);

  assert.deepEqual(errors, [], 'no console error, no CSP violation');
  // The link was single-use (the page answers 401, which the console reports).
  await p.goto(`${base}${path}`);
  await p.keyboard.press('Tab');
  await p.keyboard.press('Enter');
  await p.waitForLoadState();
  assert.match(await p.locator('main').innerText(), /does not work/);
  await ctx.close();

  // A phone-width viewport: same page, still accessible.
  const phone = await page({ width: 375, height: 740 });
  await signIn(phone.p, await link('zoe'));
  await phone.p.screenshot({ path: `${ARTIFACTS}/my-data-phone.png`, fullPage: true });
  assert.deepEqual(await axe(phone.p), [], 'my data page on a phone');
  const overflow = await phone.p.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  assert.equal(overflow, false, 'no horizontal scrolling at phone width');
  assert.deepEqual(phone.errors, []);

  // Erase, after the confirmation step; then the person's links no longer work.
  const spare = await link('zoe');
  await phone.p.getByRole('link', { name: 'Erase everything' }).click();
  await phone.p.waitForURL(`${base}/me/erase`);
  assert.deepEqual(await axe(phone.p), [], 'erasure confirmation');
  await phone.p.screenshot({ path: `${ARTIFACTS}/my-data-erase.png`, fullPage: true });
  await phone.p.getByRole('button', { name: 'Erase everything' }).click();
  await phone.p.waitForLoadState();
  assert.match(await phone.p.locator('main').innerText(), /has been erased/);
  const gone = await candor.api('GET', '/v1/me?userId=zoe', { basic: SERVER_KEY });
  assert.equal(gone.status, 404);
  await phone.p.goto(`${base}${spare}`);
  await phone.p.keyboard.press('Tab');
  await phone.p.keyboard.press('Enter');
  await phone.p.waitForLoadState();
  assert.match(await phone.p.locator('main').innerText(), /does not work/);
  const yan = await candor.api('GET', '/v1/me?userId=yan', { basic: SERVER_KEY });
  assert.equal(yan.status, 200, 'the other person is untouched');
  await phone.ctx.close();
});

test('candor.js links an anonymous visitor to their own page', async () => {
  const publisher = await startPublisher(base);
  const { ctx, p, errors } = await page();
  await p.goto(publisher.url());
  const prompt = p.locator('#candor-prompt');
  await prompt.getByRole('button', { name: 'Accept all' }).click();
  await prompt.getByRole('button', { name: 'Privacy choices' }).click();
  const mine = prompt.locator('a[data-candor=my-data]');
  assert.equal(await mine.innerText(), 'See, download or erase your data');
  const anon = await p.evaluate(() => JSON.parse(localStorage.getItem('candor')).id);
  const [tab] = await Promise.all([ctx.waitForEvent('page'), mine.click()]);
  await tab.waitForLoadState();
  await tab.keyboard.press('Tab');
  await tab.keyboard.press('Enter');
  await tab.waitForURL(`${base}/me`);
  const body = await tab.locator('main').innerText();
  assert.ok(body.includes(anon), 'the visitor sees their own anonymous id');
  assert.deepEqual(errors, []);
  await ctx.close();
  await publisher.stop();
});

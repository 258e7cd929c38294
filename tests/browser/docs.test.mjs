// The API reference (/docs, issue 17) in Chromium: rendered from the same generated
// document /openapi.json serves, on a desktop and a phone-width viewport, looked at as a
// screenshot (target/browser-artifacts/docs-*.png) and scanned with axe-core; no console
// error (a CSP violation is one), nothing loaded from anywhere but Candor.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCandor } from './lib/candor.mjs';
import { launch, ARTIFACTS, watchedPage, axe } from './lib/browser.mjs';

const VIEWPORTS = [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 780 }]];

let candor, browser;
before(async () => {
  candor = await startCandor();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await candor?.stop();
});

test('the reference shows every documented operation, and every link on it lands', async () => {
  const doc = await (await fetch(`${candor.base}/openapi.json`)).json();
  const ids = [];
  for (const item of Object.values(doc.paths)) {
    for (const op of Object.values(item)) ids.push(op.operationId);
  }
  for (const [name, viewport] of VIEWPORTS) {
    const { ctx, p, errors } = await watchedPage(browser, viewport);
    const requested = [];
    p.on('request', (r) => requested.push(r.url()));
    const resp = await p.goto(`${candor.base}/docs`);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-security-policy'], /default-src 'none'/);
    // Every operation has its heading, found by its operation id.
    for (const id of ids) {
      assert.equal(await p.locator(`[id="${id}"]`).count(), 1, `no heading for ${id}`);
    }
    // Every in-page link names an element that exists.
    const broken = await p.evaluate(() => [...document.querySelectorAll('a[href^="#"]')]
      .map((a) => a.getAttribute('href').slice(1))
      .filter((id) => !document.getElementById(id)));
    assert.deepEqual([...new Set(broken)], []);
    // A reader finds the consent operation and its request body's schema.
    await p.getByRole('link', { name: 'Consent' }).first().click();
    const consent = p.locator('article', { has: p.locator('[id="post_consent"]') });
    await consent.getByRole('link', { name: 'ChoicesBody' }).first().click();
    assert.equal(await p.evaluate(() => location.hash), '#schema-ChoicesBody');
    assert.ok(await p.locator('#schema-ChoicesBody').isVisible());
    await p.screenshot({ path: `${ARTIFACTS}/docs-${name}.png`, fullPage: false });
    assert.deepEqual(await axe(p), [], `${name}: axe`);
    // Nothing came from anywhere but Candor.
    const foreign = requested.filter((u) => !u.startsWith(candor.base) && !u.startsWith('data:'));
    assert.deepEqual(foreign, []);
    assert.deepEqual(errors, [], `${name}: console errors`);
    await ctx.close();
  }
});

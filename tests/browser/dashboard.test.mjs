// The dashboard and the demo page in Chromium: signing in with the keyboard, the
// demo's month of counts drawn as charts (plotters SVG) under the page's strict CSP
// with no violation, axe-core on the dashboard, a CSRF-protected form that works, and
// the demo publisher page where the prompt releases its tagged scripts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCandor } from './lib/candor.mjs';
import { launch, ARTIFACTS, watchedPage, axe } from './lib/browser.mjs';

let candor, browser;
before(async () => {
  candor = await startCandor();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await candor?.stop();
});

/** A page that fails the test on any console error (a CSP violation is one). */
function page(viewport) {
  return watchedPage(browser, viewport);
}

test('the dashboard: keyboard sign-in, charts of the demo month, accessible, forms work', async () => {
  // localhost: a secure context, where Chromium keeps Secure cookies over plain HTTP.
  const base = candor.base.replace('127.0.0.1', 'localhost');
  const { ctx, p, errors } = await page();
  await p.goto(`${base}/admin/`);
  assert.equal(new URL(p.url()).pathname, '/admin/login');
  assert.deepEqual(await axe(p), [], 'login page');
  await p.keyboard.press('Tab');
  await p.keyboard.type('demo-admin-token');
  await p.keyboard.press('Enter');
  await p.waitForURL(`${base}/admin/`);
  const charts = await p.locator('.chart svg[role=img]').count();
  assert.equal(charts, 5, 'one chart per purpose');
  const rows = await p.locator('table').nth(0).locator('tbody tr').allTextContents();
  assert.equal(rows.length, 2, 'two variants');
  assert.ok(rows.some((r) => r.startsWith('standard')) && rows.some((r) => r.startsWith('compact_bar')));
  assert.equal(await p.locator('table').nth(1).locator('tbody tr').count(), 5, 'a comparison per purpose');
  await p.screenshot({ path: `${ARTIFACTS}/dashboard.png`, fullPage: true });
  assert.deepEqual(await axe(p), [], 'dashboard');
  // A CSRF-protected form: stop showing the compact bar.
  await p.getByRole('button', { name: 'Stop showing compact_bar' }).click();
  await p.waitForURL(`${base}/admin/`);
  assert.equal(await p.getByRole('button', { name: 'Show compact_bar' }).count(), 1);
  const variant = (await candor.api('GET', '/v1/prompt?anonymousId=anyone')).json.variant.id;
  assert.equal(variant, 'standard', 'only the standard prompt is shown now');
  await p.getByRole('button', { name: 'Sign out' }).click();
  await p.waitForURL(`${base}/admin/login`);
  await p.goto(`${base}/admin/`);
  assert.equal(new URL(p.url()).pathname, '/admin/login', 'signed out');
  assert.deepEqual(errors, [], 'no console error, no CSP violation');
  await ctx.close();
});

test('the variant editor draws, measures and refuses a dark pattern CSS hides; saves a fair one', async () => {
  const base = candor.base.replace('127.0.0.1', 'localhost');
  const { ctx, p, errors } = await page();
  await p.goto(`${base}/admin/login`);
  await p.fill('#token', 'demo-admin-token');
  await p.click('button[type=submit]');
  await p.waitForURL(`${base}/admin/`);
  await p.getByRole('link', { name: 'New variant' }).click();
  await p.waitForURL(`${base}/admin/variants/new`);
  // Fair as declared; only the rendering shows reject shrunk and greyed.
  const sneaky = { id: 'sneaky', css: '.l1 [data-action=reject] { font-size: 11px; min-height: 0; padding: 2px; background: #fff; color: #aaa; border-color: #fff; }' };
  await p.fill('#variant', JSON.stringify(sneaky));
  await p.getByRole('button', { name: 'Check and save' }).click();
  await p.waitForURL(`${base}/admin/variants`);
  const alert = await p.getByRole('alert').textContent();
  assert.match(alert, /unequal_prominence on button\.reject/);
  assert.deepEqual(await axe(p), [], 'editor with violations');
  await p.screenshot({ path: `${ARTIFACTS}/editor-refused.png`, fullPage: true });
  assert.ok(!(await candor.api('GET', '/v1/admin/prompt/variants', { bearer: 'demo-admin-token' })).json.variants.some((v) => v.variant.id === 'sneaky'));
  // The same page, fixed: saved and listed.
  await p.fill('#variant', JSON.stringify({ id: 'calm_bar', layout: 'bar', weight: 2 }));
  await p.getByRole('button', { name: 'Check and save' }).click();
  await p.waitForURL(`${base}/admin/`);
  assert.equal(await p.getByRole('button', { name: 'Stop showing calm_bar' }).count(), 1);
  // The refusal is a 422 page, which the console reports; nothing else may appear.
  assert.deepEqual(errors.filter((e) => !/status of 422/.test(e)), []);
  await ctx.close();
});

test('the demo page: the prompt, then the tagged scripts run as allowed', async () => {
  for (const [name, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 780 }]]) {
    const { ctx, p, errors } = await page(viewport);
    await p.goto(`${candor.base}/demo/`);
    await p.locator('#candor-prompt dialog').waitFor({ state: 'visible' });
    await p.screenshot({ path: `${ARTIFACTS}/demo-${name}.png` });
    const status = () => p.evaluate(() => ['analytics', 'personalization', 'ads_insights'].map((x) => document.getElementById('s-' + x).textContent));
    assert.deepEqual(await status(), ['waiting for consent', 'waiting for consent', 'waiting for consent']);
    await p.locator('#candor-prompt .l1 [data-action=choose]').click();
    await p.locator('#candor-prompt input[data-purpose=analytics]').check();
    await p.locator('#candor-prompt input[data-purpose=personalization]').check();
    await p.locator('#candor-prompt [data-action=save]').click();
    await p.waitForFunction(() => document.getElementById('s-analytics').textContent === 'running: page view accepted');
    assert.deepEqual(await status(), ['running: page view accepted', 'running', 'waiting for consent']);
    await p.screenshot({ path: `${ARTIFACTS}/demo-${name}-after.png` });
    assert.deepEqual(errors, []);
    await ctx.close();
  }
});

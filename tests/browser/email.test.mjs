// Email on consent in Chromium (issue 16), with a real SMTP server on loopback
// (scripts/smtp-sink): the sign-up form and its answer, the confirmation page reached
// from the link in the mail that arrived and the button that confirms, the unsubscribe
// page reached from a campaign's mail and its button, the preference center's sign-in by
// email and the person's mailing lists on /me, and the dashboard's email page with its
// charts. Every page on a desktop and a phone-width viewport, looked at as a screenshot
// (target/browser-artifacts/email-*.png) and scanned with axe-core; no console error
// (a CSP violation is one).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startCandor, TEST_CONFIG, ROOT, SERVER_KEY, ADMIN } from './lib/candor.mjs';
import { launch, ARTIFACTS, watchedPage, axe } from './lib/browser.mjs';

const VIEWPORTS = [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 780 }]];

function python() {
  if (process.env.CANDOR_PYTHON) return process.env.CANDOR_PYTHON;
  const venv = join(ROOT, 'target', 'py-venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/** scripts/smtp-sink on a port of its own: what it accepted, read from its log. */
async function startSink() {
  const dir = await mkdtemp(join(tmpdir(), 'candor-sink-'));
  const child = spawn(python(), [join(ROOT, 'scripts', 'smtp-sink'), '--dir', dir, '--port', '0'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const port = await new Promise((ok, fail) => {
    child.on('exit', (code) => fail(new Error(`smtp-sink exited (${code}):\n${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (l) => {
      const m = l.match(/^PORT (\d+)$/);
      if (m) ok(Number(m[1]));
    });
  });
  return {
    port,
    /** Every accepted message to `to`, oldest first, as its raw text. */
    async to(to) {
      let log = '';
      try { log = await readFile(join(dir, 'log.jsonl'), 'utf8'); } catch { return []; }
      const out = [];
      for (const line of log.split('\n').filter(Boolean)) {
        const e = JSON.parse(line);
        if (e.event === 'accepted' && e.rcpt_tos.some((r) => r.toLowerCase() === to.toLowerCase())) {
          out.push(await readFile(join(dir, `${e.seq}.eml`), 'utf8'));
        }
      }
      return out;
    },
    async stop() {
      const done = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      await done;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A mail's text with quoted-printable soft breaks and escapes undone. */
function unqp(raw) {
  return Buffer.from(raw.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
}

/** The path and query of the first link to `path` in a mail (links are built on the
 *  configured base, http://127.0.0.1, not the test server's port). */
function linkIn(raw, path) {
  const text = unqp(raw);
  const at = text.indexOf(`http://127.0.0.1${path}`);
  assert.ok(at >= 0, `no ${path} link in\n${text}`);
  return text.slice(at + 'http://127.0.0.1'.length).match(/^[^\s>"]+/)[0];
}

let sink, candor, browser, base;

/** The n-th mail to `to` (1-based), waiting for the sink to take it. */
async function mail(to, n = 1) {
  for (let i = 0; i < 400; i++) {
    const got = await sink.to(to);
    if (got.length >= n) return got[n - 1];
    await new Promise((ok) => setTimeout(ok, 50));
  }
  assert.fail(`no mail number ${n} to ${to}`);
}

before(async () => {
  sink = await startSink();
  candor = await startCandor(`${TEST_CONFIG}
[email]
from = "news@example.com"
from_name = "Example News"
base_url = "http://127.0.0.1"
unsubscribe_mailto = "leave@example.com"
[email.smtp]
host = "127.0.0.1"
port = ${sink.port}
tls = "never"
timeout_seconds = 10
[[email.lists]]
name = "news"
title = "Monthly news"
description = "What is new, once a month."
[[email.lists]]
name = "offers"
title = "Offers"
description = "Discounts for members, at most weekly."
`);
  browser = await launch();
  // localhost: a secure context, where Chromium keeps Secure cookies over plain HTTP.
  base = candor.base.replace('127.0.0.1', 'localhost');
});
after(async () => {
  await browser?.close();
  await candor?.stop();
  await sink?.stop();
});

/** Screenshot and axe-core on what the page shows now. */
async function look(p, name, what) {
  await p.screenshot({ path: `${ARTIFACTS}/email-${name}.png`, fullPage: true });
  assert.deepEqual(await axe(p), [], what);
}

async function heading(p) {
  return (await p.locator('main h2').first().textContent()).trim();
}

test('sign up, confirm from the mail, leave from a campaign mail', async () => {
  for (const [name, viewport] of VIEWPORTS) {
    const { ctx, p, errors } = await watchedPage(browser, viewport);
    const addr = `ann-${name}@example.org`;
    // The form: the list named in the link is chosen; the keyboard reaches the address.
    await p.goto(`${base}/email/subscribe?list=news`);
    assert.equal(await p.getByRole('radio', { name: 'Monthly news' }).isChecked(), true);
    assert.equal(await p.getByRole('radio', { name: 'Offers' }).isChecked(), false);
    await look(p, `subscribe-${name}`, 'sign-up form');
    await p.getByLabel('Your email address').fill(addr);
    await p.getByRole('button', { name: 'Sign up' }).click();
    await p.waitForURL(`${base}/email/subscribe`);
    assert.equal(await heading(p), 'Check your inbox');
    await look(p, `subscribed-${name}`, 'sign-up answer');

    // The confirmation mail's link: a page with a button; only the button confirms.
    const confirm = linkIn(await mail(addr), '/email/confirm?t=');
    await p.goto(`${base}${confirm}`);
    assert.equal(await heading(p), 'Confirm: Monthly news');
    await look(p, `confirm-${name}`, 'confirmation page');
    let lists = (await candor.api('GET', '/v1/admin/email/lists', { bearer: ADMIN })).json.lists;
    const news = () => lists.find((l) => l.name === 'news');
    const before = news().confirmed;
    await p.getByRole('button', { name: 'Yes, subscribe me' }).click();
    await p.waitForURL(`${base}/email/confirm`);
    assert.match(await p.locator('main').textContent(), /You are subscribed/);
    await look(p, `confirmed-${name}`, 'confirmed page');
    lists = (await candor.api('GET', '/v1/admin/email/lists', { bearer: ADMIN })).json.lists;
    assert.equal(news().confirmed, before + 1);
    assert.deepEqual(errors, [], 'no console error, no CSP violation');
    await ctx.close();
  }

  // A campaign reaches both; each leaves through the link in its mail.
  let r = await candor.api('POST', '/v1/admin/email/campaigns', {
    bearer: ADMIN,
    body: { name: 'Spring news', list: 'news', subject: '{{ list.title }}: spring', text: 'Hello.\nTo leave: {{ unsubscribe_url }}\n' },
  });
  assert.equal(r.status, 201, r.text);
  r = await candor.api('POST', `/v1/admin/email/campaigns/${r.json.id}/start`, { bearer: ADMIN, body: {} });
  assert.equal(r.status, 200, r.text);
  for (const [name, viewport] of VIEWPORTS) {
    const { ctx, p, errors } = await watchedPage(browser, viewport);
    const addr = `ann-${name}@example.org`;
    const leave = linkIn(await mail(addr, 2), '/email/unsubscribe?t=');
    await p.goto(`${base}${leave}`);
    assert.equal(await heading(p), 'Leave “Monthly news”?');
    await look(p, `unsubscribe-${name}`, 'unsubscribe page');
    await p.getByRole('button').filter({ hasText: /unsubscribe/i }).click();
    await p.waitForLoadState();
    assert.match(await p.locator('main').textContent(), /You are unsubscribed/);
    await look(p, `unsubscribed-${name}`, 'unsubscribed page');
    assert.deepEqual(errors, [], 'no console error, no CSP violation');
    await ctx.close();
  }
  const lists = (await candor.api('GET', '/v1/admin/email/lists', { bearer: ADMIN })).json.lists;
  assert.equal(lists.find((l) => l.name === 'news').unsubscribed, 2);
});

test('sign in by email and change mailing lists on /me', async () => {
  for (const [name, viewport] of VIEWPORTS) {
    const addr = `bo-${name}@example.org`;
    // Subscribed through the API, confirmed by the mailed link.
    const r = await candor.api('POST', '/v1/email/subscriptions', { basic: SERVER_KEY, body: { email: addr, list: 'offers' } });
    assert.equal(r.status, 202, r.text);
    const t = new URLSearchParams(linkIn(await mail(addr), '/email/confirm?t=').split('?')[1]).get('t');
    const done = await fetch(`${candor.base}/email/confirm`, { method: 'POST', body: new URLSearchParams({ t }) });
    assert.equal(done.status, 200);

    const { ctx, p, errors } = await watchedPage(browser, viewport);
    await p.goto(`${base}/me/signin`);
    assert.equal(await heading(p), 'Sign in to see your data');
    await look(p, `signin-${name}`, 'sign-in form');
    await p.getByLabel('Your email address').fill(addr);
    await p.getByRole('button', { name: 'Email me a sign-in link' }).click();
    await p.waitForURL(`${base}/me/signin`);
    assert.equal(await heading(p), 'Check your inbox');
    await look(p, `signin-sent-${name}`, 'sign-in answer');

    await p.goto(`${base}${linkIn(await mail(addr, 2), '/me/enter?t=')}`);
    await p.getByRole('button', { name: 'Continue' }).click();
    await p.waitForURL(`${base}/me`);
    const lists = p.locator('#lists');
    const status = async (title) => (await lists.locator('tr', { hasText: title }).locator('td').nth(1).textContent()).trim();
    assert.equal(await status('Offers'), 'Subscribed');
    assert.equal(await status('Monthly news'), 'Not subscribed');
    await lists.scrollIntoViewIfNeeded();
    await lists.screenshot({ path: `${ARTIFACTS}/email-me-lists-${name}.png` });
    await look(p, `me-${name}`, '/me with mailing lists');
    // Leaving from the preference center.
    await p.getByRole('button', { name: 'Leave Offers' }).click();
    await p.waitForURL(/\/me/);
    assert.equal(await status('Offers'), 'Not subscribed');
    assert.equal(await p.getByRole('button', { name: 'Join Offers' }).count(), 1);
    assert.deepEqual(await axe(p), [], '/me after leaving');
    assert.deepEqual(errors, [], 'no console error, no CSP violation');
    await ctx.close();
  }
});

test('the dashboard email page: lists, growth and campaign charts', async () => {
  for (const [name, viewport] of VIEWPORTS) {
    const { ctx, p, errors } = await watchedPage(browser, viewport);
    await p.goto(`${base}/admin/email`);
    assert.equal(new URL(p.url()).pathname, '/admin/login', 'a session is needed');
    await p.fill('#token', ADMIN);
    await p.click('button[type=submit]');
    await p.waitForURL(`${base}/admin/`);
    await p.getByRole('link', { name: 'Email' }).click();
    await p.waitForURL(`${base}/admin/email`);
    // Two growth charts and the campaigns' chart, each named by a heading on the page.
    const charts = p.locator('.chart svg[role=img]');
    assert.equal(await charts.count(), 3);
    for (const label of await charts.evaluateAll((svgs) => svgs.map((s) => s.getAttribute('aria-labelledby')))) {
      assert.ok((await p.locator(`[id="${label}"]`).textContent()).length > 0, label);
    }
    // The numbers set up by the tests before: news had two confirmations, both left;
    // offers two, one left through the preference center so far (two after the phone).
    const row = (title) => p.locator('table').first().locator('tr', { hasText: title });
    const fig = async (title, key) => (await row(title).locator(`[data-figure=${key}]`).textContent()).trim();
    assert.equal(await fig('Monthly news', 'confirmed'), '0');
    assert.equal(await fig('Monthly news', 'unsubscribed'), '2');
    assert.match(await fig('Monthly news', 'rate'), /^100\.0%/);
    assert.equal(await fig('Offers', 'unsubscribed'), '2');
    const campaign = p.locator('tr[data-campaign]').first();
    assert.equal((await campaign.locator('[data-status=sent]').textContent()).trim(), '2');
    assert.equal((await campaign.locator('[data-status=left]').textContent()).trim(), '2');
    await look(p, `admin-${name}`, 'dashboard email page');
    // On a phone the page itself does not scroll sideways (wide tables scroll in place).
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the viewport`);
    assert.deepEqual(errors, [], 'no console error, no CSP violation');
    await ctx.close();
  }
});

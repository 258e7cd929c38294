// Debian's Chromium driven by playwright-core (no browser download), with the flags
// ../shared/BUILD-NOTES.md lists for this closed network. Playwright gives every
// launch a fresh, empty profile directory of its own.
import { chromium } from 'playwright-core';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ROOT } from './candor.mjs';

export const ARTIFACTS = join(ROOT, 'target', 'browser-artifacts');

export async function launch() {
  await mkdir(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Makes navigator.globalPrivacyControl true, as a GPC-enabled browser does. */
export const GPC_INIT = () => {
  Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true, configurable: true });
};

const AXE = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** A page in a fresh context that records every console error and page error (a CSP
 *  violation is one), for the test to assert none happened. */
export async function watchedPage(browser, viewport = { width: 1280, height: 900 }, options = {}) {
  const ctx = await browser.newContext({ viewport, ...options });
  const p = await ctx.newPage();
  const errors = [];
  p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  p.on('pageerror', (e) => errors.push(e.message));
  return { ctx, p, errors };
}

/** axe-core's serious and critical violations on the page, one line each. */
export async function axe(p) {
  await p.evaluate(AXE);
  const r = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

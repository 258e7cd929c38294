// Debian's Chromium driven by playwright-core (no browser download), with the flags
// ../shared/BUILD-NOTES.md lists for this closed network. Playwright gives every
// launch a fresh, empty profile directory of its own.
import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
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

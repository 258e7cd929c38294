// Starts the real `candor` binary (like crates/candor/tests/cli/helpers.rs): the demo
// operator on 127.0.0.1 port 0, with its own data directory and a test config.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export const ROOT = resolve(import.meta.dirname, '../../..');
export const BROWSER_KEY = 'demo-browser-write-key';
export const SERVER_KEY = 'demo-server-write-key';
export const ADMIN = 'demo-admin-token';

export function binary() {
  if (process.env.CANDOR_BIN) return process.env.CANDOR_BIN;
  for (const p of ['target/debug/candor', 'target/release/candor']) {
    if (existsSync(join(ROOT, p))) return join(ROOT, p);
  }
  throw new Error('no candor binary: run `cargo build -p candor` or set CANDOR_BIN');
}

// A registered-looking CMP id: the IAB's reference decoder refuses 0.
export const TEST_CONFIG = `
[iab]
cmp_id = 77
cmp_version = 3
publisher_country_code = "FR"

[prompt]
forbidden_wording = ["by continuing", "no thanks"]

# The test publishers listen on other ports of 127.0.0.1, chosen when they start.
[cors]
allowed_origins = ["http://127.0.0.1:*"]
`;

export async function startCandor(config = TEST_CONFIG) {
  const dir = await mkdtemp(join(tmpdir(), 'candor-browser-'));
  const cfg = join(dir, 'candor.toml');
  await writeFile(cfg, config);
  const child = spawn(binary(), ['serve', '--demo', '--demo-subjects', '0', '--listen', '127.0.0.1:0',
    '--data-dir', join(dir, 'data'), '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const lines = createInterface({ input: child.stdout });
  const base = await new Promise((ok, fail) => {
    child.on('exit', (code) => fail(new Error(`candor exited (${code}) before listening:\n${stderr}`)));
    lines.on('line', (l) => {
      const m = l.trim().match(/^API:\s+(\S+)\/v1$/);
      if (m) ok(m[1]);
    });
  });
  return {
    base,
    async stop() {
      const done = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      await done;
      await rm(dir, { recursive: true, force: true });
    },
    // JSON over HTTP as a server-side caller (Basic key or Bearer token).
    async api(method, path, { basic, bearer, body, headers = {} } = {}) {
      const h = { ...headers };
      if (basic) h.Authorization = 'Basic ' + Buffer.from(basic + ':').toString('base64');
      if (bearer) h.Authorization = 'Bearer ' + bearer;
      if (body !== undefined) h['Content-Type'] = 'application/json';
      const r = await fetch(base + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      let json = null;
      try { json = JSON.parse(text); } catch { /* not JSON */ }
      return { status: r.status, json, text, headers: r.headers };
    },
  };
}

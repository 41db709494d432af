// The build prints the widget's gzipped size and fails past the limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const build = (args, env = {}) =>
  spawnSync(process.execPath, ['web-widget/build.mjs', ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env } });

test('the build reports the gzipped size within the 12 KB limit and copies the demo', (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'jdbuild.'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = build(['--out', out]);
  assert.equal(r.status, 0, r.stderr);
  const m = /widget\.js: (\d+) bytes, (\d+) bytes gzipped \(limit 12288\)/.exec(r.stdout);
  assert.ok(m, `size line missing from: ${r.stdout}`);
  const js = readFileSync(path.join(out, 'widget.js'));
  assert.equal(Number(m[1]), js.length);
  assert.equal(Number(m[2]), gzipSync(js, { level: 9 }).length);
  assert.ok(Number(m[2]) <= 12288);
  for (const f of ['index.html', 'product.html', 'checkout.html', 'inline.html', 'shop.js', 'shop.css'])
    assert.ok(existsSync(path.join(out, 'demo', f)), `demo/${f} copied`);
  // CSP: the bundle never evaluates strings as code.
  assert.doesNotMatch(js.toString(), /\beval\(|new Function\(|innerHTML/);
});

test('the build fails past the size limit (--limit and WIDGET_GZIP_LIMIT)', (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'jdbuild.'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = build(['--out', out, '--limit', '1000']);
  assert.equal(r.status, 1, `expected exit 1, got ${r.status}: ${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /bytes gzipped \(limit 1000\)/);
  assert.match(r.stderr, /over the limit of 1000 bytes/);
  assert.ok(!existsSync(path.join(out, 'widget.js')), 'an oversized widget.js is not left behind');

  const e = build(['--out', out], { WIDGET_GZIP_LIMIT: '2000' });
  assert.equal(e.status, 1);
  assert.match(e.stderr, /over the limit of 2000 bytes/);

  const ok = build(['--out', out, '--limit', '100000']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(existsSync(path.join(out, 'widget.js')));
});

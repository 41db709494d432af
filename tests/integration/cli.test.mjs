// Command line: --help lists every setting, --version prints the version, --check-config validates
// the layered configuration (file, environment, flags) and names the bad setting. No database.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { ROOT, runJourneyd, sanitizerReport } from '../lib/harness.mjs';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'jdcli.'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function conf(name, text) {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
}

// Environment without JOURNEYD_* from the caller, so the tests see only what they set.
const cleanEnv = Object.fromEntries(Object.keys(process.env).filter((k) => k.startsWith('JOURNEYD_') && k !== 'JOURNEYD_BIN').map((k) => [k, undefined]));

async function run(args, env = {}) {
  const r = await runJourneyd(args, { env: { ...cleanEnv, ...env }, timeoutMs: 20000 });
  assert.equal(sanitizerReport(r.stderr), null, `sanitizer report:\n${r.stderr}`);
  assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
  return r;
}

const SETTINGS = [
  ['listen', '--listen', 'JOURNEYD_LISTEN'],
  ['database_url', '--database-url', 'JOURNEYD_DATABASE_URL'],
  ['static_dir', '--static-dir', 'JOURNEYD_STATIC_DIR'],
  ['sql_dir', '--sql-dir', 'JOURNEYD_SQL_DIR'],
  ['max_frame', '--max-frame', 'JOURNEYD_MAX_FRAME'],
  ['rate_per_sec', '--rate-per-sec', 'JOURNEYD_RATE_PER_SEC'],
  ['rate_burst', '--rate-burst', 'JOURNEYD_RATE_BURST'],
  ['max_conns_per_ip', '--max-conns-per-ip', 'JOURNEYD_MAX_CONNS_PER_IP'],
  ['log_level', '--log-level', 'JOURNEYD_LOG_LEVEL'],
];

test('--help exits 0 and lists every setting with its flag and environment variable', async () => {
  const r = await run(['--help']);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout + r.stderr;
  assert.match(out, /usage/i);
  assert.match(out, /migrate/);
  for (const [, flag, env] of SETTINGS) {
    assert.ok(out.includes(flag), `--help mentions ${flag}`);
    assert.ok(out.includes(env), `--help mentions ${env}`);
  }
  for (const f of ['--help', '--version', '--check-config']) assert.ok(out.includes(f), `--help mentions ${f}`);
  assert.ok(out.includes('65536'), '--help shows the max_frame default');
});

test('--version prints the project version', async () => {
  const r = await run(['--version']);
  assert.equal(r.code, 0, r.stderr);
  const cmake = readFileSync(path.join(ROOT, 'CMakeLists.txt'), 'utf8');
  const version = /project\(journeyd VERSION ([0-9.]+)/.exec(cmake)[1];
  assert.match(r.stdout, new RegExp(`journeyd.*${version.replace(/\./g, '\\.')}`), r.stdout);
  assert.equal(r.stdout.trim().split('\n').length, 1, 'one line');
});

test('--check-config accepts a good config file and exits 0', async () => {
  const p = conf('good.conf', '# comment\nlisten = 127.0.0.1:18080\nmax_frame = 4096\n\nrate_per_sec = 5\nrate_burst = 10\nlog_level = debug\n');
  const r = await run(['--check-config', '--config', p]);
  assert.equal(r.code, 0, `stdout ${r.stdout} stderr ${r.stderr}`);
});

const BAD_FILES = [
  ['non-numeric max_frame', 'max_frame = banana\n', /max_frame/],
  ['max_frame below its minimum', 'max_frame = 10\n', /max_frame/],
  ['negative rate_burst', 'rate_burst = -3\n', /rate_burst/],
  ['unknown log_level', 'log_level = chatty\n', /log_level/],
  ['listen without a port', 'listen = 127.0.0.1\n', /listen/],
  ['unknown setting', 'max_frmae = 4096\n', /max_frmae/],
  ['a line without =', 'max_frame 4096\n', /bad-a-line-without-\.conf/],
];

for (const [why, text, re] of BAD_FILES) {
  test(`--check-config rejects a config file with ${why}, naming the setting`, async () => {
    const p = conf(`bad-${why.replace(/\W+/g, '-')}.conf`, text);
    const r = await run(['--check-config', '--config', p]);
    assert.notEqual(r.code, 0, `exit code for ${why}`);
    assert.match(r.stderr, re, `stderr names it: ${r.stderr}`);
    assert.ok(r.stderr.includes(path.basename(p)), `stderr names the file: ${r.stderr}`);
  });
}

test('--check-config reports the line number of the bad setting', async () => {
  const p = conf('line.conf', '# one\nlisten = 127.0.0.1:18080\n\nmax_frame = banana\n');
  const r = await run(['--check-config', '--config', p]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /:4\b|line 4/, r.stderr);
});

test('--check-config with a missing config file fails and names it', async () => {
  const r = await run(['--check-config', '--config', path.join(tmp, 'does-not-exist.conf')]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /does-not-exist\.conf/);
});

test('--check-config rejects a bad environment variable, naming it', async () => {
  const r = await run(['--check-config'], { JOURNEYD_MAX_FRAME: 'lots' });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /JOURNEYD_MAX_FRAME/);
});

test('--check-config rejects a bad flag value, naming the flag', async () => {
  const r = await run(['--check-config', '--rate-per-sec', '0']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /rate.per.sec/);
});

test('an unknown flag fails with a message naming it', async () => {
  const r = await run(['--no-such-flag']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--no-such-flag/);
});

test('JOURNEYD_CONFIG names the config file', async () => {
  const p = conf('envconf.conf', 'max_frame = banana\n');
  const r = await run(['--check-config'], { JOURNEYD_CONFIG: p });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /max_frame/);
});

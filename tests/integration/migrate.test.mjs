// `journeyd migrate`: applies sql/NNN_*.sql once each and records them in journeyd_migrations; a
// second run is a no-op; a broken file is rolled back and named in the error.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import pg from 'pg';

import { Harness, SQL_DIR, sanitizerReport } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url, { migrate: false, seed: false });
const migrationFiles = () => readdirSync(SQL_DIR).filter((f) => /^\d{3}_.*\.sql$/.test(f)).sort();

async function withDb(name, fn) {
  const url = await h.createDatabase(name);
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(url, c);
  } finally {
    await c.end();
  }
}

const count = async (c) => (await c.query('SELECT count(*)::int AS n FROM journeyd_migrations')).rows[0].n;
const tableExists = async (c, t) => (await c.query('SELECT to_regclass($1) IS NOT NULL AS e', [t])).rows[0].e;
const noSanitizer = (r) => assert.equal(sanitizerReport(r.stderr), null, r.stderr);

function tempSqlDir(extra) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jdsql.'));
  for (const f of migrationFiles()) copyFileSync(path.join(SQL_DIR, f), path.join(dir, f));
  for (const [name, text] of Object.entries(extra)) writeFileSync(path.join(dir, name), text);
  return dir;
}

h.test('migrate applies every sql/NNN_*.sql once and a second run is a no-op', async () => {
  await withDb('mig_twice', async (url, c) => {
    const r1 = await h.migrate(url, { check: false });
    noSanitizer(r1);
    assert.equal(r1.code, 0, `first run: ${r1.stderr}`);
    assert.ok(await tableExists(c, 'journeyd_migrations'), 'journeyd_migrations table exists');
    const n1 = await count(c);
    assert.equal(n1, migrationFiles().length, 'one row per migration file');
    for (const t of ['sites', 'maps', 'personas', 'stages', 'touchpoints', 'surveys', 'questions', 'answers', 'sessions', 'touch_events']) {
      assert.ok(await tableExists(c, t), `table ${t}`);
    }
    const rows1 = (await c.query('SELECT * FROM journeyd_migrations')).rows;
    const r2 = await h.migrate(url, { check: false });
    noSanitizer(r2);
    assert.equal(r2.code, 0, `second run: ${r2.stderr}`);
    assert.equal(await count(c), n1, 'second run adds no rows');
    assert.deepEqual((await c.query('SELECT * FROM journeyd_migrations')).rows, rows1, 'second run changes no rows');
    for (const f of migrationFiles()) {
      assert.ok(JSON.stringify(rows1).includes(f.replace(/\.sql$/, '').slice(0, 3)), `${f} recorded`);
    }
  });
});

h.test('migrate concurrently from two processes applies each file once', async () => {
  await withDb('mig_race', async (url, c) => {
    const [a, b] = await Promise.all([h.migrate(url, { check: false }), h.migrate(url, { check: false })]);
    noSanitizer(a);
    noSanitizer(b);
    assert.ok(a.code === 0 || b.code === 0, `one run succeeds: ${a.stderr}\n${b.stderr}`);
    assert.equal(await count(c), migrationFiles().length);
    // A loser may fail cleanly, but a rerun is then a no-op.
    const r = await h.migrate(url, { check: false });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await count(c), migrationFiles().length);
  });
});

h.test('a broken migration is rolled back and the error names the file', async () => {
  const dir = tempSqlDir({
    '900_broken.sql': 'CREATE TABLE jd_probe_broken (x int);\nINSERT INTO jd_probe_broken VALUES (1);\nSELECT 1/0;\n',
  });
  try {
    await withDb('mig_broken', async (url, c) => {
      const r = await h.migrate(url, { sqlDir: dir, check: false });
      noSanitizer(r);
      assert.notEqual(r.code, 0, 'migrate fails');
      assert.match(r.stderr + r.stdout, /900_broken\.sql/, `the message names the file: ${r.stderr}`);
      assert.equal(await tableExists(c, 'jd_probe_broken'), false, 'the broken file left nothing behind');
      const recorded = JSON.stringify((await c.query('SELECT * FROM journeyd_migrations')).rows);
      assert.ok(!recorded.includes('900'), 'the broken file is not recorded as applied');
      assert.equal(await count(c), migrationFiles().length, 'the good files before it are applied');
      // Fixing the file lets the next run apply it.
      writeFileSync(path.join(dir, '900_broken.sql'), 'CREATE TABLE jd_probe_broken (x int);\n');
      const r2 = await h.migrate(url, { sqlDir: dir, check: false });
      assert.equal(r2.code, 0, r2.stderr);
      assert.equal(await tableExists(c, 'jd_probe_broken'), true);
      assert.equal(await count(c), migrationFiles().length + 1);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

h.test('a new migration file is applied on the next run, once', async () => {
  await withDb('mig_new', async (url, c) => {
    assert.equal((await h.migrate(url, { check: false })).code, 0);
    const dir = tempSqlDir({ '901_extra.sql': 'CREATE TABLE jd_probe_extra (x int);\n' });
    try {
      const r = await h.migrate(url, { sqlDir: dir, check: false });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await count(c), migrationFiles().length + 1);
      assert.equal((await h.migrate(url, { sqlDir: dir, check: false })).code, 0);
      assert.equal(await count(c), migrationFiles().length + 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

h.test('migrate without a reachable database fails with a message', async () => {
  const r = await h.migrate('postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2', { check: false });
  noSanitizer(r);
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.trim().length > 0, 'says why on stderr');
});

h.test('the demo seed loads on top of the migrations and is idempotent', async () => {
  await withDb('mig_seed', async (url, c) => {
    assert.equal((await h.migrate(url, { check: false })).code, 0);
    await h.seed(url, ['https://shop.example']);
    await h.seed(url, ['https://shop.example']);
    const n = (await c.query("SELECT (SELECT count(*) FROM surveys WHERE status = 'live')::int AS s, (SELECT count(*) FROM questions)::int AS q")).rows[0];
    assert.deepEqual(n, { s: 2, q: 7 });
  });
});

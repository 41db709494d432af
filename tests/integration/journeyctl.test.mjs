// journeyctl, the admin CLI, against a real PostgreSQL with the real migrations and the real
// journeyd: site create prints a key the widget can connect with, token create/revoke, map dump ->
// apply is a no-op, a 10,000-row CSV import with 37 bad rows reports exactly those lines and
// stores the rest (none with --atomic), erase is idempotent, identity sign makes a token the daemon
// accepts, audit and api work, and usage errors exit 2 with a one-line message.
// journeyctl is found next to journeyd (JOURNEYD_BIN, default build/journeyd).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Harness, SITE_KEY, journeydBin, sanitizerReport, uuid, waitFor } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);
const CTL = path.join(path.dirname(journeydBin()), 'journeyctl');
const SECRET = 'cli-identity-secret-0123456789';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'jdctl.'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

// Runs journeyctl; resolves { code, stdout, stderr }. db: false runs it without a database URL.
function ctl(args, { db = true, env = {}, timeoutMs = 60000 } = {}) {
  const fullEnv = { ...process.env };
  delete fullEnv.JOURNEYD_DATABASE_URL;
  if (db) fullEnv.JOURNEYD_DATABASE_URL = h.dbUrl;
  Object.assign(fullEnv, env);
  return new Promise((resolve, reject) => {
    const p = spawn(CTL, args, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (err += c));
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${CTL}: ${e.message}`));
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      assert.equal(signal, null, `journeyctl ${args.join(' ')} killed by ${signal}:\n${err}`);
      assert.equal(sanitizerReport(err), null, `journeyctl ${args.join(' ')} sanitizer report:\n${err}`);
      resolve({ code, stdout: out, stderr: err });
    });
  });
}

// Runs journeyctl and expects exit 0; resolves stdout.
async function ok(args, opts) {
  const r = await ctl(args, opts);
  assert.equal(r.code, 0, `journeyctl ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout.slice(0, 2000)}`);
  return r.stdout;
}

function file(name, text) {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
}

const ONE_LINE_ERROR = /^journeyctl: \S.*\n$/;

h.test('usage errors exit 2 with a one-line message; --help exits 0', async () => {
  const cases = [
    [[], /usage/i],
    [['frobnicate'], /unknown command/],
    [['site'], /create/],
    [['site', 'create', '--origin', 'https://a.example'], /--name/],
    [['site', 'create', '--name', 'x', '--origin', 'https://a.example', '--consent-mode', 'maybe'], /consent-mode/],
    [['site', 'create', '--name', 'x', '--origin', 'ftp://a.example'], /origin/],
    [['site', 'create', '--name', 'x', '--bogus'], /unknown option --bogus/],
    [['token', 'create', '--name', 'ci', '--scope', 'root'], /scope/],
    [['token', 'revoke', 'abc'], /token id/],
    [['token', 'revoke'], /missing argument/],
    [['map', 'dump'], /--map/],
    [['import', '--map', '1'], /missing argument/],
    [['import', '--map', 'one', 'f.csv'], /--map/],
    [['erase', '--site', SITE_KEY], /--respondent/],
    [['erase', '--site', SITE_KEY, '--respondent', 'not-a-uuid'], /UUID/],
    [['erase', '--site', SITE_KEY, '--respondent', uuid(), '--email', 'a@b.example'], /exactly one/],
    [['audit', '--limit', '0'], /--limit/],
    [['api', 'FETCH', '/sites'], /METHOD/],
    [['api', 'GET', 'sites'], /PATH/],
    [['identity', 'sign', '--sub', 'x'], /--secret/],
    [['identity', 'sign', '--secret', 'short', '--sub', 'x'], /16 characters/],
  ];
  for (const [args, re] of cases) {
    const r = await ctl(args);
    assert.equal(r.code, 2, `journeyctl ${args.join(' ')} exit code (stderr ${r.stderr})`);
    if (args.length) assert.match(r.stderr, ONE_LINE_ERROR, `journeyctl ${args.join(' ')}: one line`);
    assert.match(r.stderr, re, `journeyctl ${args.join(' ')}`);
  }
  const nodb = await ctl(['audit'], { db: false });
  assert.equal(nodb.code, 2);
  assert.match(nodb.stderr, /JOURNEYD_DATABASE_URL/);
  const help = await ctl(['--help'], { db: false });
  assert.equal(help.code, 0);
  for (const cmd of ['site create', 'token create', 'token revoke', 'map apply', 'map dump', 'import', 'erase', 'access', 'audit', 'api', 'identity sign']) {
    assert.ok(help.stdout.includes(cmd), `--help lists ${cmd}`);
  }
  const sub = await ctl(['import', '--help'], { db: false });
  assert.equal(sub.code, 0);
  assert.match(sub.stdout, /--atomic/);
  // A database that is down is an error (1), not a usage error.
  const down = await ctl(['audit'], { env: { JOURNEYD_DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/none' }, db: false });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^journeyctl: cannot connect/);
});

h.test('site create prints a key the widget can connect with', async () => {
  const origin = 'https://cli-shop.example';
  const out = await ok(['site', 'create', '--name', 'CLI shop', '--origin', origin, '--origin', 'http://localhost:9999', '--consent-mode', 'opt-in']);
  const key = /^key: (\S+)$/m.exec(out)?.[1];
  const id = /^id: (\d+)$/m.exec(out)?.[1];
  assert.ok(key && id, `id and key printed:\n${out}`);
  const { rows } = await h.pg.query('SELECT id, name, allowed_origins, consent_mode FROM sites WHERE key = $1', [key]);
  assert.deepEqual(rows, [{ id, name: 'CLI shop', allowed_origins: [origin, 'http://localhost:9999'], consent_mode: 'opt-in' }]);

  const d = await h.daemon();
  d.proc.kill('SIGHUP'); // reload sites now rather than at the next periodic reload
  const { client, welcome } = await waitFor(async () => {
    try {
      return await d.hello({ connect: { site: key, origin }, surveys: 0, timeoutMs: 1000 });
    } catch {
      return null;
    }
  }, { what: 'welcome on the new site', timeoutMs: 15000 });
  assert.equal(welcome.config.consent_mode, 'opt-in');
  await client.close();
  // The same key from an origin that was not given is refused.
  await assert.rejects(d.hello({ connect: { site: key, origin: 'https://elsewhere.example' }, surveys: 0, timeoutMs: 2000 }));
});

h.test('token create prints the raw token once (only its hash is stored); revoke revokes it', async () => {
  const out = await ok(['token', 'create', '--name', 'ci reader', '--scope', 'read', '--site', SITE_KEY, '--expires-days', '30']);
  const token = /^token: (\S+)$/m.exec(out)?.[1];
  const id = /^id: (\d+)$/m.exec(out)?.[1];
  assert.ok(token && id, `id and token printed:\n${out}`);
  const { rows } = await h.pg.query(
    `SELECT t.scope, t.name, s.key AS site, t.revoked_at IS NULL AS live,
            t.expires_at BETWEEN now() + interval '29 days' AND now() + interval '31 days' AS expiry_ok,
            t.token_hash = sha256(convert_to($2, 'UTF8')) AS hashed
       FROM admin_tokens t LEFT JOIN sites s ON s.id = t.site_id WHERE t.id = $1`,
    [id, token],
  );
  assert.deepEqual(rows, [{ scope: 'read', name: 'ci reader', site: SITE_KEY, live: true, expiry_ok: true, hashed: true }]);
  const { rows: leaks } = await h.pg.query(
    "SELECT count(*)::int AS n FROM audit_log WHERE detail::text LIKE '%' || $1 || '%'",
    [token],
  );
  assert.equal(leaks[0].n, 0, 'the raw token is not in the audit log');

  assert.match(await ok(['token', 'revoke', id]), new RegExp(`token ${id} revoked`));
  const { rows: after } = await h.pg.query('SELECT revoked_at IS NOT NULL AS revoked FROM admin_tokens WHERE id = $1', [id]);
  assert.deepEqual(after, [{ revoked: true }]);
  const missing = await ctl(['token', 'revoke', '987654']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, ONE_LINE_ERROR);

  const admin = await ok(['token', 'create', '--name', 'ci admin', '--scope', 'admin']);
  assert.match(admin, /^token: \S+$/m);
});

// Everything a map is made of, as rows (without updated_at), to check that applying a dump
// changes nothing.
async function mapSnapshot(mapId) {
  const tables = {
    maps: 'SELECT * FROM maps WHERE id = $1',
    personas: 'SELECT * FROM personas WHERE map_id = $1 ORDER BY id',
    stages: 'SELECT * FROM stages WHERE map_id = $1 ORDER BY id',
    touchpoints: 'SELECT * FROM touchpoints WHERE map_id = $1 ORDER BY id',
    touchpoint_stages: 'SELECT ts.* FROM touchpoint_stages ts JOIN stages s ON s.id = ts.stage_id WHERE s.map_id = $1 ORDER BY 1, 2',
    obstacles: 'SELECT * FROM obstacles WHERE map_id = $1 ORDER BY id',
    surveys: 'SELECT * FROM surveys WHERE map_id = $1 ORDER BY id',
    questions: 'SELECT q.* FROM questions q JOIN surveys s ON s.id = q.survey_id WHERE s.map_id = $1 ORDER BY q.id',
  };
  const snap = {};
  for (const [name, sql] of Object.entries(tables)) {
    snap[name] = (await h.pg.query(sql, [mapId])).rows.map(({ updated_at, ...row }) => row);
  }
  return JSON.parse(JSON.stringify(snap));
}

h.test('map dump then map apply of the dump is a no-op; an edited dump changes the map', async () => {
  const { mapId } = await h.catalog();
  const first = path.join(tmp, 'map1.json');
  await ok(['map', 'dump', '--map', String(mapId), '-o', first]);
  const text = readFileSync(first, 'utf8');
  const doc = JSON.parse(text);
  assert.equal(typeof doc, 'object');
  assert.match(text, /\n {2}"/, 'pretty printed');
  assert.equal(await ok(['map', 'dump', '--map', String(mapId)]), text, 'stdout and -o give the same document');

  // Applying the dump changes nothing the map document shows (the first apply may renumber the
  // seed's positions, keeping the order); applying it again changes no row at all.
  const applied = await ok(['map', 'apply', first]);
  assert.match(applied, /^changed: false$/m, applied);
  assert.match(applied, /^created: false$/m, applied);
  assert.equal(await ok(['map', 'dump', '--map', String(mapId)]), text, 'the dump is unchanged');
  const before = await mapSnapshot(mapId);
  assert.match(await ok(['map', 'apply', first]), /^changed: false$/m);
  assert.deepEqual(await mapSnapshot(mapId), before, 'applying it twice changes no row');
  assert.equal(await ok(['map', 'dump', '--map', String(mapId)]), text, 'the dump is still unchanged');

  // An edit round-trips: apply it, dump it, see it; then put the original back.
  const edited = { ...doc, goal: 'Understand why shoppers abandon checkout (edited by journeyctl)' };
  const out = await ok(['map', 'apply', file('map2.json', JSON.stringify(edited))]);
  assert.match(out, /^changed: true$/m, 'apply says what changed');
  assert.equal(JSON.parse(await ok(['map', 'dump', '--map', String(mapId)])).goal, edited.goal);
  await ok(['map', 'apply', first]);
  assert.equal(await ok(['map', 'dump', '--map', String(mapId)]), text);

  const bad = await ctl(['map', 'apply', file('bad.json', '{"name": ')]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^journeyctl: .*bad\.json:1:/);
  const none = await ctl(['map', 'dump', '--map', '987654']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, ONE_LINE_ERROR);
});

const COLUMNS = ['quote', 'persona', 'stage', 'touchpoint', 'action', 'thought', 'emotion', 'obstacle', 'interviewee', 'date', 'goal_reached'];

// A findings CSV of n rows (CRLF, quoted fields with commas, doubled quotes and newlines) where
// the rows whose index is in bad are broken in one of several ways. Returns { text, badLines }.
function findingsCsv(n, bad, tag) {
  const personas = ['budget-parent', 'busy-professional', 'first-time-buyer'];
  const stages = ['awareness', 'interest', 'consideration', 'purchase', 'advocacy'];
  const lines = [COLUMNS.join(',')];
  const badLines = [];
  let line = 2;
  const breakers = [
    (r) => ({ ...r, persona: 'no-such-persona' }),
    (r) => ({ ...r, stage: 'no-such-stage' }),
    (r) => ({ ...r, emotion: '9' }),
    (r) => ({ ...r, extra: 'x' }), // one field too many
  ];
  let k = 0;
  for (let i = 0; i < n; i++) {
    let r = {
      quote: i % 5 === 0 ? `"I said ""where is the button?"", twice,\r\nthen gave up (${i})"` : `plain quote ${i}`,
      persona: personas[i % 3],
      stage: stages[i % 5],
      touchpoint: 'website',
      action: i % 3 === 0 ? '"compared, then left"' : 'compared prices',
      thought: 'it is fine',
      emotion: String((i % 5) + 1),
      obstacle: '',
      interviewee: `${tag}-${i}`,
      date: '2026-03-14',
      goal_reached: i % 2 ? 'yes' : 'no',
    };
    if (bad.has(i)) {
      r = breakers[k++ % breakers.length](r);
      badLines.push(line);
    }
    const fields = COLUMNS.map((c) => r[c]);
    if (r.extra) fields.push(r.extra);
    lines.push(fields.join(','));
    line += 1 + (i % 5 === 0 ? 1 : 0);
  }
  return { text: lines.join('\r\n') + '\r\n', badLines };
}

function pickBad(n, count) {
  const bad = new Set();
  for (let i = 0; bad.size < count; i++) bad.add((i * 7919 + 13) % n);
  return bad;
}

async function interviewRows(tag) {
  const { rows } = await h.pg.query("SELECT count(*)::int AS n FROM answers WHERE source = 'interview' AND interviewee LIKE $1 || '-%'", [tag]);
  return rows[0].n;
}

h.test('import of 10,000 CSV rows with 37 bad ones reports exactly those lines and stores the rest', async () => {
  const { mapId } = await h.catalog();
  const bad = pickBad(10000, 37);
  const { text, badLines } = findingsCsv(10000, bad, 'bulk');
  const csv = file('findings.csv', text);
  const t0 = Date.now();
  const r = await ctl(['import', '--map', String(mapId), csv]);
  const ms = Date.now() - t0;
  assert.equal(r.code, 1, `rejected rows make the exit code 1:\n${r.stderr}`);
  const out = r.stdout.split('\n').filter(Boolean);
  assert.equal(out[0], 'accepted 9963, rejected 37', r.stdout.slice(0, 500) + r.stderr);
  const reported = out.slice(1).map((l) => {
    const m = /^line (\d+): (.+)$/.exec(l);
    assert.ok(m, `a rejected row is 'line L: reason': ${l}`);
    return Number(m[1]);
  });
  assert.deepEqual(reported, badLines, 'exactly the bad lines, in order');
  assert.match(r.stderr, ONE_LINE_ERROR);
  assert.equal(await interviewRows('bulk'), 9963, 'the good rows are stored');
  assert.ok(ms < 60000, `10,000 rows took ${ms} ms`);

  // A quote with commas, doubled quotes and a CRLF survives intact somewhere in the row.
  const { rows } = await h.pg.query("SELECT to_jsonb(a)::text AS row FROM answers a WHERE interviewee = 'bulk-5'");
  assert.equal(rows.length, 1);
  assert.ok(rows[0].row.includes(JSON.stringify('I said "where is the button?", twice,\r\nthen gave up (5)').slice(1, -1)), rows[0].row);
});

h.test('import --atomic stores none when a row is bad, and all when none is', async () => {
  const { mapId } = await h.catalog();
  const { text } = findingsCsv(10000, pickBad(10000, 37), 'atomic');
  const r = await ctl(['import', '--map', String(mapId), '--atomic', file('atomic.csv', text)]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^accepted 0, rejected 37\n/);
  assert.equal(r.stdout.trim().split('\n').length, 38);
  assert.equal(await interviewRows('atomic'), 0, 'nothing stored');

  const good = findingsCsv(300, new Set(), 'atomic-good');
  const g = await ok(['import', '--map', String(mapId), '--atomic', file('good.csv', good.text)]);
  assert.match(g, /^accepted 300, rejected 0\n$/);
  assert.equal(await interviewRows('atomic-good'), 300);
});

h.test('import from JSON reports the line where each bad object starts; bad CSV is refused with its line', async () => {
  const { mapId } = await h.catalog();
  const rows = [
    { persona: 'budget-parent', stage: 'awareness', touchpoint: 'website', emotion: 4, quote: 'fine', interviewee: 'json-1', goal_reached: true },
    { persona: 'no-such-persona', stage: 'awareness', interviewee: 'json-2' },
    'not an object',
    { persona: 'busy-professional', stage: 'purchase', colour: 'red', interviewee: 'json-4' },
  ];
  const text = '[\n' + rows.map((r) => '  ' + JSON.stringify(r, null, 1).replace(/\n/g, '\n  ')).join(',\n') + '\n]\n';
  const starts = [];
  text.split('\n').forEach((l, i) => {
    if (/^ {2}[{"]/.test(l)) starts.push(i + 1);
  });
  const r = await ctl(['import', '--map', String(mapId), file('findings.json', text)]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^accepted 1, rejected 3\n/);
  const lines = [...r.stdout.matchAll(/^line (\d+): /gm)].map((m) => Number(m[1]));
  assert.deepEqual(lines, starts.slice(1));
  assert.equal(await interviewRows('json'), 1);

  const quoting = await ctl(['import', '--map', String(mapId), file('q.csv', 'persona,stage\r\nbudget-parent,awareness\r\nbudget"parent,awareness\r\n')]);
  assert.equal(quoting.code, 1);
  assert.match(quoting.stderr, /^journeyctl: .*q\.csv:3: quote/);
  const latin1 = await ctl(['import', '--map', String(mapId), file('l.csv', Buffer.from('persona,quote\nbudget-parent,caf\xe9\n', 'latin1'))]);
  assert.equal(latin1.code, 1);
  assert.match(latin1.stderr, /l\.csv:2: invalid UTF-8/);
  const unknown = await ctl(['import', '--map', String(mapId), file('u.csv', 'persona,colour\nbudget-parent,red\n')]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unknown column "colour"/);
  const noMap = await ctl(['import', '--map', '987654', file('n.csv', 'persona\nbudget-parent\n')]);
  assert.equal(noMap.code, 1);
  assert.match(noMap.stderr, /no map 987654/);
});

h.test('erase prints counts and is idempotent; access exports the respondent first; both are audited', async () => {
  const d = await h.daemon();
  const respondent = uuid();
  const { client } = await d.hello({ hello: { respondent } });
  const a = await h.answerFrame('product-pulse', 'feel', 4);
  client.send(a);
  await client.next((f) => f.type === 'ack' && f.ids.includes(a.id), 10000);
  await client.close();

  const accessFile = path.join(tmp, 'access.json');
  await ok(['access', '--site', SITE_KEY, '--respondent', respondent, '-o', accessFile]);
  const exported = JSON.parse(readFileSync(accessFile, 'utf8'));
  assert.equal(exported.answers.length, 1);
  assert.equal(exported.answers[0].client_id, a.id);

  const first = await ok(['erase', '--site', SITE_KEY, '--respondent', respondent]);
  assert.match(first, /^erased .*\brespondents=1\b.*\banswers=1\b/m);
  assert.equal((await h.answerRow(a.id)).length, 0);
  const again = await ok(['erase', '--site', SITE_KEY, '--respondent', respondent]);
  assert.match(again, /^erased respondents=0 answers=0 touch_events=0 sessions=0/m);
  const byEmail = await ok(['erase', '--site', SITE_KEY, '--email', 'nobody@example.com']);
  assert.match(byEmail, /^erased respondents=0 /m);
  const noSite = await ctl(['erase', '--site', 'no-such-site-key', '--respondent', respondent]);
  assert.equal(noSite.code, 1);
  assert.match(noSite.stderr, /^journeyctl: erase: .*no-such-site-key.*\n$/);
  const unknown = await ctl(['access', '--site', SITE_KEY, '--respondent', uuid()]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, ONE_LINE_ERROR);

  // Both were audited, under the journeyctl actor, without the email.
  const { rows } = await h.pg.query(
    "SELECT action, object_id, detail::text AS detail FROM audit_log WHERE actor LIKE 'journeyctl%' AND action IN ('erase', 'access') ORDER BY id",
  );
  assert.deepEqual(rows.map((r) => [r.action, r.object_id]).slice(0, 3), [['access', respondent], ['erase', respondent], ['erase', respondent]]);
  assert.ok(!rows.some((r) => r.detail.includes('nobody@example.com')), 'the email is not in the audit log');
});

h.test('identity sign produces a token the daemon accepts for a site with that identity secret', async () => {
  const token = (await ok(['identity', 'sign', '--secret', SECRET, '--sub', 'customer-cli', '--ttl', '300'], { db: false })).trim();
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  assert.equal(payload.sub, 'customer-cli');
  assert.ok(Math.abs(payload.exp - (Date.now() / 1000 + 300)) < 30);

  const d = await h.daemon();
  await h.pg.query('UPDATE sites SET identity_secret = $2 WHERE key = $1', [SITE_KEY, SECRET]);
  try {
    d.proc.kill('SIGHUP');
    const { client, welcome } = await waitFor(async () => {
      try {
        return await d.hello({ hello: { identity: token }, timeoutMs: 1000 });
      } catch {
        return null;
      }
    }, { what: 'identity accepted', timeoutMs: 15000 });
    const a = await h.answerFrame('product-pulse', 'feel', 3);
    client.send(a);
    await client.next((f) => f.type === 'ack' && f.ids.includes(a.id), 10000);
    const { rows } = await h.pg.query('SELECT subject, verified FROM sessions WHERE id = $1', [welcome.session]);
    assert.deepEqual(rows, [{ subject: 'customer-cli', verified: true }]);

    // Signed with another secret: refused.
    const foreign = (await ok(['identity', 'sign', '--secret', 'another-secret-0123456789', '--sub', 'customer-cli'], { db: false })).trim();
    const c2 = await d.connect();
    const id = uuid();
    c2.send({ type: 'hello', id, v: 1, site: SITE_KEY, identity: foreign });
    const e = await c2.next((f) => f.type === 'error' || f.type === 'welcome');
    assert.equal(e.type, 'error');
    assert.equal(e.code, 'bad_identity');
    await c2.close();
  } finally {
    await h.pg.query('UPDATE sites SET identity_secret = NULL WHERE key = $1', [SITE_KEY]);
    d.proc.kill('SIGHUP');
  }
});

h.test('audit shows what journeyctl did; api makes raw admin API calls', async () => {
  await ok(['site', 'create', '--name', 'Audited shop', '--origin', 'https://audited.example']);
  const audit = await ok(['audit', '--limit', '5']);
  const lines = audit.trim().split('\n');
  assert.ok(lines.length >= 2 && lines.length <= 6, `a header and at most 5 entries:\n${audit}`);
  assert.match(lines[0], /\bactor\b/);
  assert.match(lines[0], /\baction\b/);
  assert.match(audit, /journeyctl/);

  const sites = JSON.parse(await ok(['api', 'GET', '/sites']));
  assert.ok(JSON.stringify(sites).includes('Audited shop'), 'GET /sites lists the new site');
  const missing = await ctl(['api', 'GET', '/no-such-route']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^journeyctl: api: GET \/no-such-route: 404\b/);
  const badBody = await ctl(['api', 'POST', '/sites', '--data', '{"name": ']);
  assert.equal(badBody.code, 1);
  assert.match(badBody.stderr, /: 400\b/);
  const withStatus = await ok(['api', '-i', 'GET', '/api/v1/sites?limit=1']);
  assert.match(withStatus, /^200 application\/json/);
});

h.test('export writes every format, snapshot saves versions, diff compares them', async () => {
  const cat = await h.catalog();
  const json = await ok(['export', '--map', String(cat.mapId)]);
  const doc = JSON.parse(json);
  assert.equal(doc.format, 'journeyd.map/1');
  assert.ok(Array.isArray(doc.cells));
  const out = path.join(tmp, 'map.mmd');
  await ok(['export', '--map', String(cat.mapId), '--format', 'mermaid', '-o', out]);
  assert.match(readFileSync(out, 'utf8'), /journey/);
  const drawio = await ok(['export', '--map', String(cat.mapId), '--format', 'drawio']);
  assert.match(drawio, /<mxfile/);
  const bad = await ctl(['export', '--map', String(cat.mapId), '--format', 'pdf']);
  assert.equal(bad.code, 2, bad.stderr);
  const s1 = await ok(['snapshot', '--map', String(cat.mapId)]);
  const s2 = await ok(['snapshot', '--map', String(cat.mapId)]);
  const v1 = Number(s1.match(/version (\d+)/)[1]);
  const v2 = Number(s2.match(/version (\d+)/)[1]);
  assert.equal(v2, v1 + 1);
  const diff = await ok(['diff', '--map', String(cat.mapId), String(v1), String(v2)]);
  assert.equal(JSON.parse(diff).format, 'journeyd.map-diff/1');
  const old = await ok(['export', '--map', String(cat.mapId), '--version', String(v1), '--format', 'csv']);
  assert.ok(old.split('\n')[0].includes(','), 'a CSV header');
});

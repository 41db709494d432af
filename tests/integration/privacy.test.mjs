// Privacy and transport security against the real daemon and PostgreSQL: opt-in consent stores
// nothing before consent, signed identities (good, expired, tampered), PII redaction at ingest,
// truncated client IPs (directly and behind a trusted proxy), erasure, the retention purge, and
// TLS with a verifying client.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';

import { Harness, SITE_KEY, SUBPROTOCOL, sleep, uuid, waitFor } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);
const SECRET = 'a-site-identity-secret-0123456789';

const b64url = (b) => Buffer.from(b).toString('base64url');
function jwt(payload, secret = SECRET, header = { alg: 'HS256', typ: 'JWT' }) {
  const head = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

async function site(update) {
  await h.pg.query(`UPDATE sites SET ${update} WHERE key = $1`, [SITE_KEY]);
}

// Applies a site change and waits until a fresh hello reflects it (SIGHUP reloads the catalog).
async function reload(d, check) {
  d.proc.kill('SIGHUP');
  await waitFor(check, { what: 'catalog reload', timeoutMs: 10000 });
}

async function ackOrError(client, frame) {
  client.send(frame);
  return client.next((f) => (f.type === 'ack' && f.ids.includes(frame.id)) || (f.type === 'error' && f.id === frame.id), 10000);
}

h.test('opt-in: nothing is stored before consent; consent then answers are stored; withdrawal stops collection', async () => {
  const d = await h.daemon();
  await site("consent_mode = 'opt-in'");
  await reload(d, async () => (await d.hello()).welcome.config.collect === false);
  const { client, welcome } = await d.hello();
  assert.equal(welcome.config.consent_mode, 'opt-in');
  assert.equal(welcome.config.collect, false);
  const before = await h.answerFrame('product-pulse', 'feel', 4);
  const r1 = await ackOrError(client, before);
  assert.equal(r1.code, 'consent_required');
  const touch = { type: 'touch', id: uuid(), kind: 'pageview', url: 'https://shop.example/cart' };
  assert.equal((await ackOrError(client, touch)).code, 'consent_required');
  await sleep(300);
  const { rows: s0 } = await h.pg.query('SELECT count(*)::int AS n FROM sessions WHERE id = $1', [welcome.session]);
  assert.equal(s0[0].n, 0, 'no session row before consent');
  const { rows: t0 } = await h.pg.query('SELECT count(*)::int AS n FROM touch_events WHERE client_id = $1', [touch.id]);
  assert.equal(t0[0].n, 0, 'no touch before consent');

  const consent = { type: 'consent', id: uuid(), consent: true };
  assert.equal((await ackOrError(client, consent)).type, 'ack');
  const { rows: s1 } = await h.pg.query('SELECT consent, consent_mode FROM sessions WHERE id = $1', [welcome.session]);
  assert.deepEqual(s1, [{ consent: true, consent_mode: 'opt-in' }], 'consent state recorded with the session');
  const after = await h.answerFrame('product-pulse', 'feel', 5);
  assert.equal((await ackOrError(client, after)).type, 'ack');
  assert.equal((await h.answerRow(after.id)).length, 1, 'answer after consent stored');

  assert.equal((await ackOrError(client, { type: 'consent', id: uuid(), consent: false })).type, 'ack');
  const late = await h.answerFrame('product-pulse', 'feel', 2);
  assert.equal((await ackOrError(client, late)).code, 'consent_required', 'withdrawal stops collection at once');
  const { rows: s2 } = await h.pg.query('SELECT consent FROM sessions WHERE id = $1', [welcome.session]);
  assert.equal(s2[0].consent, false);
  await site("consent_mode = 'none-required'");
  await reload(d, async () => (await d.hello()).welcome.config.collect === true);
});

h.test('signed identity: a good token is verified; expired, tampered or foreign-signed tokens get bad_identity', async () => {
  const d = await h.daemon();
  await site(`identity_secret = '${SECRET}'`);
  d.proc.kill('SIGHUP');
  const now = Math.floor(Date.now() / 1000);
  const good = jwt({ sub: 'customer-77', exp: now + 300 });
  const { client, welcome } = await waitFor(async () => {
    try {
      return await d.hello({ hello: { identity: good }, timeoutMs: 1000 });
    } catch {
      return null;
    }
  }, { what: 'identity accepted' });
  assert.ok(welcome.session);
  const a = await h.answerFrame('product-pulse', 'feel', 3);
  assert.equal((await ackOrError(client, a)).type, 'ack');
  const { rows } = await h.pg.query('SELECT subject, verified FROM sessions WHERE id = $1', [welcome.session]);
  assert.deepEqual(rows, [{ subject: 'customer-77', verified: true }]);

  const bad = {
    expired: jwt({ sub: 'customer-77', exp: now - 5 }),
    tampered: good.replace(/\.([A-Za-z0-9_-])/, (m, c) => `.${c === 'A' ? 'B' : 'A'}`),
    foreign: jwt({ sub: 'customer-77', exp: now + 300 }, 'another-secret-0123456789'),
    none: `${b64url('{"alg":"none"}')}.${b64url(JSON.stringify({ sub: 'x', exp: now + 300 }))}.`,
  };
  for (const [what, token] of Object.entries(bad)) {
    const c = await d.connect();
    const id = uuid();
    c.send({ type: 'hello', id, v: 1, site: SITE_KEY, identity: token });
    const e = await c.next((f) => f.type === 'error' || f.type === 'welcome');
    assert.equal(e.type, 'error', `${what} token must be refused`);
    assert.equal(e.code, 'bad_identity', what);
    assert.equal(e.id, id);
    if (what === 'expired') assert.match(e.message, /expired/);
    await c.close();
  }
  // An unsigned subject is kept apart as unverified.
  const plain = await d.hello({ hello: { subject: 'claims-to-be-77' } });
  const p = await h.answerFrame('product-pulse', 'feel', 3);
  assert.equal((await ackOrError(plain.client, p)).type, 'ack');
  const { rows: pr } = await h.pg.query('SELECT subject, verified FROM sessions WHERE id = $1', [plain.welcome.session]);
  assert.deepEqual(pr, [{ subject: 'claims-to-be-77', verified: false }]);
});

h.test('redaction at ingest masks e-mails, phones, cards and IPs but keeps prices and dates', async () => {
  const d = await h.daemon();
  await site("redact = 'ingest'");
  d.proc.kill('SIGHUP');
  await sleep(1500);
  const { client } = await d.hello();
  const text = 'Call +44 20 7946 0958 or mail name@example.co.uk; card 4111 1111 1111 1111 from 10.1.2.3. Paid £1,299.99 on 2026-11-29.';
  const f = await h.answerFrame('product-pulse', 'thoughts', text);
  assert.equal((await ackOrError(client, f)).type, 'ack');
  const [row] = await h.answerRow(f.id);
  assert.equal(row.thought, 'Call [phone] or mail [email]; card [card] from [ip]. Paid £1,299.99 on 2026-11-29.');
  assert.ok(!JSON.stringify(row.value).includes('7946'), 'the raw value is masked too');
  await site("redact = 'off'");
  d.proc.kill('SIGHUP');
  await sleep(1000);
});

h.test('client IPs: not stored by default; truncated to /24 when enabled; X-Forwarded-For only from a trusted proxy', async () => {
  const d = await h.startDaemon({ args: ['--trusted-proxies', '127.0.0.1'] });
  const plain = await d.hello();
  assert.equal((await ackOrError(plain.client, await h.answerFrame('product-pulse', 'feel', 4))).type, 'ack');
  const { rows: r0 } = await h.pg.query('SELECT client_ip FROM sessions WHERE id = $1', [plain.welcome.session]);
  assert.equal(r0[0].client_ip, null, 'not stored by default');

  await site('store_ip = true');
  d.proc.kill('SIGHUP');
  await sleep(1500);
  const direct = await d.hello({ connect: { headers: {} } });
  assert.equal((await ackOrError(direct.client, await h.answerFrame('product-pulse', 'feel', 4))).type, 'ack');
  const proxied = await d.hello({ connect: { headers: { 'X-Forwarded-For': '198.51.100.77, 203.0.113.9' } } });
  assert.equal((await ackOrError(proxied.client, await h.answerFrame('product-pulse', 'feel', 4))).type, 'ack');
  const { rows } = await h.pg.query('SELECT id, host(client_ip) AS ip FROM sessions WHERE id = ANY($1)', [[direct.welcome.session, proxied.welcome.session]]);
  const ip = Object.fromEntries(rows.map((r) => [r.id, r.ip]));
  assert.equal(ip[direct.welcome.session], '127.0.0.0', 'truncated to /24');
  assert.equal(ip[proxied.welcome.session], '203.0.113.0', 'right-most untrusted X-Forwarded-For entry, truncated');
  await d.stop();

  // Without trusting the proxy, the header is ignored.
  const d2 = await h.startDaemon();
  const spoof = await d2.hello({ connect: { headers: { 'X-Forwarded-For': '203.0.113.9' } } });
  assert.equal((await ackOrError(spoof.client, await h.answerFrame('product-pulse', 'feel', 4))).type, 'ack');
  const { rows: r2 } = await h.pg.query('SELECT host(client_ip) AS ip FROM sessions WHERE id = $1', [spoof.welcome.session]);
  assert.equal(r2[0].ip, '127.0.0.0');
  await site('store_ip = false');
  await d2.stop();
});

h.test('erasure removes answers, touches and sessions, is idempotent, and leaves a tombstone', async () => {
  const d = await h.daemon();
  const respondent = uuid();
  const { client, welcome } = await d.hello({ hello: { respondent } });
  const a = await h.answerFrame('product-pulse', 'thoughts', 'my private opinion');
  assert.equal((await ackOrError(client, a)).type, 'ack');
  const t = { type: 'touch', id: uuid(), kind: 'pageview', url: 'https://shop.example/x' };
  assert.equal((await ackOrError(client, t)).type, 'ack');
  const { rows: [{ site_id }] } = await h.pg.query('SELECT id AS site_id FROM sites WHERE key = $1', [SITE_KEY]);
  const { rows: [first] } = await h.pg.query('SELECT jd_erase($1, $2) AS r', [site_id, respondent]);
  assert.deepEqual(first.r, { respondents: 1, answers: 1, touch_events: 1, sessions: 1 });
  const { rows: [again] } = await h.pg.query('SELECT jd_erase($1, $2) AS r', [site_id, respondent]);
  assert.deepEqual(again.r, { respondents: 0, answers: 0, touch_events: 0, sessions: 0 }, 'idempotent');
  assert.deepEqual(await h.answerRow(a.id), []);
  const { rows: s } = await h.pg.query('SELECT count(*)::int AS n FROM sessions WHERE id = $1', [welcome.session]);
  assert.equal(s[0].n, 0);
  const { rows: tomb } = await h.pg.query('SELECT erased_at IS NOT NULL AS erased FROM respondents WHERE id = $1', [respondent]);
  assert.deepEqual(tomb, [{ erased: true }]);
});

h.test('retention purge deletes exactly what is older than the window, in the background', async () => {
  const d0 = await h.daemon();
  const { client } = await d0.hello();
  const keep = await h.answerFrame('product-pulse', 'feel', 4);
  const old = await h.answerFrame('product-pulse', 'feel', 2);
  for (const f of [keep, old]) assert.equal((await ackOrError(client, f)).type, 'ack');
  await h.pg.query("UPDATE answers SET created_at = now() - interval '3 days' WHERE client_id = $1", [old.id]);
  await h.pg.query("UPDATE answers SET created_at = now() - interval '47 hours' WHERE client_id = $1", [keep.id]);
  await site('retention_days = 2');
  const d = await h.startDaemon({ args: ['--purge-interval', '1'] });
  await waitFor(async () => (await h.answerRow(old.id)).length === 0, { what: 'old answer purged', timeoutMs: 15000 });
  assert.equal((await h.answerRow(keep.id)).length, 1, 'an answer inside the window survives');
  await site('retention_days = NULL');
  await d.stop();
});

h.test('TLS: https and wss with a verifying client, HSTS header', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jd-tls-'));
  try {
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const d = await h.startDaemon({ args: ['--tls-cert', cert, '--tls-key', key, '--hsts-max-age', '600'], waitHealthy: false });
    const ca = readFileSync(cert);
    const get = () => new Promise((resolve, reject) => {
      https.get(`https://127.0.0.1:${d.port}/healthz`, { ca }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      }).on('error', reject);
    });
    const res = await waitFor(async () => {
      try {
        const r = await get();
        return r.status === 200 ? r : null;
      } catch {
        return null;
      }
    }, { what: 'https healthz' });
    assert.equal(JSON.parse(res.body).status, 'ok');
    assert.equal(res.headers['strict-transport-security'], 'max-age=600; includeSubDomains');
    // A client that does not trust the certificate is refused by its own verification.
    await assert.rejects(new Promise((resolve, reject) => {
      https.get(`https://127.0.0.1:${d.port}/healthz`, (r) => resolve(r.statusCode)).on('error', reject);
    }));
    const ws = new WebSocket(`wss://127.0.0.1:${d.port}/ws?site=${SITE_KEY}`, SUBPROTOCOL, { ca, origin: 'https://shop.example' });
    const welcome = await new Promise((resolve, reject) => {
      ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', id: uuid(), v: 1, site: SITE_KEY })));
      ws.on('message', (m) => {
        const f = JSON.parse(m.toString());
        if (f.type === 'welcome') resolve(f);
      });
      ws.on('error', reject);
    });
    assert.equal(welcome.v, 1);
    ws.close();
    await d.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

h.test('saved map versions keep their aggregates but lose the quotes of erased and purged answers', async () => {
  const d = await h.daemon();
  const respondent = uuid();
  const { client } = await d.hello({ hello: { respondent, persona: 'budget-parent' } });
  const quote = `A quote that must disappear ${uuid()}`;
  const keep = `A quote that stays ${uuid()}`;
  const f = await h.answerFrame('product-pulse', 'thoughts', quote);
  assert.equal((await ackOrError(client, f)).type, 'ack');
  const other = await d.hello({ hello: { persona: 'budget-parent' } });
  const g = await h.answerFrame('product-pulse', 'thoughts', keep);
  assert.equal((await ackOrError(other.client, g)).type, 'ack');
  const { rows: [{ site_id, map_id }] } = await h.pg.query(
    'SELECT s.id AS site_id, m.id AS map_id FROM sites s JOIN maps m ON m.site_id = s.id WHERE s.key = $1', [SITE_KEY]);
  const { rows: [snap] } = await h.pg.query("SELECT jd_map_snapshot($1, '{\"quotes\": 20}') AS doc", [map_id]);
  const version = snap.doc.version;
  const before = JSON.stringify(snap.doc);
  assert.ok(before.includes(quote) && before.includes(keep), 'both quotes in the saved version');
  await h.pg.query('SELECT jd_erase($1, $2)', [site_id, respondent]);
  const { rows: [after] } = await h.pg.query('SELECT document FROM map_versions WHERE map_id = $1 AND version = $2', [map_id, version]);
  const text = JSON.stringify(after.document);
  assert.ok(!text.includes(quote), 'the erased respondent\'s quote is gone from the saved version');
  assert.ok(text.includes(keep), 'other quotes stay');
  const n = (doc) => doc.cells.reduce((s, c) => s + c.n, 0);
  assert.equal(n(after.document), n(snap.doc), 'aggregates are unchanged');
});

// /healthz and database outages: 200 JSON while PostgreSQL is reachable; after `pg_ctl stop -m
// fast` 503 with a reason, answers sent meanwhile are not acked and connections stay open; after
// PostgreSQL is back those answers are acked and stored exactly once. A daemon that never reached
// the database refuses upgrades with 503.
import assert from 'node:assert/strict';

import { Harness, UpgradeRefused, freePort, sleep, uuid, waitFor } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);

// The journeyd_db_up gauge (documented in docs/architecture.md).
async function dbUp(d) {
  const r = await d.get('/metrics');
  const m = /^journeyd_db_up(?:\{[^}]*\})? (\S+)$/m.exec(r.body);
  assert.ok(m, 'journeyd_db_up in /metrics');
  return Number(m[1]);
}

h.test('/healthz is 200 with a JSON body while the database is reachable', async () => {
  const d = await h.daemon();
  const r = await d.healthz();
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  assert.ok(r.json && typeof r.json === 'object', `JSON body: ${r.body}`);
  assert.equal(await dbUp(d), 1, 'journeyd_db_up is 1');
});

h.test('database down: /healthz 503 with a reason, no acks, connections stay open; back up: acked once', async () => {
  const d = await h.daemon();
  const { client } = await d.hello();
  const { client: idle } = await d.hello();
  // A committed answer before the outage.
  const before = await h.answerFrame('product-pulse', 'feel', 4);
  client.send(before);
  await client.next((f) => f.type === 'ack' && f.ids.includes(before.id));

  await h.cluster.stop('fast');
  try {
    const down = await waitFor(
      async () => {
        const r = await d.healthz();
        return r.status === 503 ? r : null;
      },
      { timeoutMs: 20000, what: '/healthz 503 after PostgreSQL stopped' },
    );
    assert.ok(down.body.length > 0, '503 has a body');
    assert.ok(down.json, `503 body is JSON: ${down.body}`);
    assert.match(JSON.stringify(down.json), /database|postgres|connect|db/i, `503 names the reason: ${down.body}`);

    const during = [];
    for (let i = 0; i < 20; i++) {
      const f = await h.answerFrame('checkout-pulse', 'recommend', i % 11);
      during.push(f);
      client.send(f);
    }
    const touch = { type: 'touch', id: uuid(), kind: 'pageview', url: 'https://shop.example/down' };
    idle.send(touch);
    await sleep(3000);
    const ids = new Set([...during.map((f) => f.id), touch.id]);
    const early = [...client.ackedIds(), ...idle.ackedIds()].filter((id) => ids.has(id));
    assert.deepEqual(early, [], 'nothing is acked while the database is down');
    const errs = [...client.frames, ...idle.frames].filter((f) => f.type === 'error');
    assert.deepEqual(errs, [], 'no errors for answers while the database is down (they wait)');
    assert.ok(client.isOpen && idle.isOpen, `connections stay open (${JSON.stringify(client.closeInfo)} ${JSON.stringify(idle.closeInfo)})`);
    assert.ok(d.alive, 'the daemon keeps running');
    assert.equal((await d.healthz()).status, 503, 'still 503');
    assert.equal(await dbUp(d), 0, 'journeyd_db_up is 0 while the database is down');

    await h.cluster.start();
    const allIds = [...during.map((f) => f.id)];
    const r1 = await client.settle(allIds, 60000);
    assert.equal(r1.errors.size, 0, `errors after recovery: ${JSON.stringify([...r1.errors.values()].slice(0, 3))}`);
    assert.deepEqual(r1.pending, [], 'every answer sent during the outage is acked after recovery');
    const r2 = await idle.settle([touch.id], 30000);
    assert.ok(r2.acked.has(touch.id), 'the touch sent during the outage is acked after recovery');
    assert.deepEqual(await h.countAnswers([...allIds, before.id]), { n: allIds.length + 1, d: allIds.length + 1 });
    const t = await h.pg.query('SELECT count(*)::int AS n FROM touch_events WHERE client_id = $1', [touch.id]);
    assert.equal(t.rows[0].n, 1);
    await waitFor(async () => (await d.healthz()).status === 200, { timeoutMs: 20000, what: '/healthz 200 after PostgreSQL is back' });
    assert.equal(await dbUp(d), 1, 'journeyd_db_up is 1 again');

    // And new work goes through as usual.
    const after = await h.answerFrame('product-pulse', 'feel', 2);
    client.send(after);
    await client.next((f) => f.type === 'ack' && f.ids.includes(after.id), 10000);
    assert.equal((await h.answerRow(after.id)).length, 1);
  } finally {
    if (!h.cluster.running) await h.cluster.start();
  }
});

h.test('database down: a new connection and hello still get served, and their answers land after recovery', async () => {
  const d = await h.daemon();
  await h.cluster.stop('fast');
  let c;
  try {
    await waitFor(async () => (await d.healthz()).status === 503, { timeoutMs: 20000, what: '/healthz 503' });
    // The daemon has reached the database before, so upgrades are still accepted (only a daemon
    // that never reached it refuses with 503).
    c = await d.connect();
    c.send({ type: 'hello', id: uuid(), v: 1, site: 'demo-site-key-0001' });
    const f = await h.answerFrame('product-pulse', 'feel', 3);
    // welcome may wait for the database; either way the answer must not be acked yet.
    await sleep(1000);
    c.send(f);
    await sleep(1500);
    assert.ok(!c.ackedIds().has(f.id), 'not acked while down');
    assert.ok(c.isOpen, `open: ${JSON.stringify(c.closeInfo)}`);
    await h.cluster.start();
    await c.next('welcome', 30000);
    const r = await c.settle([f.id], 30000);
    if (r.errors.has(f.id)) {
      // Sent before the welcome arrived: the daemon may answer not_ready; resend like the widget.
      assert.equal(r.errors.get(f.id).code, 'not_ready', JSON.stringify(r.errors.get(f.id)));
      c.send(f);
      await c.next((x) => x.type === 'ack' && x.ids.includes(f.id), 20000);
    } else {
      assert.ok(r.acked.has(f.id), 'acked after recovery');
    }
    assert.equal((await h.answerRow(f.id)).length, 1);
  } finally {
    if (!h.cluster.running) await h.cluster.start();
    if (c) await c.close();
  }
});

h.test('a daemon that never reached the database: /healthz 503, upgrades refused with 503', async () => {
  const deadPort = await freePort();
  const d = await h.startDaemon({ dbUrl: `postgresql://postgres@127.0.0.1:${deadPort}/nowhere?connect_timeout=2`, waitHealthy: false });
  const r = await waitFor(
    async () => {
      const x = await d.healthz().catch(() => null);
      return x && x.status ? x : null;
    },
    { timeoutMs: 20000, what: 'an HTTP answer from /healthz' },
  );
  assert.equal(r.status, 503, `healthz ${r.status} ${r.body}`);
  await assert.rejects(d.connect(), (e) => {
    assert.ok(e instanceof UpgradeRefused, `expected an HTTP refusal, got ${e}`);
    assert.equal(e.statusCode, 503);
    return true;
  });
  assert.equal(await d.stop('SIGTERM'), 0, 'exits 0 on SIGTERM even without a database');
});

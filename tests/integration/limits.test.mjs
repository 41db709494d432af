// Size, rate and connection limits against the real daemon, each with its own flags:
// --max-frame 4096 (close 1009), --rate-per-sec 5 --rate-burst 5 (rate_limited), and
// --max-conns-per-ip 3 (the 4th upgrade gets 429). Afterwards every daemon is alive and every
// acked row is stored.
import assert from 'node:assert/strict';

import { Harness, UpgradeRefused, sleep, uuid } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);
const acked = [];
let small; // --max-frame 4096
let slow; // --rate-per-sec 5 --rate-burst 5
let few; // --max-conns-per-ip 3

async function ackOf(client, f, timeoutMs = 10000) {
  client.send(f);
  const r = await client.next((x) => (x.type === 'ack' && x.ids.includes(f.id)) || (x.type === 'error' && x.id === f.id), timeoutMs);
  assert.equal(r.type, 'ack', JSON.stringify(r));
  acked.push(f.id);
}

// ---- max_frame -------------------------------------------------------------------------------

h.test('--max-frame 4096: welcome announces it and a frame just under it is accepted', async () => {
  small = await h.startDaemon({ args: ['--max-frame', '4096'] });
  const { client, welcome } = await small.hello();
  assert.equal(welcome.config.max_frame, 4096);
  const f = await h.answerFrame('product-pulse', 'thoughts', 'x'.repeat(3800));
  assert.ok(Buffer.byteLength(JSON.stringify(f)) < 4096);
  await ackOf(client, f);
  await client.close();
});

h.test('--max-frame 4096: a bigger frame closes the connection with 1009', async () => {
  const { client } = await small.hello();
  const f = await h.answerFrame('product-pulse', 'thoughts', 'x'.repeat(4000), { text: 'y'.repeat(200) });
  assert.ok(Buffer.byteLength(JSON.stringify(f)) > 4096);
  client.send(f);
  const { code } = await client.waitClose(5000);
  assert.equal(code, 1009);
  assert.ok(!client.ackedIds().has(f.id));
  assert.equal((await h.answerRow(f.id)).length, 0, 'the oversized frame is not stored');
});

h.test('--max-frame 4096: a 1 MiB frame closes with 1009 before hello too', async () => {
  const client = await small.connect();
  client.sendRaw(JSON.stringify({ type: 'ping', id: uuid(), pad: 'z'.repeat(1 << 20) }));
  const { code } = await client.waitClose(10000);
  assert.equal(code, 1009);
});

h.test('--max-frame 4096: a message fragmented into small frames still counts as a whole -> 1009', async () => {
  // Many fragments keep arriving after the limit is crossed: the server must still send its
  // close frame (1009, not a dropped connection, 1006) while it reads and drops the rest.
  for (let round = 0; round < 5; round++) {
    const { client } = await small.hello();
    const f = await h.answerFrame('product-pulse', 'thoughts', 'x'.repeat(4000), { text: 'y'.repeat(20000) });
    const buf = Buffer.from(JSON.stringify(f));
    for (let off = 0; off < buf.length; off += 300) {
      const end = Math.min(off + 300, buf.length);
      client.ws.send(buf.subarray(off, end), { binary: false, fin: end === buf.length });
    }
    const { code } = await client.waitClose(5000);
    assert.equal(code, 1009, `round ${round} ${client.lastError}`);
    assert.equal((await h.answerRow(f.id)).length, 0);
  }
});

h.test('--max-frame 4096: other connections are unaffected', async () => {
  const { client } = await small.hello();
  await ackOf(client, await h.answerFrame('product-pulse', 'feel', 2));
  await client.close();
});

// ---- rate limit ------------------------------------------------------------------------------

h.test('--rate-per-sec 5 --rate-burst 5: a blast of 50 frames gets rate_limited errors and some acks', async () => {
  slow = await h.startDaemon({ args: ['--rate-per-sec', '5', '--rate-burst', '5'] });
  const { client, welcome } = await slow.hello();
  assert.deepEqual(welcome.config.rate, { per_sec: 5, burst: 5 });
  const frames = [];
  for (let i = 0; i < 50; i++) frames.push(await h.answerFrame('checkout-pulse', 'recommend', i % 11));
  const t0 = Date.now();
  for (const f of frames) client.send(f);
  const ids = frames.map((f) => f.id);
  const { acked: ack, errors, pending } = await client.settle(ids, 15000);
  const elapsed = (Date.now() - t0) / 1000;
  const limited = [...errors.values()].filter((e) => e.code === 'rate_limited');
  const other = [...errors.values()].filter((e) => e.code !== 'rate_limited');
  assert.deepEqual(other, [], 'only rate_limited errors');
  assert.ok(limited.length > 0, `some frames are rate_limited (acks ${ack.size}, pending ${pending.length}, close ${JSON.stringify(client.closeInfo)})`);
  assert.ok(ack.size > 0, 'some frames are acked');
  // The bucket holds 5 (hello took one) and refills 5/s.
  assert.ok(ack.size <= 5 + Math.ceil(5 * elapsed) + 1, `acked ${ack.size} in ${elapsed}s exceeds the bucket`);
  if (client.closeInfo) {
    assert.equal(client.closeInfo.code, 1008, 'flooding may only close with 1008');
  } else {
    assert.equal(pending.length, 0, 'every frame got an ack or an error');
  }
  for (const id of ack) acked.push(id);
  assert.deepEqual(await h.countAnswers([...ack]), { n: ack.size, d: ack.size }, 'acked frames are stored');
  assert.deepEqual(await h.countAnswers(limited.map((e) => e.id)), { n: 0, d: 0 }, 'rate_limited frames are not stored');
  // After a pause the same connection (if still open) may send again.
  if (!client.closeInfo) {
    await sleep(1500);
    client.drain(); // the stale rate_limited errors of the blast
    await ackOf(client, frames.find((f) => !ack.has(f.id)));
  }
});

h.test('--rate-per-sec 5: the flooded daemon still serves another connection', async () => {
  const { client } = await slow.hello();
  await ackOf(client, await h.answerFrame('product-pulse', 'feel', 5));
  const p = uuid();
  client.send({ type: 'ping', id: p });
  await client.next({ type: 'pong', re: p });
  await client.close();
});

h.test('--rate-per-sec 5: a client that stays under the rate is never limited', async () => {
  const { client } = await slow.hello();
  for (let i = 0; i < 6; i++) {
    await ackOf(client, await h.answerFrame('product-pulse', 'feel', 1 + (i % 5)));
    await sleep(250);
  }
  assert.equal(client.frames.filter((f) => f.type === 'error').length, 0);
  await client.close();
});

// ---- connections per IP ----------------------------------------------------------------------

h.test('--max-conns-per-ip 3: the 4th upgrade from the same IP gets 429', async () => {
  few = await h.startDaemon({ args: ['--max-conns-per-ip', '3'] });
  const open = [];
  for (let i = 0; i < 3; i++) open.push(await few.connect());
  await assert.rejects(few.connect(), (e) => {
    assert.ok(e instanceof UpgradeRefused, `expected HTTP refusal, got ${e}`);
    assert.equal(e.statusCode, 429);
    return true;
  });
  // The three open ones still work.
  for (const c of open) {
    c.send({ type: 'hello', id: uuid(), v: 1, site: 'demo-site-key-0001' });
    await c.next('welcome');
  }
  await ackOf(open[0], await h.answerFrame('product-pulse', 'feel', 4));
  // Closing one frees a slot.
  await open[2].close();
  const again = await waitConnect(few);
  await again.close();
  for (const c of open) await c.close();
});

async function waitConnect(d, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await d.connect();
    } catch (e) {
      if (!(e instanceof UpgradeRefused) || e.statusCode !== 429 || Date.now() > deadline) throw e;
      await sleep(100);
    }
  }
}

h.test('--max-conns-per-ip 3: refused upgrades do not leak slots', async () => {
  const open = [];
  for (let i = 0; i < 3; i++) open.push(await waitConnect(few));
  for (let i = 0; i < 10; i++) {
    await assert.rejects(few.connect(), (e) => e instanceof UpgradeRefused && e.statusCode === 429);
  }
  // Refused upgrades from a foreign origin do not take a slot either.
  for (const c of open) await c.close();
  for (let i = 0; i < 5; i++) {
    await assert.rejects(few.connect({ origin: 'https://evil.example' }), (e) => e instanceof UpgradeRefused && e.statusCode === 403);
  }
  const again = [];
  for (let i = 0; i < 3; i++) again.push(await waitConnect(few));
  for (const c of again) await c.close();
});

// ---- afterwards ------------------------------------------------------------------------------

h.test('after the limits every daemon is alive and every acked row is stored', async () => {
  for (const d of [small, slow, few]) {
    assert.ok(d && d.alive, `daemon ${d && d.args.join(' ')} exited: ${d && JSON.stringify(d.exit)}`);
    assert.equal((await d.healthz()).status, 200);
  }
  assert.ok(acked.length > 5);
  assert.deepEqual(await h.countAnswers(acked), { n: acked.length, d: acked.length });
  for (const d of [small, slow, few]) assert.equal(await d.stop('SIGTERM'), 0, `clean exit of ${d.args.join(' ')}`);
});

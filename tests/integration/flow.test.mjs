// The happy path against the real daemon and PostgreSQL: hello -> welcome + surveys, answers acked
// only once their row is committed, idempotent resends, touches, and many answers from many
// connections stored exactly once.
import assert from 'node:assert/strict';

import { Harness, SITE_KEY, SUBPROTOCOL, uuid } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);

async function rowsFor(id) {
  return h.answerRow(id);
}

// Sends the frame and waits for an ack naming its id (fails on an error for it).
async function sendAndAck(client, frame, timeoutMs = 10000) {
  client.send(frame);
  const reply = await client.next(
    (f) => (f.type === 'ack' && f.ids.includes(frame.id)) || (f.type === 'error' && f.id === frame.id),
    timeoutMs,
  );
  assert.equal(reply.type, 'ack', `expected an ack for ${frame.id}, got ${JSON.stringify(reply)}`);
  return reply;
}

h.test('hello gets welcome and one survey frame per live survey', async () => {
  const d = await h.daemon();
  const cat = await h.catalog();
  const c = await d.connect();
  assert.equal(c.ws.protocol, SUBPROTOCOL, 'server selects the journey.v1 subprotocol');
  const helloId = uuid();
  const respondent = uuid();
  c.send({
    type: 'hello', id: helloId, v: 1, site: SITE_KEY, respondent,
    page: { url: 'https://shop.example/product/42', referrer: 'https://www.google.com/', lang: 'en-GB', title: 'Product',
      utm: { source: 'newsletter', medium: 'email', campaign: 'spring' } },
    persona: 'budget-parent', stage: 'consideration', touchpoint: 'website', consent: true,
  });
  const welcome = await c.next();
  assert.equal(welcome.type, 'welcome', 'the first frame after hello is welcome');
  assert.equal(welcome.re, helloId);
  assert.equal(welcome.v, 1);
  assert.match(welcome.session, /^[0-9a-f-]{36}$/i);
  assert.equal(welcome.respondent, respondent, 'none-required site keeps the widget respondent id');
  assert.equal(welcome.config.consent_mode, 'none-required');
  assert.equal(welcome.config.collect, true);
  assert.equal(welcome.config.max_frame, 65536);
  assert.deepEqual(welcome.config.rate, { per_sec: 20, burst: 40 });

  const s1 = await c.next();
  const s2 = await c.next();
  assert.equal(s1.type, 'survey');
  assert.equal(s2.type, 'survey');
  const bySlug = Object.fromEntries([s1, s2].map((f) => [f.survey.slug, f.survey]));
  assert.deepEqual(Object.keys(bySlug).sort(), ['checkout-pulse', 'product-pulse']);
  for (const [slug, s] of Object.entries(bySlug)) {
    assert.equal(s.id, cat.surveys[slug].id, `${slug} id`);
    assert.equal(s.map, cat.mapId, `${slug} map`);
    const want = cat.surveys[slug].questions;
    assert.deepEqual(s.questions.map((q) => q.key).sort(), Object.keys(want).sort(), `${slug} question keys`);
    for (const q of s.questions) {
      assert.equal(q.id, want[q.key].id, `${slug}/${q.key} id`);
      assert.equal(q.kind, want[q.key].kind, `${slug}/${q.key} kind`);
    }
  }
  assert.deepEqual(bySlug['product-pulse'].display, { mode: 'popover', corner: 'bottom-right' });
  assert.deepEqual(bySlug['product-pulse'].trigger, { url: { op: 'contains', value: 'product' }, delay_ms: 1500 });
  assert.equal(bySlug['product-pulse'].title, 'How is your visit going?');
  const pq = Object.fromEntries(bySlug['product-pulse'].questions.map((q) => [q.key, q]));
  assert.equal(pq.feel.stage, 'consideration');
  assert.equal(pq.feel.touchpoint, 'website');
  assert.equal(pq.feel.required, true);
  assert.deepEqual(pq['looking-for'].options.map((o) => o.value), ['compare', 'buy', 'browse']);
  const cq = Object.fromEntries(bySlug['checkout-pulse'].questions.map((q) => [q.key, q]));
  assert.equal(cq.recommend.stage, 'advocacy');
  // Questions are sent in their position order.
  assert.deepEqual(bySlug['checkout-pulse'].questions.map((q) => q.key), ['feel', 'blockers', 'done', 'recommend']);

  // The session row exists with the hints resolved.
  const sess = await h.pg.query('SELECT * FROM sessions WHERE id = $1', [welcome.session]);
  assert.equal(sess.rows.length, 1, 'hello creates a sessions row');
  assert.equal(sess.rows[0].respondent_id, respondent);
  assert.equal(Number(sess.rows[0].persona_id), cat.personas['budget-parent']);
  assert.equal(Number(sess.rows[0].stage_id), cat.stages.consideration);
  assert.equal(Number(sess.rows[0].touchpoint_id), cat.touchpoints.website);
  assert.equal(sess.rows[0].lang, 'en-GB');
  assert.equal(sess.rows[0].url, 'https://shop.example/product/42');
  assert.deepEqual(sess.rows[0].utm, { source: 'newsletter', medium: 'email', campaign: 'spring' });
  await c.close();
});

h.test('ping before and after hello gets pong', async () => {
  const d = await h.daemon();
  const c = await d.connect();
  const p1 = uuid();
  c.send({ type: 'ping', id: p1 });
  assert.deepEqual(await c.next(), { type: 'pong', re: p1 });
  const { client } = await d.hello();
  const p2 = uuid();
  client.send({ type: 'ping', id: p2 });
  assert.deepEqual(await client.next('pong'), { type: 'pong', re: p2 });
  await c.close();
  await client.close();
});

h.test('answer is acked only after its row is committed, with ids resolved from slugs', async () => {
  const d = await h.daemon();
  const cat = await h.catalog();
  const { client, welcome } = await d.hello();
  const frame = await h.answerFrame('product-pulse', 'feel', 4, {
    persona: 'busy-professional', stage: 'purchase', touchpoint: 'email', text: 'Looks good', ts: '2026-11-29T07:00:00Z',
  });
  await sendAndAck(client, frame);
  // Right after the ack, on another connection, the row must be visible.
  const rows = await rowsFor(frame.id);
  assert.equal(rows.length, 1, 'exactly one row after the ack');
  const r = rows[0];
  assert.equal(Number(r.site_id), cat.siteId);
  assert.equal(Number(r.map_id), cat.mapId);
  assert.equal(Number(r.survey_id), cat.surveys['product-pulse'].id);
  assert.equal(Number(r.question_id), cat.surveys['product-pulse'].questions.feel.id);
  assert.equal(Number(r.persona_id), cat.personas['busy-professional'], 'persona from the answer');
  // The question's own stage and touchpoint win over the answer's.
  assert.equal(Number(r.stage_id), cat.stages.consideration, "question's stage wins");
  assert.equal(Number(r.touchpoint_id), cat.touchpoints.website, "question's touchpoint wins");
  assert.equal(r.session_id, welcome.session);
  assert.equal(r.respondent_id, welcome.respondent);
  assert.equal(r.source, 'survey');
  assert.equal(r.emotion, 4, 'emotion answer stored in answers.emotion');
  assert.equal(r.thought, 'Looks good', 'ride-along text stored as thought');
  assert.equal(r.client_ts.toISOString(), '2026-11-29T07:00:00.000Z');
  assert.equal(JSON.stringify(r.value), '4', 'raw value kept');
  await client.close();
});

h.test('persona falls back to the hello hint; nps question keeps its own stage', async () => {
  const d = await h.daemon();
  const cat = await h.catalog();
  const { client } = await d.hello({ hello: { persona: 'first-time-buyer', stage: 'awareness', touchpoint: 'phone' } });
  const frame = await h.answerFrame('checkout-pulse', 'recommend', 9, { stage: 'purchase' });
  await sendAndAck(client, frame);
  const [r] = await rowsFor(frame.id);
  assert.ok(r, 'row stored');
  assert.equal(Number(r.persona_id), cat.personas['first-time-buyer'], 'persona from the session hint');
  assert.equal(Number(r.stage_id), cat.stages.advocacy, "the nps question's stage wins");
  assert.equal(Number(r.touchpoint_id), cat.touchpoints.website);
  assert.equal(r.score, 9, 'nps stored in answers.score');
  await client.close();
});

h.test('every question kind of the demo is stored', async () => {
  const d = await h.daemon();
  const cat = await h.catalog();
  const { client } = await d.hello();
  const frames = {
    choice: await h.answerFrame('product-pulse', 'looking-for', 'compare'),
    text: await h.answerFrame('product-pulse', 'thoughts', 'The shipping cost surprised me'),
    obstacle: await h.answerFrame('checkout-pulse', 'blockers', ['shipping-cost', 'price-too-high'], { text: 'and the coupon field' }),
    goal: await h.answerFrame('checkout-pulse', 'done', true),
    emotion: await h.answerFrame('checkout-pulse', 'feel', 1, { obstacles: ['checkout-too-complex'] }),
  };
  for (const f of Object.values(frames)) await sendAndAck(client, f);
  const row = async (k) => (await rowsFor(frames[k].id))[0];
  assert.deepEqual((await row('choice')).choice, ['compare']);
  assert.equal((await row('text')).thought, 'The shipping cost surprised me');
  const ob = await row('obstacle');
  assert.deepEqual(ob.obstacle_ids.map(Number).sort(), [cat.obstacles['shipping-cost'], cat.obstacles['price-too-high']].sort());
  assert.equal(ob.thought, 'and the coupon field');
  assert.equal((await row('goal')).goal_reached, true);
  const em = await row('emotion');
  assert.equal(em.emotion, 1);
  assert.deepEqual(em.obstacle_ids.map(Number), [cat.obstacles['checkout-too-complex']]);
  assert.equal(Number(em.stage_id), cat.stages.purchase);
  await client.close();
});

h.test('resending an acked id is acked again and stores no second row', async () => {
  const d = await h.daemon();
  const { client } = await d.hello();
  const frame = await h.answerFrame('product-pulse', 'feel', 5);
  await sendAndAck(client, frame);
  await sendAndAck(client, frame);
  assert.deepEqual(await h.countAnswers([frame.id]), { n: 1, d: 1 });
  // Same id from another connection (the widget resends after a reconnect).
  const { client: c2 } = await d.hello();
  await sendAndAck(c2, frame);
  assert.deepEqual(await h.countAnswers([frame.id]), { n: 1, d: 1 });
  // Two copies back to back, before the first is committed.
  const f2 = await h.answerFrame('product-pulse', 'feel', 3);
  c2.send(f2);
  c2.send(f2);
  const { acked, errors } = await c2.settle([f2.id]);
  assert.ok(acked.has(f2.id), `acked (errors: ${JSON.stringify([...errors.values()])})`);
  await new Promise((r) => setTimeout(r, 500)); // let the second copy be handled too
  assert.deepEqual(await h.countAnswers([f2.id]), { n: 1, d: 1 });
  await client.close();
  await c2.close();
});

h.test('touch frames are acked and stored in touch_events', async () => {
  const d = await h.daemon();
  const cat = await h.catalog();
  const { client, welcome } = await d.hello();
  const pv = { type: 'touch', id: uuid(), kind: 'pageview', url: 'https://shop.example/cart', stage: 'consideration', touchpoint: 'website', name: null };
  const ev = { type: 'touch', id: uuid(), kind: 'event', name: 'add-to-cart', url: 'https://shop.example/p/1' };
  await sendAndAck(client, pv);
  await sendAndAck(client, ev);
  await sendAndAck(client, pv); // resend
  const r = await h.pg.query('SELECT * FROM touch_events WHERE client_id = ANY($1::uuid[]) ORDER BY kind DESC', [[pv.id, ev.id]]);
  assert.equal(r.rows.length, 2);
  const [p, e] = r.rows;
  assert.equal(p.kind, 'pageview');
  assert.equal(p.url, 'https://shop.example/cart');
  assert.equal(Number(p.stage_id), cat.stages.consideration);
  assert.equal(Number(p.touchpoint_id), cat.touchpoints.website);
  assert.equal(p.session_id, welcome.session);
  assert.equal(e.kind, 'event');
  assert.equal(e.name, 'add-to-cart');
  await client.close();
});

h.test('many answers from many connections are all acked and stored exactly once', async () => {
  const d = await h.startDaemon({ args: ['--rate-per-sec', '5000', '--rate-burst', '5000'] });
  const CONNS = 20;
  const PER = 50;
  const sessions = await Promise.all(Array.from({ length: CONNS }, () => d.hello()));
  const all = [];
  const perConn = [];
  for (const { client } of sessions) {
    const ids = [];
    for (let i = 0; i < PER; i++) {
      const f = await h.answerFrame('checkout-pulse', 'recommend', i % 11);
      ids.push(f.id);
      all.push(f.id);
      client.send(f);
    }
    perConn.push([client, ids]);
  }
  const results = await Promise.all(perConn.map(([c, ids]) => c.settle(ids, 60000)));
  for (const [i, r] of results.entries()) {
    assert.equal(r.errors.size, 0, `conn ${i} errors: ${JSON.stringify([...r.errors.values()].slice(0, 3))}`);
    assert.equal(r.pending.length, 0, `conn ${i}: ${r.pending.length} answers never acked`);
  }
  assert.deepEqual(await h.countAnswers(all), { n: CONNS * PER, d: CONNS * PER });
  // Resend everything once more on fresh connections: acked again, still one row each.
  const again = await Promise.all(Array.from({ length: 4 }, () => d.hello()));
  const chunks = [0, 1, 2, 3].map((k) => all.filter((_, i) => i % 4 === k));
  await Promise.all(
    again.map(async ({ client }, k) => {
      for (const id of chunks[k]) {
        const f = await h.answerFrame('checkout-pulse', 'recommend', 7);
        client.send({ ...f, id });
      }
      const r = await client.settle(chunks[k], 60000);
      assert.equal(r.pending.length + r.errors.size, 0, `resend conn ${k}: pending ${r.pending.length}, errors ${JSON.stringify([...r.errors.values()].slice(0, 3))}`);
    }),
  );
  assert.deepEqual(await h.countAnswers(all), { n: CONNS * PER, d: CONNS * PER });
  const vals = await h.pg.query('SELECT count(*)::int AS n FROM answers WHERE client_id = ANY($1::uuid[]) AND score = 7', [all]);
  // Only ids whose first value was 7 have score 7: the resend did not overwrite.
  assert.equal(vals.rows[0].n, all.filter((_, i) => (i % PER) % 11 === 7).length, 'a resend does not overwrite the stored answer');
  for (const { client } of [...sessions, ...again]) await client.close();
  assert.equal(await d.stop(), 0);
});

h.test('settings from a config file, the environment and flags reach the welcome (flags win, then env)', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jdconf.'));
  try {
    const conf = path.join(dir, 'journeyd.conf');
    writeFileSync(conf, 'max_frame = 5000\nrate_per_sec = 7\nrate_burst = 9\n');
    const d = await h.startDaemon({ args: ['--config', conf, '--rate-burst', '11'], env: { JOURNEYD_RATE_PER_SEC: '8' } });
    const { welcome, client } = await d.hello();
    assert.equal(welcome.config.max_frame, 5000, 'file');
    assert.deepEqual(welcome.config.rate, { per_sec: 8, burst: 11 }, 'env over file, flag over env');
    await client.close();
    assert.equal(await d.stop(), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

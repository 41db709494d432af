// Every bad input of proto/protocol.md, one test each, against the real daemon: the error code
// (and id/field where the spec defines them), that nothing is stored for the bad frame, and that
// the connection stays usable afterwards or closes with the close code the spec names. The last
// test checks the daemon survived it all and lost nothing it had acked.
import assert from 'node:assert/strict';

import { Harness, SITE_KEY, UpgradeRefused, uuid } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);
const ackedInFile = [];

async function ready() {
  const d = await h.daemon();
  const { client } = await d.hello();
  return client;
}

async function expectError(client, code, { id, field, timeoutMs = 5000 } = {}) {
  const e = await client.next('error', timeoutMs);
  if (Array.isArray(code)) assert.ok(code.includes(e.code), `error code ${e.code} not in ${code}: ${JSON.stringify(e)}`);
  else assert.equal(e.code, code, `error frame: ${JSON.stringify(e)}`);
  assert.equal(typeof e.message, 'string');
  if (id !== undefined) assert.equal(e.id, id, `error names the frame id: ${JSON.stringify(e)}`);
  if (field !== undefined) assert.equal(e.field, field, `error names the field: ${JSON.stringify(e)}`);
  return e;
}

async function assertNotStored(id) {
  assert.equal((await h.answerRow(id)).length, 0, `nothing stored for rejected frame ${id}`);
  const t = await h.pg.query('SELECT 1 FROM touch_events WHERE client_id = $1', [id]);
  assert.equal(t.rows.length, 0, `no touch stored for rejected frame ${id}`);
}

// The connection still works: ping -> pong, and (after hello) an answer -> ack.
async function assertUsable(client, { helloDone = true } = {}) {
  assert.ok(client.isOpen, `connection still open (close: ${JSON.stringify(client.closeInfo)})`);
  const p = uuid();
  client.send({ type: 'ping', id: p });
  assert.deepEqual(await client.next('pong'), { type: 'pong', re: p });
  if (helloDone) {
    const f = await h.answerFrame('product-pulse', 'feel', 3);
    client.send(f);
    const r = await client.next((x) => (x.type === 'ack' && x.ids.includes(f.id)) || (x.type === 'error' && x.id === f.id));
    assert.equal(r.type, 'ack', `valid answer after the bad frame is acked: ${JSON.stringify(r)}`);
    ackedInFile.push(f.id);
  }
}

// Sends a bad answer (built from a valid one by mutate) and checks the error.
async function badAnswer(mutate, code, { field, idExpected = true, survey = 'product-pulse', key = 'feel', value = 4 } = {}) {
  const client = await ready();
  const f = await h.answerFrame(survey, key, value);
  mutate(f);
  client.send(f);
  await expectError(client, code, { id: idExpected ? f.id : undefined, field });
  if (typeof f.id === 'string' && /^[0-9a-f-]{36}$/i.test(f.id)) await assertNotStored(f.id);
  assert.ok(!client.ackedIds().has(f.id), 'a rejected frame is never acked');
  await assertUsable(client);
  await client.close();
}

// ---- envelope ---------------------------------------------------------------------------------

h.test('malformed JSON -> bad_json, connection stays open', async () => {
  const client = await ready();
  client.sendRaw('{"type":"answer","id":');
  await expectError(client, 'bad_json');
  await assertUsable(client);
});

h.test('malformed JSON before hello -> bad_json, connection stays open', async () => {
  const d = await h.daemon();
  const client = await d.connect();
  client.sendRaw('not json at all');
  await expectError(client, 'bad_json');
  await assertUsable(client, { helloDone: false });
});

for (const [name, text] of [
  ['array', '[{"type":"ping","id":"d0c5a3f4-5e0a-4b5f-8a52-2a7d3b2e9c11"}]'],
  ['string', '"ping"'],
  ['number', '42'],
  ['null', 'null'],
  ['boolean', 'true'],
]) {
  h.test(`non-object frame (${name}) -> bad_frame, connection stays open`, async () => {
    const client = await ready();
    client.sendRaw(text);
    await expectError(client, 'bad_frame');
    await assertUsable(client);
  });
}

h.test('object without type -> bad_frame', async () => {
  const client = await ready();
  client.send({ id: uuid(), value: 3 });
  await expectError(client, 'bad_frame');
  await assertUsable(client);
});

for (const [name, type] of [['number', 5], ['null', null], ['object', { t: 'answer' }], ['array', ['answer']]]) {
  h.test(`type that is not a string (${name}) -> bad_frame`, async () => {
    const client = await ready();
    client.send({ type, id: uuid() });
    await expectError(client, 'bad_frame');
    await assertUsable(client);
  });
}

h.test('unknown type -> unknown_type with the frame id', async () => {
  const client = await ready();
  const id = uuid();
  client.send({ type: 'subscribe', id });
  await expectError(client, 'unknown_type', { id });
  await assertUsable(client);
});

h.test('type with different case is unknown -> unknown_type', async () => {
  const client = await ready();
  const id = uuid();
  client.send({ type: 'PING', id });
  await expectError(client, 'unknown_type', { id });
  await assertUsable(client);
});

h.test('binary frame -> bad_frame, connection stays open', async () => {
  const client = await ready();
  client.sendRaw(Buffer.from(JSON.stringify({ type: 'ping', id: uuid() })), { binary: true });
  await expectError(client, 'bad_frame');
  await assertUsable(client);
});

h.test('invalid UTF-8 in a text frame -> close 1007', async () => {
  const client = await ready();
  // {"type":"ping","id":"<0xC3 0x28>"} : 0xC3 0x28 is an invalid two-byte sequence.
  const bad = Buffer.concat([Buffer.from('{"type":"ping","id":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]);
  client.sendRaw(bad, { binary: false });
  const { code } = await client.waitClose(5000);
  assert.equal(code, 1007);
});

// ---- fields ----------------------------------------------------------------------------------

h.test('answer without id -> missing_field id', async () => {
  await badAnswer((f) => delete f.id, 'missing_field', { field: 'id', idExpected: false });
});

h.test('answer with an id that is not a UUID -> bad_field id', async () => {
  await badAnswer((f) => (f.id = 'answer-1'), 'bad_field', { field: 'id', idExpected: false });
});

h.test('answer with a numeric id -> bad_field id', async () => {
  await badAnswer((f) => (f.id = 12345), 'bad_field', { field: 'id', idExpected: false });
});

h.test('answer without survey -> missing_field survey', async () => {
  await badAnswer((f) => delete f.survey, 'missing_field', { field: 'survey' });
});

h.test('answer without question -> missing_field question', async () => {
  await badAnswer((f) => delete f.question, 'missing_field', { field: 'question' });
});

h.test('emotion answer without value -> missing_field value', async () => {
  await badAnswer((f) => delete f.value, 'missing_field', { field: 'value' });
});

h.test('survey as a string -> bad_field survey', async () => {
  await badAnswer((f) => (f.survey = String(f.survey)), 'bad_field', { field: 'survey' });
});

h.test('question as a string -> bad_field question', async () => {
  await badAnswer((f) => (f.question = String(f.question)), 'bad_field', { field: 'question' });
});

h.test('emotion value as a string -> bad_field value', async () => {
  await badAnswer((f) => (f.value = '4'), 'bad_field', { field: 'value' });
});

h.test('emotion value that is not an integer (3.5) -> bad_field value', async () => {
  await badAnswer((f) => (f.value = 3.5), 'bad_field', { field: 'value' });
});

h.test('emotion value as an array -> bad_field value', async () => {
  await badAnswer((f) => (f.value = [4]), 'bad_field', { field: 'value' });
});

h.test('goal value as a string -> bad_field value', async () => {
  await badAnswer((f) => (f.value = 'yes'), 'bad_field', { field: 'value', survey: 'checkout-pulse', key: 'done', value: true });
});

h.test('single_choice value as a number -> bad_field value', async () => {
  await badAnswer((f) => (f.value = 1), 'bad_field', { field: 'value', key: 'looking-for', value: 'buy' });
});

h.test('ts that is not RFC 3339 -> bad_field ts', async () => {
  await badAnswer((f) => (f.ts = 'yesterday at noon'), 'bad_field', { field: 'ts' });
});

h.test('obstacles that is not an array -> bad_field obstacles', async () => {
  await badAnswer((f) => (f.obstacles = 'shipping-cost'), 'bad_field', { field: 'obstacles' });
});

h.test('persona as a number -> bad_field persona', async () => {
  await badAnswer((f) => (f.persona = 7), 'bad_field', { field: 'persona' });
});

h.test('touch event without name -> missing_field name', async () => {
  const client = await ready();
  const id = uuid();
  client.send({ type: 'touch', id, kind: 'event', url: 'https://shop.example/' });
  await expectError(client, 'missing_field', { id, field: 'name' });
  await assertNotStored(id);
  await assertUsable(client);
});

h.test('touch with an unknown kind -> bad_field kind', async () => {
  const client = await ready();
  const id = uuid();
  client.send({ type: 'touch', id, kind: 'click' });
  await expectError(client, 'bad_field', { id, field: 'kind' });
  await assertNotStored(id);
  await assertUsable(client);
});

h.test('ping without id -> missing_field id', async () => {
  const client = await ready();
  client.send({ type: 'ping' });
  await expectError(client, 'missing_field', { field: 'id' });
  await assertUsable(client);
});

// ---- catalog ---------------------------------------------------------------------------------

h.test('unknown question -> unknown_question', async () => {
  await badAnswer((f) => (f.question = 987654321), 'unknown_question', {});
});

h.test("a question of another survey -> unknown_question", async () => {
  const cat = await h.catalog();
  await badAnswer((f) => (f.question = cat.surveys['checkout-pulse'].questions.recommend.id), 'unknown_question', {});
});

h.test('unknown survey -> unknown_survey (or unknown_question)', async () => {
  await badAnswer((f) => (f.survey = 987654321), ['unknown_survey', 'unknown_question'], {});
});

h.test('emotion 9 -> out_of_range value', async () => {
  await badAnswer((f) => (f.value = 9), 'out_of_range', { field: 'value' });
});

h.test('emotion 0 -> out_of_range value', async () => {
  await badAnswer((f) => (f.value = 0), 'out_of_range', { field: 'value' });
});

h.test('nps 11 -> out_of_range value', async () => {
  await badAnswer((f) => (f.value = 11), 'out_of_range', { field: 'value', survey: 'checkout-pulse', key: 'recommend', value: 5 });
});

h.test('nps -1 -> out_of_range value', async () => {
  await badAnswer((f) => (f.value = -1), 'out_of_range', { field: 'value', survey: 'checkout-pulse', key: 'recommend', value: 5 });
});

h.test('ride-along emotion 6 -> out_of_range emotion', async () => {
  await badAnswer((f) => (f.emotion = 6), 'out_of_range', { field: 'emotion', survey: 'checkout-pulse', key: 'recommend', value: 5 });
});

h.test('ride-along text over 4000 characters -> out_of_range text', async () => {
  await badAnswer((f) => (f.text = 'x'.repeat(4001)), 'out_of_range', { field: 'text' });
});

h.test('text answer over 4000 characters -> out_of_range value', async () => {
  await badAnswer((f) => (f.value = 'é'.repeat(4001)), 'out_of_range', { field: 'value', key: 'thoughts', value: 'ok' });
});

h.test('text answer of 4000 multi-byte characters is accepted (limit counts characters)', async () => {
  const client = await ready();
  const f = await h.answerFrame('product-pulse', 'thoughts', 'é'.repeat(4000));
  client.send(f);
  const r = await client.next((x) => (x.type === 'ack' && x.ids.includes(f.id)) || (x.type === 'error' && x.id === f.id));
  assert.equal(r.type, 'ack', JSON.stringify(r));
  ackedInFile.push(f.id);
  const [row] = await h.answerRow(f.id);
  assert.equal(row.thought, 'é'.repeat(4000));
});

h.test('empty text answer -> out_of_range value', async () => {
  await badAnswer((f) => (f.value = ''), 'out_of_range', { field: 'value', key: 'thoughts', value: 'ok' });
});

h.test('single_choice value that is not an option -> rejected', async () => {
  await badAnswer((f) => (f.value = 'steal'), ['out_of_range', 'bad_field'], { field: 'value', key: 'looking-for', value: 'buy' });
});

h.test('unknown stage slug -> unknown_stage', async () => {
  await badAnswer((f) => (f.stage = 'teleportation'), 'unknown_stage', { field: 'stage' });
});

h.test('unknown persona slug -> unknown_persona', async () => {
  await badAnswer((f) => (f.persona = 'time-traveller'), 'unknown_persona', { field: 'persona' });
});

h.test('unknown touchpoint slug -> unknown_touchpoint', async () => {
  await badAnswer((f) => (f.touchpoint = 'carrier-pigeon'), 'unknown_touchpoint', { field: 'touchpoint' });
});

h.test('unknown obstacle slug in obstacles -> unknown_obstacle', async () => {
  await badAnswer((f) => (f.obstacles = ['shipping-cost', 'alien-invasion']), 'unknown_obstacle', { field: 'obstacles' });
});

h.test('unknown obstacle slug in an obstacle answer -> unknown_obstacle', async () => {
  await badAnswer((f) => (f.value = ['alien-invasion']), 'unknown_obstacle', { survey: 'checkout-pulse', key: 'blockers', value: ['shipping-cost'] });
});

h.test('unknown stage slug in a touch -> unknown_stage', async () => {
  const client = await ready();
  const id = uuid();
  client.send({ type: 'touch', id, kind: 'pageview', url: 'https://shop.example/', stage: 'teleportation' });
  await expectError(client, 'unknown_stage', { id, field: 'stage' });
  await assertNotStored(id);
  await assertUsable(client);
});

// ---- hello and session state -----------------------------------------------------------------

h.test('hello with an unsupported version -> unsupported_version (supported [1]), close 1002', async () => {
  const d = await h.daemon();
  const client = await d.connect();
  const id = uuid();
  client.send({ type: 'hello', id, v: 2, site: SITE_KEY });
  const e = await expectError(client, 'unsupported_version', { id });
  assert.deepEqual(e.supported, [1]);
  const { code } = await client.waitClose(5000);
  assert.equal(code, 1002);
});

h.test('hello without v -> missing_field v, connection stays open', async () => {
  const d = await h.daemon();
  const client = await d.connect();
  const id = uuid();
  client.send({ type: 'hello', id, site: SITE_KEY });
  await expectError(client, 'missing_field', { id, field: 'v' });
  assert.ok(client.isOpen);
  const id2 = uuid();
  client.send({ type: 'hello', id: id2, v: 1, site: SITE_KEY });
  const w = await client.next('welcome');
  assert.equal(w.re, id2);
});

h.test('hello whose site differs from the URL -> unknown_site, close 1008', async () => {
  const d = await h.daemon();
  const client = await d.connect();
  const id = uuid();
  client.send({ type: 'hello', id, v: 1, site: 'some-other-site-key' });
  await expectError(client, 'unknown_site', { id });
  const { code } = await client.waitClose(5000);
  assert.equal(code, 1008);
});

h.test('answer before hello -> not_ready, connection stays open', async () => {
  const d = await h.daemon();
  const client = await d.connect();
  const f = await h.answerFrame('product-pulse', 'feel', 4);
  client.send(f);
  await expectError(client, 'not_ready', { id: f.id });
  await assertNotStored(f.id);
  await assertUsable(client, { helloDone: false });
  client.send({ type: 'hello', id: uuid(), v: 1, site: SITE_KEY });
  await client.next('welcome');
  await assertUsable(client);
});

h.test('touch before hello -> not_ready', async () => {
  const d = await h.daemon();
  const client = await d.connect();
  const id = uuid();
  client.send({ type: 'touch', id, kind: 'pageview', url: 'https://shop.example/' });
  await expectError(client, 'not_ready', { id });
  await assertNotStored(id);
  await assertUsable(client, { helloDone: false });
});

h.test('a second hello -> duplicate_hello, connection stays open', async () => {
  const client = await ready();
  const id = uuid();
  client.send({ type: 'hello', id, v: 1, site: SITE_KEY });
  await expectError(client, 'duplicate_hello', { id });
  assert.ok(!(await client.sees((f) => f.type === 'welcome' && f.re === id, 300)), 'no second welcome');
  await assertUsable(client);
});

// ---- upgrade ---------------------------------------------------------------------------------

async function expectRefused(promise, status) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof UpgradeRefused, `expected an HTTP refusal, got ${e}`);
    assert.equal(e.statusCode, status);
    return true;
  });
}

h.test('foreign Origin -> upgrade refused with 403', async () => {
  const d = await h.daemon();
  await expectRefused(d.connect({ origin: 'https://evil.example' }), 403);
  await expectRefused(d.connect({ origin: 'https://shop.example.evil.example' }), 403);
  await expectRefused(d.connect({ origin: 'http://shop.example' }), 403); // scheme matters
});

h.test('unknown site key -> upgrade refused with 403', async () => {
  const d = await h.daemon();
  await expectRefused(d.connect({ site: 'no-such-site-key-00' }), 403);
});

h.test('missing site parameter -> upgrade refused with 403', async () => {
  const d = await h.daemon();
  await expectRefused(d.connect({ site: null }), 403);
  await expectRefused(d.connect({ query: '?site=' }), 403);
});

// ---- afterwards ------------------------------------------------------------------------------

h.test('after all the bad input the daemon is alive and every acked row is still stored', async () => {
  const d = await h.daemon();
  assert.ok(d.alive, `daemon exited: ${JSON.stringify(d.exit)}`);
  assert.equal(h.daemons.length, 1, 'the default daemon was never restarted');
  assert.equal((await d.healthz()).status, 200);
  const client = await ready();
  await assertUsable(client);
  assert.ok(ackedInFile.length > 40, `acked ${ackedInFile.length}`);
  assert.deepEqual(await h.countAnswers(ackedInFile), { n: ackedInFile.length, d: ackedInFile.length });
});

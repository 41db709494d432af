// The JSON Schemas in proto/schema/ against protocol.md's own examples and against hand-made
// valid and invalid fixtures. No daemon needed; the other test files validate the daemon's real
// frames with the same validateFrame().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { ROOT, validateFrame, schemaTypes, CLIENT_TYPES, SERVER_TYPES, uuid } from '../lib/harness.mjs';

const U = () => uuid();

test('there is exactly one schema per message type of protocol v1', () => {
  assert.deepEqual(schemaTypes().sort(), [...CLIENT_TYPES, ...SERVER_TYPES].sort());
});

test('every schema is draft 2020-12, has an $id and a const type', () => {
  for (const t of schemaTypes()) {
    const s = JSON.parse(readFileSync(path.join(ROOT, 'proto', 'schema', `${t}.json`), 'utf8'));
    assert.equal(s.$schema, 'https://json-schema.org/draft/2020-12/schema', t);
    assert.ok(s.$id, `${t} has $id`);
    assert.deepEqual(s.properties.type, { const: t }, `${t} pins type`);
    assert.ok(s.required.includes('type'), `${t} requires type`);
  }
});

// Every JSON example in protocol.md (```json blocks and inline `{"type":...}` spans), with the
// placeholders filled in, must validate.
function protocolExamples() {
  const md = readFileSync(path.join(ROOT, 'proto', 'protocol.md'), 'utf8');
  const texts = [];
  for (const m of md.matchAll(/```json\n([\s\S]*?)```/g)) texts.push(m[1]);
  for (const m of md.matchAll(/`(\{"type":[^`]*\})`/g)) texts.push(m[1]);
  return texts.map((t) => {
    const filled = t
      .replace(/"<[^">]*>"/g, () => JSON.stringify(U()))
      .replace(/"\.\.\."/g, () => JSON.stringify(U()));
    return { text: t, frame: JSON.parse(filled) };
  });
}

test('protocol.md examples are valid against their schemas', () => {
  const examples = protocolExamples();
  const types = new Set(examples.map((e) => e.frame.type));
  // The doc shows at least one example of every message type.
  for (const t of [...CLIENT_TYPES, ...SERVER_TYPES]) assert.ok(types.has(t), `protocol.md has an example of ${t}`);
  for (const { text, frame } of examples) {
    const r = validateFrame(frame);
    assert.ok(r.valid, `example ${text.trim().slice(0, 120)}...\n${r.errors.join('\n')}`);
  }
});

const hello = () => ({ type: 'hello', id: U(), v: 1, site: 'demo-site-key-0001' });
const answer = () => ({ type: 'answer', id: U(), survey: 1, question: 2, value: 4 });
const welcome = () => ({
  type: 'welcome', re: U(), v: 1, session: U(), respondent: U(),
  config: { consent_mode: 'none-required', collect: true, max_frame: 65536, rate: { per_sec: 20, burst: 40 } },
});
const survey = () => ({
  type: 'survey',
  survey: {
    id: 1, slug: 'product-pulse', title: 'How is your visit going?', map: 1,
    display: { mode: 'popover', corner: 'bottom-right' }, trigger: { url: { op: 'contains', value: 'product' } },
    questions: [
      { id: 1, key: 'feel', kind: 'emotion', prompt: 'How do you feel?', required: true, stage: 'consideration', touchpoint: 'website', options: null, show_if: null },
      { id: 2, key: 'looking-for', kind: 'single_choice', prompt: 'What?', required: false, stage: null, touchpoint: null, options: [{ value: 'buy', label: 'Buy now' }], show_if: null },
    ],
  },
});

const valid = {
  hello: [
    hello(),
    { ...hello(), respondent: U(), consent: false, persona: 'budget-parent', stage: 'purchase', touchpoint: 'website',
      page: { url: 'https://x/', referrer: '', lang: 'de', title: 'T', utm: { source: 'a', medium: 'b', campaign: 'c' } } },
  ],
  answer: [
    answer(),
    { ...answer(), value: 0 },
    { ...answer(), value: 'compare' },
    { ...answer(), value: ['a', 'b'] },
    { ...answer(), value: [] },
    { ...answer(), value: true },
    { ...answer(), value: 'x'.repeat(4000) },
    (() => { const a = answer(); delete a.value; a.text = 'only text'; return a; })(),
    { ...answer(), emotion: 2, obstacles: ['shipping-cost'], text: 'hm', ts: '2026-11-29T07:00:00Z', persona: 'busy-professional', stage: 'purchase', touchpoint: 'email' },
  ],
  touch: [
    { type: 'touch', id: U(), kind: 'pageview', url: 'https://shop.example/cart' },
    { type: 'touch', id: U(), kind: 'pageview', url: '/x', stage: 'consideration', touchpoint: 'website', name: null },
    { type: 'touch', id: U(), kind: 'event', name: 'add-to-cart' },
  ],
  ping: [{ type: 'ping', id: U() }, { type: 'ping', id: U().toUpperCase() }],
  consent: [{ type: 'consent', id: U(), consent: true }, { type: 'consent', id: U(), consent: false }],
  welcome: [welcome(), { ...welcome(), config: { ...welcome().config, consent_mode: 'opt-in', collect: false } }],
  survey: [survey()],
  ack: [{ type: 'ack', ids: [U()] }, { type: 'ack', ids: [U(), U(), U()] }],
  error: [
    { type: 'error', code: 'bad_json', message: 'not JSON' },
    { type: 'error', code: 'out_of_range', message: 'value 9 is outside 1..5', id: U(), field: 'value' },
    { type: 'error', code: 'unsupported_version', message: 'v 2', id: U(), supported: [1] },
    { type: 'error', code: 'missing_field', message: 'survey is required', id: U(), field: 'survey' },
    { type: 'error', code: 'bad_identity', message: 'identity token has expired', id: U() },
  ],
  pong: [{ type: 'pong', re: U() }],
};

const invalid = {
  hello: [
    ['missing v', (() => { const f = hello(); delete f.v; return f; })()],
    ['missing site', (() => { const f = hello(); delete f.site; return f; })()],
    ['missing id', (() => { const f = hello(); delete f.id; return f; })()],
    ['v 2', { ...hello(), v: 2 }],
    ['empty identity', { ...hello(), identity: '' }],
    ['v as string', { ...hello(), v: '1' }],
    ['id not a uuid', { ...hello(), id: 'abc' }],
    ['respondent not a uuid', { ...hello(), respondent: 42 }],
    ['site too short', { ...hello(), site: 'short' }],
    ['persona not a slug', { ...hello(), persona: 'Budget Parent' }],
    ['consent not boolean', { ...hello(), consent: 'yes' }],
    ['page not an object', { ...hello(), page: 'https://x' }],
  ],
  answer: [
    ['missing survey', (() => { const f = answer(); delete f.survey; return f; })()],
    ['missing question', (() => { const f = answer(); delete f.question; return f; })()],
    ['missing value and text', (() => { const f = answer(); delete f.value; return f; })()],
    ['question as string', { ...answer(), question: '40' }],
    ['survey 0', { ...answer(), survey: 0 }],
    ['value 11', { ...answer(), value: 11 }],
    ['value -1', { ...answer(), value: -1 }],
    ['value 3.5', { ...answer(), value: 3.5 }],
    ['value null', { ...answer(), value: null }],
    ['value object', { ...answer(), value: { a: 1 } }],
    ['value empty string', { ...answer(), value: '' }],
    ['value 4001 chars', { ...answer(), value: 'x'.repeat(4001) }],
    ['value duplicate choices', { ...answer(), value: ['a', 'a'] }],
    ['emotion 9', { ...answer(), emotion: 9 }],
    ['emotion 0', { ...answer(), emotion: 0 }],
    ['text 4001 chars', { ...answer(), text: 'y'.repeat(4001) }],
    ['ts not RFC 3339', { ...answer(), ts: 'yesterday' }],
    ['obstacles not slugs', { ...answer(), obstacles: ['Shipping Cost'] }],
    ['type hello', { ...answer(), type: 'hello' }],
  ],
  touch: [
    ['event without name', { type: 'touch', id: U(), kind: 'event' }],
    ['event with null name', { type: 'touch', id: U(), kind: 'event', name: null }],
    ['unknown kind', { type: 'touch', id: U(), kind: 'click' }],
    ['missing kind', { type: 'touch', id: U() }],
    ['missing id', { type: 'touch', kind: 'pageview' }],
  ],
  ping: [
    ['missing id', { type: 'ping' }],
    ['id number', { type: 'ping', id: 7 }],
    ['urn uuid', { type: 'ping', id: `urn:uuid:${U()}` }],
  ],
  consent: [
    ['missing consent', { type: 'consent', id: U() }],
    ['consent as a string', { type: 'consent', id: U(), consent: 'yes' }],
    ['missing id', { type: 'consent', consent: true }],
  ],
  welcome: [
    ['missing session', (() => { const f = welcome(); delete f.session; return f; })()],
    ['missing config', (() => { const f = welcome(); delete f.config; return f; })()],
    ['config without rate', (() => { const f = welcome(); delete f.config.rate; return f; })()],
    ['bad consent_mode', { ...welcome(), config: { ...welcome().config, consent_mode: 'maybe' } }],
    ['collect as string', { ...welcome(), config: { ...welcome().config, collect: 'true' } }],
    ['v 2', { ...welcome(), v: 2 }],
    ['undocumented member', { ...welcome(), extra: 1 }],
  ],
  survey: [
    ['no questions', (() => { const f = survey(); f.survey.questions = []; return f; })()],
    ['unknown kind', (() => { const f = survey(); f.survey.questions[0].kind = 'slider'; return f; })()],
    ['question id string', (() => { const f = survey(); f.survey.questions[0].id = '1'; return f; })()],
    ['choice without options', (() => { const f = survey(); f.survey.questions[1].options = null; return f; })()],
    ['missing survey id', (() => { const f = survey(); delete f.survey.id; return f; })()],
    ['survey at top level', { type: 'survey', id: 1, questions: [] }],
  ],
  ack: [
    ['empty ids', { type: 'ack', ids: [] }],
    ['ids not uuids', { type: 'ack', ids: ['1'] }],
    ['ids missing', { type: 'ack' }],
    ['id instead of ids', { type: 'ack', id: U() }],
  ],
  error: [
    ['unknown code', { type: 'error', code: 'oops', message: 'x' }],
    ['missing message', { type: 'error', code: 'bad_json' }],
    ['missing code', { type: 'error', message: 'x' }],
    ['unsupported_version without supported', { type: 'error', code: 'unsupported_version', message: 'x' }],
    ['bad_field without field', { type: 'error', code: 'bad_field', message: 'x', id: U() }],
  ],
  pong: [
    ['missing re', { type: 'pong' }],
    ['id instead of re', { type: 'pong', id: U() }],
  ],
};

for (const [type, frames] of Object.entries(valid)) {
  test(`valid ${type} fixtures pass`, () => {
    for (const f of frames) {
      const r = validateFrame(f);
      assert.ok(r.valid, `${JSON.stringify(f).slice(0, 200)}\n${r.errors.join('\n')}`);
    }
  });
}

for (const [type, cases] of Object.entries(invalid)) {
  test(`invalid ${type} fixtures fail`, () => {
    for (const [why, f] of cases) {
      const r = validateFrame(f);
      assert.equal(r.valid, false, `${type}: ${why} should be invalid: ${JSON.stringify(f).slice(0, 200)}`);
    }
  });
}

test('validateFrame rejects non-objects, unknown types and bad JSON text', () => {
  for (const f of [null, 42, 'x', [], [{ type: 'ping', id: U() }], { id: U() }, { type: 'consentx' }, { type: 7 }]) {
    assert.equal(validateFrame(typeof f === 'string' ? f : f).valid, false, JSON.stringify(f));
  }
  assert.equal(validateFrame('{"type":"ping",').valid, false);
  assert.equal(validateFrame(JSON.stringify({ type: 'ping', id: U() })).valid, true);
  assert.equal(validateFrame(Buffer.from(JSON.stringify({ type: 'pong', re: U() }))).valid, true);
});

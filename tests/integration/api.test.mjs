// The admin REST API (/api/v1) through the real daemon and PostgreSQL: 401 without a token,
// 403 for read-scope writes and another site's objects, 404, 400 naming the field, pagination,
// a full create flow (map -> personas -> stages -> touchpoints -> survey -> question) whose new
// live survey reaches the widget after SIGHUP, and proto/openapi.yaml: every route jd_api serves
// is documented there and every documented GET answers (non-404) with a token.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { Harness, ROOT, SITE_KEY, waitFor } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);

// Tokens are created with SQL (journeyctl does the same through jd_token_create).
async function token(name, scope, siteKey = null) {
  const { rows } = await h.pg.query('SELECT jd_token_create($1, $2, $3, NULL, $4) AS t', [name, scope, siteKey, 'api.test']);
  return rows[0].t.token;
}

let tokens;
async function setup() {
  if (!tokens) {
    const { rows } = await h.pg.query("SELECT jd_site_create('Other shop', '{https://other.example}', 'none-required', 'api.test') AS s");
    tokens = {
      admin: await token('api admin', 'admin'),
      reader: await token('api reader', 'read'),
      demo: await token('demo admin', 'admin', SITE_KEY),
      other: await token('other admin', 'admin', rows[0].s.key),
      otherSite: rows[0].s,
    };
  }
  return { d: await h.daemon(), ...tokens };
}

// One API call: resolves { status, type, json, body }.
async function api(d, method, pathname, { tok, body, query } = {}) {
  const headers = {};
  if (tok) headers.authorization = `Bearer ${tok}`;
  let payload;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(payload);
  }
  const qs = query ? '?' + new URLSearchParams(query).toString() : '';
  const r = await d.get(`/api/v1${pathname}${qs}`, { method, headers, body: payload, timeoutMs: 15000 });
  return { status: r.status, type: String(r.headers['content-type'] || ''), json: r.json, body: r.body };
}

function expectError(r, status, code, field) {
  assert.equal(r.status, status, `status ${r.status}: ${r.body}`);
  assert.match(r.type, /^application\/json/);
  assert.ok(r.json && r.json.error, `an error body: ${r.body}`);
  assert.deepEqual(Object.keys(r.json.error).sort(), ['code', 'field', 'message']);
  if (code !== undefined) assert.equal(r.json.error.code, code, r.body);
  if (field !== undefined) assert.equal(r.json.error.field, field, r.body);
  assert.equal(typeof r.json.error.message, 'string');
}

h.test('401 without a token, with an unknown token and with a revoked one', async () => {
  const { d } = await setup();
  expectError(await api(d, 'GET', '/sites'), 401, 'unauthorized');
  expectError(await api(d, 'GET', '/sites', { tok: 'jd_guessed-token-value' }), 401, 'unauthorized');
  expectError(await api(d, 'GET', '/maps/1', { tok: 'x'.repeat(250) }), 401, 'unauthorized');
  const t = await token('short-lived', 'admin');
  assert.equal((await api(d, 'GET', '/sites', { tok: t })).status, 200);
  await h.pg.query("SELECT jd_token_revoke(id, 'api.test') FROM admin_tokens WHERE name = 'short-lived'");
  expectError(await api(d, 'GET', '/sites', { tok: t }), 401, 'unauthorized');
  const { rows } = await h.pg.query("SELECT count(*)::int AS n FROM admin_tokens WHERE token_hash = sha256(convert_to($1, 'UTF8'))", [t]);
  assert.equal(rows[0].n, 1, 'tokens are stored as sha256 only');
});

h.test('403 for a read-scope write and for another site\'s objects; lists are limited to the token\'s site', async () => {
  const { d, reader, other, demo, otherSite } = await setup();
  const { mapId, siteId } = await h.catalog();
  expectError(await api(d, 'POST', `/maps/${mapId}/personas`, { tok: reader, body: { name: 'Nope' } }), 403, 'forbidden');
  expectError(await api(d, 'PATCH', `/maps/${mapId}`, { tok: reader, body: { goal: 'x' } }), 403, 'forbidden');
  assert.equal((await api(d, 'GET', `/maps/${mapId}`, { tok: reader })).status, 200, 'a reader may read');
  expectError(await api(d, 'GET', `/maps/${mapId}`, { tok: other }), 403, 'forbidden');
  expectError(await api(d, 'DELETE', `/maps/${mapId}/stages/1`, { tok: other }), 403, 'forbidden');
  expectError(await api(d, 'GET', `/sites/${siteId}/rules`, { tok: other }), 403, 'forbidden');
  const sites = await api(d, 'GET', '/sites', { tok: other });
  assert.deepEqual(sites.json.items.map((s) => s.id), [otherSite.id], 'a site-bound token lists only its site');
  const maps = await api(d, 'GET', '/maps', { tok: demo });
  assert.ok(maps.json.items.length >= 1 && maps.json.items.every((m) => m.site_id === siteId));
});

h.test('404 for unknown routes and ids, 405 for a wrong method', async () => {
  const { d, admin } = await setup();
  expectError(await api(d, 'GET', '/no-such-thing', { tok: admin }), 404, 'not_found');
  expectError(await api(d, 'GET', '/maps/987654321', { tok: admin }), 404, 'not_found');
  expectError(await api(d, 'GET', '/maps/abc/stages', { tok: admin }), 404, 'not_found');
  expectError(await api(d, 'PUT', '/sites', { tok: admin, body: {} }), 405, 'method_not_allowed');
});

h.test('400 with code, message and field; never 500 for bad input', async () => {
  const { d, admin } = await setup();
  const { mapId, surveys } = await h.catalog();
  expectError(await api(d, 'POST', `/maps/${mapId}/personas`, { tok: admin, body: { name: 'Old young', age_min: 60, age_max: 20 } }),
    400, 'invalid_range', 'age_min');
  expectError(await api(d, 'POST', `/maps/${mapId}/personas`, { tok: admin, body: '{"name": ' }), 400, 'bad_json');
  expectError(await api(d, 'POST', `/maps/${mapId}/stages`, { tok: admin, body: { name: 'Purchase' } }), 400, 'duplicate', 'slug');
  expectError(await api(d, 'POST', `/surveys/${surveys['product-pulse'].id}/questions`,
    { tok: admin, body: { kind: 'emotion', prompt: 'Hm?', stage: 'nowhere' } }), 400, 'unknown_stage', 'stage');
  expectError(await api(d, 'PATCH', `/maps/${mapId}`, { tok: admin, body: { min_evidence: 'many' } }), 400, 'invalid_type', 'min_evidence');
  for (const body of ['[]', 'null', '"x"', '{"name":"\\u0000"}', '{"name":' + '['.repeat(3000) + ']'.repeat(3000) + '}', '\u00ff\u00fe']) {
    const r = await api(d, 'POST', `/maps/${mapId}/obstacles`, { tok: admin, body });
    assert.ok(r.status >= 400 && r.status < 500, `body ${body.slice(0, 40)}: ${r.status} ${r.body.slice(0, 300)}`);
  }
});

h.test('pagination: ?limit=&offset= -> {items, total, limit, offset}', async () => {
  const { d, reader } = await setup();
  const { mapId } = await h.catalog();
  const all = await api(d, 'GET', `/maps/${mapId}/touchpoints`, { tok: reader });
  assert.equal(all.json.total, 11);
  assert.equal(all.json.limit, 50);
  assert.equal(all.json.offset, 0);
  const page = await api(d, 'GET', `/maps/${mapId}/touchpoints`, { tok: reader, query: { limit: '5', offset: '10' } });
  assert.equal(page.status, 200);
  assert.deepEqual({ ...page.json, items: undefined }, { items: undefined, total: 11, limit: 5, offset: 10 });
  assert.deepEqual(page.json.items.map((t) => t.slug), [all.json.items[10].slug]);
  expectError(await api(d, 'GET', `/maps/${mapId}/touchpoints`, { tok: reader, query: { limit: 'x' } }), 400, 'invalid_value', 'limit');
});

h.test('create flow: map -> personas -> stages -> touchpoints -> survey -> question; the live survey reaches the widget', async () => {
  const { d, demo } = await setup();
  const post = async (p, body, status = 201) => {
    const r = await api(d, 'POST', p, { tok: demo, body });
    assert.equal(r.status, status, `POST ${p}: ${r.body}`);
    return r.json;
  };
  const map = await post('/maps', { name: 'Leaving a review', goal: 'More reviews after purchase', customer_group: 'Recent buyers' });
  assert.equal(map.site_key, SITE_KEY, 'a site-bound token creates maps in its own site');
  const stages = await api(d, 'GET', `/maps/${map.id}/stages`, { tok: demo });
  assert.deepEqual(stages.json.items.map((s) => s.slug), ['awareness', 'interest', 'consideration', 'purchase', 'advocacy']);
  const fan = await post(`/maps/${map.id}/personas`, { name: 'Happy fan', age_min: 25, age_max: 40, job_role: 'Teacher' });
  await post(`/maps/${map.id}/personas`, { name: 'Silent buyer' });
  const review = await post(`/maps/${map.id}/stages`, { name: 'Review', meaning: 'The customer writes a review', position: 5 });
  assert.equal(review.position, 5);
  const order = await api(d, 'GET', `/maps/${map.id}/stages`, { tok: demo });
  assert.deepEqual(order.json.items.map((s) => s.slug), ['awareness', 'interest', 'consideration', 'purchase', 'review', 'advocacy']);
  const site = await post(`/maps/${map.id}/touchpoints`, { name: 'Review site', channel: 'earned', stages: ['review', 'advocacy'] });
  assert.deepEqual(site.stages, ['review', 'advocacy']);
  const survey = await post(`/maps/${map.id}/surveys`, {
    title: 'How was reviewing?', trigger: { url: { op: 'contains', value: '/review' }, delay_ms: 0 }, display: { mode: 'popover' },
  });
  assert.equal(survey.status, 'draft');
  // A question in a stage where its touchpoint is not allowed is refused...
  expectError(await api(d, 'POST', `/surveys/${survey.id}/questions`,
    { tok: demo, body: { key: 'feel', kind: 'emotion', prompt: 'How did it feel?', stage: 'awareness', touchpoint: 'review-site' } }),
  400, 'touchpoint_not_allowed', 'touchpoint');
  // ... in an allowed one it is stored.
  const q = await post(`/surveys/${survey.id}/questions`,
    { key: 'feel', kind: 'emotion', prompt: 'How did it feel?', required: true, stage: 'review', touchpoint: 'review-site' });
  assert.equal(q.stage, 'review');
  await post(`/surveys/${survey.id}/questions`, {
    key: 'persona', kind: 'single_choice', prompt: 'Which one are you?', stage: 'review', touchpoint: 'review-site',
    options: [{ value: 'fan', label: 'A fan', persona: 'happy-fan' }, { value: 'quiet', label: 'Just bought' }],
  });
  const live = await api(d, 'PATCH', `/maps/${map.id}/surveys/${survey.id}`, { tok: demo, body: { status: 'live' } });
  assert.equal(live.json.status, 'live', live.body);

  const doc = await api(d, 'GET', `/maps/${map.id}/document`, { tok: demo });
  assert.equal(doc.json.personas[0].slug, fan.slug);
  assert.deepEqual(doc.json.surveys[0].questions.map((x) => x.key), ['feel', 'persona']);
  const again = await api(d, 'PUT', `/maps/${map.id}/document`, { tok: demo, body: doc.json });
  assert.equal(again.json.changed, false, 'PUT of the dump changes nothing');

  // The daemon reloads its catalog on SIGHUP; a new hello then gets the new survey.
  d.proc.kill('SIGHUP');
  const frame = await waitFor(async () => {
    const { client, surveys } = await d.hello({ surveys: 2 });
    const all = [...surveys];
    while (all.length < 3) {
      try {
        all.push(await client.next('survey', 1000));
      } catch {
        break;
      }
    }
    client.close();
    return all.find((f) => f.survey.slug === survey.slug);
  }, { what: 'the new survey in the widget\'s survey frames', timeoutMs: 15000, intervalMs: 300 });
  assert.equal(frame.survey.id, survey.id);
  assert.equal(frame.survey.map, map.id);
  assert.deepEqual(frame.survey.questions.map((x) => [x.key, x.stage, x.touchpoint]),
    [['feel', 'review', 'review-site'], ['persona', 'review', 'review-site']]);

  const audit = await api(d, 'GET', '/audit', { tok: demo, query: { actor: 'demo admin', limit: '100' } });
  assert.ok(audit.json.total >= 9, `every write is audited under the token's name (${audit.json.total})`);
});

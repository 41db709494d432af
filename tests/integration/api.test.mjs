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
  // Raw bytes: a NUL and invalid UTF-8 are refused by the daemon before they reach SQL.
  for (const raw of [Buffer.from([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x22, 0x61, 0x00, 0x62, 0x22, 0x7d]), Buffer.from([0x7b, 0x00, 0x7d]), Buffer.from([0xff, 0xfe, 0x7b, 0x7d])]) {
    const r = await d.get(`/api/v1/maps/${mapId}/obstacles`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json', 'content-length': raw.length }, body: raw, timeoutMs: 15000 });
    assert.equal(r.status, 400, `raw body ${raw.toString('hex')}: ${r.status} ${r.body.slice(0, 200)}`);
  }
  const q = await d.get(`/api/v1/maps/${mapId}/obstacles?limit=%ff`, { headers: { authorization: `Bearer ${admin}` }, timeoutMs: 15000 });
  assert.ok(q.status === 400, `invalid UTF-8 in the query: ${q.status} ${q.body.slice(0, 200)}`);
  // Last: the server closes this connection after answering (its chunked body was not read).
  const chunked = await d.get(`/api/v1/maps/${mapId}/obstacles`, { method: 'POST', headers: { authorization: `Bearer ${admin}` }, body: '{"name":"x"}', timeoutMs: 15000 });
  assert.equal(chunked.status, 411, 'a chunked body gets 411, not a hang');
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

// ---------------------------------------------------------------------------------------------
// proto/openapi.yaml

// A small parser for the YAML subset proto/openapi.yaml is written in: block mappings and
// sequences by indentation, '#' comment lines, quoted ('' escapes) and plain scalars, [] and {}.
export function parseYaml(text) {
  const lines = text
    .split('\n')
    .map((l) => l.replace(/\s+$/, ''))
    .filter((l) => l.trim() !== '' && !l.trim().startsWith('#'))
    .map((l) => ({ ind: l.length - l.trimStart().length, s: l.trim() }));
  let i = 0;
  const KEY = /^('(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|[^'"\s][^:]*?):(?: (.*))?$/;
  const unquote = (s) => (s.startsWith("'") ? s.slice(1, -1).replace(/''/g, "'") : s.startsWith('"') ? JSON.parse(s) : s);
  function scalar(s) {
    if (s.startsWith("'") || s.startsWith('"')) return unquote(s);
    if (s === 'true' || s === 'false') return s === 'true';
    if (s === 'null' || s === '~') return null;
    if (s === '[]') return [];
    if (s === '{}') return {};
    if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
    if (s.startsWith('[') && s.endsWith(']')) return s.slice(1, -1).split(',').map((x) => scalar(x.trim()));
    return s;
  }
  function block(ind) {
    return lines[i].s.startsWith('- ') ? seq(ind) : map(ind);
  }
  function map(ind) {
    const o = {};
    while (i < lines.length && lines[i].ind === ind && !lines[i].s.startsWith('- ')) {
      const m = KEY.exec(lines[i].s);
      if (!m) throw new Error(`openapi.yaml: cannot parse "${lines[i].s}"`);
      i++;
      const key = unquote(m[1]);
      if (m[2] === undefined || m[2] === '') o[key] = i < lines.length && lines[i].ind > ind ? block(lines[i].ind) : null;
      else o[key] = scalar(m[2]);
    }
    if (i < lines.length && lines[i].ind > ind) throw new Error(`openapi.yaml: bad indentation at "${lines[i].s}"`);
    return o;
  }
  function seq(ind) {
    const a = [];
    while (i < lines.length && lines[i].ind === ind && lines[i].s.startsWith('- ')) {
      const rest = lines[i].s.slice(2);
      if (KEY.test(rest)) {
        lines[i] = { ind: ind + 2, s: rest };
        a.push(map(ind + 2));
      } else {
        i++;
        a.push(scalar(rest));
      }
    }
    return a;
  }
  const doc = block(0);
  if (i !== lines.length) throw new Error(`openapi.yaml: trailing content at "${lines[i].s}"`);
  return doc;
}

const openapi = parseYaml(readFileSync(path.join(ROOT, 'proto', 'openapi.yaml'), 'utf8'));
const shape = (template) => template.replace(/\{[^}]+\}/g, '{}');
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

h.test('proto/openapi.yaml is OpenAPI 3 with bearer auth and an error schema', async () => {
  assert.match(openapi.openapi, /^3\.0\./);
  assert.equal(openapi.components.securitySchemes.bearer.scheme, 'bearer');
  assert.deepEqual(openapi.security, [{ bearer: [] }]);
  assert.deepEqual(openapi.components.schemas.Error.properties.error.required, ['code', 'message', 'field']);
  const refs = [...readFileSync(path.join(ROOT, 'proto', 'openapi.yaml'), 'utf8').matchAll(/\$ref: '#\/components\/(\w+)\/(\w+)'/g)];
  for (const [, kind, name] of refs) assert.ok(openapi.components[kind][name], `$ref ${kind}/${name} resolves`);
  for (const [p, item] of Object.entries(openapi.paths)) {
    for (const m of METHODS.filter((x) => item[x])) {
      const declared = [...(item.parameters || []), ...(item[m].parameters || [])].filter((x) => x.in === 'path').map((x) => x.name);
      assert.deepEqual(declared.sort(), [...p.matchAll(/\{(\w+)\}/g)].map((x) => x[1]).sort(), `${m} ${p}: path parameters declared`);
      assert.ok(item[m].responses['401'], `${m} ${p} documents 401`);
    }
  }
});

h.test('every route jd_api serves is documented in proto/openapi.yaml, and only those', async () => {
  const { rows } = await h.pg.query('SELECT template, lower(unnest(methods)) AS method FROM api_routes ORDER BY 1, 2');
  assert.ok(rows.length >= 60, `api_routes has ${rows.length} route/method pairs`);
  const documented = new Map(Object.entries(openapi.paths).map(([p, item]) => [shape(p), item]));
  const missing = rows.filter((r) => !documented.get(shape(r.template))?.[r.method]).map((r) => `${r.method.toUpperCase()} ${r.template}`);
  assert.deepEqual(missing, [], 'undocumented routes');
  const served = new Set(rows.map((r) => `${r.method} ${shape(r.template)}`));
  const extra = [];
  for (const [p, item] of Object.entries(openapi.paths)) {
    for (const m of METHODS.filter((x) => item[x])) if (!served.has(`${m} ${shape(p)}`)) extra.push(`${m.toUpperCase()} ${p}`);
  }
  assert.deepEqual(extra, [], 'documented routes the server does not have');
});

h.test('every documented GET answers (not 404) with a token, and its body matches the documented schema', async () => {
  const { d, admin } = await setup();
  const cat = await h.catalog();
  const stageId = cat.stages.purchase;
  const survey = cat.surveys['checkout-pulse'];
  const post = async (p, body) => {
    const r = await api(d, 'POST', p, { tok: admin, body });
    assert.equal(r.status, 201, `POST ${p}: ${r.body}`);
    return r.json.id;
  };
  const resourceId = await post(`/stages/${stageId}/resources`, { kind: 'technology', name: 'Payment provider', owner: 'Ops' });
  const ruleId = await post(`/sites/${cat.siteId}/rules`, { kind: 'url', match: { pattern: '/checkout' }, map: cat.mapId, stage: 'purchase', touchpoint: 'website' });
  const { rows: tk } = await h.pg.query("SELECT id FROM admin_tokens WHERE name = 'api reader'");
  // Two saved map versions, so /versions/{v} and /diff have something to show.
  for (let i = 0; i < 2; i++) {
    const r = await api(d, 'POST', `/maps/${cat.mapId}/versions`, { tok: admin });
    assert.equal(r.status, 201, `POST versions: ${r.body.slice(0, 300)}`);
  }
  const respondent = '00000000-0000-4000-8000-00000000c0de';
  await h.pg.query('INSERT INTO respondents (site_id, id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [cat.siteId, respondent]);
  // A chat conversation and an agent account (sql/022_chat_api.sql).
  const { rows: [conv] } = await h.pg.query("SELECT conversation_id AS id FROM jd_chat_open($1, $2, NULL, NULL, '', NULL, NULL)",
    [cat.siteId, respondent]);
  const { rows: [agent] } = await h.pg.query("SELECT jd_agent_create($1, 'openapi@demo.example', 'OpenAPI', 'agent', 'long enough password') AS id",
    [cat.siteId]);
  const values = {
    '/sites/{}': cat.siteId, '/maps/{}': cat.mapId, '/stages/{}': stageId, '/surveys/{}': survey.id, '/tokens/{}': tk[0].id,
    '/respondents/{}': respondent, '/rules/{}': ruleId, '/personas/{}': cat.personas['budget-parent'], '/resources/{}': resourceId,
    '/touchpoints/{}': cat.touchpoints.website, '/obstacles/{}': cat.obstacles['shipping-cost'],
    '/questions/{}': survey.questions.feel.id, '/versions/{}': 1, '/conversations/{}': conv.id, '/agents/{}': agent.id,
  };
  // Query parameters a documented GET needs (bulk transcripts name the site: the test has two).
  const queries = { '/conversations': { site: String(cat.siteId) } };
  const fill = (p) => {
    let out = '';
    for (const seg of shape(p).split(/(?=\/)/)) {
      if (seg === '/{}') {
        const prev = out.slice(out.lastIndexOf('/'));
        const v = prev === '/maps' && out.length > 5 ? undefined : values[`${prev}/{}`];
        assert.ok(v !== undefined, `a value for ${p} after ${out}`);
        out += `/${v}`;
      } else out += seg;
    }
    return out;
  };

  // OpenAPI 3.0 schemas -> JSON Schema for ajv (nullable -> null allowed).
  const Ajv2020 = (await import('ajv/dist/2020.js')).default;
  const addFormats = (await import('ajv-formats')).default;
  const convert = (s) => {
    if (Array.isArray(s)) return s.map(convert);
    if (!s || typeof s !== 'object') return s;
    const o = {};
    for (const [k, v] of Object.entries(s)) {
      if (k === 'nullable') continue;
      if (k === '$ref') o.$ref = v.replace('#/components/schemas/', 'api#/$defs/');
      else o[k] = convert(v);
    }
    if (s.nullable) {
      if (o.type) o.type = [o.type, 'null'];
      else if (o.oneOf) o.oneOf = [...o.oneOf, { type: 'null' }];
      else if (o.allOf) return { anyOf: [{ allOf: o.allOf }, { type: 'null' }] };
    }
    return o;
  };
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema({ $id: 'api', $defs: convert(openapi.components.schemas) });

  const checked = [];
  for (const [p, item] of Object.entries(openapi.paths)) {
    if (!item.get) continue;
    const url = fill(p);
    const r = await api(d, 'GET', url, { tok: admin, query: queries[p] });
    assert.notEqual(r.status, 404, `GET ${url} (${p}): ${r.body.slice(0, 300)}`);
    assert.equal(r.status, 200, `GET ${url} (${p}): ${r.body.slice(0, 300)}`);
    let ok200 = item.get.responses['200'];
    if (ok200.$ref) ok200 = openapi.components.responses[ok200.$ref.split('/').pop()];
    if (!ok200.content['application/json']) {
      // A file (transcripts): the content type is one of those documented.
      assert.ok(Object.keys(ok200.content).includes(r.type.split(';')[0].trim()), `GET ${url}: ${r.type} is documented`);
      checked.push(p);
      continue;
    }
    assert.match(r.type, /^application\/json/);
    const schema = ok200.content['application/json'].schema;
    const validate = ajv.compile(convert(schema));
    assert.ok(validate(r.json), `GET ${url} matches the documented schema: ${ajv.errorsText(validate.errors)}\n${r.body.slice(0, 500)}`);
    checked.push(p);
  }
  assert.ok(checked.length >= 25, `checked ${checked.length} documented GETs`);
});

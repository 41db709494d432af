// Map export through the admin API on the real daemon: answers sent over the widget protocol
// show up in GET /maps/{id}/export, every ?format= is rendered by the daemon with its content
// type, snapshots become numbered versions with a diff, an unknown format is a 400 naming the
// field, and a token of another site gets 403.
import assert from 'node:assert/strict';

import { Harness, SITE_KEY } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);

async function token(name, scope, siteKey = null) {
  const { rows } = await h.pg.query('SELECT jd_token_create($1, $2, $3, NULL, $4) AS t', [name, scope, siteKey, 'export.test']);
  return rows[0].t.token;
}

async function api(d, method, pathname, tok) {
  const r = await d.get(`/api/v1${pathname}`, { method, headers: { authorization: `Bearer ${tok}` }, timeoutMs: 20000 });
  return { status: r.status, type: String(r.headers['content-type'] || ''), json: r.json, body: r.body };
}

h.test('answers reach the export; every format renders; versions and diff; 400 and 403', async () => {
  const d = await h.daemon();
  const admin = await token('export admin', 'admin', SITE_KEY);
  const { rows: other } = await h.pg.query("SELECT jd_site_create('Elsewhere', '{https://else.example}', 'none-required', 'export.test') AS s");
  const stranger = await token('stranger', 'admin', other[0].s.key);
  const cat = await h.catalog();

  // Evidence through the real widget protocol: emotions and a quote for budget-parent.
  const { client } = await d.hello({ hello: { persona: 'budget-parent' } });
  const frames = [
    await h.answerFrame('product-pulse', 'feel', 2),
    await h.answerFrame('product-pulse', 'feel', 4),
    await h.answerFrame('product-pulse', 'thoughts', 'Shipping <b>costs</b> were a surprise'),
  ];
  for (const f of frames) client.send(f);
  const { acked } = await client.settle(frames.map((f) => f.id), 15000);
  assert.equal(acked.size, 3);

  const json = await api(d, 'GET', `/maps/${cat.mapId}/export`, admin);
  assert.equal(json.status, 200, json.body.slice(0, 300));
  assert.match(json.type, /^application\/json/);
  assert.equal(json.json.format, 'journeyd.map/1');
  const n = json.json.cells.reduce((sum, c) => sum + (c.n ?? c.answers ?? 0), 0);
  assert.ok(n >= 3, `the three answers are counted in the cells (${n})`);
  assert.ok(json.body.includes('Shipping <b>costs</b> were a surprise'), 'the quote is in the document');

  const formats = {
    csv: [/^text\/csv/, (b) => b.split('\n')[0].includes(',')],
    'csv-grid': [/^text\/csv/, (b) => b.length > 0],
    mermaid: [/mermaid|text\/plain/, (b) => /journey/.test(b)],
    drawio: [/xml|mxfile/, (b) => b.includes('<mxfile')],
    html: [/^text\/html/, (b) => /<html/i.test(b) && !b.includes('<b>costs</b>')],
  };
  for (const [format, [type, check]] of Object.entries(formats)) {
    const r = await api(d, 'GET', `/maps/${cat.mapId}/export?format=${format}`, admin);
    assert.equal(r.status, 200, `${format}: ${r.body.slice(0, 300)}`);
    assert.match(r.type, type, `${format} content type`);
    assert.ok(check(r.body), `${format} body: ${r.body.slice(0, 200)}`);
  }

  const bad = await api(d, 'GET', `/maps/${cat.mapId}/export?format=pdf`, admin);
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.field, 'format');

  const v1 = await api(d, 'POST', `/maps/${cat.mapId}/versions`, admin);
  assert.equal(v1.status, 201, v1.body.slice(0, 300));
  client.send(await h.answerFrame('product-pulse', 'feel', 5));
  await client.next('ack', 10000);
  const v2 = await api(d, 'POST', `/maps/${cat.mapId}/versions`, admin);
  assert.equal(v2.json.version, v1.json.version + 1);
  const list = await api(d, 'GET', `/maps/${cat.mapId}/versions`, admin);
  assert.deepEqual(list.json.items.map((i) => i.version), [v1.json.version, v2.json.version]);
  const diff = await api(d, 'GET', `/maps/${cat.mapId}/diff`, admin);
  assert.equal(diff.status, 200, diff.body.slice(0, 300));
  assert.equal(diff.json.format, 'journeyd.map-diff/1');
  const old = await api(d, 'GET', `/maps/${cat.mapId}/versions/${v1.json.version}?format=mermaid`, admin);
  assert.equal(old.status, 200);
  assert.match(old.body, /journey/);

  const denied = await api(d, 'GET', `/maps/${cat.mapId}/export`, stranger);
  assert.equal(denied.status, 403, denied.body.slice(0, 200));
  const { rows: audit } = await h.pg.query("SELECT count(*)::int AS n FROM audit_log WHERE action = 'export'");
  assert.ok(audit[0].n >= 6, 'exports are audited');
});

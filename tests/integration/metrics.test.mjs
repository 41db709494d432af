// GET /metrics: Prometheus text exposition with a connections gauge that follows open sockets,
// counters that move with traffic, and every journeyd_* family that docs/architecture.md documents.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { Harness, ROOT, uuid, waitFor } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);

// Parses the exposition into { types: {family: type}, samples: [{name, labels, value}] }.
function parse(text) {
  const types = {};
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      types[m[1]] = m[2];
      continue;
    }
    if (line.startsWith('#')) continue;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    assert.ok(m, `malformed sample line: ${line}`);
    samples.push({ name: m[1], labels: m[2] || '', value: Number(m[3]) });
  }
  return { types, samples };
}

async function scrape(d) {
  const r = await d.get('/metrics');
  assert.equal(r.status, 200);
  return { ...parse(r.body), raw: r, body: r.body };
}

function connectionsGauge(types) {
  return Object.keys(types).find((n) => types[n] === 'gauge' && /^journeyd_.*connections/.test(n) && !/total|rejected|refused/.test(n));
}

const sum = (samples, name) => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);

h.test('/metrics is Prometheus text with # TYPE lines and journeyd_ families', async () => {
  const d = await h.daemon();
  const { types, samples, raw } = await scrape(d);
  assert.match(String(raw.headers['content-type']), /^text\/plain/);
  assert.ok(Object.keys(types).length >= 5, `# TYPE lines: ${Object.keys(types)}`);
  for (const name of Object.keys(types)) assert.match(name, /^journeyd_/, `family ${name} has the journeyd_ prefix`);
  for (const s of samples) assert.ok(Number.isFinite(s.value) || /^[+-]Inf$|^NaN$/.test(String(s.value)), `${s.name} value`);
  assert.ok(raw.body.includes('# HELP '), 'HELP lines');
  assert.ok(connectionsGauge(types), `a journeyd_*connections* gauge among ${Object.keys(types).join(', ')}`);
});

h.test('the connections gauge follows open WebSockets', async () => {
  const d = await h.daemon();
  const base = await scrape(d);
  const gauge = connectionsGauge(base.types);
  const before = sum(base.samples, gauge);
  const clients = [];
  for (let i = 0; i < 3; i++) clients.push((await d.hello()).client);
  const up = sum((await scrape(d)).samples, gauge);
  assert.equal(up, before + 3, `${gauge}: ${before} -> ${up} with 3 more sockets`);
  for (const c of clients) await c.close();
  await waitFor(async () => sum((await scrape(d)).samples, gauge) === before, { timeoutMs: 5000, what: `${gauge} back to ${before}` });
});

h.test('counters move with traffic (frames, acks, errors, rejected upgrades)', async () => {
  const d = await h.daemon();
  const a = await scrape(d);
  const { client } = await d.hello();
  const f = await h.answerFrame('product-pulse', 'feel', 4);
  client.send(f);
  await client.next((x) => x.type === 'ack' && x.ids.includes(f.id));
  client.sendRaw('{nope');
  await client.next('error');
  await d.connect({ origin: 'https://evil.example' }).catch(() => {});
  await client.close();
  const b = await scrape(d);
  const counters = Object.keys(b.types).filter((n) => b.types[n] === 'counter');
  const moved = (re) =>
    counters.filter((n) => re.test(n)).some((n) => {
      const name = b.samples.some((s) => s.name === n) ? n : `${n}_total`;
      return sum(b.samples, name) > sum(a.samples, name);
    });
  assert.ok(moved(/ack/), `an ack counter increased (${counters.join(', ')})`);
  assert.ok(moved(/frame|message/), 'a frames counter increased');
  assert.ok(moved(/error/), 'an errors counter increased');
  assert.ok(moved(/upgrade|reject|refuse/), 'a rejected-upgrades counter increased');
});

h.test('every journeyd_* metric documented in docs/architecture.md is exposed', async (t) => {
  const doc = path.join(ROOT, 'docs', 'architecture.md');
  if (!existsSync(doc)) {
    t.skip('docs/architecture.md does not exist yet');
    return;
  }
  const names = [...new Set(readFileSync(doc, 'utf8').match(/\bjourneyd_[a-z0-9_]+/g) || [])].filter(
    (n) => n !== 'journeyd_migrations' && !n.endsWith('_'),
  );
  if (names.length === 0) {
    t.skip('docs/architecture.md names no journeyd_* metric');
    return;
  }
  const d = await h.daemon();
  // Touch every path once so lazily created series exist.
  const { client } = await d.hello();
  client.send({ type: 'ping', id: uuid() });
  await client.next('pong');
  await client.close();
  const { types, samples } = await scrape(d);
  const exposed = new Set([...Object.keys(types), ...samples.map((s) => s.name)]);
  const strip = (n) => n.replace(/_(total|bucket|sum|count|seconds_bucket)$/, '');
  const missing = names.filter((n) => !exposed.has(n) && !exposed.has(strip(n)) && ![...exposed].some((e) => strip(e) === strip(n)));
  assert.deepEqual(missing, [], `documented but not exposed: ${missing.join(', ')}`);
});

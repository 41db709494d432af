// The site's tagging rules applied at ingest by the real daemon: a URL rule places a session and
// its page views in a stage and touchpoint, a UTM rule sets the touchpoint, an attribute passed by
// the host page and a screener answer assign the persona; the client's own hints always win.
import assert from 'node:assert/strict';

import { Harness, SITE_KEY, uuid, waitFor } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);

async function ackOrError(client, frame) {
  client.send(frame);
  return client.next((f) => (f.type === 'ack' && f.ids.includes(frame.id)) || (f.type === 'error' && f.id === frame.id), 10000);
}

h.test('url, utm, attribute and screener rules tag sessions, touches and answers', async () => {
  const d = await h.daemon();
  const cat = await h.catalog();
  const { rows: [{ site_id: siteId }] } = await h.pg.query('SELECT id AS site_id FROM sites WHERE key = $1', [SITE_KEY]);
  const q = (sql, p) => h.pg.query(sql, p);
  await q(`INSERT INTO tagging_rules (site_id, map_id, kind, match, stage_id, touchpoint_id, position) VALUES
           ($1, $2, 'url', '{"op":"contains","pattern":"/cart"}', $3, $4, 1),
           ($1, $2, 'utm', '{"source":"newsletter","medium":"email"}', NULL, $5, 2)`,
  [siteId, cat.mapId, cat.stages.purchase, cat.touchpoints.website, cat.touchpoints.email]);
  await q(`INSERT INTO tagging_rules (site_id, map_id, kind, match, persona_id, position) VALUES
           ($1, $2, 'persona_attribute', '{"attribute":"plan","value":"family"}', $3, 3),
           ($1, $2, 'screener', '{"survey":"product-pulse","question":"looking-for","equals":"compare"}', $4, 4)`,
  [siteId, cat.mapId, cat.personas['budget-parent'], cat.personas['busy-professional']]);
  d.proc.kill('SIGHUP');

  // UTM + attribute on hello.
  const { client, welcome } = await waitFor(async () => {
    const r = await d.hello({ hello: { page: { url: 'https://shop.example/', utm: { source: 'newsletter', medium: 'email' } }, attributes: { plan: 'family' } } });
    const t = await ackOrError(r.client, { type: 'touch', id: uuid(), kind: 'event', name: 'probe' });
    assert.equal(t.type, 'ack');
    const { rows } = await q('SELECT persona_id, touchpoint_id FROM sessions WHERE id = $1', [r.welcome.session]);
    return rows[0] && rows[0].persona_id ? { ...r, row: rows[0] } : null;
  }, { what: 'rules in the catalog' });
  const { rows: [s1] } = await q('SELECT persona_id, stage_id, touchpoint_id FROM sessions WHERE id = $1', [welcome.session]);
  assert.deepEqual(s1, { persona_id: String(cat.personas['budget-parent']), stage_id: null, touchpoint_id: String(cat.touchpoints.email) });

  // A page view on /cart moves the visitor to purchase/website; later answers follow.
  const pv = { type: 'touch', id: uuid(), kind: 'pageview', url: 'https://shop.example/cart' };
  assert.equal((await ackOrError(client, pv)).type, 'ack');
  const { rows: [t1] } = await q('SELECT stage_id, touchpoint_id FROM touch_events WHERE client_id = $1', [pv.id]);
  assert.deepEqual(t1, { stage_id: String(cat.stages.purchase), touchpoint_id: String(cat.touchpoints.website) });

  // The screener answer turns the persona into busy-professional for this and later answers.
  const screen = await h.answerFrame('product-pulse', 'looking-for', 'compare');
  assert.equal((await ackOrError(client, screen)).type, 'ack');
  const after = await h.answerFrame('product-pulse', 'feel', 4);
  assert.equal((await ackOrError(client, after)).type, 'ack');
  const { rows } = await q('SELECT client_id, persona_id FROM answers WHERE client_id = ANY($1)', [[screen.id, after.id]]);
  for (const r of rows) assert.equal(r.persona_id, String(cat.personas['busy-professional']), `answer ${r.client_id}`);

  // The client's own hint wins over a rule.
  const own = await d.hello({ hello: { persona: 'first-time-buyer', stage: 'awareness', page: { url: 'https://shop.example/cart' }, attributes: { plan: 'family' } } });
  assert.equal((await ackOrError(own.client, { type: 'touch', id: uuid(), kind: 'event', name: 'probe' })).type, 'ack');
  const { rows: [s2] } = await q('SELECT persona_id, stage_id FROM sessions WHERE id = $1', [own.welcome.session]);
  assert.deepEqual(s2, { persona_id: String(cat.personas['first-time-buyer']), stage_id: String(cat.stages.awareness) });
});

// Live chat through real daemons (issue 6): TWO journeyd instances on one PostgreSQL, a visitor
// on instance A (journey.v1 at /ws) and an agent console on instance B (journey.agent.v1 at
// /agent/ws, signed in with POST /agent/login). Messages travel only through the database:
// A commits, PostgreSQL NOTIFY wakes B, B polls and pushes. Checks acks after COMMIT with the
// server seq, idempotent resends, resume after a reconnect without gaps or duplicates, typing,
// receipts, presence, coding into chat_evidence, offline messages, isolation between visitors
// and between sites, and the cookie and Origin rules of the console.
import assert from 'node:assert/strict';
import WebSocket from 'ws';

import { Harness, Client, SITE_KEY, ORIGIN, httpRequest, sleep, uuid, waitFor } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);
const PASSWORD = 'correct horse battery staple';
let A; // the visitor's instance
let B; // the agent's instance
let siteId;
let otherSiteId;

async function sql(text, params = []) {
  return (await h.pg.query(text, params)).rows;
}

async function login(d, site, email, password = PASSWORD) {
  const body = JSON.stringify({ site, email, password });
  const res = await httpRequest(`${d.url}/agent/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: d.url, 'content-length': Buffer.byteLength(body) },
    body,
  });
  const setCookie = res.headers['set-cookie']?.[0] ?? '';
  return { ...res, setCookie, cookie: setCookie.split(';')[0] };
}

// An agent console socket: resolves a Client once welcome arrived.
async function agent(d, cookie, { hello = true } = {}) {
  const ws = new WebSocket(`${d.url.replace('http', 'ws')}/agent/ws`, 'journey.agent.v1', {
    headers: { cookie, origin: d.url },
    handshakeTimeout: 10000,
  });
  const client = new Client(ws, 'agent');
  client.agentFrames = true;
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (req, res) => reject(Object.assign(new Error(`upgrade ${res.statusCode}`), { status: res.statusCode })));
    ws.once('error', reject);
  });
  if (hello) {
    // Until the session check answers, frames get not_ready: say hello until welcome comes.
    for (let i = 0; i < 50 && !client.welcome; i++) {
      const id = uuid();
      client.send({ type: 'hello', id, v: 1 });
      const r = await client.next((f) => (f.type === 'welcome' && f.re === id) || (f.type === 'error' && f.id === id), 5000);
      if (r.type === 'welcome') client.welcome = r;
      else await sleep(100);
    }
    assert.ok(client.welcome, 'the agent got welcome');
  }
  return client;
}

async function request(client, frame, pred, timeoutMs = 10000) {
  const id = frame.id ?? uuid();
  client.send({ ...frame, id });
  return client.next((f) => (f.re === id || (f.ids && f.ids.includes(id)) || (f.type === 'error' && f.id === id)) && (!pred || pred(f)), timeoutMs);
}

async function visitor(d = A, hello = {}) {
  const v = await d.hello({ hello });
  assert.equal(v.welcome.chat.enabled, true, 'welcome offers chat');
  return v;
}

async function openChat(client, extra = {}) {
  const id = uuid();
  client.send({ type: 'chat.open', id, page: { url: 'https://shop.example/checkout' }, stage: 'purchase', touchpoint: 'website', ...extra });
  const opened = await client.next((f) => (f.type === 'chat.opened' && f.re === id) || (f.type === 'error' && f.id === id), 10000);
  assert.equal(opened.type, 'chat.opened', JSON.stringify(opened));
  return opened;
}

async function say(client, conversation, body, extra = {}) {
  const id = extra.id ?? uuid();
  client.send({ type: 'chat.message', id, conversation, body, page: { url: 'https://shop.example/cart' }, stage: 'purchase', touchpoint: 'website', ...extra });
  const r = await client.next((f) => (f.type === 'ack' && f.ids.includes(id)) || (f.type === 'error' && f.id === id), 10000);
  assert.equal(r.type, 'ack', JSON.stringify(r));
  return { id, seq: r.seq[id] };
}

const messagesOf = (client, conversation) => client.frames.filter((f) => f.type === 'chat.message' && f.conversation === conversation);

h.test('setup: two instances, an agent account, chat offered in welcome', async () => {
  siteId = (await sql('SELECT id FROM sites WHERE key = $1', [SITE_KEY]))[0].id;
  await sql("SELECT jd_agent_create($1, 'anna@shop.example', 'Anna', 'admin', $2)", [siteId, PASSWORD]);
  await sql("SELECT jd_agent_create($1, 'ben@shop.example', 'Ben', 'agent', $2)", [siteId, PASSWORD]);
  otherSiteId = (await sql("INSERT INTO sites (key, name, allowed_origins) VALUES ('other-site-key-0002', 'Other', '{https://other.example}') RETURNING id"))[0].id;
  await sql("SELECT jd_agent_create($1, 'olga@other.example', 'Olga', 'admin', $2)", [otherSiteId, PASSWORD]);
  A = await h.startDaemon({ args: ['--catalog-refresh', '1'] });
  B = await h.startDaemon({ args: ['--catalog-refresh', '1'] });
  const { welcome } = await visitor(A);
  assert.deepEqual(welcome.chat, { enabled: true });
});

h.test('agent sign-in: wrong password 401, right one sets an HttpOnly SameSite cookie; /agent/me', async () => {
  const bad = await login(B, SITE_KEY, 'anna@shop.example', 'wrong password!!');
  assert.equal(bad.status, 401, bad.body);
  assert.equal(bad.json.error.code, 'invalid_credentials');
  assert.equal(bad.setCookie, '');
  const ok = await login(B, SITE_KEY, 'anna@shop.example');
  assert.equal(ok.status, 200, ok.body);
  assert.equal(ok.json.agent.name, 'Anna');
  assert.match(ok.setCookie, /^jd_agent=jda_[A-Za-z0-9_-]{43}; Path=\/agent; HttpOnly; SameSite=Strict; Max-Age=43200$/);
  const me = await httpRequest(`${B.url}/agent/me`, { headers: { cookie: ok.cookie } });
  assert.equal(me.status, 200);
  assert.equal(me.json.agent.email, 'anna@shop.example');
  assert.equal((await httpRequest(`${B.url}/agent/me`)).status, 401);
  const form = await httpRequest(`${B.url}/agent/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': 6 }, body: 'site=x' });
  assert.equal(form.status, 415, 'a cross-site form cannot sign in');
  const cross = await httpRequest(`${B.url}/agent/login`, { method: 'POST', headers: { 'content-type': 'application/json', origin: 'https://evil.example', 'content-length': 2 }, body: '{}' });
  assert.equal(cross.status, 403);
  const notJson = await httpRequest(`${B.url}/agent/login`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': 2 }, body: '[1' });
  const chunked = await httpRequest(`${B.url}/agent/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(chunked.status, 411);
  assert.equal(notJson.status, 400);
});

h.test('console socket: no cookie or a foreign Origin is 403; a revoked cookie is closed 1008', async () => {
  await assert.rejects(agent(B, ''), (e) => e.status === 403);
  const { cookie } = await login(B, SITE_KEY, 'ben@shop.example');
  const ws = new WebSocket(`${B.url.replace('http', 'ws')}/agent/ws`, 'journey.agent.v1', { headers: { cookie, origin: 'https://evil.example' } });
  const status = await new Promise((resolve) => {
    ws.once('unexpected-response', (req, res) => resolve(res.statusCode));
    ws.once('open', () => resolve('open'));
  });
  assert.equal(status, 403);
  const bogus = await agent(B, 'jd_agent=jda_' + 'x'.repeat(43), { hello: false });
  bogus.send({ type: 'hello', id: uuid(), v: 1 });
  const closed = await bogus.waitClose(10000);
  assert.equal(closed.code, 1008);
});

h.test('a full conversation across two instances: open, messages both ways, typing, receipts, presence', async () => {
  const { cookie } = await login(B, SITE_KEY, 'anna@shop.example');
  const anna = await agent(B, cookie);
  assert.equal(anna.welcome.agent.name, 'Anna');
  const { client: vis } = await visitor(A);
  // Presence reaches the visitor once the heartbeat is committed.
  const opened = await openChat(vis, { email: 'ana@example.com' });
  const conv = opened.conversation;
  assert.match(opened.token, /^jdc_/);
  await vis.next((f) => f.type === 'chat.presence', 5000);
  await waitFor(async () => (await sql('SELECT jd_agents_online($1) AS o', [siteId]))[0].o.length > 0, { what: 'agent online' });

  // The console learns about the new conversation from instance A's NOTIFY.
  await anna.next((f) => f.type === 'inbox.update' && f.conversation === conv, 10000);
  const inbox = await request(anna, { type: 'inbox', status: 'waiting' });
  assert.equal(inbox.type, 'inbox');
  const item = inbox.items.find((i) => i.conversation === conv);
  assert.ok(item, 'the new conversation is in the waiting inbox');
  assert.equal(item.visitor.email, 'ana@example.com');
  assert.equal(item.context.stage.slug, 'purchase');
  const view = await request(anna, { type: 'open', conversation: conv, after_seq: 0 });
  assert.equal(view.type, 'conversation', JSON.stringify(view));

  const m1 = await say(vis, conv, 'Does it ship on Sunday?');
  assert.equal(m1.seq, 1);
  const seen = await anna.next((f) => f.type === 'chat.message' && f.conversation === conv && f.seq === 1, 10000);
  assert.equal(seen.body, 'Does it ship on Sunday?');
  assert.equal(seen.sender, 'visitor');
  assert.equal(seen.page, 'https://shop.example/cart');
  assert.equal(seen.stage, 'purchase');
  assert.ok(seen.message_id > 0, 'agents get the database id for coding');

  // Typing both ways.
  anna.send({ type: 'chat.typing', id: uuid(), conversation: conv, on: true });
  const t1 = await vis.next((f) => f.type === 'chat.typing' && f.on === true, 10000);
  assert.equal(t1.who, 'agent');
  assert.equal(t1.name, 'Anna');
  vis.send({ type: 'chat.typing', id: uuid(), conversation: conv, on: true });
  await anna.next((f) => f.type === 'chat.typing' && f.who === 'visitor' && f.on === true, 10000);

  // Reply, note (agents only), read receipts both ways.
  const replyId = uuid();
  const ack = await request(anna, { id: replyId, type: 'chat.message', conversation: conv, body: 'Yes, on Sundays too.' });
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  assert.equal(ack.seq[replyId], 2);
  await request(anna, { type: 'chat.message', conversation: conv, body: 'VIP customer', kind: 'note' });
  const reply = await vis.next((f) => f.type === 'chat.message' && f.seq === 2, 10000);
  assert.equal(reply.sender, 'agent');
  assert.deepEqual(reply.agent, { name: 'Anna' });
  assert.equal(reply.message_id, undefined, 'visitors never get database ids');
  const readAck = await request(vis, { type: 'chat.read', conversation: conv, upto_seq: 2, what: 'read' });
  assert.equal(readAck.type, 'ack');
  const receipt = await anna.next((f) => f.type === 'chat.receipt' && f.conversation === conv && f.read_seq >= 2, 10000);
  assert.ok(receipt.delivered_seq >= 2);
  await request(anna, { type: 'chat.read', conversation: conv, upto_seq: 1, what: 'read' });
  await vis.next((f) => f.type === 'chat.receipt' && f.read_seq >= 1, 10000);

  const m4 = await say(vis, conv, 'Great, thanks!');
  assert.equal(m4.seq, 4, 'the note took seq 3');
  await anna.next((f) => f.type === 'chat.message' && f.seq === 4, 10000);
  await sleep(300);
  assert.equal(messagesOf(vis, conv).some((m) => m.kind === 'note'), false, 'visitors never see notes');
  const status = await sql('SELECT status, assigned_agent_id FROM conversations WHERE id = $1', [conv]);
  assert.equal(status[0].status, 'open');

  // Close from the console: the visitor sees the system message and the status.
  const closeAck = await request(anna, { type: 'chat.close', conversation: conv });
  assert.equal(closeAck.type, 'ack');
  await vis.next((f) => f.type === 'chat.status' && f.status === 'closed', 10000);
  const sys = await vis.next((f) => f.type === 'chat.message' && f.sender === 'system', 10000);
  assert.equal(sys.seq, 5);
  const rating = await request(vis, { type: 'chat.rating', conversation: conv, emotion: 4, score: 5, text: 'Quick answer' });
  assert.equal(rating.type, 'ack', JSON.stringify(rating));
  const rows = await sql("SELECT emotion, score FROM answers WHERE site_id = $1 AND source = 'chat'", [siteId]);
  assert.ok(rows.some((r) => r.emotion === 4), 'the rating is stored as an answer with source chat');
  anna.terminate();
  vis.terminate();
});

h.test('resends are acked with the same seq and make no second row; gaps never appear', async () => {
  const { client: vis } = await visitor(A);
  const { conversation: conv } = await openChat(vis);
  const a = await say(vis, conv, 'first');
  const again = await say(vis, conv, 'first', { id: a.id });
  assert.equal(again.seq, a.seq);
  const b = await say(vis, conv, 'second');
  assert.equal(b.seq, a.seq + 1);
  const n = await sql('SELECT count(*)::int AS n FROM messages WHERE conversation_id = $1', [conv]);
  assert.equal(n[0].n, 2);
});

h.test('kill the visitor mid-conversation while both sides write; resume on the other instance: complete, ordered, no duplicates', async () => {
  const { cookie } = await login(B, SITE_KEY, 'anna@shop.example');
  const anna = await agent(B, cookie);
  const { client: v1 } = await visitor(A);
  const opened = await openChat(v1);
  const conv = opened.conversation;
  await request(anna, { type: 'open', conversation: conv, after_seq: 0 });
  const sentByVisitor = [];
  for (let i = 0; i < 5; i++) sentByVisitor.push((await say(v1, conv, `visitor ${i}`)).id);
  // Cut the visitor while the agent keeps writing and the visitor has unacked messages.
  const pendingIds = [uuid(), uuid()];
  for (const [k, id] of pendingIds.entries()) v1.send({ type: 'chat.message', id, conversation: conv, body: `in flight ${k}` });
  v1.terminate();
  for (let i = 0; i < 5; i++) await request(anna, { type: 'chat.message', conversation: conv, body: `agent ${i}` });
  const lastSeen = Math.max(0, ...messagesOf(v1, conv).map((m) => m.seq));

  // Reconnect to instance B this time, resume from the last seq seen, resend the unacked.
  const { client: v2 } = await visitor(B);
  const rid = uuid();
  v2.send({ type: 'chat.resume', id: rid, conversation: conv, token: opened.token, after_seq: lastSeen });
  const resumed = await v2.next((f) => (f.type === 'chat.resumed' && f.re === rid) || (f.type === 'error' && f.id === rid), 10000);
  assert.equal(resumed.type, 'chat.resumed', JSON.stringify(resumed));
  for (const [k, id] of pendingIds.entries()) await say(v2, conv, `in flight ${k}`, { id });
  await say(v2, conv, 'after the reconnect');
  const db = await sql("SELECT seq::int, body, client_id::text FROM messages WHERE conversation_id = $1 AND kind <> 'note' ORDER BY seq", [conv]);
  await waitFor(() => Math.max(...messagesOf(v2, conv).map((m) => m.seq)) === db.at(-1).seq, { what: 'visitor caught up' });
  await waitFor(() => Math.max(0, ...messagesOf(anna, conv).map((m) => m.seq)) === db.at(-1).seq, { what: 'agent caught up' });
  const visitorView = [...messagesOf(v1, conv), ...messagesOf(v2, conv)];
  const seqs = visitorView.map((m) => m.seq);
  assert.deepEqual(seqs, [...new Set(seqs)], 'the visitor never got a message twice');
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'in seq order');
  assert.deepEqual(visitorView.map((m) => m.body), db.map((m) => m.body), 'the visitor transcript equals the database');
  const agentSeqs = messagesOf(anna, conv).map((m) => m.seq);
  assert.deepEqual(agentSeqs, [...new Set(agentSeqs)].sort((x, y) => x - y));
  assert.deepEqual(db.map((m) => m.seq), db.map((_, i) => i + 1), 'no gaps in the database');
  const clientIds = db.map((m) => m.client_id);
  assert.equal(new Set(clientIds).size, clientIds.length, 'every client id once');
  for (const id of [...sentByVisitor, ...pendingIds]) assert.ok(clientIds.includes(id));
  anna.terminate();
});

h.test('isolation: a guessed token or another site gets chat_forbidden; an agent of site B sees nothing of site A', async () => {
  const { client: v1 } = await visitor(A);
  const { conversation: conv } = await openChat(v1);
  await say(v1, conv, 'my address is secret');
  const { client: v2 } = await visitor(A);
  const rid = uuid();
  v2.send({ type: 'chat.resume', id: rid, conversation: conv, token: 'jdc_' + 'A'.repeat(43), after_seq: 0 });
  const err = await v2.next((f) => f.id === rid, 10000);
  assert.equal(err.code, 'chat_forbidden');
  const mid = uuid();
  v2.send({ type: 'chat.message', id: mid, conversation: conv, body: 'let me in' });
  assert.equal((await v2.next((f) => f.id === mid, 10000)).code, 'chat_forbidden');
  await sleep(300);
  assert.equal(messagesOf(v2, conv).length, 0);

  const { cookie } = await login(B, 'other-site-key-0002', 'olga@other.example');
  const olga = await agent(B, cookie);
  const open = await request(olga, { type: 'open', conversation: conv, after_seq: 0 });
  assert.equal(open.type, 'error');
  assert.equal(open.code, 'not_found');
  const inbox = await request(olga, { type: 'inbox' });
  assert.equal(inbox.items.some((i) => i.conversation === conv), false);
  const write = await request(olga, { type: 'chat.message', conversation: conv, body: 'hi' });
  assert.equal(write.code, 'chat_forbidden');
  const transcript = await httpRequest(`${B.url}/agent/transcript?conversation=${conv}&format=text`, { headers: { cookie } });
  assert.equal(transcript.status, 404);
  await say(v1, conv, 'still here');
  await sleep(500);
  assert.equal(olga.frames.some((f) => f.conversation === conv), false, 'no push about another site');
  olga.terminate();
});

h.test('coding: an agent codes a span; the code reaches other consoles and chat_evidence', async () => {
  const { cookie } = await login(B, SITE_KEY, 'anna@shop.example');
  const anna = await agent(B, cookie);
  const ben = await agent(A, (await login(A, SITE_KEY, 'ben@shop.example')).cookie);
  const { client: vis } = await visitor(A);
  const { conversation: conv } = await openChat(vis);
  await say(vis, conv, 'Shipping costs €12, that is too much');
  await request(anna, { type: 'open', conversation: conv, after_seq: 0 });
  await request(ben, { type: 'open', conversation: conv, after_seq: 0 });
  const msg = await anna.next((f) => f.type === 'chat.message' && f.conversation === conv, 10000);
  const obstacle = (await sql("SELECT o.slug FROM obstacles o JOIN maps m ON m.id = o.map_id WHERE m.site_id = $1 ORDER BY o.id LIMIT 1", [siteId]))[0].slug;
  const code = await request(anna, { type: 'code.create', message_id: msg.message_id, span: [0, 20], emotion: 1, obstacles: [obstacle], stage: 'purchase', touchpoint: 'website', memo: 'price shock' });
  assert.equal(code.type, 'code', JSON.stringify(code));
  const pushed = await ben.next((f) => f.type === 'chat.codes' && f.conversation === conv, 10000);
  assert.equal(pushed.codes.length, 1, 'the code made on instance B appears on instance A');
  const ev = await sql('SELECT emotion, thought, source FROM chat_evidence WHERE conversation_id = $1', [conv]);
  assert.equal(ev.length, 1);
  assert.equal(ev[0].source, 'chat');
  assert.equal(ev[0].emotion, 1);
  assert.equal(ev[0].thought, 'Shipping costs €12, ');
  const bad = await request(anna, { type: 'code.create', message_id: msg.message_id, span: [0, 999], emotion: 1 });
  assert.equal(bad.type, 'error');
  assert.equal(bad.code, 'bad_span');
  anna.terminate();
  ben.terminate();
});

h.test('offline: with no agent online the visitor leaves a message and an e-mail; the agent finds it waiting', async () => {
  await waitFor(async () => (await sql('SELECT jd_agents_online($1) AS o', [siteId]))[0].o.length === 0, { timeoutMs: 40000, what: 'no agent online' });
  const { client: vis } = await visitor(A);
  const { conversation: conv, presence } = await openChat(vis);
  assert.equal(presence.online, false);
  await say(vis, conv, 'Call me back about my order', { kind: 'offline' });
  const ack = await request(vis, { type: 'chat.email', conversation: conv, email: 'later@example.com' });
  assert.equal(ack.type, 'ack');
  const { cookie } = await login(B, SITE_KEY, 'anna@shop.example');
  const anna = await agent(B, cookie);
  const inbox = await request(anna, { type: 'inbox', status: 'waiting' });
  const item = inbox.items.find((i) => i.conversation === conv);
  assert.equal(item.visitor.email, 'later@example.com');
  assert.equal(item.last_message.kind, 'offline');
  anna.terminate();
});

h.test('HTML transcript escapes markup; bad chat frames get clear errors and the daemon keeps serving', async () => {
  const { client: vis } = await visitor(A);
  const { conversation: conv } = await openChat(vis);
  await say(vis, conv, '<img src=x onerror=alert(1)>');
  const { cookie } = await login(B, SITE_KEY, 'anna@shop.example');
  const t = await httpRequest(`${B.url}/agent/transcript?conversation=${conv}&format=html`, { headers: { cookie } });
  assert.equal(t.status, 200, t.body);
  assert.match(t.headers['content-type'], /text\/html/);
  assert.ok(t.body.includes('&lt;img src=x onerror=alert(1)&gt;'), t.body);
  assert.ok(!t.body.includes('<img'), 'no live markup');
  const cases = [
    [{ type: 'chat.message', conversation: conv, body: '' }, 'out_of_range'],
    [{ type: 'chat.message', conversation: conv, body: '   ' }, 'out_of_range'],
    [{ type: 'chat.message', conversation: conv, body: 'x'.repeat(4001) }, 'out_of_range'],
    [{ type: 'chat.message', conversation: conv, body: 'hi', kind: 'note' }, 'bad_field'],
    [{ type: 'chat.message', conversation: 'nope', body: 'hi' }, 'bad_field'],
    [{ type: 'chat.message', conversation: conv, body: 'hi', stage: 'no-such-stage' }, 'unknown_stage'],
    [{ type: 'chat.read', conversation: conv, upto_seq: -1, what: 'read' }, 'out_of_range'],
    [{ type: 'chat.rating', conversation: conv, emotion: 9 }, 'out_of_range'],
    [{ type: 'chat.frobnicate', conversation: conv }, 'unknown_type'],
    [{ type: 'chat.resume', conversation: conv, token: 42 }, 'chat_forbidden'],
  ];
  for (const [frame, code] of cases) {
    const id = uuid();
    vis.send({ ...frame, id });
    const r = await vis.next((f) => f.id === id, 10000);
    assert.equal(r.type, 'error', JSON.stringify(frame));
    assert.equal(r.code, code, `${JSON.stringify(frame).slice(0, 80)} -> ${JSON.stringify(r)}`);
    assert.ok(r.message.length > 0);
  }
  assert.equal((await say(vis, conv, 'still works')).seq, 2);
  assert.equal((await A.healthz()).status, 200);
});

h.test('sign-in flood: one address gets 20 sign-ins at once, then one per 3 s; the rest are 429 before any password check', async () => {
  const C = await h.startDaemon();
  const t0 = Date.now();
  const results = [];
  for (let i = 0; i < 30; i++) results.push(await login(C, SITE_KEY, `nobody${i}@shop.example`, 'wrong password!!'));
  const elapsed = (Date.now() - t0) / 1000;
  const statuses = results.map((r) => r.status);
  assert.deepEqual(statuses.slice(0, 20), Array(20).fill(401), 'invented e-mails get the same 401 as wrong passwords');
  const allowed = 20 + Math.ceil(elapsed / 3) + 1;
  assert.ok(statuses.filter((s) => s === 401).length <= allowed, `${statuses.join(',')} in ${elapsed}s`);
  const refused = results.filter((r) => r.status === 429);
  assert.ok(refused.length > 0, statuses.join(','));
  assert.equal(refused[0].json.error.code, 'too_many_attempts');
  assert.equal(refused[0].setCookie, '');
  await C.stop();
});

h.test('the chat connections die (pg_terminate_backend) while the visitor writes: after the reconnect the agent on the other instance still gets every message, once, in order', async () => {
  const { cookie } = await login(B, SITE_KEY, 'ben@shop.example');
  const ben = await agent(B, cookie);
  const { client: vis } = await visitor(A);
  const { conversation: conv } = await openChat(vis);
  await request(ben, { type: 'open', conversation: conv, after_seq: 0 });
  await say(vis, conv, 'before');
  const killed = await sql("SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (query LIKE 'LISTEN journeyd%' OR query LIKE '%jd_chat_rpc%' OR query LIKE '%jd_presence_clear_instance%')");
  assert.ok(killed[0].n >= 2, `both instances' chat connections were terminated (${killed[0].n})`);
  // The visitor's outbox resends until acked, as the widget does.
  for (let i = 0; i < 5; i++) {
    const id = uuid();
    for (let attempt = 0; ; attempt++) {
      vis.send({ type: 'chat.message', id, conversation: conv, body: `during ${i}` });
      const r = await vis.next((f) => (f.type === 'ack' && f.ids.includes(id)) || (f.type === 'error' && f.id === id), 10000);
      if (r.type === 'ack') break;
      assert.equal(r.code, 'unavailable', JSON.stringify(r));
      assert.ok(attempt < 100, 'acked within 100 attempts');
      await sleep(200);
    }
  }
  const db = await sql("SELECT seq::int, body FROM messages WHERE conversation_id = $1 ORDER BY seq", [conv]);
  assert.equal(db.length, 6);
  await waitFor(() => messagesOf(ben, conv).length === 6, { timeoutMs: 40000, what: 'agent got all six' });
  assert.deepEqual(messagesOf(ben, conv).map((m) => [m.seq, m.body]), db.map((m) => [m.seq, m.body]));
  ben.terminate();
});

h.test('/metrics counts chat calls, notifications, polls and pushed messages', async () => {
  const m = (await B.get('/metrics')).body;
  const val = (name) => Number((m.match(new RegExp(`^${name} (\\d+)`, 'm')) || [])[1]);
  assert.ok(val('journeyd_chat_calls_total\\{result="ok"\\}') > 0, m);
  assert.ok(val('journeyd_chat_calls_total\\{result="refused"\\}') > 0, 'refusals (wrong tokens, bad spans) are counted');
  assert.ok(val('journeyd_chat_notifications_total') > 0);
  assert.ok(val('journeyd_chat_polls_total') > 0);
  assert.ok(val('journeyd_chat_messages_pushed_total') >= 10);
  assert.ok(Number.isFinite(val('journeyd_chat_watches')));
});

h.test('hello on a chat site is followed by chat.presence (from a per-site cache), before any chat.open', async () => {
  const { client } = await visitor(A);
  const p = await client.next((f) => f.type === 'chat.presence', 10000);
  assert.equal(typeof p.online, 'boolean');
  assert.equal(typeof p.agents, 'number');
  const { client: second } = await visitor(A);
  const p2 = await second.next((f) => f.type === 'chat.presence', 10000);
  assert.deepEqual(p2, p);
});

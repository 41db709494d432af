// Live chat benchmark: delivery latency across TWO journeyd instances sharing one PostgreSQL.
//
//   node bench/chat.mjs [--conversations 50] [--messages 20] [--rate 50] [--journeyd PATH]
//
// Starts a throwaway PostgreSQL 15 (tests/lib/harness.mjs), migrates and seeds it, starts
// instance A (visitors) and instance B (one agent console watching every conversation). Each
// visitor opens a conversation on A; the visitors together send --rate messages per second,
// round robin, until each has sent --messages. For every message it records
//   ack:      visitor send -> ack on A (the COMMIT of jd_chat_insert, synchronous_commit on);
//   delivery: visitor send -> chat.message on B's console (COMMIT, NOTIFY, B's poll, push).
// Then checks that the console got every acked message exactly once and in seq order per
// conversation, and that the database holds exactly the acked messages. Messages refused by the
// per-connection chat limit (5/s per visitor: keep --rate / --conversations under 5) are counted
// as refused, not retried. Prints percentiles
// and writes bench/results/chat-latest.json.
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';

import { Harness, Client, SITE_KEY, ROOT, httpRequest, sleep, uuid } from '../tests/lib/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const N_CONV = Number(opt('--conversations', 50));
const N_MSG = Number(opt('--messages', 20));
const RATE = Number(opt('--rate', 50));
if (opt('--journeyd')) process.env.JOURNEYD_BIN = path.resolve(opt('--journeyd'));

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

const h = new Harness('bench-chat');
await h.setup();
try {
  const site = (await h.pg.query('SELECT id FROM sites WHERE key = $1', [SITE_KEY])).rows[0].id;
  await h.pg.query("SELECT jd_agent_create($1, 'bench@shop.example', 'Bench', 'admin', 'bench password 123')", [site]);
  const A = await h.startDaemon({ args: ['--rate-per-sec', '1000', '--rate-burst', '1000'] });
  const B = await h.startDaemon({ args: ['--rate-per-sec', '1000', '--rate-burst', '1000'] });

  const body = JSON.stringify({ site: SITE_KEY, email: 'bench@shop.example', password: 'bench password 123' });
  const login = await httpRequest(`${B.url}/agent/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    body,
  });
  const cookie = login.headers['set-cookie'][0].split(';')[0];
  const ws = new WebSocket(`${B.url.replace('http', 'ws')}/agent/ws`, 'journey.agent.v1', { headers: { cookie } });
  const agent = new Client(ws, 'agent');
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  for (;;) {
    const id = uuid();
    agent.send({ type: 'hello', id, v: 1 });
    const r = await agent.next((f) => f.re === id || f.id === id, 5000);
    if (r.type === 'welcome') break;
    await sleep(100);
  }

  const sentAt = new Map(); // client id -> send time
  const ackMs = [];
  const deliveryMs = [];
  const delivered = new Map(); // conversation -> seqs in arrival order
  const refused = new Map(); // error code -> count
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString());
    if (f.type !== 'chat.message' || !sentAt.has(f.id)) return;
    deliveryMs.push(performance.now() - sentAt.get(f.id));
    if (!delivered.has(f.conversation)) delivered.set(f.conversation, []);
    delivered.get(f.conversation).push(f.seq);
  });

  const visitors = [];
  for (let i = 0; i < N_CONV; i++) {
    const { client } = await A.hello();
    const id = uuid();
    client.send({ type: 'chat.open', id, page: { url: 'https://shop.example/bench' } });
    const opened = await client.next((f) => f.re === id, 10000);
    const oid = uuid();
    agent.send({ type: 'open', id: oid, conversation: opened.conversation, after_seq: 0 });
    const opened2 = await agent.next((f) => f.re === oid || (f.type === 'error' && f.id === oid), 10000);
    if (opened2.type === 'error') throw new Error(`open: ${JSON.stringify(opened2)}`);
    client.raw = client.ws;
    client.raw.on('message', (data) => {
      const f = JSON.parse(data.toString());
      if (f.type === 'ack' && f.seq) for (const cid of f.ids) if (sentAt.has(cid)) ackMs.push(performance.now() - sentAt.get(cid));
      // Refused frames (the per-connection chat limit is 5 messages/s) are not stored; a widget
      // would resend them later. Counted, not retried, so the figures stay about one send each.
      if (f.type === 'error' && sentAt.has(f.id)) refused.set(f.code, (refused.get(f.code) || 0) + 1);
    });
    visitors.push({ client, conversation: opened.conversation });
  }

  const total = N_CONV * N_MSG;
  const t0 = performance.now();
  for (let k = 0; k < total; k++) {
    const due = t0 + (k * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const v = visitors[k % N_CONV];
    const id = uuid();
    sentAt.set(id, performance.now());
    v.client.send({ type: 'chat.message', id, conversation: v.conversation, body: `message ${k}` });
  }
  const deadline = Date.now() + 60000;
  const answered = () => ackMs.length + [...refused.values()].reduce((a, b) => a + b, 0);
  while ((answered() < total || deliveryMs.length < ackMs.length) && Date.now() < deadline) await sleep(50);
  const elapsed = (performance.now() - t0) / 1000;
  if (agent.closeInfo) console.error('agent connection closed:', JSON.stringify(agent.closeInfo));

  let ordered = true;
  let duplicates = 0;
  for (const seqs of delivered.values()) {
    for (let i = 1; i < seqs.length; i++) if (seqs[i] <= seqs[i - 1]) ordered = false;
    duplicates += seqs.length - new Set(seqs).size;
  }
  const rows = (await h.pg.query("SELECT count(*)::int AS n FROM messages WHERE sender = 'visitor'")).rows[0].n;
  const result = {
    command: `node bench/chat.mjs ${args.join(' ')}`.trim(),
    conversations: N_CONV,
    messages: total,
    offered_per_sec: RATE,
    elapsed_s: Number(elapsed.toFixed(2)),
    acked: ackMs.length,
    refused: Object.fromEntries(refused),
    delivered: deliveryMs.length,
    rows_in_database: rows,
    in_order: ordered,
    duplicates,
    ack_ms: { p50: pct(ackMs, 50), p90: pct(ackMs, 90), p99: pct(ackMs, 99), max: Math.max(...ackMs) },
    delivery_ms: { p50: pct(deliveryMs, 50), p90: pct(deliveryMs, 90), p99: pct(deliveryMs, 99), max: Math.max(...deliveryMs) },
  };
  for (const k of ['ack_ms', 'delivery_ms']) for (const p of Object.keys(result[k])) result[k][p] = Number(result[k][p].toFixed(1));
  console.log(JSON.stringify(result, null, 2));
  mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(path.join(ROOT, 'bench/results/chat-latest.json'), JSON.stringify(result, null, 2) + '\n');
  const ok = answered() === total && result.delivered === result.acked && rows === result.acked && ordered && duplicates === 0;
  if (!ok) {
    const per = [...delivered.values()].map((x) => x.length);
    console.error('delivered per conversation:', per.join(','), 'conversations with any:', delivered.size);
    console.error((await B.get('/metrics')).body.split('\n').filter((l) => l.startsWith('journeyd_chat')).join('\n'));
    console.error('FAILED: lost, duplicated or reordered messages');
    process.exitCode = 1;
  }
} finally {
  await h.teardown();
}

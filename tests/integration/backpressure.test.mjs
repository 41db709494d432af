// Backpressure against the real daemon: while PostgreSQL is down the daemon stops reading from
// sockets (TCP pushes back on the client) instead of buffering in memory, acks nothing, keeps
// every connection open, and once the database returns every answer is stored exactly once.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { Harness, journeydBin, sleep, waitFor } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);

function metric(text, name) {
  const m = text.match(new RegExp(`^${name.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\d+)`, 'm'));
  return m ? Number(m[1]) : NaN;
}

function rssKb(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]);
}

h.test('database down: reading pauses, memory and queues stay bounded, nothing is acked; then everything is stored once', async () => {
  const d = await h.startDaemon({ args: ['--queue-capacity', '64', '--max-inflight', '16', '--batch-max', '16', '--rate-per-sec', '100000', '--rate-burst', '100000'] });
  const clients = [];
  for (let i = 0; i < 5; i++) clients.push((await d.hello()).client);
  // Frames are built while the database is up (building one reads the catalog).
  const big = 'x'.repeat(2000); // 2 KB of text per answer: 5 x 400 answers = 4 MB offered
  const perClient = [];
  for (let k = 0; k < clients.length; k++) {
    const list = [];
    for (let i = 0; i < 400; i++) list.push(await h.answerFrame('product-pulse', 'thoughts', `${big} ${i}`));
    perClient.push(list);
  }
  const frames = perClient.flat();
  const rssBefore = rssKb(d.pid);
  await h.cluster.stop('fast');
  try {
    await waitFor(async () => (await d.healthz()).status === 503, { what: 'healthz 503' });
    clients.forEach((c, k) => perClient[k].forEach((f) => c.send(f)));
    await sleep(2500);
    const m = (await d.get('/metrics')).body;
    const read = metric(m, 'journeyd_frames_in_total{type="answer"}');
    assert.ok(metric(m, 'journeyd_rx_paused') >= 1, 'some connections have reading paused');
    assert.ok(metric(m, 'journeyd_queue_depth') <= 64, 'the inbound queue stays within queue_capacity');
    assert.ok(read < 600, `the daemon read ${read} of ${frames.length} answers: the rest waits in the kernel, not in memory`);
    assert.equal(metric(m, 'journeyd_acks_total'), 0, 'nothing is acked while the database is down');
    // ASan keeps freed memory in quarantine, so RSS only means something in a normal build.
    if (!/asan/.test(journeydBin())) {
      const grown = rssKb(d.pid) - rssBefore;
      assert.ok(grown < 3000, `RSS grew ${grown} kB for 4 MB offered: bounded`);
    }
    for (const c of clients) assert.equal(c.closeInfo, null, 'connections stay open');

    await h.cluster.start();
    const ids = frames.map((f) => f.id);
    await waitFor(async () => (await h.countAnswers(ids)).n === ids.length, { what: 'every answer stored', timeoutMs: 60000, intervalMs: 500 });
    assert.deepEqual(await h.countAnswers(ids), { n: ids.length, d: ids.length }, 'each answer exactly once');
    for (let k = 0; k < clients.length; k++) {
      const { pending } = await clients[k].settle(perClient[k].map((f) => f.id), 30000);
      assert.equal(pending.length, 0, 'every answer of every connection acked');
    }
  } finally {
    if (!h.cluster.running) await h.cluster.start();
  }
});

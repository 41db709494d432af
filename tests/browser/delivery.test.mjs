// Delivery through a broken network: answers given while the WebSocket is cut, acks that never
// arrive, and a reload with answers still in the outbox all end as exactly one row per answer.
import { after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, survey, rid, answersOf, outbox, waitFor, sleep, tcpProxy, allowOrigin, journeyErrors } from './lib.mjs';

const env = setup(import.meta.url);
const { h } = env;
let proxy;
after(() => proxy && proxy.close());

async function start() {
  if (!proxy) {
    proxy = await tcpProxy();
    await allowOrigin(h, proxy.url); // the page is served through the proxy: its origin must be allowed
    proxy.target = (await env.daemon()).port;
  }
  proxy.restore();
  return proxy;
}

const answerFrames = (page) => page.frames_.sent.filter((f) => f.type === 'answer');

async function oneRowPerAnswer(page, n) {
  const r = await rid(page);
  const a = await waitFor(async () => {
    const rows = await answersOf(h, r);
    return rows.length >= n && rows;
  }, { timeoutMs: 45000, what: `${n} rows` });
  await sleep(1500); // a late duplicate would show up here
  const again = await answersOf(h, r);
  assert.equal(again.length, n, `exactly ${n} rows, got ${again.length}`);
  const keys = again.map((x) => x.key);
  assert.equal(new Set(keys).size, n, `one row per question: ${keys}`);
  return again;
}

h.test('answers given while the WebSocket is cut are delivered once after it comes back', async () => {
  const p = await start();
  const page = await env.page();
  await page.goto(`${p.url}/demo/product.html`);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  const socketsBefore = page.sockets;

  p.cut();
  await dlg.getByText('Happy', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByText('Compare options').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByRole('button', { name: 'Send' }).click(); // the optional text is skipped
  await dlg.getByText('Thank you!').waitFor();
  await sleep(1500);
  // Nothing reached the server; both answers wait in the outbox.
  assert.equal((await answersOf(h, await rid(page))).length, 0);
  assert.equal((await outbox(page)).filter((f) => f.type === 'answer').length, 2);

  p.restore();
  const a = await oneRowPerAnswer(page, 2);
  assert.deepEqual(a.map((x) => x.key).sort(), ['feel', 'looking-for']);
  assert.ok(page.sockets > socketsBefore, 'the widget reconnected');
  await waitFor(async () => (await outbox(page)).length === 0, { what: 'empty outbox', timeoutMs: 10000 });
  await page.context().close();
});

h.test('reconnects back off exponentially: a 12 s outage costs a handful of attempts, not a flood', async () => {
  const p = await start();
  const page = await env.page();
  await page.goto(`${p.url}/demo/index.html`);
  await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  const at = [];
  page.on('websocket', () => at.push(Date.now()));
  p.cut();
  const t0 = Date.now();
  await sleep(12000);
  p.restore();
  // Delays are uniform in [0, min(30 s, 0.5 s * 2^n)]: about 6 attempts in 12 s on average.
  assert.ok(at.length >= 2 && at.length <= 12, `${at.length} attempts in 12 s`);
  const late = at.filter((t) => t - t0 > 6000).length;
  assert.ok(late <= 4, `${late} attempts in the second half of the outage`);
  await waitFor(() => page.frames_.received.filter((f) => f.type === 'welcome').length === 2, { timeoutMs: 40000, what: 'welcome after the outage' });
  await page.context().close();
});

h.test('an answer whose ack is lost is resent with the same id and stored once', async () => {
  const p = await start();
  const page = await env.page();
  await page.goto(`${p.url}/demo/product.html`);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });

  p.deafen(); // the daemon still gets the frame and commits it, but its ack never arrives
  await dlg.getByText('Very unhappy').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  const r = await rid(page);
  await waitFor(async () => (await answersOf(h, r)).length === 1, { what: 'the row of the unacked answer' });
  assert.equal((await outbox(page)).filter((f) => f.type === 'answer').length, 1, 'still in the outbox: not acked');
  const id = answerFrames(page)[0].id;

  p.cut();
  p.restore();
  await waitFor(() => answerFrames(page).filter((f) => f.id === id).length >= 2, { timeoutMs: 45000, what: 'the resend' });
  await waitFor(async () => (await outbox(page)).length === 0, { what: 'the ack of the resend', timeoutMs: 15000 });
  const rows = await oneRowPerAnswer(page, 1);
  assert.equal(rows[0].client_id, id);
  assert.equal(rows[0].emotion, 1);
  await page.context().close();
});

h.test('a reload with answers still in the outbox delivers each once, with the same ids', async () => {
  const p = await start();
  const page = await env.page();
  await page.goto(`${p.url}/demo/product.html`);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });

  // First answer: stored, ack lost. Second answer: never reaches the daemon.
  p.deafen();
  await dlg.getByText('Neutral').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  const r = await rid(page);
  await waitFor(async () => (await answersOf(h, r)).length === 1, { what: 'first row' });
  p.cut();
  await dlg.getByText('Just browsing').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  const pending = (await outbox(page)).filter((f) => f.type === 'answer');
  assert.equal(pending.length, 2);

  p.restore();
  const before = new Set(answerFrames(page).map((f) => f.id));
  page.frames_.sent.length = 0;
  await page.reload();
  // The new page resends both from the outbox without being asked again (the survey is on cooldown).
  const a = await oneRowPerAnswer(page, 2);
  assert.deepEqual(new Set(a.map((x) => x.client_id)), new Set(pending.map((f) => f.id)));
  const resent = answerFrames(page).map((f) => f.id);
  assert.ok(resent.length >= 1 && resent.every((id) => pending.some((f) => f.id === id)), 'only outbox ids are sent after the reload');
  assert.ok(before.size >= 1);
  await waitFor(async () => (await outbox(page)).length === 0, { what: 'empty outbox', timeoutMs: 15000 });
  assert.equal(await page.getByRole('dialog').count(), 0, 'an answered survey is not shown again');
  await page.context().close();
});

h.test('two tabs share one outbox: an answer left by a closed tab is delivered once by the other', async () => {
  const p = await start();
  const context = await env.browser.newContext();
  const a = await context.newPage();
  const b = await context.newPage();
  const { watch } = await import('./lib.mjs');
  watch(a);
  watch(b);
  await a.goto(`${p.url}/demo/index.html`);
  await a.waitForFunction(() => localStorage.getItem('journey.rid'));
  await b.goto(`${p.url}/demo/product.html`);
  const dlg = survey(b, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  p.deafen();
  await dlg.getByText('Very happy').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  const r = await rid(b);
  await waitFor(async () => (await answersOf(h, r)).length === 1, { what: 'row' });
  const id = answerFrames(b)[0].id;
  p.cut();
  p.restore();
  await b.close(); // tab b goes away before its answer was acked: tab a takes it over
  await waitFor(() => answerFrames(a).some((f) => f.id === id), { timeoutMs: 45000, what: 'tab a resending the answer of tab b' });
  await waitFor(async () => (await outbox(a)).length === 0, { what: 'empty shared outbox', timeoutMs: 15000 });
  assert.equal((await answersOf(h, r)).length, 1);
  await context.close();
});

h.test('the daemon stops (SIGTERM) and another one starts: answers given meanwhile are stored once', async () => {
  const p = await start();
  const page = await env.page();
  await page.goto(`${p.url}/demo/product.html`);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  const old = await env.daemon();
  await old.stop('SIGTERM');
  await waitFor(() => page.frames_.received.length && page.sockets >= 2, { what: 'a reconnect attempt', timeoutMs: 15000 });
  await dlg.getByText('Unhappy', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByText('Compare options').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByLabel('Anything on your mind?').fill('Sizes are confusing');
  await dlg.getByRole('button', { name: 'Send' }).click();
  await sleep(1000);
  assert.equal((await answersOf(h, await rid(page))).length, 0);
  const fresh = await h.startDaemon({ args: ['--static-dir', env.dist] });
  p.target = fresh.port;
  const a = await oneRowPerAnswer(page, 3);
  assert.equal(a.find((x) => x.key === 'thoughts').thought, 'Sizes are confusing');
  assert.equal(journeyErrors(page).length, 0, 'an outage is not reported as a disallowed origin');
  await page.context().close();
});

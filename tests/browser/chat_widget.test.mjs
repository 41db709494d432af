// The visitor side of live chat (docs/chat.md, "Visitor protocol") in real Chromium against the
// real daemon: the launcher (only on sites with an agent, never with data-chat="off"), messages
// stored once and acked with their seq, agent replies, typing and receipts arriving live through
// LISTEN/NOTIFY (the agent is played with the SQL functions the daemon's console path calls),
// markup rendered as text, the outbox across an outage and a reload, the offline form, the
// end-of-chat rating, axe, and chat.js loaded cross-origin under Trusted Types.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { after } from 'node:test';
import { setup, waitFor, sleep, journeyErrors, cspViolations, tcpProxy, allowOrigin, SITE_KEY } from './lib.mjs';
import { validateFrame, schemaTypes } from '../lib/harness.mjs';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');
const env = setup(import.meta.url);
const { h } = env;

const XSS = '<img src=x onerror=alert(1)>';
const CHAT_KEY = `journey.chat.${SITE_KEY}`;
let daemonP;
let agentId;

// One daemon for the file, reloading the catalog every second: welcome.chat.enabled follows the
// agent accounts, and new allowed origins apply quickly.
// The demo seed's agent is disabled first: chat starts off for this file's site.
function chatDaemon() {
  daemonP ??= h.pg
    .query('SELECT jd_agent_disable(id) FROM agents WHERE disabled_at IS NULL')
    .then(() => h.startDaemon({ args: ['--static-dir', env.dist, '--catalog-refresh', '1'] }));
  return daemonP;
}

// The raw frames of a page's WebSockets (lib.mjs's record stamps each received frame with its
// own "at", which hides chat.message's "at").
function recordFrames(page) {
  const raw = { sent: [], received: [] };
  const parse = (p) => {
    try {
      return JSON.parse(String(p));
    } catch {
      return { raw: String(p) };
    }
  };
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => raw.sent.push(parse(f.payload)));
    ws.on('framereceived', (f) => raw.received.push(parse(f.payload)));
  });
  page.raw = raw;
  return page;
}

// A host page on its own origin (a real local server: Chromium's local-network checks block a
// routed page from opening a socket to 127.0.0.1), embedding widget.js from the daemon under a
// strict CSP with Trusted Types. /off has data-chat="off" on the script tag.
let hostP;
let hostSrv;
after(() => hostSrv && new Promise((r) => hostSrv.close(r)));
function hostPage(d) {
  hostP ??= (async () => {
    const srv = (hostSrv = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/html');
      res.setHeader(
        'content-security-policy',
        `default-src 'none'; script-src ${d.url}; connect-src ${d.url.replace('http', 'ws')}; require-trusted-types-for 'script'; trusted-types journeyd`,
      );
      const off = req.url === '/off' ? ' data-chat="off"' : '';
      res.end(`<!doctype html><html lang="en"><head><title>Host shop</title></head><body><main><h1>Host shop</h1></main>
        <script async src="${d.url}/widget.js" data-site="${SITE_KEY}"${off}></script></body></html>`);
    }));
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${srv.address().port}`;
    await allowOrigin(h, url);
    await sleep(1500); // the catalog refresh picks up the new origin
    return url;
  })();
  return hostP;
}

const q = (sql, params) => h.pg.query(sql, params).then((r) => r.rows);

async function ensureAgent() {
  if (agentId) return agentId;
  const cat = await h.catalog();
  const [r] = await q("SELECT jd_agent_create($1, 'anna@example.com', 'Anna', 'admin', 'correct horse battery') AS id", [cat.siteId]);
  agentId = Number(r.id);
  return agentId;
}

// Anna online (a heartbeat, as the daemon writes for a connected console) or nobody online.
async function presence(on) {
  if (on) await q("SELECT jd_agent_presence($1, 'chat-widget-test', true)", [agentId]);
  // Through jd_agent_presence, which notifies: instances refresh their presence cache.
  else await q('SELECT jd_agent_presence(agent_id, instance, false) FROM agent_presence');
}

// An agent message (or note), written the way the console's chat.message is: jd_chat_insert.
async function agentSays(conv, body, kind = 'text') {
  const cat = await h.catalog();
  const id = randomUUID();
  const [r] = await q('SELECT jd_chat_insert($1::jsonb) AS seqs', [
    JSON.stringify([{ conversation_id: conv, site_id: cat.siteId, client_id: id, sender: 'agent', agent_id: agentId, kind, body }]),
  ]);
  return r.seqs[id];
}

const messages = (conv) =>
  q('SELECT seq::int, client_id, sender, kind, body, page_url, stage_id, touchpoint_id FROM messages WHERE conversation_id = $1 ORDER BY seq', [conv]);

const launcher = (page) => page.getByRole('button', { name: /^Chat/ });
const panel = (page) => page.getByRole('dialog', { name: 'Chat with us' });

// The panel's message list, in DOM order: seq (null while pending), body, receipt line, classes.
const bubbles = (page) =>
  page.evaluate(() => {
    const r = document.querySelector('[data-journey-chat]')?.shadowRoot;
    return r
      ? [...r.querySelectorAll('.lg .g')].map((li) => ({
          seq: li.dataset.s ? Number(li.dataset.s) : null,
          body: li.querySelector('.bb').textContent,
          meta: li.querySelector('.mt').textContent,
          cls: li.className,
        }))
      : [];
  });

const chatState = (page) => page.evaluate((k) => JSON.parse(localStorage.getItem(k) || 'null'), CHAT_KEY);
const focusedId = (page) => page.evaluate(() => document.activeElement?.shadowRoot?.activeElement?.id ?? null);

// Sends a message the way a visitor does: type into the box, press Enter. Returns the frame.
async function say(page, text) {
  const old = new Set(page.frames_.sent.map((f) => f.id));
  const box = panel(page).getByRole('textbox', { name: 'Your message' });
  await box.fill(text);
  await box.press('Enter');
  return waitFor(() => page.frames_.sent.find((f) => f.type === 'chat.message' && f.body === text && !old.has(f.id)), { what: `chat.message "${text}" sent` });
}

const acked = (page, id) => waitFor(() => page.frames_.received.find((f) => f.type === 'ack' && f.ids.includes(id)), { timeoutMs: 15000, what: `ack of ${id}` });

// The transcript shown equals the visitor's view of the database: every non-note message once,
// in seq order, none pending.
async function assertTranscript(page, conv) {
  const want = (await messages(conv)).filter((m) => m.kind !== 'note').map((m) => ({ seq: m.seq, body: m.body }));
  const got = await waitFor(async () => {
    const b = await bubbles(page);
    return b.length === want.length && b.every((x) => x.seq !== null) && b;
  }, { timeoutMs: 15000, what: `${want.length} stored bubbles` });
  assert.deepEqual(got.map((b) => ({ seq: b.seq, body: b.body })), want);
}

// Every frame the page received matches its schema in proto/schema/, and so does every frame it
// sent whose type is not a chat one (chat.message and chat.typing name server frames there).
function assertFramesValid(page) {
  const types = new Set(schemaTypes());
  const bad = [];
  for (const [dir, list] of [['sent', page.raw.sent], ['received', page.raw.received]])
    for (const f of list) {
      if (dir === 'sent' && (!types.has(f.type) || f.type.startsWith('chat.'))) continue;
      const r = validateFrame(f);
      if (!r.valid) bad.push(`${dir} ${JSON.stringify(f).slice(0, 300)}: ${r.errors.join('; ')}`);
    }
  assert.deepEqual(bad, []);
}

async function axe(page) {
  if (!(await page.evaluate(() => !!window.axe))) await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations', 'passes'] }));
  const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const inShadow = r.passes.flatMap((p) => p.nodes).filter((n) => Array.isArray(n.target[0]) || n.target.length > 1);
  assert.ok(inShadow.length > 5, 'axe looked inside the shadow root');
  assert.deepEqual(bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => JSON.stringify(n.target)).join(', ')}`), []);
}

h.test('the launcher appears only when the site has an agent, and never with data-chat="off"', async () => {
  const d = await chatDaemon();
  const page = await env.page();
  const loads = [];
  page.on('request', (r) => r.url().includes('/chat.js') && loads.push(r.url()));
  await page.goto(`${d.url}/demo/index.html`);
  const w = await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  assert.deepEqual(w.chat, { enabled: false });
  await sleep(800);
  assert.equal(await page.locator('[data-journey-chat]').count(), 0, 'no launcher without agents');
  assert.deepEqual(loads, [], 'chat.js is not even loaded');

  // An agent account enables chat at the next catalog refresh.
  await ensureAgent();
  await waitFor(async () => {
    await page.reload();
    return launcher(page).waitFor({ timeout: 4000 }).then(() => true, () => false);
  }, { timeoutMs: 20000, intervalMs: 200, what: 'the launcher after the catalog refresh' });
  const w2 = page.frames_.received.filter((f) => f.type === 'welcome').pop();
  assert.deepEqual(w2.chat, { enabled: true });
  assert.equal(await launcher(page).getAttribute('aria-expanded'), 'false');
  assert.match(loads.at(-1), /\/chat\.js\?v=[0-9a-f]{12}$/);
  // Opening the panel starts no conversation: only the first message does.
  await launcher(page).click();
  await panel(page).waitFor();
  assert.equal(await launcher(page).getAttribute('aria-expanded'), 'true');
  assert.equal(await focusedId(page), 'tx', 'the focus moves to the message box');
  await page.keyboard.press('Escape');
  await panel(page).waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.activeElement?.shadowRoot?.activeElement?.className), 'cl', 'Escape gives the focus back to the launcher');
  await sleep(300);
  assert.equal((await q('SELECT count(*)::int AS n FROM conversations'))[0].n, 0);
  assert.equal(page.frames_.sent.filter((f) => f.type.startsWith('chat.')).length, 0);
  assert.deepEqual(cspViolations(page), []);
  assert.deepEqual(journeyErrors(page), []);
  await page.context().close();

  // data-chat="off" on the script tag: no launcher, no chat.js, although the site has chat.
  const host = await hostPage(d);
  const off = await env.page();
  const offLoads = [];
  off.on('request', (r) => r.url().includes('/chat.js') && offLoads.push(r.url()));
  await off.goto(`${host}/off`);
  const w3 = await waitFor(() => off.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  assert.deepEqual(w3.chat, { enabled: true });
  await sleep(800);
  assert.equal(await off.locator('[data-journey-chat]').count(), 0);
  assert.deepEqual(offLoads, []);
  await off.context().close();
});

h.test('a message is stored once and acked with its seq; replies, typing, presence and receipts arrive live; markup stays text', async () => {
  const d = await chatDaemon();
  const cat = await h.catalog();
  await ensureAgent();
  await presence(true);
  const page = recordFrames(await env.page());
  const dialogs = [];
  page.on('dialog', (dl) => {
    dialogs.push(dl.message());
    dl.dismiss().catch(() => {});
  });
  await page.goto(`${d.url}/demo/index.html`);
  await launcher(page).click();
  const p = panel(page);
  await p.waitFor();
  // Before the chat starts the panel offers the optional e-mail (in case nobody answers).
  await p.getByLabel('Your e-mail (optional)').waitFor();

  const text = `Does it ship on Sunday? ${XSS}`;
  const f = await say(page, text);
  // The first message opens the conversation with the page's context, then goes out.
  const open = page.frames_.sent.find((x) => x.type === 'chat.open');
  assert.equal(open.page.url, `${d.url}/demo/index.html`);
  assert.equal(open.stage, 'interest');
  assert.equal(open.touchpoint, 'website');
  assert.ok(page.frames_.sent.indexOf(open) < page.frames_.sent.indexOf(f), 'chat.open before chat.message');
  const opened = page.frames_.received.find((x) => x.type === 'chat.opened');
  assert.equal(opened.re, open.id);
  const conv = f.conversation;
  assert.equal(conv, opened.conversation);
  assert.equal(f.kind, 'text');
  assert.equal(f.body, text);
  assert.deepEqual(f.page, { url: `${d.url}/demo/index.html` });
  assert.equal(f.stage, 'interest');
  assert.equal(f.touchpoint, 'website');
  const ack = await acked(page, f.id);
  const rows = await messages(conv);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].client_id, f.id);
  assert.equal(rows[0].sender, 'visitor');
  assert.equal(rows[0].kind, 'text');
  assert.equal(rows[0].body, text, 'stored exactly as written');
  assert.equal(rows[0].page_url, `${d.url}/demo/index.html`);
  assert.equal(Number(rows[0].stage_id), cat.stages.interest);
  assert.equal(Number(rows[0].touchpoint_id), cat.touchpoints.website);
  assert.deepEqual(ack.seq, { [f.id]: rows[0].seq });
  await waitFor(async () => {
    const b = await bubbles(page);
    return b.length === 1 && b[0].seq === rows[0].seq && !b[0].cls.includes('pd') && b[0].meta === '';
  }, { what: 'the message leaves the sending state' });
  const st = await chatState(page);
  assert.equal(st.c, conv);
  assert.match(st.k, /^jdc_[A-Za-z0-9_-]{43}$/, 'the token is kept next to the outbox');
  assert.deepEqual(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('journey.m.'))), [], 'outbox empty after the ack');
  await p.getByText('We are online').waitFor();

  // The agent types, then answers with markup: it shows as text, live.
  await q("SELECT jd_chat_typing($1, 'agent', true, $2)", [conv, agentId]);
  await p.getByRole('status').getByText('Anna is typing…').waitFor({ timeout: 10000 });
  const aSeq = await agentSays(conv, XSS);
  await p.getByRole('log').getByText(XSS, { exact: true }).waitFor({ timeout: 10000 });
  await p.getByText('Anna is online').waitFor();
  assert.equal(await p.getByText('Anna is typing…').count(), 0, 'a reply ends the typing indicator');
  const b = await bubbles(page);
  assert.deepEqual(b.map((x) => [x.seq, x.body]), [[rows[0].seq, text], [aSeq, XSS]]);
  assert.equal(await page.evaluate(() => document.querySelector('[data-journey-chat]').shadowRoot.querySelectorAll('img').length), 0);
  assert.equal(await page.evaluate(() => document.querySelectorAll('img').length), 0);

  // Rendered while the panel is open and the page focused: delivered and read.
  await waitFor(async () => {
    const [c] = await q('SELECT visitor_delivered_seq::int AS d, visitor_read_seq::int AS r FROM conversations WHERE id = $1', [conv]);
    return c.d === aSeq && c.r === aSeq;
  }, { what: 'visitor receipts in the database' });
  const reads = page.frames_.sent.filter((x) => x.type === 'chat.read');
  assert.ok(reads.some((x) => x.what === 'read' && x.upto_seq === aSeq && x.conversation === conv));

  // The agent's receipts for the visitor's last message.
  await q("SELECT jd_chat_mark($1, $2, 'delivered', 'agent', $3)", [conv, rows[0].seq, agentId]);
  await waitFor(async () => (await bubbles(page))[0].meta === 'Delivered', { what: 'Delivered' });
  await q("SELECT jd_chat_mark($1, $2, 'read', 'agent', $3)", [conv, rows[0].seq, agentId]);
  await waitFor(async () => (await bubbles(page))[0].meta === 'Read', { what: 'Read' });

  // The visitor types: chat.typing on, stored as a typing deadline; clearing the box turns it off.
  const box = p.getByRole('textbox', { name: 'Your message' });
  await box.pressSequentially('Thanks');
  const on = await waitFor(() => page.frames_.sent.find((x) => x.type === 'chat.typing' && x.on === true), { what: 'typing on' });
  assert.equal(on.conversation, conv);
  assert.equal(page.frames_.sent.filter((x) => x.type === 'chat.typing' && x.on).length, 1, 'at most one typing frame per 3 s');
  await waitFor(async () => (await q('SELECT visitor_typing_until > now() AS t FROM conversations WHERE id = $1', [conv]))[0].t, { what: 'visitor typing stored' });
  await box.fill('');
  await waitFor(() => page.frames_.sent.find((x) => x.type === 'chat.typing' && x.on === false), { what: 'typing off' });

  // Another message from the visitor with markup, a second agent reply: all text, in order.
  const f2 = await say(page, `<b>bold?</b> ${XSS}`);
  await acked(page, f2.id);
  await agentSays(conv, '<script>alert(2)</script>');
  await assertTranscript(page, conv);
  assert.equal((await bubbles(page)).filter((x) => x.meta).length, 0, 'the receipt line moved to the newest visitor message (not read yet)');

  // The panel closed: a reply is delivered (rendered) but unread; the launcher says so.
  await page.keyboard.press('Escape');
  await p.waitFor({ state: 'hidden' });
  const later = await agentSays(conv, 'Anything else?');
  await page.getByRole('button', { name: 'Chat, 1 unread' }).waitFor({ timeout: 10000 });
  await waitFor(async () => (await q('SELECT visitor_delivered_seq::int AS d FROM conversations WHERE id = $1', [conv]))[0].d === later, { what: 'delivered' });
  assert.ok((await q('SELECT visitor_read_seq::int AS r FROM conversations WHERE id = $1', [conv]))[0].r < later, 'not read while the panel is closed');
  await launcher(page).click();
  await waitFor(async () => (await q('SELECT visitor_read_seq::int AS r FROM conversations WHERE id = $1', [conv]))[0].r === later, { what: 'read once opened' });
  await page.getByRole('button', { name: 'Chat', exact: true }).waitFor();

  // The agent closes the conversation: a system line, then the rating is offered.
  await q('SELECT jd_chat_close($1, $2)', [conv, agentId]);
  await p.getByText('Anna closed the conversation.').waitFor({ timeout: 10000 });
  await p.getByRole('radiogroup', { name: 'How do you feel about this chat?' }).waitFor();
  assert.equal(await p.getByRole('button', { name: 'End chat' }).count(), 0);
  await p.getByRole('button', { name: 'No thanks' }).click();
  await p.getByRole('radiogroup').waitFor({ state: 'hidden' });
  assert.equal((await chatState(page)).r, conv, 'declined: not asked again');

  assert.deepEqual(dialogs, [], 'no script ran');
  assert.deepEqual(cspViolations(page), []);
  assert.deepEqual(journeyErrors(page), []);
  assertFramesValid(page);
  await page.context().close();
});

h.test('two tabs: the second follows the conversation the first opened; both show every message once', async () => {
  const d = await chatDaemon();
  await ensureAgent();
  await presence(true);
  const a = await env.page();
  const context = a.context();
  await a.goto(`${d.url}/demo/index.html`);
  const { watch } = await import('./lib.mjs');
  const b = watch(await context.newPage());
  await b.goto(`${d.url}/demo/product.html`);
  await launcher(b).waitFor({ timeout: 10000 });
  await launcher(a).click();
  const f1 = await say(a, 'from tab A');
  await acked(a, f1.id);
  const conv = f1.conversation;
  // Tab B saw journey.chat change and resumed the same conversation.
  await waitFor(() => b.frames_.sent.find((f) => f.type === 'chat.resume' && f.conversation === conv), { what: 'tab B resumes' });
  await launcher(b).click();
  await panel(b).getByText('from tab A').waitFor({ timeout: 10000 });
  const f2 = await say(b, 'from tab B');
  await acked(b, f2.id);
  assert.equal(f2.conversation, conv);
  assert.equal(f2.stage, 'consideration', "tab B's own page context");
  await agentSays(conv, 'hello both');
  await assertTranscript(a, conv);
  await assertTranscript(b, conv);
  assert.equal((await q('SELECT count(*)::int AS n FROM conversations WHERE respondent_id = (SELECT respondent_id FROM conversations WHERE id = $1)', [conv]))[0].n, 1, 'one conversation');
  await context.close();
});

h.test('an outage: the unacked message is resent once after chat.resume; a reload resumes in seq order without duplicates; notes stay hidden', async () => {
  const d = await chatDaemon();
  await ensureAgent();
  await presence(true);
  const proxy = await tcpProxy();
  proxy.target = d.port;
  await allowOrigin(h, proxy.url);
  await sleep(1500); // the catalog refresh picks up the proxy's origin
  const page = await env.page();
  await page.goto(`${proxy.url}/demo/index.html`);
  await launcher(page).click();
  const f1 = await say(page, 'first');
  await acked(page, f1.id);
  const conv = f1.conversation;
  await agentSays(conv, 'reply one');
  await panel(page).getByText('reply one').waitFor({ timeout: 10000 });

  // Acks get lost: the message is stored, but the widget keeps it as sending.
  proxy.deafen();
  const f2 = await say(page, 'second');
  await waitFor(async () => (await messages(conv)).some((m) => m.client_id === f2.id), { what: 'second stored' });
  await sleep(300);
  assert.equal((await bubbles(page)).at(-1).meta, 'Sending…');
  assert.ok(await page.evaluate((id) => Object.keys(localStorage).some((k) => k.endsWith('.' + id)), f2.id), 'kept in the outbox');

  // The network is gone; the agent writes (and a private note); the visitor writes again.
  proxy.cut();
  await agentSays(conv, 'reply while you were away');
  await agentSays(conv, 'internal: VIP customer', 'note');
  await sleep(300);
  const sentBefore = page.frames_.sent.length;
  await panel(page).getByRole('textbox', { name: 'Your message' }).fill('third');
  await panel(page).getByRole('textbox', { name: 'Your message' }).press('Enter');
  await sleep(300);
  const third = await page.evaluate(() =>
    Object.keys(localStorage).filter((k) => k.startsWith('journey.m.')).map((k) => JSON.parse(localStorage.getItem(k)).f).find((f) => f.body === 'third'),
  );
  assert.ok(third, 'third waits in the outbox');
  const pendingNow = await bubbles(page);
  assert.deepEqual(pendingNow.slice(-2).map((b) => [b.body, b.seq, b.meta]), [['second', null, 'Sending…'], ['third', null, 'Sending…']], 'pending messages at the end, marked sending');

  proxy.restore();
  await acked(page, third.id);
  await acked(page, f2.id);
  const since = page.frames_.sent.slice(sentBefore);
  const resume = since.find((x) => x.type === 'chat.resume');
  assert.ok(resume, 'chat.resume after the reconnect');
  assert.equal(resume.conversation, conv);
  assert.match(resume.token, /^jdc_/);
  assert.ok(resume.after_seq >= (await messages(conv)).find((m) => m.client_id === f1.id).seq, 'after_seq is the highest seq seen');
  const resent = since.filter((x) => x.type === 'chat.message');
  assert.ok(resent.length >= 2);
  assert.ok(since.indexOf(resume) < since.indexOf(resent[0]), 'messages are resent only after the resume');
  const ack2 = page.frames_.received.filter((x) => x.type === 'ack' && x.ids.includes(f2.id)).pop();
  assert.equal(ack2.seq[f2.id], (await messages(conv)).find((m) => m.client_id === f2.id).seq, 'the resend is acked with the first seq');
  const rows = await messages(conv);
  assert.equal(new Set(rows.map((m) => m.client_id)).size, rows.length, 'every client id once');
  assert.deepEqual(rows.map((m) => m.seq), rows.map((_, i) => i + 1), 'gapless');
  assert.deepEqual(rows.filter((m) => m.sender === 'visitor').map((m) => m.body), ['first', 'second', 'third']);
  await assertTranscript(page, conv);
  assert.equal(await panel(page).getByText('internal: VIP customer').count(), 0, 'notes never reach the visitor');

  // A reload: the panel comes back open, resumes from 0 and shows everything once, in order.
  const mark = page.frames_.sent.length;
  await page.reload();
  await panel(page).waitFor({ timeout: 10000 });
  await assertTranscript(page, conv);
  const r2 = page.frames_.sent.slice(mark).find((x) => x.type === 'chat.resume');
  assert.equal(r2.after_seq, 0);
  assert.equal(page.frames_.sent.slice(mark).filter((x) => x.type === 'chat.open').length, 0, 'no new conversation');
  await agentSays(conv, 'still here');
  await panel(page).getByText('still here').waitFor({ timeout: 10000 });
  await assertTranscript(page, conv);
  assert.deepEqual(cspViolations(page), []);
  assert.deepEqual(journeyErrors(page), []);
  await page.context().close();
  await proxy.close();
});

h.test('nobody online: the offline form stores kind=offline and the e-mail; ending the chat offers the rating, stored as a chat answer', async () => {
  const d = await chatDaemon();
  await ensureAgent();
  await presence(false);
  const page = await env.page();
  await page.goto(`${d.url}/demo/index.html`);
  await launcher(page).click();
  const p = panel(page);
  // chat.presence follows the welcome: the panel knows nobody is online before any message.
  await p.getByText('We are offline').waitFor();
  const email = p.getByLabel('Your e-mail (optional)');
  await email.fill('not-an-email');
  const box = p.getByRole('textbox', { name: 'Your message' });
  await box.fill('Do you ship to Norway?');
  await box.press('Enter');
  await p.getByText('Please enter a valid e-mail address.').waitFor();
  assert.equal(await email.getAttribute('aria-invalid'), 'true');
  assert.equal(await focusedId(page), 'em');
  assert.equal(page.frames_.sent.filter((f) => f.type.startsWith('chat.')).length, 0, 'nothing sent');
  await email.fill('ana@example.com');
  await p.getByRole('button', { name: 'Send' }).click();
  const f = await waitFor(() => page.frames_.sent.find((x) => x.type === 'chat.message'), { what: 'chat.message' });
  await acked(page, f.id);
  const conv = f.conversation;
  assert.equal(f.kind, 'offline');
  const mail = await waitFor(() => page.frames_.sent.find((x) => x.type === 'chat.email'), { what: 'chat.email' });
  assert.equal(mail.email, 'ana@example.com');
  assert.equal(mail.conversation, conv);
  await acked(page, mail.id);
  const rows = await messages(conv);
  assert.deepEqual(rows.map((m) => [m.sender, m.kind, m.body]), [['visitor', 'offline', 'Do you ship to Norway?']]);
  const [c] = await q('SELECT visitor_email, status FROM conversations WHERE id = $1', [conv]);
  assert.equal(c.visitor_email, 'ana@example.com');
  assert.equal(c.status, 'waiting');
  await p.getByText('We are offline').waitFor();
  await p.getByText('Nobody is online right now.', { exact: false }).waitFor();
  await email.waitFor({ state: 'hidden' }); // given once

  // The visitor ends the chat: the system line, then the rating with the focus on it.
  await p.getByRole('button', { name: 'End chat' }).click();
  await p.getByText('The visitor ended the conversation.').waitFor({ timeout: 10000 });
  const group = p.getByRole('radiogroup', { name: 'How do you feel about this chat?' });
  await group.waitFor();
  await waitFor(async () => (await page.evaluate(() => document.activeElement?.shadowRoot?.activeElement?.name)) === 'emo', { what: 'focus on the rating' });
  assert.equal((await q('SELECT status FROM conversations WHERE id = $1', [conv]))[0].status, 'closed');
  await p.getByRole('button', { name: 'Send rating' }).click();
  await p.getByText('Please choose a face.').waitFor();
  await group.getByText('Happy', { exact: true }).click();
  await p.getByLabel('Anything to add? (optional)').fill('Quick and kind');
  await p.getByRole('button', { name: 'Send rating' }).click();
  await p.getByText('Thank you for your feedback!').waitFor();
  const rating = page.frames_.sent.find((x) => x.type === 'chat.rating');
  const { id: _id, ...ratingFields } = rating;
  assert.deepEqual(ratingFields, { type: 'chat.rating', emotion: 4, text: 'Quick and kind', conversation: conv });
  await acked(page, rating.id);
  const [a] = await q("SELECT source, emotion, thought, value, respondent_id FROM answers WHERE client_id = $1", [rating.id]);
  assert.equal(a.source, 'chat');
  assert.equal(a.emotion, 4);
  assert.equal(a.thought, 'Quick and kind');
  assert.equal(a.value.conversation, conv);
  assert.equal(a.respondent_id, await page.evaluate(() => localStorage.getItem('journey.rid')));
  // A reload does not ask again.
  await page.reload();
  await panel(page).waitFor({ timeout: 10000 });
  await panel(page).getByText('The visitor ended the conversation.').waitFor({ timeout: 10000 });
  await sleep(500);
  assert.equal(await panel(page).getByRole('radiogroup').count(), 0);
  assert.deepEqual(cspViolations(page), []);
  assert.deepEqual(journeyErrors(page), []);
  await page.context().close();
});

h.test('axe: the open panel with messages, the offline form and the rating', async () => {
  const d = await chatDaemon();
  await ensureAgent();
  await presence(false);
  const page = await env.page({ bypassCSP: true });
  await page.goto(`${d.url}/demo/index.html`);
  await launcher(page).click();
  const p = panel(page);
  await p.waitFor();
  await axe(page);
  const f = await say(page, 'Hello?');
  await acked(page, f.id);
  await p.getByText('We are offline').waitFor();
  // An agent comes online: chat.presence flips the panel back to live chat.
  await presence(true);
  await p.getByText('We are online').waitFor({ timeout: 15000 });
  assert.equal(await p.getByText('Nobody is online right now.', { exact: false }).isVisible(), false);
  await agentSays(f.conversation, 'Hi, how can I help?');
  await p.getByText('Hi, how can I help?').waitFor({ timeout: 10000 });
  await axe(page);
  await p.getByRole('button', { name: 'End chat' }).click();
  await p.getByRole('radiogroup', { name: 'How do you feel about this chat?' }).waitFor({ timeout: 10000 });
  await axe(page);
  await page.context().close();
});

h.test('cross-origin embed under Trusted Types: chat.js loads through the journeyd policy', async () => {
  const d = await chatDaemon();
  await ensureAgent();
  const host = await hostPage(d);
  const page = await env.page();
  await page.goto(host);
  await launcher(page).waitFor({ timeout: 15000 });
  await launcher(page).click();
  await panel(page).getByRole('textbox', { name: 'Your message' }).waitFor();
  assert.deepEqual(cspViolations(page), []);
  assert.deepEqual(journeyErrors(page), []);
  await page.context().close();
});

// The last tests change the site's consent mode (the catalog reloads every second) and put it back.
async function consentMode(mode) {
  await q('UPDATE sites SET consent_mode = $2 WHERE key = $1', [SITE_KEY, mode]);
  await sleep(1500);
}

h.test('cookieless site: the conversation, its token and the outbox live in sessionStorage; a reload resumes', async (t) => {
  const d = await chatDaemon();
  await ensureAgent();
  await presence(true);
  await consentMode('cookieless');
  t.after(() => consentMode('none-required'));
  const page = await env.page();
  await page.goto(`${d.url}/demo/index.html`);
  await launcher(page).click();
  const f = await say(page, 'cookieless hello');
  await acked(page, f.id);
  const stores = () =>
    page.evaluate(() => ({
      local: Object.keys(localStorage).filter((k) => k.startsWith('journey.')),
      session: Object.keys(sessionStorage).filter((k) => k.startsWith('journey.')),
      chat: JSON.parse(sessionStorage.getItem('journey.chat.demo-site-key-0001') || 'null'),
    }));
  const s = await stores();
  assert.deepEqual(s.local, [], 'nothing in localStorage');
  assert.equal(s.chat.c, f.conversation);
  assert.match(s.chat.k, /^jdc_/);
  await agentSays(f.conversation, 'hello without cookies');
  await panel(page).getByText('hello without cookies').waitFor({ timeout: 10000 });
  await page.reload();
  await panel(page).waitFor({ timeout: 10000 });
  await assertTranscript(page, f.conversation);
  assert.deepEqual((await stores()).local, []);
  assert.deepEqual(journeyErrors(page), []);
  await page.context().close();
});

h.test('opt-in site: no chat before consent; consent brings the button', async (t) => {
  const d = await chatDaemon();
  await ensureAgent();
  await consentMode('opt-in');
  t.after(() => consentMode('none-required'));
  const page = await env.page();
  await page.goto(`${d.url}/demo/index.html`);
  const w = await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  assert.equal(w.config.collect, false);
  assert.deepEqual(w.chat, { enabled: true });
  await sleep(800);
  assert.equal(await page.locator('[data-journey-chat]').count(), 0, 'no chat before consent');
  await page.evaluate(() => window.journey('consent', true));
  await launcher(page).click();
  const f = await say(page, 'with consent');
  await acked(page, f.id);
  assert.equal((await messages(f.conversation)).length, 1);
  // Consent withdrawn: the button goes, nothing more is sent.
  await page.evaluate(() => window.journey('consent', false));
  await launcher(page).waitFor({ state: 'hidden' });
  await panel(page).waitFor({ state: 'hidden' });
  const n = page.frames_.sent.length;
  await sleep(3500);
  assert.deepEqual(page.frames_.sent.slice(n).filter((f) => f.type.startsWith('chat.')), [], 'no chat frame without consent');
  await page.context().close();
});

// The agent console (web-widget/agent, served by journeyd at /agent) in real Chromium against the
// real daemon and PostgreSQL: sign-in and sign-out, a session ended elsewhere, site isolation,
// escaping of visitor text (page and HTML transcript), replies, notes, canned responses and
// research coding of a span (message_codes and chat_evidence rows), keyboard only.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setup, waitFor, sleep, SITE_KEY, cspViolations, tcpProxy } from './lib.mjs';
import { uuid, httpRequest } from '../lib/harness.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const env = setup(import.meta.url);
const { h } = env;

const SITE_B = 'site-b-key-0002';
const PW = 'correct horse battery';
const ids = {};

// Agents, canned responses and site B, created once before the file's daemon starts (the
// catalog's chat flag needs an agent account; site B must be in the catalog).
let ready = null;
const init = () => (ready ??= makeFixtures());
async function makeFixtures() {
  const cat = await h.catalog();
  ids.siteA = cat.siteId;
  const q = (sql, p) => h.pg.query(sql, p).then((r) => r.rows);
  ids.anna = Number((await q("SELECT jd_agent_create($1, 'anna@shop.example', 'Anna', 'admin', $2) AS id", [cat.siteId, PW]))[0].id);
  ids.ben = Number((await q("SELECT jd_agent_create($1, 'ben@shop.example', 'Ben', 'agent', $2) AS id", [cat.siteId, PW]))[0].id);
  await q("SELECT jd_canned_save($1, 'greeting', 'Greeting', 'Hello! How can I help you today?')", [ids.anna]);
  // Site B: its own agent and (later) its own visitor.
  ids.siteB = Number(
    (await q("INSERT INTO sites (key, name, allowed_origins, consent_mode) VALUES ($1, 'Other shop', ARRAY['https://shop.example'], 'none-required') RETURNING id", [SITE_B]))[0].id,
  );
  ids.bea = Number((await q("SELECT jd_agent_create($1, 'bea@other.example', 'Bea', 'admin', $2) AS id", [ids.siteB, PW]))[0].id);
  return env.daemon();
}

// A visitor on a real journey.v1 WebSocket: hello, chat.open, then say(text) -> seq.
async function visitor(d, { site = SITE_KEY, email, stage, touchpoint, url = 'https://shop.example/cart' } = {}) {
  const { client } = await d.hello({ connect: { site }, hello: { site, page: { url, lang: 'en-GB', title: 'Cart' } }, surveys: site === SITE_KEY ? 2 : 0 });
  const open = { type: 'chat.open', id: uuid(), page: { url } };
  if (email) open.email = email;
  if (stage) open.stage = stage;
  if (touchpoint) open.touchpoint = touchpoint;
  client.send(open);
  const opened = await client.next({ type: 'chat.opened', re: open.id }, 10000);
  const say = async (body) => {
    const id = uuid();
    const f = { type: 'chat.message', id, conversation: opened.conversation, body, kind: 'text', page: { url } };
    if (stage) f.stage = stage;
    if (touchpoint) f.touchpoint = touchpoint;
    client.send(f);
    const ack = await client.next((x) => x.type === 'ack' && x.ids.includes(id), 10000);
    assert.ok(ack.seq && ack.seq[id] > 0, 'the ack carries the seq');
    return { id, seq: ack.seq[id] };
  };
  return { client, conversation: opened.conversation, say };
}

// A console page with dialogs recorded (any dialog is a failure: nothing may run alert()).
async function consolePage() {
  const page = await env.page();
  page.dialogs = [];
  page.on('dialog', (dlg) => {
    page.dialogs.push(dlg.message());
    dlg.dismiss().catch(() => {});
  });
  page.agentSockets = [];
  page.on('websocket', (ws) => {
    if (!ws.url().endsWith('/agent/ws')) return;
    const s = { ws, closed: false };
    ws.on('close', () => (s.closed = true));
    page.agentSockets.push(s);
  });
  return page;
}

async function signIn(page, d, { site = SITE_KEY, email = 'anna@shop.example', password = PW } = {}) {
  await page.goto(`${d.url}/agent`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('Site key').fill(site);
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor();
  await page.locator('#conn').getByText('Connected').waitFor({ timeout: 10000 });
}

const me = (page) => page.evaluate(() => fetch('/agent/me', { cache: 'no-store' }).then(async (r) => ({ status: r.status, body: await r.text() })));

// The conversation's item in the inbox list (a button named after the visitor's e-mail).
const inboxItem = (page, conversation) => page.locator(`#inbox-list button[data-conversation="${conversation}"]`);

async function openFromInbox(page, tab, conversation) {
  await page.getByRole('tab', { name: tab }).click();
  const item = inboxItem(page, conversation);
  await item.waitFor({ timeout: 10000 });
  await item.click();
  await page.locator('#conv-title').getByText('Conversation with').waitFor();
}

// What the console shows: [{seq, body, note}] in DOM order, stored messages only.
const shown = (page) =>
  page.locator('#transcript li.msg:not(.pending)').evaluateAll((ls) => ls.map((l) => ({ seq: Number(l.dataset.seq), body: l.querySelector('.body').textContent, note: l.classList.contains('note') })));

h.test('sign-in: a wrong password shows the error, the right one opens the console; the cookie is HttpOnly', async () => {
  const d = await init();
  const page = await consolePage();
  await page.goto(`${d.url}/agent`);
  assert.match(page.url(), /\/agent\/index\.html$/, '/agent redirects to the page');
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.equal((await me(page)).status, 401);
  await page.getByLabel('Site key').fill(SITE_KEY);
  await page.getByLabel('E-mail').fill('anna@shop.example');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').getByText('wrong e-mail or password').waitFor();
  assert.equal(await page.locator('#console').isVisible(), false);
  assert.equal(page.agentSockets.length, 0, 'no socket before signing in');
  // An unknown site answers the same.
  await page.getByLabel('Site key').fill('no-such-site-key');
  await page.getByLabel('Password').fill(PW);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').getByText('wrong e-mail or password').waitFor();
  await page.getByLabel('Site key').fill(SITE_KEY);
  await page.getByLabel('Password').fill(PW);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor();
  assert.equal(await page.locator('#agent-name').textContent(), 'Anna');
  await page.locator('#conn').getByText('Connected').waitFor({ timeout: 10000 });
  // Presence lists the agent; the canned responses came with the welcome.
  await page.locator('#presence-list').getByText('Anna (you)').waitFor();
  assert.deepEqual(await page.locator('#canned-select option').allTextContents(), ['(none)', 'Greeting (/greeting)']);
  const r = await me(page);
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).agent.email, 'anna@shop.example');
  const cookies = await page.context().cookies();
  const c = cookies.find((x) => x.name === 'jd_agent');
  assert.ok(c, 'session cookie set');
  assert.equal(c.httpOnly, true);
  assert.equal(c.sameSite, 'Strict');
  assert.match(c.value, /^jda_/);
  assert.equal(await page.evaluate(() => document.cookie.includes('jda_')), false, 'not readable from script');
  // The hello went through not_ready handling and got a welcome.
  const sent = page.frames_.sent.filter((f) => f.type === 'hello');
  assert.ok(sent.length >= 1);
  assert.ok(page.frames_.received.some((f) => f.type === 'welcome' && sent.some((s) => s.id === f.re)));
  // Landmarks.
  for (const [role, name] of [['banner'], ['navigation', 'Conversations'], ['main'], ['complementary', 'Research coding']]) {
    assert.equal(await page.getByRole(role, name ? { name } : {}).count(), 1, `${role} ${name ?? ''}`);
  }
  // A reload keeps the session (GET /agent/me) and does not show the form.
  await page.reload();
  await page.getByText('Signed in as').waitFor();
  assert.equal(await page.locator('#signin').isVisible(), false);
  assert.deepEqual(cspViolations(page), []);
  assert.deepEqual(page.logs.filter((l) => l.type === 'pageerror'), []);
  await page.context().close();
});

h.test('sign-out ends the session: the socket closes, /agent/me is 401, presence goes offline', async () => {
  const d = await init();
  const page = await consolePage();
  await signIn(page, d, { email: 'ben@shop.example' });
  await waitFor(async () => (await h.pg.query('SELECT jd_agents_online($1) AS o', [ids.siteA])).rows[0].o.some((a) => Number(a.id) === ids.ben), { what: 'Ben online' });
  assert.equal(page.agentSockets.filter((s) => !s.closed).length, 1);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByText('You are signed out.').waitFor();
  await waitFor(() => page.agentSockets.every((s) => s.closed), { what: 'agent socket closed' });
  assert.equal((await me(page)).status, 401);
  const sess = (await h.pg.query('SELECT revoked_at FROM agent_sessions WHERE agent_id = $1', [ids.ben])).rows;
  assert.ok(sess.length >= 1 && sess.every((s) => s.revoked_at !== null), 'every session of Ben revoked');
  await waitFor(async () => !(await h.pg.query('SELECT jd_agents_online($1) AS o', [ids.siteA])).rows[0].o.some((a) => Number(a.id) === ids.ben), { what: 'Ben offline' });
  const n = page.agentSockets.length;
  await sleep(1500);
  assert.equal(page.agentSockets.length, n, 'no reconnect after sign-out');
  await page.context().close();
});

h.test('a session ended elsewhere (logout with the same cookie) closes the console socket with 1008 and shows the form', async () => {
  const d = await init();
  const page = await consolePage();
  await signIn(page, d, { email: 'ben@shop.example' });
  const cookie = (await page.context().cookies()).find((c) => c.name === 'jd_agent');
  const r = await httpRequest(`${d.url}/agent/logout`, { method: 'POST', headers: { cookie: `jd_agent=${cookie.value}`, 'content-type': 'application/json', 'content-length': '2' }, body: '{}' });
  assert.equal(r.status, 204);
  await page.getByText('Your session has ended. Please sign in again.').waitFor({ timeout: 15000 });
  assert.ok(page.agentSockets.every((s) => s.closed));
  await page.context().close();
});

h.test('site isolation: an agent of site A never sees site B’s conversation (inbox, updates, open, transcript)', async () => {
  const d = await init();
  const page = await consolePage();
  await signIn(page, d);
  const b = await visitor(d, { site: SITE_B, email: 'secret@other.example' });
  await b.say('Secret of site B');
  const a = await visitor(d, { email: 'isolation@example.com' });
  await a.say('A question from site A');
  // Site A's conversation arrives (inbox.update refreshes the list); site B's never does.
  await page.getByRole('tab', { name: 'Waiting' }).click();
  await inboxItem(page, a.conversation).waitFor({ timeout: 10000 });
  for (const tab of ['Open', 'Waiting', 'Closed']) {
    await page.getByRole('tab', { name: tab }).click();
    await page.locator('#inbox-summary').getByText(new RegExp(tab, 'i')).waitFor();
    assert.equal(await inboxItem(page, b.conversation).count(), 0, `B not in ${tab}`);
  }
  await b.say('Another secret of site B');
  await sleep(1000);
  const leaked = page.frames_.received.filter((f) => JSON.stringify(f).includes(b.conversation) || JSON.stringify(f).includes('secret'));
  assert.deepEqual(leaked, [], 'no frame about site B');
  // A link to B's conversation: not found. Its transcript: 404.
  await page.goto(`${d.url}/agent/index.html#c=${b.conversation}`);
  await page.getByText('Conversation not found.').waitFor({ timeout: 10000 });
  const t = await page.evaluate((c) => fetch(`/agent/transcript?conversation=${c}&format=text`).then((r) => r.status), b.conversation);
  assert.equal(t, 404);
  const err = page.frames_.received.find((f) => f.type === 'error' && f.code === 'not_found');
  assert.ok(err, 'open of another site’s conversation is not_found');
  await page.context().close();
  // Site B's agent sees it, and not site A's.
  const pb = await consolePage();
  await signIn(pb, d, { site: SITE_B, email: 'bea@other.example' });
  await openFromInbox(pb, 'Waiting', b.conversation);
  await pb.locator('#transcript').getByText('Another secret of site B').waitFor();
  assert.equal(await inboxItem(pb, a.conversation).count(), 0);
  await pb.context().close();
});

h.test('visitor HTML is text: <img onerror> shows literally, runs nothing, and is escaped in the HTML transcript', async () => {
  const d = await init();
  const XSS = '<img src=x onerror=alert(1)>';
  const v = await visitor(d, { email: 'xss@example.com', stage: 'purchase', touchpoint: 'website' });
  await v.say(XSS);
  await v.say('second line <b>bold?</b> & "quotes"');
  const page = await consolePage();
  await signIn(page, d);
  await page.getByRole('tab', { name: 'Waiting' }).click();
  const item = inboxItem(page, v.conversation);
  await item.waitFor();
  await item.getByText('xss@example.com').waitFor();
  await item.getByText('2 unread').waitFor();
  await item.click();
  const log = page.getByRole('log', { name: 'Transcript' });
  await log.getByText(XSS, { exact: true }).waitFor();
  await log.getByText('second line <b>bold?</b> & "quotes"', { exact: true }).waitFor();
  assert.equal(await page.locator('img').count(), 0, 'no <img> element anywhere');
  assert.equal(await page.locator('#transcript b').count(), 0);
  // Context: page, stage, touchpoint.
  assert.equal(await page.locator('#ctx-page').textContent(), 'https://shop.example/cart');
  assert.match(await page.locator('#ctx-stage').textContent(), /Purchase \(purchase\)/);
  assert.match(await page.locator('#ctx-touchpoint').textContent(), /Website \(website\)/);
  await sleep(500);
  assert.deepEqual(page.dialogs, [], 'no dialog opened');
  // The HTML transcript, downloaded through the link.
  await page.getByLabel('redact personal data').uncheck();
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'HTML', exact: true }).click()]);
  const html = readFileSync(await dl.path(), 'utf8');
  assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;'), `escaped in the transcript: ${html.slice(0, 400)}`);
  assert.ok(!html.includes('<img'), 'no raw <img> in the transcript');
  assert.ok(!html.includes('<b>bold'), 'no raw <b>');
  assert.match(dl.suggestedFilename(), /^transcript-.*\.html$/);
  // The text transcript keeps the text as written.
  const text = await page.evaluate((c) => fetch(`/agent/transcript?conversation=${c}&format=text`).then((r) => r.text()), v.conversation);
  assert.ok(text.includes(XSS));
  // Redaction: the e-mail is masked when asked for.
  await v.say('write to me at ana.lopez@example.com please');
  await log.getByText('write to me at ana.lopez@example.com please').waitFor();
  await page.getByLabel('redact personal data').check();
  const href = await page.getByRole('link', { name: 'Text', exact: true }).getAttribute('href');
  assert.match(href, /redact=1/);
  const red = await page.evaluate((u) => fetch(u).then((r) => r.text()), href);
  assert.ok(!red.includes('ana.lopez@example.com') && red.includes('[email]'), red);
  // Rendering in the widget's style: the visitor's own copy is untouched by the console.
  assert.deepEqual(page.dialogs, []);
  assert.deepEqual(cspViolations(page), []);
  assert.deepEqual(page.logs.filter((l) => l.type === 'pageerror'), []);
  await page.context().close();
});

h.test('replies, notes and canned responses reach the database and the visitor (not the notes); close', async () => {
  const d = await init();
  const v = await visitor(d, { email: 'reply@example.com' });
  await v.say('Does it ship on Sunday?');
  const page = await consolePage();
  await signIn(page, d);
  await openFromInbox(page, 'Waiting', v.conversation);
  const log = page.getByRole('log', { name: 'Transcript' });
  await log.getByText('Does it ship on Sunday?').waitFor();
  // The visitor hears that the agent read it (the page is focused).
  await v.client.next((f) => f.type === 'chat.receipt' && f.read_seq >= 1, 10000);
  // Canned response inserted, then sent.
  await page.getByLabel('Canned response', { exact: true }).selectOption({ label: 'Greeting (/greeting)' });
  await page.getByRole('button', { name: 'Insert' }).click();
  assert.equal(await page.getByLabel('Reply', { exact: true }).inputValue(), 'Hello! How can I help you today?');
  await page.getByRole('button', { name: 'Send' }).click();
  const greet = await v.client.next((f) => f.type === 'chat.message' && f.sender === 'agent', 10000);
  assert.equal(greet.body, 'Hello! How can I help you today?');
  assert.equal(greet.agent.name, 'Anna');
  // An admin saves a canned response, then deletes it.
  await page.getByText('Manage canned responses').click();
  await page.getByLabel('Shortcut').fill('bye');
  await page.getByLabel('Title').fill('Goodbye');
  await page.getByLabel('Text', { exact: true }).fill('Thanks for chatting!');
  await page.getByRole('button', { name: 'Save canned response' }).click();
  await page.locator('#canned-select option', { hasText: 'Goodbye (/bye)' }).waitFor({ state: 'attached', timeout: 10000 });
  assert.equal((await h.pg.query("SELECT body FROM canned_responses WHERE shortcut = 'bye'")).rows[0].body, 'Thanks for chatting!');
  await page.getByRole('button', { name: 'Delete /bye' }).click();
  await page.locator('#canned-select option', { hasText: 'Goodbye (/bye)' }).waitFor({ state: 'detached', timeout: 10000 });
  assert.equal((await h.pg.query("SELECT count(*)::int AS n FROM canned_responses WHERE shortcut = 'bye'")).rows[0].n, 0);
  // A private note: shown distinctly, never sent to the visitor.
  await page.getByLabel('Private note (not shown to the visitor)').check();
  await page.getByLabel('Reply', { exact: true }).fill('VIP customer, be nice');
  await page.keyboard.press('Enter');
  await log.locator('li.note').getByText('VIP customer, be nice').waitFor();
  assert.equal(await log.locator('li.note').getByText('Private note').count(), 1);
  await page.getByLabel('Private note (not shown to the visitor)').uncheck();
  await page.getByLabel('Reply', { exact: true }).fill('Yes, on Sundays too.');
  await page.keyboard.press('Enter');
  const yes = await v.client.next((f) => f.type === 'chat.message' && f.body === 'Yes, on Sundays too.', 10000);
  assert.equal(yes.seq, 4, 'the note took seq 3');
  assert.ok(!v.client.frames.some((f) => f.type === 'chat.message' && f.kind === 'note'), 'the visitor never gets the note');
  // The visitor reads: the console shows "Read" on the agent's messages.
  v.client.send({ type: 'chat.read', id: uuid(), conversation: v.conversation, upto_seq: 4, what: 'read' });
  await log.locator('li.from-agent:not(.note)').filter({ hasText: 'Yes, on Sundays too.' }).getByText('Read').waitFor({ timeout: 10000 });
  // The visitor types: the console shows it.
  v.client.send({ type: 'chat.typing', id: uuid(), conversation: v.conversation, on: true });
  await page.getByText('The visitor is typing…').waitFor({ timeout: 10000 });
  await v.say('Great, thanks!');
  await log.getByText('Great, thanks!').waitFor();
  // The database agrees with the page, seq for seq.
  const rows = (await h.pg.query('SELECT seq, body, kind, sender, agent_id FROM messages WHERE conversation_id = $1 ORDER BY seq', [v.conversation])).rows;
  assert.deepEqual(
    rows.map((r) => [Number(r.seq), r.body, r.kind]),
    [
      [1, 'Does it ship on Sunday?', 'text'],
      [2, 'Hello! How can I help you today?', 'text'],
      [3, 'VIP customer, be nice', 'note'],
      [4, 'Yes, on Sundays too.', 'text'],
      [5, 'Great, thanks!', 'text'],
    ],
  );
  assert.deepEqual(
    (await shown(page)).map((m) => [m.seq, m.body, m.note]),
    rows.map((r) => [Number(r.seq), r.body, r.kind === 'note']),
  );
  assert.equal((await h.pg.query('SELECT status, assigned_agent_id FROM conversations WHERE id = $1', [v.conversation])).rows[0].assigned_agent_id, String(ids.anna));
  await page.locator('#conv-status').getByText('open').waitFor();
  // Close.
  await page.getByRole('button', { name: 'Close conversation' }).click();
  await page.locator('#conv-status').getByText('closed').waitFor({ timeout: 10000 });
  await v.client.next((f) => f.type === 'chat.status' && f.status === 'closed', 10000);
  await log.locator('li.from-system').first().waitFor();
  assert.equal((await h.pg.query('SELECT status FROM conversations WHERE id = $1', [v.conversation])).rows[0].status, 'closed');
  await page.getByRole('tab', { name: 'Closed' }).click();
  await inboxItem(page, v.conversation).waitFor();
  assert.deepEqual(page.dialogs, []);
  await page.context().close();
});

h.test('coding a span (code points, emoji before it) makes a message_codes row and a chat_evidence row; revise, history, retract', async () => {
  const d = await init();
  const cat = await h.catalog();
  const BODY = 'Delivery 🚚📦 costs £9.99, that is too much for socks';
  const QUOTE = 'costs £9.99';
  const v = await visitor(d, { email: 'coder@example.com', stage: 'purchase', touchpoint: 'website' });
  const { seq } = await v.say(BODY);
  const page = await consolePage();
  await signIn(page, d);
  await openFromInbox(page, 'Waiting', v.conversation);
  const msg = page.locator(`#transcript li.msg[data-seq="${seq}"]`);
  await msg.getByText(BODY).waitFor();
  // Select the quote with a DOM range (UTF-16 offsets, as a mouse selection makes them).
  await msg.locator('.body').evaluate((el, q) => {
    const t = el.firstChild;
    const at = t.data.indexOf(q);
    const r = document.createRange();
    r.setStart(t, at);
    r.setEnd(t, at + q.length);
    const s = getSelection();
    s.removeAllRanges();
    s.addRange(r);
    el.dispatchEvent(new MouseEvent('mouseup', { bubbles: true }));
  }, QUOTE);
  const form = page.locator('#code-form');
  await form.waitFor();
  await waitFor(async () => (await page.getByLabel('Quote (empty = the whole message)').inputValue()) === QUOTE, { what: 'quote filled from the selection' });
  await page.getByLabel('1 very negative').check();
  // The welcome's codebook offers the site's obstacles by name.
  const [{ name: obstacleName }] = (await h.pg.query('SELECT name FROM obstacles WHERE id = $1', [cat.obstacles['shipping-cost']])).rows;
  await form.getByRole('checkbox', { name: obstacleName }).first().waitFor();
  await page.getByLabel('Obstacle slugs (comma-separated)').fill('shipping-cost');
  await page.getByLabel('Stage', { exact: true }).fill('purchase');
  await page.getByLabel('Touchpoint', { exact: true }).fill('website');
  await page.getByLabel('Memo').fill('price shock');
  await page.getByRole('button', { name: 'Save code' }).click();
  await form.waitFor({ state: 'hidden', timeout: 10000 });
  await page.getByText('Code saved.').waitFor();
  const start = Array.from(BODY.slice(0, BODY.indexOf(QUOTE))).length;
  const end = start + Array.from(QUOTE).length;
  assert.notEqual(start, BODY.indexOf(QUOTE), 'the emoji make code points differ from UTF-16 offsets');
  const codes = (await h.pg.query('SELECT mc.* FROM message_codes mc JOIN messages m ON m.id = mc.message_id WHERE m.conversation_id = $1', [v.conversation])).rows;
  assert.equal(codes.length, 1);
  const c = codes[0];
  assert.equal(c.span_start, start);
  assert.equal(c.span_end, end);
  assert.equal(c.emotion, 1);
  assert.deepEqual(c.obstacle_ids.map(Number), [cat.obstacles['shipping-cost']]);
  assert.equal(Number(c.stage_id), cat.stages.purchase);
  assert.equal(Number(c.touchpoint_id), cat.touchpoints.website);
  assert.equal(c.memo, 'price shock');
  assert.equal(Number(c.coder_id), ids.anna);
  const create = page.frames_.sent.find((f) => f.type === 'code.create');
  assert.equal(c.client_id, create.id, 'the frame id is the code’s client id');
  assert.deepEqual(create.span, [start, end]);
  const ev = (await h.pg.query('SELECT * FROM chat_evidence WHERE conversation_id = $1', [v.conversation])).rows;
  assert.equal(ev.length, 1);
  assert.equal(ev[0].thought, QUOTE);
  assert.equal(ev[0].emotion, 1);
  assert.equal(ev[0].source, 'chat');
  assert.equal(Number(ev[0].stage_id), cat.stages.purchase);
  assert.deepEqual(ev[0].obstacle_ids.map(Number), [cat.obstacles['shipping-cost']]);
  // The code shows on the message with its coder.
  const shownCode = msg.locator('ul.codes li');
  await shownCode.getByText(`“${QUOTE}”`, { exact: false }).waitFor();
  assert.match(await shownCode.textContent(), /emotion 1.*shipping-cost.*stage purchase.*touchpoint website.*memo: price shock.*Anna/);
  // Revise (keyboard): emotion 2.
  await msg.getByRole('button', { name: `Revise code ${c.id}` }).focus();
  await page.keyboard.press('Enter');
  await form.waitFor();
  assert.equal(await page.getByLabel('Quote (empty = the whole message)').inputValue(), QUOTE);
  await page.getByLabel('2 negative').check();
  await page.getByRole('button', { name: 'Save code' }).press('Enter');
  await form.waitFor({ state: 'hidden', timeout: 10000 });
  await msg.locator('ul.codes li').getByText(/emotion 2/).waitFor();
  const after = (await h.pg.query('SELECT mc.* FROM message_codes mc JOIN messages m ON m.id = mc.message_id WHERE m.conversation_id = $1 ORDER BY mc.id', [v.conversation])).rows;
  assert.equal(after.length, 2);
  assert.equal(after[0].superseded_by, after[1].id);
  assert.equal(after[1].emotion, 2);
  assert.equal(after[1].span_start, start);
  const ev2 = (await h.pg.query('SELECT * FROM chat_evidence WHERE conversation_id = $1', [v.conversation])).rows;
  assert.equal(ev2.length, 1, 'one evidence row per span');
  assert.equal(ev2[0].emotion, 2);
  // History lists both.
  await page.getByRole('button', { name: 'Code history' }).click();
  const hist = page.locator('#history-list li');
  await waitFor(async () => (await hist.count()) === 2, { what: 'two history entries' });
  assert.match(await hist.nth(0).textContent(), new RegExp(`revised by code ${after[1].id}`));
  assert.match(await hist.nth(1).textContent(), /current/);
  // An unknown obstacle is refused with the server's message in the form.
  await msg.getByRole('button', { name: `Code message ${seq}` }).click();
  await page.getByLabel('Obstacle slugs (comma-separated)').fill('no-such-obstacle');
  await page.getByRole('button', { name: 'Save code' }).click();
  await page.locator('#code-error').getByText(/The code was not saved/).waitFor({ timeout: 10000 });
  await page.getByRole('button', { name: 'Cancel' }).click();
  // Retract: no evidence left.
  await msg.getByRole('button', { name: `Retract code ${after[1].id}` }).click();
  await page.getByText('Code retracted.').waitFor({ timeout: 10000 });
  await waitFor(async () => (await msg.locator('ul.codes li').count()) === 0, { what: 'code gone from the message' });
  assert.equal((await h.pg.query('SELECT count(*)::int AS n FROM chat_evidence WHERE conversation_id = $1', [v.conversation])).rows[0].n, 0);
  assert.deepEqual(page.dialogs, []);
  assert.deepEqual(cspViolations(page), []);
  await page.context().close();
});

h.test('keyboard only: sign in, choose the tab, open a conversation, reply, code the whole message', async () => {
  const d = await init();
  const v = await visitor(d, { email: 'keys@example.com', stage: 'purchase', touchpoint: 'website' });
  await v.say('Typed by a keyboard user');
  const page = await consolePage();
  await page.goto(`${d.url}/agent/index.html`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  // The first empty field has the focus.
  assert.equal(await page.evaluate(() => document.activeElement.id), 'login-site');
  await page.keyboard.type(SITE_KEY);
  await page.keyboard.press('Tab');
  await page.keyboard.type('anna@shop.example');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PW);
  await page.keyboard.press('Enter');
  await page.getByText('Signed in as').waitFor();
  await page.locator('#conn').getByText('Connected').waitFor({ timeout: 10000 });
  // Focus is on the selected tab; arrows move between tabs.
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('role')), 'tab');
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.getByRole('tab', { selected: true }).textContent(), 'Closed');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.getByRole('tab', { selected: true }).textContent(), 'Waiting');
  await inboxItem(page, v.conversation).waitFor();
  // Tab into the list until the conversation's button has the focus.
  for (let i = 0; i < 20; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((c) => document.activeElement.dataset.conversation === c, v.conversation)) break;
  }
  assert.equal(await page.evaluate(() => document.activeElement.dataset.conversation), v.conversation);
  await page.keyboard.press('Enter');
  await page.getByRole('log', { name: 'Transcript' }).getByText('Typed by a keyboard user').waitFor();
  // Tab to the reply box.
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement.id === 'reply-body')) break;
  }
  assert.equal(await page.evaluate(() => document.activeElement.id), 'reply-body');
  await page.keyboard.type('Answered without a mouse');
  await page.keyboard.press('Enter');
  await v.client.next((f) => f.type === 'chat.message' && f.body === 'Answered without a mouse', 10000);
  // Shift+Tab back to the message's Code button.
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Shift+Tab');
    if (await page.evaluate(() => document.activeElement.classList.contains('code-btn'))) break;
  }
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Code message 1');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'code-quote', 'focus moves into the code form');
  await page.keyboard.press('Tab'); // emotion radio group
  await page.keyboard.press('ArrowRight'); // 1
  await page.keyboard.press('ArrowRight'); // 2
  await page.keyboard.press('ArrowRight'); // 3
  for (let i = 0; i < 20; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement.id === 'code-save')) break;
  }
  await page.keyboard.press('Enter');
  await page.getByText('Code saved.').waitFor({ timeout: 10000 });
  const codes = (await h.pg.query('SELECT mc.* FROM message_codes mc JOIN messages m ON m.id = mc.message_id WHERE m.conversation_id = $1', [v.conversation])).rows;
  assert.equal(codes.length, 1);
  assert.equal(codes[0].span_start, null, 'the whole message');
  assert.equal(codes[0].emotion, 3);
  // Focus went back to the message's Code button.
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Code message 1');
  await page.context().close();
});

h.test('console outbox: lost acks and a cut connection; resent with the same id, stored once, re-opened after the highest seq shown', async () => {
  const d = await init();
  const proxy = await tcpProxy();
  proxy.target = d.port;
  try {
    const v = await visitor(d, { email: 'outage@example.com' });
    await v.say('before the cut');
    const page = await consolePage();
    await signIn(page, { url: proxy.url }); // same-origin through the proxy: Origin matches Host
    await openFromInbox(page, 'Waiting', v.conversation);
    const log = page.getByRole('log', { name: 'Transcript' });
    await log.getByText('before the cut').waitFor();
    const reply = page.getByLabel('Reply', { exact: true });
    // Lost acks: the daemon stores the message, its answers never reach the page.
    proxy.deafen();
    await reply.fill('sent while deaf');
    await reply.press('Enter');
    await waitFor(async () => (await h.pg.query('SELECT 1 FROM messages WHERE conversation_id = $1 AND body = $2', [v.conversation, 'sent while deaf'])).rowCount === 1, { what: 'stored while deaf' });
    await log.locator('li.pending').filter({ hasText: 'sent while deaf' }).getByText('Sending…').waitFor();
    // Then the network goes away while both sides keep writing.
    proxy.cut();
    await v.say('visitor during the cut 1');
    await reply.fill('agent during the cut');
    await reply.press('Enter');
    await v.say('visitor during the cut 2');
    await page.locator('#conn').getByText(/reconnecting/).waitFor({ timeout: 10000 });
    await sleep(1000);
    proxy.restore();
    await page.locator('#conn').getByText('Connected').waitFor({ timeout: 30000 });
    await reply.fill('agent after the cut');
    await reply.press('Enter');
    const rows = await waitFor(async () => {
      const r = (await h.pg.query('SELECT seq, body, client_id FROM messages WHERE conversation_id = $1 ORDER BY seq', [v.conversation])).rows;
      return r.length === 6 && r;
    }, { timeoutMs: 20000, what: 'six messages' });
    assert.deepEqual(rows.map((r) => Number(r.seq)), [1, 2, 3, 4, 5, 6]);
    assert.equal(new Set(rows.map((r) => r.client_id)).size, 6);
    assert.deepEqual(rows.map((r) => r.body).sort(), ['agent after the cut', 'agent during the cut', 'before the cut', 'sent while deaf', 'visitor during the cut 1', 'visitor during the cut 2'].sort());
    await waitFor(async () => JSON.stringify((await shown(page)).map((m) => [m.seq, m.body])) === JSON.stringify(rows.map((r) => [Number(r.seq), r.body])), {
      timeoutMs: 15000,
      what: 'the console transcript equal to the database',
    });
    assert.equal(await log.locator('li.pending').count(), 0, 'nothing left pending');
    // The unacked message went out again with the same id; the server answered with its seq.
    const deaf = page.frames_.sent.filter((f) => f.type === 'chat.message' && f.body === 'sent while deaf');
    assert.ok(deaf.length >= 2, 'resent after the reconnect');
    assert.equal(new Set(deaf.map((f) => f.id)).size, 1);
    const ack = page.frames_.received.find((f) => f.type === 'ack' && f.ids.includes(deaf[0].id));
    assert.equal(ack.seq[deaf[0].id], Number(rows.find((r) => r.body === 'sent while deaf').seq));
    // After the reconnect: hello, then the conversation re-opened after the highest seq shown (1).
    assert.ok(page.frames_.sent.filter((f) => f.type === 'hello').length >= 2);
    const opens = page.frames_.sent.filter((f) => f.type === 'open' && f.conversation === v.conversation);
    assert.equal(opens[0].after_seq, 0);
    assert.equal(opens.at(-1).after_seq, 1, `re-open after the highest seq shown: ${JSON.stringify(opens)}`);
    await page.context().close();
  } finally {
    await proxy.close();
  }
});

// axe-core, evaluated through the DevTools protocol (the page's CSP allows no injected script tag).
async function axe(page) {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => JSON.stringify(n.target)).join(', ')}`);
}

h.test('axe: no serious or critical violations on the sign-in form and on a conversation with a code and the code form open', async () => {
  const d = await init();
  const v = await visitor(d, { email: 'axe@example.com', stage: 'purchase', touchpoint: 'website' });
  await v.say('The checkout asks for my address twice');
  const page = await consolePage();
  await page.goto(`${d.url}/agent`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('Password').fill('wrong password!');
  await page.getByLabel('Site key').fill(SITE_KEY);
  await page.getByLabel('E-mail').fill('anna@shop.example');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').getByText('wrong e-mail or password').waitFor();
  assert.deepEqual(await axe(page), [], 'sign-in form with its error');
  await signIn(page, d);
  await openFromInbox(page, 'Waiting', v.conversation);
  await page.getByLabel('Reply', { exact: true }).fill('Sorry about that, we are fixing it.');
  await page.keyboard.press('Enter');
  await page.locator('#transcript li.from-agent:not(.pending)').waitFor();
  await page.getByRole('button', { name: 'Code message 1' }).click();
  await page.getByLabel('Obstacle slugs (comma-separated)').fill('checkout-too-complex');
  await page.getByRole('button', { name: 'Save code' }).click();
  await page.getByText('Code saved.').waitFor({ timeout: 10000 });
  await page.getByRole('button', { name: 'Code message 1' }).click();
  await page.getByRole('button', { name: 'Code history' }).click();
  await page.locator('#history-list li').first().waitFor();
  assert.deepEqual(await axe(page), [], 'console');
  await page.context().close();
});

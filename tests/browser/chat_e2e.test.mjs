// Live chat end to end (docs/chat.md, "Test plan": daemons and browsers): TWO journeyd instances
// on one PostgreSQL. The visitor is the demo shop's widget in Chromium, talking to instance A
// through a TCP proxy that can cut the network; the agent is the console (/agent) in another
// Chromium context on instance B. Messages cross instances through LISTEN/NOTIFY + jd_chat_poll.
// The cut sends the visitor back through instance B (chat.resume on the other instance).
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { setup, waitFor, sleep, tcpProxy, allowOrigin, cspViolations } from './lib.mjs';

const env = setup(import.meta.url);
const { h } = env;

const PW = 'correct horse battery';
const ids = {};
let A, B, proxy, agentPage;

let ready = null;
const init = () => (ready ??= makeFixtures());
async function makeFixtures() {
  const cat = await h.catalog();
  ids.site = cat.siteId;
  // An enabled agent account turns chat on for the site (the catalog's chat flag): create it
  // before the daemons load the catalog.
  ids.anna = Number((await h.pg.query("SELECT jd_agent_create($1, 'anna@shop.example', 'Anna', 'admin', $2) AS id", [cat.siteId, PW])).rows[0].id);
  proxy = await tcpProxy();
  await allowOrigin(h, proxy.url);
  A = await h.startDaemon({ args: ['--static-dir', env.dist] });
  B = await h.startDaemon({ args: ['--static-dir', env.dist] });
  proxy.target = A.port;
}

after(async () => {
  if (proxy) await proxy.close();
});

// ---- the visitor's widget (the chat panel's open shadow root) ------------------------------------

async function visitorPage() {
  const page = await env.page();
  page.dialogs = [];
  page.on('dialog', (d) => {
    page.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  await page.goto(`${proxy.url}/demo/index.html`);
  const launcher = page.getByRole('button', { name: /^Chat/ });
  await launcher.waitFor({ timeout: 15000 });
  await launcher.click();
  await page.getByRole('dialog', { name: 'Chat with us' }).waitFor();
  return page;
}

// The widget's transcript: [{seq, body, pending, mine}] in DOM order.
const widgetLog = (page) =>
  page.evaluate(() => {
    // The chat panel's shadow host: whichever element's (open) shadow root holds the message log.
    const host = [...document.body.querySelectorAll('*')].find((e) => e.shadowRoot && e.shadowRoot.querySelector('[role=dialog] [role=log]'));
    if (!host) return [];
    return [...host.shadowRoot.querySelector('[role=dialog] [role=log]').children].map((li) => ({
      seq: li.dataset.s ? Number(li.dataset.s) : null,
      body: li.querySelector('.bb').textContent,
      pending: !li.dataset.s,
      mine: li.classList.contains('me'),
      meta: li.lastChild.textContent,
    }));
  });

async function visitorSay(page, text) {
  const box = page.getByLabel('Your message');
  await box.fill(text);
  await box.press('Enter');
}

// ---- the agent's console -----------------------------------------------------------------------

async function signIn(page, d) {
  await page.goto(`${d.url}/agent`);
  await page.getByLabel('Site key').fill('demo-site-key-0001');
  await page.getByLabel('E-mail').fill('anna@shop.example');
  await page.getByLabel('Password').fill(PW);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor();
  await page.locator('#conn').getByText('Connected').waitFor({ timeout: 10000 });
}

const consoleLog = (page) =>
  page.locator('#transcript li.msg').evaluateAll((ls) =>
    ls.map((l) => ({ seq: l.dataset.seq ? Number(l.dataset.seq) : null, body: l.querySelector('.body').textContent, note: l.classList.contains('note'), pending: l.classList.contains('pending') })),
  );

async function agentSay(page, text, { note = false } = {}) {
  const box = page.getByLabel('Reply', { exact: true });
  const noteBox = page.getByLabel('Private note (not shown to the visitor)');
  if ((await noteBox.isChecked()) !== note) await noteBox.setChecked(note);
  await box.fill(text);
  await box.press('Enter');
}

const dbMessages = async (conversation) =>
  (await h.pg.query('SELECT seq, body, kind, sender, client_id FROM messages WHERE conversation_id = $1 ORDER BY seq', [conversation])).rows.map((r) => ({ ...r, seq: Number(r.seq) }));

const conversationOf = async (email) => (await h.pg.query('SELECT * FROM conversations WHERE visitor_email = $1', [email])).rows;

// ---- tests ---------------------------------------------------------------------------------------

h.test('offline: nobody online, the visitor leaves a message and an e-mail; the agent finds it later in Waiting', async () => {
  await init();
  const online = (await h.pg.query('SELECT jd_agents_online($1) AS o', [ids.site])).rows[0].o;
  assert.deepEqual(online, [], 'no agent online yet');
  const page = await visitorPage();
  const dlg = page.getByRole('dialog', { name: 'Chat with us' });
  // Before the conversation exists the widget does not know presence (welcome.chat carries only
  // "enabled"); the e-mail field is offered anyway.
  await dlg.getByLabel('Your e-mail (optional)').fill('offline@example.com');
  await dlg.getByLabel('Your message').fill('Please call me back about order 1234');
  await dlg.getByRole('button', { name: 'Send' }).click();
  const conv = await waitFor(async () => {
    const c = await conversationOf('offline@example.com');
    if (!c.length) return null;
    const m = await dbMessages(c[0].id);
    return m.length === 1 && c[0];
  }, { timeoutMs: 15000, what: 'the offline message in the database' });
  const [m] = await dbMessages(conv.id);
  assert.equal(m.kind, 'offline');
  assert.equal(m.sender, 'visitor');
  assert.equal(m.body, 'Please call me back about order 1234');
  assert.equal(conv.status, 'waiting');
  await waitFor(async () => (await widgetLog(page)).some((x) => x.seq === 1 && !x.pending), { what: 'stored in the widget' });
  await dlg.getByText('We are offline').waitFor({ timeout: 10000 });
  await dlg.getByText(/Nobody is online right now/).waitFor();
  const sent = page.frames_.sent.find((f) => f.type === 'chat.message');
  assert.equal(sent.kind, 'offline');
  await page.context().close();

  // Later: the agent signs in on instance B and finds it, with the e-mail.
  const ctx = await env.browser.newContext();
  const p = await ctx.newPage();
  await signIn(p, B);
  await p.getByRole('tab', { name: 'Waiting' }).click();
  const item = p.locator(`#inbox-list button[data-conversation="${conv.id}"]`);
  await item.waitFor({ timeout: 10000 });
  await item.getByText('offline@example.com').waitFor();
  await item.click();
  const msg = p.locator('#transcript li.msg[data-seq="1"]');
  await msg.getByText('Please call me back about order 1234').waitFor();
  await msg.getByText('Offline message').waitFor();
  await p.getByRole('heading', { name: 'Conversation with offline@example.com' }).waitFor();
  await ctx.close();
});

h.test('full conversation across two instances: typing, receipts, notes, coding, a cut connection, presence', async () => {
  await init();
  const cat = await h.catalog();
  agentPage = await env.page();
  agentPage.dialogs = [];
  agentPage.on('dialog', (d) => {
    agentPage.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  await signIn(agentPage, B);
  await waitFor(async () => (await h.pg.query('SELECT jd_agents_online($1) AS o', [ids.site])).rows[0].o.length === 1, { what: 'Anna online' });

  const vp = await visitorPage();
  const dlg = vp.getByRole('dialog', { name: 'Chat with us' });
  await dlg.getByLabel('Your e-mail (optional)').fill('visitor@example.com');
  await dlg.getByLabel('Your message').fill('Hi, is the trail backpack waterproof?');
  await dlg.getByRole('button', { name: 'Send' }).click();
  const conv = await waitFor(async () => (await conversationOf('visitor@example.com'))[0], { timeoutMs: 15000, what: 'the conversation' });
  await dlg.getByText(/^(Anna is online|We are online)$/).waitFor({ timeout: 15000 });
  assert.equal(vp.frames_.sent.find((f) => f.type === 'chat.message').kind, 'text');

  // The agent sees it appear (inbox.update from instance A's commit), with context and path.
  const ap = agentPage;
  await ap.getByRole('tab', { name: 'Waiting' }).click();
  const item = ap.locator(`#inbox-list button[data-conversation="${conv.id}"]`);
  await item.waitFor({ timeout: 15000 });
  await item.getByText('visitor@example.com').waitFor();
  await item.getByText('Hi, is the trail backpack waterproof?', { exact: false }).waitFor();
  await item.getByText('1 unread').waitFor({ timeout: 10000 });
  await item.click();
  await ap.getByRole('log', { name: 'Transcript' }).getByText('Hi, is the trail backpack waterproof?').waitFor();
  assert.equal(await ap.locator('#ctx-page').textContent(), `${proxy.url}/demo/index.html`);
  const journey = await ap.locator('#journey-list li').allTextContents();
  assert.ok(journey.some((t) => t.includes('pageview') && t.includes('/demo/index.html')), `journey path: ${JSON.stringify(journey)}`);

  // Read receipt in the widget: the console showed the message while focused.
  await waitFor(async () => (await widgetLog(vp)).some((x) => x.mine && x.seq === 1 && x.meta === 'Read'), { timeoutMs: 15000, what: 'Read under the visitor message' });

  // Typing both ways.
  await dlg.getByLabel('Your message').pressSequentially('Also', { delay: 50 });
  await ap.getByText('The visitor is typing…').waitFor({ timeout: 10000 });
  await ap.getByLabel('Reply', { exact: true }).pressSequentially('Yes', { delay: 50 });
  await dlg.getByText('Anna is typing…').waitFor({ timeout: 10000 });
  await ap.getByLabel('Reply', { exact: true }).fill('');

  // Messages both ways.
  await agentSay(ap, 'Yes, it is fully waterproof.');
  await dlg.getByText('Yes, it is fully waterproof.').waitFor({ timeout: 10000 });
  await ap.locator('#transcript li.from-agent').filter({ hasText: 'Yes, it is fully waterproof.' }).getByText('Read').waitFor({ timeout: 15000 });
  await dlg.getByLabel('Your message').fill('');
  await visitorSay(vp, 'Shipping to Wales costs £12, far too much');
  await ap.getByRole('log', { name: 'Transcript' }).getByText('Shipping to Wales costs £12, far too much').waitFor({ timeout: 10000 });
  await agentSay(ap, 'Regular customer, offer free shipping', { note: true });
  await ap.locator('#transcript li.note').getByText('Regular customer, offer free shipping').waitFor();

  // Coding a span: emotion 1, shipping-cost, purchase.
  const body = 'Shipping to Wales costs £12, far too much';
  const seq2 = (await dbMessages(conv.id)).find((m) => m.body === body).seq;
  const msg = ap.locator(`#transcript li.msg[data-seq="${seq2}"]`);
  await msg.locator('.body').evaluate((el) => {
    const t = el.firstChild;
    const at = t.data.indexOf('costs £12');
    const r = document.createRange();
    r.setStart(t, at);
    r.setEnd(t, at + 'costs £12'.length);
    getSelection().removeAllRanges();
    getSelection().addRange(r);
    el.dispatchEvent(new MouseEvent('mouseup', { bubbles: true }));
  });
  await waitFor(async () => (await ap.getByLabel('Quote (empty = the whole message)').inputValue()) === 'costs £12', { what: 'quote from the selection' });
  await ap.getByLabel('1 very negative').check();
  await ap.getByLabel('Obstacle slugs (comma-separated)').fill('shipping-cost');
  await ap.getByLabel('Stage', { exact: true }).fill('purchase');
  await ap.getByRole('button', { name: 'Save code' }).click();
  await ap.getByText('Code saved.').waitFor({ timeout: 10000 });
  const ev = await waitFor(async () => (await h.pg.query('SELECT * FROM chat_evidence WHERE conversation_id = $1', [conv.id])).rows.at(0), { what: 'chat_evidence row' });
  assert.equal(ev.thought, 'costs £12');
  assert.equal(ev.emotion, 1);
  assert.equal(Number(ev.stage_id), cat.stages.purchase);
  assert.deepEqual(ev.obstacle_ids.map(Number), [cat.obstacles['shipping-cost']]);
  assert.equal(ev.source, 'chat');
  assert.equal(ev.evidence_id, `message:${ev.message_id}`);
  await msg.locator('ul.codes li').getByText(/costs £12.*emotion 1.*shipping-cost/).waitFor();

  // Cut the visitor's network while both sides keep writing.
  proxy.cut();
  const during = [];
  for (let i = 1; i <= 3; i++) {
    await visitorSay(vp, `visitor while cut ${i}`);
    await agentSay(ap, `agent while cut ${i}`);
    during.push(`visitor while cut ${i}`, `agent while cut ${i}`);
    await sleep(200);
  }
  await sleep(1500);
  // The visitor comes back through instance B: chat.resume works on any instance.
  proxy.target = B.port;
  proxy.restore();
  // And right after, before the widget has resumed.
  for (let i = 1; i <= 3; i++) {
    await visitorSay(vp, `visitor after ${i}`);
    await agentSay(ap, `agent after ${i}`);
  }
  await agentSay(ap, 'second private note', { note: true });
  await visitorSay(vp, 'last visitor message');
  await agentSay(ap, 'last agent message');

  const expectedBodies = [
    'Hi, is the trail backpack waterproof?',
    'Yes, it is fully waterproof.',
    body,
    'Regular customer, offer free shipping',
    ...during,
    ...[1, 2, 3].flatMap((i) => [`visitor after ${i}`, `agent after ${i}`]),
    'second private note',
    'last visitor message',
    'last agent message',
  ];
  const rows = await waitFor(async () => {
    const r = await dbMessages(conv.id);
    return r.length === expectedBodies.length && r;
  }, { timeoutMs: 45000, what: `${expectedBodies.length} messages in the database` });
  assert.deepEqual(new Set(rows.map((r) => r.body)), new Set(expectedBodies));
  // Gapless, and one row per client id.
  assert.deepEqual(rows.map((r) => r.seq), rows.map((_, i) => i + 1));
  assert.equal(new Set(rows.map((r) => r.client_id)).size, rows.length);
  // Each side's own messages keep their order.
  const order = (who) => rows.filter((r) => r.sender === who && r.kind !== 'note').map((r) => r.body);
  assert.deepEqual(order('visitor'), expectedBodies.filter((b) => b.startsWith('visitor') || b === expectedBodies[0] || b === body || b === 'last visitor message'));
  assert.deepEqual(order('agent'), expectedBodies.filter((b) => b.startsWith('agent') || b === 'Yes, it is fully waterproof.' || b === 'last agent message'));

  // Both transcripts equal the database: the console with notes, the widget without.
  const want = rows.map((r) => ({ seq: r.seq, body: r.body }));
  const wantVisitor = rows.filter((r) => r.kind !== 'note').map((r) => ({ seq: r.seq, body: r.body }));
  await waitFor(async () => JSON.stringify((await consoleLog(ap)).map(({ seq, body }) => ({ seq, body }))) === JSON.stringify(want), {
    timeoutMs: 30000,
    what: 'the console transcript equal to the database',
  }).catch(async (e) => {
    e.message += `\nconsole: ${JSON.stringify(await consoleLog(ap))}\ndb: ${JSON.stringify(want)}`;
    throw e;
  });
  await waitFor(async () => JSON.stringify((await widgetLog(vp)).map(({ seq, body }) => ({ seq, body }))) === JSON.stringify(wantVisitor), {
    timeoutMs: 45000,
    what: 'the widget transcript equal to the database minus notes',
  }).catch(async (e) => {
    e.message += `\nwidget: ${JSON.stringify(await widgetLog(vp))}\ndb: ${JSON.stringify(wantVisitor)}`;
    throw e;
  });
  const cl = await consoleLog(ap);
  assert.equal(new Set(cl.map((m) => m.seq)).size, cl.length, 'console: no duplicate seq');
  assert.ok(cl.every((m) => !m.pending));
  assert.deepEqual(cl.filter((m) => m.note).map((m) => m.body), ['Regular customer, offer free shipping', 'second private note']);
  const wl = await widgetLog(vp);
  assert.ok(!wl.some((m) => /private note|Regular customer/.test(m.body)), 'the visitor never sees a note');
  // The widget resumed from its last seq after the cut (chat.resume with after_seq > 0).
  assert.match(B.stderr, /connected \(site demo-site-key-0001\)/, 'the widget reconnected to instance B');
  const resumes = vp.frames_.sent.filter((f) => f.type === 'chat.resume');
  assert.ok(resumes.length >= 1 && resumes.some((f) => f.after_seq > 0), `chat.resume after the cut: ${JSON.stringify(resumes)}`);
  // Every chat.message the console sent was acked with its seq, and resends reused the id.
  const agentSent = ap.frames_.sent.filter((f) => f.type === 'chat.message');
  const agentIds = new Set(agentSent.map((f) => f.id));
  assert.equal(rows.filter((r) => r.sender === 'agent').length, agentIds.size);
  for (const r of rows.filter((x) => x.sender === 'agent')) assert.ok(agentIds.has(r.client_id));
  assert.deepEqual(ap.dialogs, []);
  assert.deepEqual(vp.dialogs, []);
  assert.deepEqual(cspViolations(ap), []);
  assert.deepEqual(cspViolations(vp), []);

  // Presence: the agent signs out, the visitor sees the site go offline.
  await ap.getByRole('button', { name: 'Sign out' }).click();
  await ap.getByRole('heading', { name: 'Sign in' }).waitFor();
  await dlg.getByText('We are offline').waitFor({ timeout: 45000 });
  await vp.context().close();
  await ap.context().close();
});

// Consent modes of the site: opt-in (nothing collected before consent, answers refused with a
// message the visitor can act on) and cookieless (no persistent id, nothing in localStorage).
import assert from 'node:assert/strict';
import { setup, survey, answersOf, waitFor, sleep, SITE_KEY, assertFramesValid } from './lib.mjs';

const env = setup(import.meta.url);
const { h } = env;

const daemonWith = async (mode) => {
  // Each mode gets its own daemon: the catalog (with the consent mode) is read at startup.
  await h.pg.query('UPDATE sites SET consent_mode = $2 WHERE key = $1', [SITE_KEY, mode]);
  return h.startDaemon({ args: ['--static-dir', env.dist] });
};

const storageKeys = (page) =>
  page.evaluate(() => ({ local: Object.keys(localStorage), session: Object.keys(sessionStorage) }));

h.test('opt-in: no touch and no stored id before consent; answers refused in plain words; consent starts collection', async () => {
  const d = await daemonWith('opt-in');
  const page = await env.page();
  await page.goto(`${d.url}/demo/product.html`);
  const welcome = await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  assert.equal(welcome.config.collect, false);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  await page.evaluate(() => window.journey('track', 'looked_at_sizes'));
  await sleep(1000);
  assert.deepEqual(page.frames_.sent.filter((f) => f.type === 'touch'), [], 'no touch frame without consent');
  assert.equal((await h.pg.query('SELECT count(*)::int AS n FROM touch_events')).rows[0].n, 0);
  assert.ok(!(await storageKeys(page)).local.includes('journey.rid'), 'no respondent id stored before consent');

  await dlg.getByText('Happy', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByText('Your answers cannot be saved until you accept data collection on this site.').waitFor({ timeout: 5000 });
  const refused = page.frames_.sent.find((f) => f.type === 'answer');
  assert.ok(page.frames_.received.some((f) => f.type === 'error' && f.code === 'consent_required' && f.id === refused.id));
  await waitFor(async () => {
    const k = await storageKeys(page);
    return ![...k.local, ...k.session].some((x) => x.startsWith('journey.o.'));
  }, { what: 'the refused answer removed from the outbox' });
  assert.ok(page.logs.some((l) => l.type === 'error' && l.text.startsWith('journeyd: consent_required')));

  // The host page's consent banner says yes: a new session with consent, collection starts.
  await page.evaluate(() => window.journey('consent', true));
  await waitFor(() => page.frames_.sent.filter((f) => f.type === 'hello').length === 2, { what: 'second hello' });
  const hello2 = page.frames_.sent.filter((f) => f.type === 'hello')[1];
  assert.equal(hello2.consent, true);
  await waitFor(() => page.frames_.received.filter((f) => f.type === 'welcome' && f.config.collect).length === 1, { what: 'welcome with collect' });
  const rid = await waitFor(() => page.evaluate(() => localStorage.getItem('journey.rid')), { what: 'journey.rid' });
  await waitFor(async () => (await h.pg.query("SELECT count(*)::int AS n FROM touch_events WHERE kind = 'pageview' AND respondent_id = $1", [rid])).rows[0].n === 1, { what: 'pageview after consent' });

  await dlg.getByText('Just browsing').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  const rows = await waitFor(async () => {
    const a = await answersOf(h, rid);
    return a.length === 1 && a;
  }, { what: 'the answer after consent' });
  assert.deepEqual(rows[0].choice, ['browse']);
  assert.equal((await h.pg.query('SELECT count(*)::int AS n FROM answers')).rows[0].n, 1, 'the refused answer was not stored');
  assertFramesValid(page);
  await page.context().close();
});

h.test('cookieless: no respondent id and nothing in localStorage; the outbox lives in sessionStorage', async () => {
  const d = await daemonWith('cookieless');
  const page = await env.page();
  // Record where the outbox entry is at the moment the answer is sent.
  await page.addInitScript(() => {
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      if (String(data).includes('"type":"answer"'))
        window.__atSend = { local: Object.keys(localStorage), session: Object.keys(sessionStorage) };
      return send.call(this, data);
    };
  });
  await page.goto(`${d.url}/demo/product.html`);
  const welcome = await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  assert.equal(welcome.config.consent_mode, 'cookieless');
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  await dlg.getByText('Unhappy', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  const sent = await waitFor(() => page.frames_.sent.find((f) => f.type === 'answer'), { what: 'answer frame' });
  const at = await page.evaluate(() => window.__atSend);
  assert.ok(at.session.includes(`journey.o.${SITE_KEY}.${sent.id}`), 'outbox entry in sessionStorage');
  assert.deepEqual(at.local.filter((k) => k.startsWith('journey.')), []);
  const rows = await waitFor(async () => {
    const r = (await h.pg.query('SELECT * FROM answers WHERE client_id = $1', [sent.id])).rows;
    return r.length === 1 && r;
  }, { what: 'row' });
  assert.equal(rows[0].respondent_id, welcome.session, 'stored under the session, not a persistent id');
  await dlg.getByRole('button', { name: 'Close' }).click();
  await sleep(500);
  const k = await storageKeys(page);
  assert.deepEqual(k.local.filter((x) => x.startsWith('journey.')), [], 'nothing of ours in localStorage');
  assert.ok(k.session.some((x) => x.startsWith('journey.cd.')), 'cooldown kept for the tab only');
  assertFramesValid(page);
  await page.context().close();
});

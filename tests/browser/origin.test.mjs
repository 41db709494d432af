// A page whose origin is not in the site's allowed origins gets no widget and exactly one clear
// console error, and the widget stops trying.
import assert from 'node:assert/strict';
import { setup, journeyErrors, sleep, waitFor, SITE_KEY } from './lib.mjs';

const env = setup(import.meta.url);
const { h } = env;

h.test('disallowed origin: no widget, one console error, no more attempts', async () => {
  const d = await env.daemon();
  // The harness allows http://127.0.0.1:PORT; the same daemon reached as localhost is another origin.
  const origin = `http://localhost:${d.port}`;
  const allowed = (await h.pg.query('SELECT allowed_origins FROM sites WHERE key = $1', [SITE_KEY])).rows[0].allowed_origins;
  assert.ok(!allowed.includes(origin));
  const page = await env.page();
  await page.goto(`${origin}/demo/product.html`);
  const errs = await waitFor(() => journeyErrors(page).length > 0 && journeyErrors(page), { timeoutMs: 30000, what: 'the console error' });
  assert.equal(errs[0].text, `journeyd: this site (origin ${origin}) is not allowed for site key ${SITE_KEY}`);
  const attempts = page.sockets;
  assert.ok(attempts >= 2, `retried before giving up (${attempts} attempts)`);
  await sleep(6000); // product-pulse would have shown after 1.5 s
  assert.equal(journeyErrors(page).length, 1, 'logged once');
  assert.equal(page.sockets, attempts, 'no attempt after giving up');
  assert.equal(await page.locator('[data-journey]').count(), 0, 'no widget in the page');
  assert.equal(page.frames_.received.length, 0);
  await page.context().close();
});

h.test('the allowed origin on the same daemon gets the widget (control)', async () => {
  const d = await env.daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/product.html`);
  await page.getByRole('dialog', { name: 'How is your visit going?' }).waitFor({ timeout: 10000 });
  assert.equal(journeyErrors(page).length, 0);
  await page.context().close();
});

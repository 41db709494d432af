// Triggers from the survey's trigger object, against the demo surveys served by the real daemon:
//   product-pulse:  url contains "product", delay_ms 1500 (+ cooldown_days 1, set below)
//   checkout-pulse: url contains "checkout", exit_intent
import assert from 'node:assert/strict';
import { setup, survey, rid, waitFor, sleep, SITE_KEY } from './lib.mjs';

const env = setup(import.meta.url);
const { h } = env;
let updated;
const daemon = async () => {
  // Before the daemon starts (it loads the catalog at startup).
  updated ??= h.pg.query(`UPDATE surveys SET trigger = trigger || '{"cooldown_days":1}' WHERE slug = 'product-pulse'`);
  await updated;
  return env.daemon();
};

const PRODUCT = 'How is your visit going?';
const CHECKOUT = 'Quick question about checkout';

async function welcomed(page) {
  return waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { timeoutMs: 10000, what: 'welcome' });
}

h.test('delay: the product popover shows 1.5 s after the page is set up, not before', async () => {
  const d = await daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/product.html`);
  const w = await welcomed(page);
  await sleep(Math.max(0, w.at + 900 - Date.now()));
  assert.equal(await page.getByRole('dialog').count(), 0, 'not shown before the delay');
  await survey(page, PRODUCT).waitFor({ timeout: 6000 });
  const after = Date.now() - w.at;
  assert.ok(after >= 1400, `shown ${after} ms after welcome`);
  await page.context().close();
});

h.test('url rules: no survey on a page that matches none', async () => {
  const d = await daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/index.html`);
  await welcomed(page);
  await page.mouse.move(600, 300);
  await page.mouse.move(600, -10); // exit intent, but checkout-pulse is for checkout URLs
  await sleep(3000);
  assert.equal(await page.getByRole('dialog').count(), 0);
  await page.context().close();
});

h.test('single-page app: pushState to a matching URL shows the survey, leaving closes it', async () => {
  const d = await daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/index.html`);
  await welcomed(page);
  await sleep(2000);
  assert.equal(await page.getByRole('dialog').count(), 0);

  await page.evaluate(() => history.pushState({}, '', '/demo/product.html?view=spa'));
  const t0 = Date.now();
  const dlg = survey(page, PRODUCT);
  await dlg.waitFor({ timeout: 6000 });
  assert.ok(Date.now() - t0 >= 1300, 'the delay counts from the URL change');

  await page.evaluate(() => history.pushState({}, '', '/demo/index.html?view=home'));
  await dlg.waitFor({ state: 'detached', timeout: 3000 });

  await page.goBack(); // popstate back to the product URL: armed again (it was neither answered nor dismissed)
  await dlg.waitFor({ timeout: 6000 });

  // Each URL change was a pageview touch for the visitor's path.
  const r = await rid(page);
  const urls = await waitFor(async () => {
    const rows = (await h.pg.query('SELECT url FROM touch_events WHERE respondent_id = $1 AND kind = $2 ORDER BY id', [r, 'pageview'])).rows.map((x) => new URL(x.url).pathname + new URL(x.url).search);
    return rows.length >= 4 && rows;
  }, { what: '4 pageviews', timeoutMs: 10000 });
  assert.deepEqual(urls, ['/demo/index.html', '/demo/product.html?view=spa', '/demo/index.html?view=home', '/demo/product.html?view=spa']);

  // replaceState away closes it; a hash route that matches brings it back.
  await page.evaluate(() => history.replaceState({}, '', '/demo/index.html'));
  await dlg.waitFor({ state: 'detached', timeout: 3000 });
  await page.evaluate(() => {
    location.hash = '#/product/42';
  });
  await dlg.waitFor({ timeout: 6000 });
  await page.context().close();
});

h.test('exit intent: the checkout modal opens when the mouse leaves through the top, not before', async () => {
  const d = await daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/checkout.html`);
  await welcomed(page);
  await page.mouse.move(300, 400);
  await page.mouse.move(900, 200, { steps: 5 });
  await page.mouse.move(1270, 300); // near the right edge, still inside
  await sleep(2500);
  assert.equal(await page.getByRole('dialog').count(), 0, 'no modal without exit intent');
  await page.mouse.move(600, 5, { steps: 3 });
  await page.mouse.move(600, -10);
  const dlg = survey(page, CHECKOUT);
  await dlg.waitFor({ timeout: 3000 });
  assert.equal(await dlg.evaluate((e) => e.tagName === 'DIALOG' && e.matches(':modal')), true);
  await page.context().close();
});

h.test('cooldown: a dismissed survey stays away for cooldown_days, then comes back; without cooldown_days, for good', async () => {
  const d = await daemon();
  const cat = await h.catalog();
  const page = await env.page();
  await page.goto(`${d.url}/demo/product.html`);
  const dlg = survey(page, PRODUCT);
  await dlg.waitFor({ timeout: 10000 });
  await dlg.getByRole('button', { name: 'Close' }).click();
  await dlg.waitFor({ state: 'detached' });
  const key = `journey.cd.${SITE_KEY}.${cat.surveys['product-pulse'].id}`;
  const ts = Number(await page.evaluate((k) => localStorage.getItem(k), key));
  assert.ok(Math.abs(Date.now() - ts) < 60000, 'dismissal time stored in localStorage');

  await page.reload();
  await welcomed(page);
  await sleep(3500);
  assert.equal(await page.getByRole('dialog').count(), 0, 'within the cooldown: not shown');

  // 23 hours later: still cooling down.
  await page.evaluate((k) => localStorage.setItem(k, String(Date.now() - 23 * 3600e3)), key);
  page.frames_.received.length = 0;
  await page.reload();
  await welcomed(page);
  await sleep(3500);
  assert.equal(await page.getByRole('dialog').count(), 0, '23 h after: not shown');

  // 25 hours later: cooldown_days 1 has passed.
  await page.evaluate((k) => localStorage.setItem(k, String(Date.now() - 25 * 3600e3)), key);
  await page.reload();
  await survey(page, PRODUCT).waitFor({ timeout: 10000 });

  // checkout-pulse has no cooldown_days: dismissed (Escape) means not again.
  await page.goto(`${d.url}/demo/checkout.html`);
  page.frames_.received.length = 0;
  await welcomed(page);
  await page.mouse.move(600, 200);
  await page.mouse.move(600, -10);
  const m = survey(page, CHECKOUT);
  await m.waitFor({ timeout: 3000 });
  await page.keyboard.press('Escape');
  await m.waitFor({ state: 'detached' });
  const ckey = `journey.cd.${SITE_KEY}.${cat.surveys['checkout-pulse'].id}`;
  await page.evaluate((k) => localStorage.setItem(k, String(Date.now() - 400 * 864e5)), ckey);
  page.frames_.received.length = 0;
  await page.reload();
  await welcomed(page);
  await page.mouse.move(600, 200);
  await page.mouse.move(600, -10);
  await sleep(1500);
  assert.equal(await page.getByRole('dialog').count(), 0, 'dismissed without cooldown_days: never again');
  await page.context().close();
});

// A daemon with a tiny token bucket: rate_limited frames stay in the outbox, the visitor reads
// "Please wait a moment…", and everything is stored exactly once in the end.
import assert from 'node:assert/strict';
import { setup, survey, rid, answersOf, waitFor, sleep } from './lib.mjs';

const env = setup(import.meta.url);
const { h } = env;

h.test('rate_limited: plain-words notice, frames resent later, each stored once', async () => {
  const d = await h.startDaemon({ args: ['--static-dir', env.dist, '--rate-per-sec', '1', '--rate-burst', '2'] });
  const page = await env.page();
  await page.goto(`${d.url}/demo/product.html`);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 15000 });
  await page.evaluate(() => {
    for (const e of ['size_guide', 'colour_picked', 'zoomed', 'reviews_read']) window.journey('track', e);
  });
  await dlg.getByText('Very happy').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByText('Please wait a moment…').waitFor({ timeout: 5000 });
  assert.ok(page.frames_.received.some((f) => f.type === 'error' && f.code === 'rate_limited'));
  await dlg.getByText('Compare options').click();
  await dlg.getByRole('button', { name: 'Next' }).click();

  const r = await rid(page);
  await waitFor(async () => (await answersOf(h, r)).length === 2, { timeoutMs: 60000, what: 'both answers' });
  await waitFor(async () => (await h.pg.query("SELECT count(*)::int AS n FROM touch_events WHERE respondent_id = $1 AND kind = 'event'", [r])).rows[0].n === 4, { timeoutMs: 60000, what: 'the four events' });
  await waitFor(() => page.evaluate(() => !Object.keys(localStorage).some((k) => k.startsWith('journey.o.'))), { timeoutMs: 30000, what: 'empty outbox' });
  await sleep(1000);
  assert.equal((await answersOf(h, r)).length, 2);
  const ev = (await h.pg.query("SELECT name, count(*)::int AS n FROM touch_events WHERE respondent_id = $1 AND kind = 'event' GROUP BY name ORDER BY name", [r])).rows;
  assert.deepEqual(ev, [{ name: 'colour_picked', n: 1 }, { name: 'reviews_read', n: 1 }, { name: 'size_guide', n: 1 }, { name: 'zoomed', n: 1 }]);
  assert.equal(page.logs.filter((l) => l.text.startsWith('journeyd: rate_limited')).length, 0, 'rate limiting is not a console error');
  await page.context().close();
});

// The question kinds and triggers the demo seed does not use, on surveys this file adds to the
// demo map before the daemon starts: csat, multi_choice, action, show_if branching (equals/in),
// event triggers from journey('track'), scroll_pct, percent, the top-left corner.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setup, survey, rid, answersOf, waitFor, sleep, assertFramesValid } from './lib.mjs';

const env = setup(import.meta.url);
const { h } = env;

let ready;
const daemon = async () => {
  ready ??= (async () => {
    const map = (await h.pg.query("SELECT id FROM maps WHERE slug = 'online-purchase'")).rows[0].id;
    const add = async (slug, title, display, trigger, questions) => {
      const s = (await h.pg.query(`INSERT INTO surveys (map_id, slug, title, status, display, trigger) VALUES ($1,$2,$3,'live',$4,$5) RETURNING id`, [map, slug, title, display, trigger])).rows[0].id;
      let pos = 0;
      for (const q of questions)
        await h.pg.query('INSERT INTO questions (survey_id, key, position, kind, prompt, required, options, show_if) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)', [s, q.key, ++pos, q.kind, q.prompt, !!q.required, q.options ? JSON.stringify(q.options) : null, q.show_if ?? null]);
      return Number(s);
    };
    await add('basket-check', 'Basket check', { mode: 'popover', corner: 'top-left' }, { event: 'compare_clicked', url: { op: 'contains', value: 'index' } }, [
      { key: 'rating', kind: 'csat', prompt: 'How satisfied are you with the basket?', required: true },
      { key: 'why-low', kind: 'text', prompt: 'What went wrong?', show_if: { question: 'rating', in: [1, 2] } },
      { key: 'extras', kind: 'multi_choice', prompt: 'Which extras would you add?', options: [{ value: 'rain-cover' }, { value: 'bottle', label: 'Bottle holder' }, { value: 'strap', label: 'Chest strap' }], show_if: { question: 'rating', in: [4, 5] } },
      { key: 'did', kind: 'action', prompt: 'What did you do just before this?' },
    ]);
    await add('scroll-check', 'Found what you need?', { mode: 'popover', corner: 'bottom-left' }, { url: { op: 'regex', value: 'index\\.html\\?long$' }, scroll_pct: 60 }, [
      { key: 'found', kind: 'goal', prompt: 'Did you find what you were looking for?', required: true },
    ]);
    const half = await add('half', 'Half of the visitors', { mode: 'popover' }, { url: { op: 'ends_with', value: 'inline.html' }, percent: 50 }, [
      { key: 'q', kind: 'goal', prompt: 'Is this page useful?' },
    ]);
    await add('nobody', 'Nobody sees this', { mode: 'modal' }, { url: { op: 'ends_with', value: 'inline.html' }, percent: 0 }, [
      { key: 'q', kind: 'goal', prompt: 'Never asked' },
    ]);
    return { half };
  })();
  return { ...(await ready), d: await env.daemon() };
};

h.test('event trigger, csat, show_if (in) choosing the high branch, multi_choice and action', async () => {
  const { d } = await daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/index.html`);
  await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  await page.evaluate(() => window.journey('track', 'other_event'));
  await sleep(1500);
  assert.equal(await page.getByRole('dialog').count(), 0, 'another event does not trigger');
  await page.evaluate(() => window.journey('track', 'compare_clicked'));
  const dlg = survey(page, 'Basket check');
  await dlg.waitFor({ timeout: 3000 });
  const box = await dlg.boundingBox();
  assert.ok(box.x < 40 && box.y < 40, `top-left corner (${box.x}, ${box.y})`);
  const csat = dlg.getByRole('radiogroup', { name: 'How satisfied are you with the basket?' });
  assert.equal(await csat.getByRole('radio').count(), 5);
  await dlg.getByText('1 = very unsatisfied, 5 = very satisfied').waitFor();
  await csat.getByText('5', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByText('Question 2 of 3').waitFor();
  const extras = dlg.getByRole('group', { name: 'Which extras would you add?' });
  await extras.getByText('Bottle holder').click();
  await extras.getByText('Chest strap').click();
  assert.equal(await extras.getByText('rain-cover').count(), 1, 'an option without a label shows its value');
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByLabel('What did you do just before this?').fill('Compared two backpacks');
  await dlg.getByRole('button', { name: 'Send' }).click();
  await dlg.getByText('Thank you!').waitFor();

  const r = await rid(page);
  const rows = await waitFor(async () => {
    const a = await answersOf(h, r);
    return a.length === 3 && a;
  }, { what: '3 rows' });
  const by = Object.fromEntries(rows.map((x) => [x.key, x]));
  assert.equal(by.rating.score, 5);
  assert.deepEqual(by.extras.choice, ['bottle', 'strap']);
  assert.equal(by.did.action, 'Compared two backpacks');
  assert.ok(!by['why-low']);
  const ev = (await h.pg.query("SELECT name FROM touch_events WHERE respondent_id = $1 AND kind = 'event' ORDER BY id", [r])).rows.map((x) => x.name);
  assert.deepEqual(ev, ['other_event', 'compare_clicked']);
  assertFramesValid(page);
  await page.context().close();
});

h.test('show_if low branch: the follow-up text shows, the extras do not; skipped optional questions send nothing', async () => {
  const { d } = await daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/index.html`);
  await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  await page.evaluate(() => window.journey('track', 'compare_clicked'));
  const dlg = survey(page, 'Basket check');
  await dlg.waitFor({ timeout: 3000 });
  await dlg.getByRole('radiogroup').getByText('2', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByLabel('What went wrong?').fill('Delivery date unclear');
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByLabel('What did you do just before this?').waitFor();
  await dlg.getByText('Question 3 of 3').waitFor();
  await dlg.getByRole('button', { name: 'Send' }).click();
  await dlg.getByText('Thank you!').waitFor();
  const r = await rid(page);
  const rows = await waitFor(async () => {
    const a = await answersOf(h, r);
    return a.length === 2 && a;
  }, { what: '2 rows' });
  await sleep(1000);
  assert.deepEqual((await answersOf(h, r)).map((x) => x.key), ['rating', 'why-low']);
  assert.equal(rows[1].thought, 'Delivery date unclear');
  assertFramesValid(page);
  await page.context().close();
});

h.test('scroll_pct: shows once the visitor has scrolled 60 % of the page', async () => {
  const { d } = await daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/index.html?long`);
  await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  await page.mouse.move(600, 400);
  await page.mouse.wheel(0, 400);
  await sleep(1200);
  assert.equal(await page.getByRole('dialog').count(), 0, 'not at a quarter of the page');
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
  await survey(page, 'Found what you need?').waitFor({ timeout: 3000 });
  assertFramesValid(page);
  await page.context().close();
});

// FNV-1a of "respondent:survey" modulo 100, as the widget computes the stable bucket.
function bucket(s) {
  let x = 2166136261;
  for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 16777619);
  return (x >>> 0) % 100;
}

h.test('percent: a respondent in the 50 % sees the survey on every visit, one outside never; percent 0 never', async () => {
  const { d, half } = await daemon();
  let inside;
  let outside;
  while (!inside || !outside) {
    const id = randomUUID();
    if (bucket(`${id}:${half}`) < 50) inside ??= id;
    else outside ??= id;
  }
  for (const [who, expect] of [[inside, 1], [outside, 0]]) {
    const page = await env.page();
    await page.addInitScript((id) => localStorage.setItem('journey.rid', id), who);
    for (let visit = 0; visit < 2; visit++) {
      page.frames_.received.length = 0;
      await page.goto(`${d.url}/demo/inline.html`);
      await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
      if (expect) await survey(page, 'Half of the visitors').waitFor({ timeout: 5000 });
      else await sleep(2500);
      assert.equal(await page.getByRole('dialog', { name: 'Half of the visitors' }).count(), expect, `respondent ${who}, visit ${visit}`);
      assert.equal(await page.getByRole('dialog', { name: 'Nobody sees this' }).count(), 0);
    }
    await page.context().close();
  }
});

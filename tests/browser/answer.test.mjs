// Answering the demo surveys with the mouse and with the keyboard only: every answer becomes one
// row in PostgreSQL with the persona from identify and the question's stage and touchpoint.
import assert from 'node:assert/strict';
import { setup, survey, rid, answersOf, outbox, waitFor, journeyErrors, cspViolations, assertFramesValid } from './lib.mjs';

const env = setup(import.meta.url);
const { h } = env;

async function rows(page, n) {
  const r = await rid(page);
  assert.match(r ?? '', /^[0-9a-f-]{36}$/, 'journey.rid is a UUID in localStorage');
  return waitFor(async () => {
    const a = await answersOf(h, r);
    return a.length >= n && a;
  }, { timeoutMs: 15000, what: `${n} answer rows` });
}

h.test('mouse: product popover, three questions, rows carry persona, stage and touchpoint', async () => {
  const d = await env.daemon();
  const cat = await h.catalog();
  const page = await env.page();
  await page.goto(`${d.url}/demo/product.html?persona=busy-professional&utm_source=newsletter&utm_campaign=spring`, { referer: 'https://search.example/?q=backpack' });
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  await dlg.getByText('Question 1 of 3').waitFor();
  // Page context in hello, stored with the session.
  const hello = page.frames_.sent.find((f) => f.type === 'hello');
  assert.deepEqual(hello.page.utm, { source: 'newsletter', campaign: 'spring' });
  assert.equal(hello.page.lang, 'en-GB');
  assert.equal(hello.page.referrer, 'https://search.example/?q=backpack');
  assert.equal(hello.persona, 'busy-professional');
  assert.equal(hello.stage, 'consideration');
  const sess = (await h.pg.query('SELECT * FROM sessions WHERE respondent_id = $1', [await rid(page)])).rows;
  assert.equal(sess.length, 1);
  assert.deepEqual(sess[0].utm, { source: 'newsletter', campaign: 'spring' });
  assert.equal(sess[0].lang, 'en-GB');
  assert.equal(Number(sess[0].persona_id), cat.personas['busy-professional']);
  // Text labels on every face.
  for (const l of ['Very unhappy', 'Unhappy', 'Neutral', 'Happy', 'Very happy']) assert.equal(await dlg.getByRole('radio', { name: l, exact: true }).count(), 1, l);
  await dlg.getByText('Very happy').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByText('Buy now').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByLabel('Anything on your mind?').fill('The rain cover is a nice touch');
  await dlg.getByRole('button', { name: 'Send' }).click();
  await dlg.getByText('Thank you!').waitFor();

  const a = await rows(page, 3);
  assert.equal(a.length, 3);
  const by = Object.fromEntries(a.map((r) => [r.key, r]));
  assert.equal(by.feel.emotion, 5);
  assert.deepEqual(by['looking-for'].choice, ['buy']);
  assert.equal(by.thoughts.thought, 'The rain cover is a nice touch');
  for (const r of a) {
    assert.equal(Number(r.persona_id), cat.personas['busy-professional'], `persona of ${r.key}`);
    assert.equal(Number(r.stage_id), cat.stages.consideration, `stage of ${r.key}`);
    assert.equal(Number(r.touchpoint_id), cat.touchpoints.website, `touchpoint of ${r.key}`);
    assert.equal(Number(r.survey_id), cat.surveys['product-pulse'].id);
  }
  // One answer frame per question, each with its own UUID, all acked and gone from the outbox.
  const sent = page.frames_.sent.filter((f) => f.type === 'answer');
  assert.equal(new Set(sent.map((f) => f.id)).size, 3);
  assert.deepEqual(new Set(a.map((r) => r.client_id)), new Set(sent.map((f) => f.id)));
  await waitFor(async () => (await outbox(page)).filter((f) => f.type === 'answer').length === 0, { what: 'empty outbox' });
  await page.getByRole('dialog').waitFor({ state: 'detached', timeout: 6000 });
  assert.deepEqual(journeyErrors(page), []);
  assert.deepEqual(cspViolations(page), []);
  assertFramesValid(page);
  await page.context().close();
});

// Presses Tab until the focus is inside the widget's shadow root; returns how many presses.
async function tabIntoWidget(page, max = 40) {
  for (let i = 1; i <= max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => !!document.activeElement?.closest?.('[data-journey]'))) return i;
  }
  throw new Error('Tab never reached the widget');
}

const focused = (page) =>
  page.evaluate(() => {
    const a = document.activeElement?.shadowRoot?.activeElement;
    if (!a) return null;
    const ring = a.type === 'radio' || a.type === 'checkbox' ? a.nextElementSibling : a;
    const cs = getComputedStyle(ring);
    return { tag: a.tagName, type: a.type, label: a.closest('label')?.textContent ?? a.textContent, checked: a.checked, outline: cs.outlineStyle, outlineWidth: cs.outlineWidth };
  });

h.test('keyboard only: Tab in, arrow keys in the radio groups, Enter to go on', async () => {
  const d = await env.daemon();
  const cat = await h.catalog();
  const page = await env.page();
  await page.goto(`${d.url}/demo/product.html?persona=first-time-buyer`);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  // The popover does not steal the focus; the visitor tabs into it.
  assert.equal(await page.evaluate(() => !!document.activeElement?.closest?.('[data-journey]')), false);
  await tabIntoWidget(page);
  let f = await focused(page);
  assert.equal(f.tag, 'BUTTON'); // the close button comes first
  await page.keyboard.press('Tab');
  f = await focused(page);
  assert.equal(f.type, 'radio');
  assert.notEqual(f.outline, 'none', 'visible focus on the scale');
  // Enter with nothing chosen: the question is required, the error is announced.
  await page.keyboard.press('Enter');
  await dlg.getByRole('status').getByText('Please answer this question.').waitFor();
  // Arrow keys move through the radio group and choose.
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowLeft');
  f = await focused(page);
  assert.equal(f.checked, true);
  assert.match(f.label, /Neutral/);
  await page.keyboard.press('Enter');
  await dlg.getByRole('status').getByText('Question 2 of 3').waitFor();
  f = await focused(page);
  assert.equal(f.type, 'radio', 'focus moves to the next question');
  await page.keyboard.press('ArrowDown');
  f = await focused(page);
  assert.match(f.label, /Buy now/);
  await page.keyboard.press('Enter');
  await dlg.getByText('Question 3 of 3').waitFor();
  f = await focused(page);
  assert.equal(f.tag, 'TEXTAREA');
  await page.keyboard.type('Typed without a mouse');
  await page.keyboard.press('Tab');
  f = await focused(page);
  assert.equal(f.tag, 'BUTTON');
  assert.match(f.label, /Send/);
  assert.notEqual(f.outline, 'none');
  await page.keyboard.press('Enter');
  await dlg.getByText('Thank you!').waitFor();

  const a = await rows(page, 3);
  const by = Object.fromEntries(a.map((r) => [r.key, r]));
  assert.equal(by.feel.emotion, 3);
  assert.deepEqual(by['looking-for'].choice, ['buy']);
  assert.equal(by.thoughts.thought, 'Typed without a mouse');
  for (const r of a) {
    assert.equal(Number(r.persona_id), cat.personas['first-time-buyer']);
    assert.equal(Number(r.stage_id), cat.stages.consideration);
    assert.equal(Number(r.touchpoint_id), cat.touchpoints.website);
  }
  assertFramesValid(page);
  await page.context().close();
});

h.test('checkout modal: obstacle picker with Other, goal and NPS; Escape is not needed to finish', async () => {
  const d = await env.daemon();
  const cat = await h.catalog();
  const page = await env.page();
  await page.goto(`${d.url}/demo/checkout.html`);
  await page.evaluate(() => window.journey('show', 'checkout-pulse'));
  const dlg = survey(page, 'Quick question about checkout');
  await dlg.waitFor({ timeout: 10000 });
  assert.equal(await dlg.evaluate((e) => e.tagName), 'DIALOG');
  // The modal takes the focus.
  assert.equal((await focused(page)).type, 'radio');
  await dlg.getByText('Unhappy', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  const group = dlg.getByRole('group', { name: 'Is anything getting in your way?' });
  for (const n of ['Price too high', 'Checkout too complex', 'Missing feature', 'Shipping cost', 'Other']) assert.equal(await group.getByText(n, { exact: true }).count(), 1, n);
  await group.getByText('Shipping cost').click();
  await group.getByText('Other').click();
  await dlg.getByLabel('Please describe').fill('No PayPal');
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByRole('radio', { name: 'No' }).check();
  await dlg.getByRole('button', { name: 'Next' }).click();
  const nps = dlg.getByRole('radiogroup', { name: 'How likely are you to recommend us?' });
  assert.equal(await nps.getByRole('radio').count(), 11);
  await nps.getByText('7', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Send' }).click();
  await dlg.getByText('Thank you!').waitFor();

  const a = await rows(page, 4);
  const by = Object.fromEntries(a.map((r) => [r.key, r]));
  assert.equal(by.feel.emotion, 2);
  assert.deepEqual(by.blockers.obstacle_ids.map(Number), [cat.obstacles['shipping-cost']]);
  assert.equal(by.blockers.thought, 'No PayPal');
  assert.equal(by.done.goal_reached, false);
  assert.equal(by.recommend.score, 7);
  assert.equal(Number(by.feel.stage_id), cat.stages.purchase);
  assert.equal(Number(by.recommend.stage_id), cat.stages.advocacy);
  for (const r of a) assert.equal(Number(r.persona_id), cat.personas['budget-parent']);
  assertFramesValid(page);
  await page.context().close();
});

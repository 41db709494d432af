// Accessibility and presentation of the open widget: axe-core (which looks inside open shadow
// roots) finds no serious or critical violation in any display mode or question kind; RTL and
// translations; prefers-reduced-motion; theming through CSS custom properties; no CSP violation.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import http from 'node:http';
import { setup, survey, rid, answersOf, waitFor, cspViolations, journeyErrors, allowOrigin, SITE_KEY } from './lib.mjs';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');
const env = setup(import.meta.url);
const { h } = env;

// axe is injected into the page, so this context bypasses the demo's CSP.
const axePage = () => env.page({ bypassCSP: true });

async function axe(page) {
  if (!(await page.evaluate(() => !!window.axe))) await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations', 'passes'] }));
  const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  // The widget was really inspected: some passing checks point into its shadow root.
  const inShadow = r.passes.flatMap((p) => p.nodes).filter((n) => Array.isArray(n.target[0]) || n.target.length > 1);
  assert.ok(inShadow.length > 5, 'axe looked inside the shadow root');
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => JSON.stringify(n.target)).join(', ')}`),
    [],
  );
  return r;
}

h.test('axe: popover through every question of product-pulse, with the required-answer error', async () => {
  const d = await env.daemon();
  const page = await axePage();
  await page.goto(`${d.url}/demo/product.html`);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  await axe(page);
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByText('Please answer this question.').waitFor();
  await axe(page);
  await dlg.getByText('Happy', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await axe(page);
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByLabel('Anything on your mind?').waitFor();
  await axe(page);
  await page.context().close();
});

h.test('axe: checkout modal with the obstacle picker, goal and NPS', async () => {
  const d = await env.daemon();
  const page = await axePage();
  await page.goto(`${d.url}/demo/checkout.html`);
  await page.evaluate(() => window.journey('show', 'checkout-pulse'));
  const dlg = survey(page, 'Quick question about checkout');
  await dlg.waitFor({ timeout: 10000 });
  await axe(page);
  await dlg.getByText('Neutral').click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByText('Other').click();
  await axe(page);
  await dlg.getByRole('button', { name: 'Next' }).click();
  await axe(page);
  await dlg.getByRole('button', { name: 'Next' }).click();
  await dlg.getByRole('radiogroup', { name: 'How likely are you to recommend us?' }).waitFor();
  await axe(page);
  await page.context().close();
});

h.test('inline mode: the survey renders inside #feedback, passes axe and stores answers', async () => {
  const d = await env.daemon();
  const cat = await h.catalog();
  const page = await axePage();
  await page.goto(`${d.url}/demo/inline.html`);
  const sec = page.locator('#feedback [data-journey]');
  await sec.waitFor({ state: 'attached', timeout: 10000 });
  await page.getByRole('region', { name: 'How is your visit going?' }).waitFor();
  assert.equal(await page.getByRole('dialog').count(), 0, 'inline is not a dialog');
  await axe(page);
  await page.getByText('Very happy').click();
  await page.getByRole('button', { name: 'Next' }).click();
  const r = await rid(page);
  const rows = await waitFor(async () => {
    const a = await answersOf(h, r);
    return a.length === 1 && a;
  }, { what: 'inline answer row' });
  assert.equal(rows[0].emotion, 5);
  assert.equal(Number(rows[0].persona_id), cat.personas['budget-parent']);
  await page.context().close();
});

h.test('Arabic: right-to-left widget root with Arabic labels; French labels', async () => {
  const d = await env.daemon();
  const page = await axePage();
  await page.addInitScript(() => {
    window.journey = function () {
      (window.journey.q = window.journey.q || []).push(arguments);
    };
    window.journey('language', 'ar');
  });
  await page.goto(`${d.url}/demo/product.html`);
  const dlg = page.getByRole('dialog');
  await dlg.waitFor({ timeout: 10000 });
  assert.equal(await page.locator('[data-journey]').getAttribute('dir'), 'rtl');
  assert.equal(await dlg.getAttribute('dir'), 'rtl');
  assert.equal(await dlg.getAttribute('lang'), 'ar');
  await dlg.getByRole('radio', { name: 'غير سعيد جدًا' }).waitFor();
  await dlg.getByRole('button', { name: 'التالي' }).waitFor();
  await dlg.getByText('السؤال 1 من 3').waitFor();
  // Right to left: the first face is drawn right of the last one.
  const first = await dlg.locator('label.o').first().boundingBox();
  const last = await dlg.locator('label.o').last().boundingBox();
  assert.ok(first.x > last.x, 'scale runs right to left');
  await axe(page);
  await page.context().close();

  const fr = await env.page({ locale: 'fr-FR' });
  await fr.addInitScript(() => {
    window.journey = function () {
      (window.journey.q = window.journey.q || []).push(arguments);
    };
    window.journey('language', 'fr-FR');
  });
  await fr.goto(`${d.url}/demo/product.html`);
  const f = fr.getByRole('dialog');
  await f.waitFor({ timeout: 10000 });
  assert.equal(await f.getAttribute('dir'), 'ltr');
  await f.getByRole('radio', { name: 'Très content' }).waitFor();
  await f.getByRole('button', { name: 'Fermer' }).waitFor();
  await f.getByText('Question 1 sur 3').waitFor();
  await fr.context().close();
});

h.test('reduced motion, theming through custom properties, strict CSP without violations', async () => {
  const d = await env.daemon();
  const page = await env.page({ reducedMotion: 'reduce' });
  await page.goto(`${d.url}/demo/product.html`);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  assert.equal(await dlg.evaluate((e) => getComputedStyle(e).animationName), 'none');
  // demo/shop.css sets --journey-accent: #0b6e4f on :root.
  const next = dlg.getByRole('button', { name: 'Next' });
  assert.equal(await next.evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(11, 110, 79)');
  await page.evaluate(() => document.documentElement.style.setProperty('--journey-bg', '#202124'));
  assert.equal(await dlg.evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(32, 33, 36)');
  // The demo page runs under a strict CSP (no inline script or style, Trusted Types required).
  assert.match(await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content'), /script-src 'self'; style-src 'self'.*require-trusted-types-for 'script'/);
  assert.deepEqual(cspViolations(page), []);
  assert.deepEqual(journeyErrors(page), []);
  await page.context().close();

  const moving = await env.page({ reducedMotion: 'no-preference' });
  await moving.goto(`${d.url}/demo/product.html`);
  const m = survey(moving, 'How is your visit going?');
  await m.waitFor({ timeout: 10000 });
  assert.equal(await m.evaluate((e) => getComputedStyle(e).animationName), 'in');
  await moving.context().close();
});

h.test('cross-origin embed without constructable stylesheets: <style nonce> from data-nonce', async (t) => {
  // A host page on its own origin under a nonce-based CSP, embedding widget.js from the daemon.
  const srv = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.setHeader('content-security-policy', `default-src 'none'; script-src ${d.url}; style-src 'nonce-n0nce42'; connect-src ${d.url.replace('http', 'ws')}`);
    res.end(`<!doctype html><html lang="en"><head><title>Host shop</title></head><body><main><h1>Host shop</h1></main>
      <script async src="${d.url}/widget.js" data-site="${SITE_KEY}" data-nonce="n0nce42"></script></body></html>`);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => srv.close(r)));
  const host = `http://127.0.0.1:${srv.address().port}`;
  await allowOrigin(h, host);
  const d = await h.startDaemon({ args: ['--static-dir', env.dist] }); // reads the new origin at startup
  const page = await env.page();
  await page.addInitScript(() => {
    // An older browser: no constructable stylesheets.
    window.CSSStyleSheet = function () {
      throw new TypeError('Illegal constructor');
    };
  });
  await page.goto(`${host}/demo/product.html`);
  const dlg = survey(page, 'How is your visit going?');
  await dlg.waitFor({ timeout: 10000 });
  const style = await page.evaluate(() => {
    const r = document.querySelector('[data-journey]').shadowRoot;
    const s = r.querySelector('style');
    return { nonce: s && s.nonce, adopted: r.adoptedStyleSheets.length };
  });
  assert.deepEqual(style, { nonce: 'n0nce42', adopted: 0 });
  // The stylesheet applied: fixed in a corner, default accent (the host sets no theme).
  assert.equal(await dlg.evaluate((e) => getComputedStyle(e).position), 'fixed');
  assert.equal(await dlg.getByRole('button', { name: 'Next' }).evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(29, 78, 216)');
  assert.deepEqual(cspViolations(page), []);
  assert.equal(page.frames_.sent[0].page.url, `${host}/demo/product.html`);
  await page.context().close();
});

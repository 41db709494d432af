// The loader: async script tag, command queue before load, nothing done until the browser is idle.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setup, waitFor, sleep, ROOT, assertFramesValid } from './lib.mjs';

const env = setup(import.meta.url);
const { h } = env;

h.test('no work before the idle callback: no WebSocket, no storage, until requestIdleCallback runs', async () => {
  const d = await env.daemon();
  const page = await env.page();
  await page.addInitScript(() => {
    window.__idle = [];
    window.requestIdleCallback = (f, o) => window.__idle.push([f, o]);
  });
  await page.goto(`${d.url}/demo/product.html`);
  await page.waitForFunction(() => window.journey && window.journey.jd === 1); // the script has run
  await sleep(2000);
  assert.equal(page.sockets, 0, 'no connection before idle');
  assert.deepEqual(await page.evaluate(() => Object.keys(localStorage)), []);
  const idle = await page.evaluate(() => window.__idle.map(([, o]) => o));
  assert.deepEqual(idle, [{ timeout: 2000 }], 'one idle callback with a timeout');
  // Commands queued by the page so far are kept, not lost.
  await page.evaluate(() => window.journey('stage', 'purchase'));
  await page.evaluate(() => window.__idle[0][0]());
  await page.getByRole('dialog', { name: 'How is your visit going?' }).waitFor({ timeout: 10000 });
  const hello = page.frames_.sent.find((f) => f.type === 'hello');
  assert.equal(hello.persona, 'budget-parent', 'identify queued by shop.js before the widget loaded');
  assert.equal(hello.stage, 'purchase', 'the last stage command wins');
  assertFramesValid(page);
  await page.context().close();
});

h.test('the demo pages load the widget with one async script tag and a strict CSP', () => {
  for (const f of ['index.html', 'product.html', 'checkout.html', 'inline.html']) {
    const html = readFileSync(path.join(ROOT, 'web-widget/demo', f), 'utf8');
    assert.match(html, /<script async src="\/widget\.js" data-site="demo-site-key-0001"><\/script>/, f);
    assert.doesNotMatch(html, /<script>(?!<)|<script(?![^>]*src)[^>]*>/, `${f}: no inline script`);
    assert.doesNotMatch(html, /<style|style=/, `${f}: no inline style`);
    assert.match(html, /http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self'; style-src 'self';/, f);
  }
});

h.test('a second copy of the script does not start a second widget', async () => {
  const d = await env.daemon();
  const page = await env.page({ bypassCSP: true }); // the demo's Trusted Types would refuse the test's script.src
  await page.goto(`${d.url}/demo/index.html`);
  await waitFor(() => page.frames_.received.find((f) => f.type === 'welcome'), { what: 'welcome' });
  const loaded = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const s = document.createElement('script');
        s.src = '/widget.js?again';
        s.dataset.site = 'demo-site-key-0001';
        s.onload = () => resolve(true);
        s.onerror = () => resolve(false);
        document.body.append(s);
      }),
  );
  assert.equal(loaded, true, 'the second copy ran');
  await sleep(3000);
  assert.equal(page.sockets, 1);
  await page.context().close();
});

h.test('an unknown persona slug in identify is reported and dropped; the widget still works', async () => {
  const d = await env.daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/product.html?persona=no-such-persona`);
  await page.getByRole('dialog', { name: 'How is your visit going?' }).waitFor({ timeout: 10000 });
  const hellos = page.frames_.sent.filter((f) => f.type === 'hello');
  assert.equal(hellos.length, 2);
  assert.equal(hellos[0].persona, 'no-such-persona');
  assert.equal(hellos[1].persona, undefined);
  assert.equal(hellos[1].stage, 'consideration', 'the other hints stay');
  assert.ok(page.logs.some((l) => l.type === 'error' && /^journeyd: unknown_persona/.test(l.text)));
  assertFramesValid(page);
  await page.context().close();
});

h.test('an answer refused for an unknown stage slug is resent without the hint, not lost', async () => {
  const d = await env.daemon();
  const page = await env.page();
  await page.goto(`${d.url}/demo/product.html`);
  const dlg = page.getByRole('dialog', { name: 'How is your visit going?' });
  await dlg.waitFor({ timeout: 10000 });
  await page.evaluate(() => window.journey('stage', 'no-such-stage'));
  await dlg.getByText('Happy', { exact: true }).click();
  await dlg.getByRole('button', { name: 'Next' }).click();
  const rid = await page.evaluate(() => localStorage.getItem('journey.rid'));
  const rows = await waitFor(async () => {
    const r = (await h.pg.query('SELECT * FROM answers WHERE respondent_id = $1', [rid])).rows;
    return r.length === 1 && r;
  }, { what: 'the answer row' });
  const frames = page.frames_.sent.filter((f) => f.type === 'answer');
  assert.equal(frames.length, 2);
  assert.equal(frames[0].id, frames[1].id, 'same id');
  assert.equal(frames[0].stage, 'no-such-stage');
  assert.equal(frames[1].stage, undefined);
  assert.equal(rows[0].client_id, frames[0].id);
  assert.equal(rows[0].emotion, 4);
  assert.ok(page.logs.some((l) => l.type === 'error' && /^journeyd: unknown_stage/.test(l.text)));
  await page.context().close();
});

// Shared setup for the browser tests: the widget built into a temp dir by web-widget/build.mjs,
// the REAL journeyd (tests/lib/harness.mjs) serving it with --static-dir, Debian's Chromium through
// playwright-core, and a TCP proxy that can cut the network between the browser and the daemon.
import { before, after } from 'node:test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { Harness, ROOT, SITE_KEY, waitFor, sleep, validateFrame } from '../lib/harness.mjs';

export { SITE_KEY, waitFor, sleep, ROOT };

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

// Registers hooks for one test file. Returns an object whose members are filled in before():
// h (Harness), dist (built widget dir), browser.
export function setup(metaUrl, opts = {}) {
  const h = Harness.forFile(metaUrl, opts);
  const env = { h, dist: null, browser: null, daemonP: null };
  before(async () => {
    env.dist = mkdtempSync(path.join(os.tmpdir(), 'jdwidget.'));
    execFileSync(process.execPath, [path.join(ROOT, 'web-widget/build.mjs'), '--out', env.dist], { stdio: 'pipe' });
    env.browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });
  after(async () => {
    if (env.browser) await env.browser.close();
    if (env.dist) rmSync(env.dist, { recursive: true, force: true });
  });
  // The file's daemon, serving the freshly built widget and demo.
  env.daemon = () => {
    if (!env.daemonP) env.daemonP = h.startDaemon({ args: ['--static-dir', env.dist] });
    return env.daemonP;
  };
  // A fresh browser context (empty storage) and a page that records console messages, page
  // errors and the widget's WebSocket frames.
  env.page = async (ctxOpts = {}) => {
    const context = await env.browser.newContext(ctxOpts);
    const page = await context.newPage();
    watch(page);
    return page;
  };
  return env;
}

export function watch(page) {
  page.logs = [];
  page.frames_ = { sent: [], received: [] };
  page.sockets = 0;
  page.on('console', (m) => page.logs.push({ type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => page.logs.push({ type: 'pageerror', text: e.message }));
  page.on('websocket', (ws) => {
    page.sockets++;
    ws.on('framesent', (f) => page.frames_.sent.push(parse(f.payload)));
    ws.on('framereceived', (f) => page.frames_.received.push({ at: Date.now(), ...parse(f.payload) }));
  });
  return page;
}

function parse(p) {
  try {
    return JSON.parse(String(p));
  } catch {
    return { raw: String(p) };
  }
}

export const journeyErrors = (page) => page.logs.filter((l) => l.type === 'error' && l.text.startsWith('journeyd:'));
export const cspViolations = (page) => page.logs.filter((l) => /Content Security Policy|Trusted Type/i.test(l.text));

export function rid(page) {
  return page.evaluate(() => localStorage.getItem('journey.rid'));
}

// Outbox entries still in localStorage/sessionStorage.
export function outbox(page) {
  return page.evaluate(() =>
    [localStorage, sessionStorage].flatMap((s) => Object.keys(s).filter((k) => k.startsWith('journey.o.')).map((k) => JSON.parse(s.getItem(k)).f)),
  );
}

export async function answersOf(h, respondent) {
  const r = await h.pg.query(
    `SELECT a.*, q.key, q.kind FROM answers a JOIN questions q ON q.id = a.question_id
      WHERE a.respondent_id = $1 ORDER BY a.id`,
    [respondent],
  );
  return r.rows;
}

// Lets the widget's origin through the demo site's allowed origins (before the daemon starts:
// the daemon reads the catalog at startup).
export async function allowOrigin(h, origin) {
  await h.pg.query(
    `UPDATE sites SET allowed_origins = array_append(allowed_origins, $2)
      WHERE key = $1 AND NOT ($2 = ANY (allowed_origins))`,
    [SITE_KEY, origin],
  );
}

// A TCP proxy on 127.0.0.1 in front of the daemon. cut() drops every connection and refuses new
// ones (the network is gone); restore() lets them through again; deafen() keeps forwarding what the
// browser sends but drops everything the daemon answers (acks get lost).
export async function tcpProxy() {
  const pairs = new Set();
  const p = { target: 0, mode: 'up', port: 0 };
  const srv = net.createServer((c) => {
    if (p.mode === 'down') return c.destroy();
    const s = net.connect(p.target, '127.0.0.1');
    const pair = { c, s, deaf: p.mode === 'deaf' };
    pairs.add(pair);
    c.on('data', (d) => s.write(d));
    s.on('data', (d) => {
      if (!pair.deaf) c.write(d);
    });
    const end = () => {
      c.destroy();
      s.destroy();
      pairs.delete(pair);
    };
    for (const x of [c, s]) {
      x.on('error', end);
      x.on('close', end);
    }
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  p.port = srv.address().port;
  p.url = `http://127.0.0.1:${p.port}`;
  p.cut = () => {
    p.mode = 'down';
    for (const x of [...pairs]) {
      x.c.destroy();
      x.s.destroy();
    }
    pairs.clear();
  };
  p.restore = () => {
    p.mode = 'up';
  };
  p.deafen = () => {
    p.mode = 'deaf';
    for (const x of pairs) x.deaf = true;
  };
  p.close = () => {
    p.cut();
    return new Promise((r) => srv.close(r));
  };
  return p;
}

// The open survey (popover or modal) as a locator.
export function survey(page, title) {
  return page.getByRole('dialog', { name: title });
}

// Every frame the widget sent and received on this page matches its schema in proto/schema/.
export function assertFramesValid(page) {
  const bad = [];
  for (const [dir, list] of [['sent', page.frames_.sent], ['received', page.frames_.received]])
    for (const f of list) {
      const { at, ...frame } = f;
      const r = validateFrame(frame);
      if (!r.valid) bad.push(`${dir} ${JSON.stringify(frame).slice(0, 300)}: ${r.errors.join('; ')}`);
    }
  assert.deepEqual(bad, []);
  assert.ok(page.frames_.sent.length > 0);
}

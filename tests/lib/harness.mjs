// Test harness for the integration and browser tests: a throwaway PostgreSQL 15 cluster per test
// file (tests/lib/pg.sh), a fresh database per test file with the migrations and the demo seed,
// the REAL journeyd on a free port, a promise-based WebSocket client, and the protocol schemas.
//
//   import { Harness, uuid } from '../lib/harness.mjs';
//   const h = Harness.forFile(import.meta.url);          // registers before/after hooks
//   h.test('hello gets welcome', async () => {
//     const d = await h.daemon();                          // default daemon, started once
//     const c = await d.connect();
//     ...
//   });
//
// Everything is cleaned up in the after hook and, as a last resort, in a process 'exit' handler:
// daemons are killed, the cluster is stopped and its directory removed. h.test() wraps node:test's
// test(): when the body throws, the stderr of every daemon of the file is appended to the error;
// afterwards it fails the test when a daemon printed a sanitizer report or when a frame received
// from the daemon does not match its schema in proto/schema/.

import { spawn, spawnSync, execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test as nodeTest, before, after } from 'node:test';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import pg from 'pg';
import WebSocket from 'ws';

const execFileP = promisify(execFile);

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PG_SH = path.join(ROOT, 'tests', 'lib', 'pg.sh');
export const SQL_DIR = path.join(ROOT, 'sql');
export const SEED_SQL = path.join(ROOT, 'sql', 'demo', 'seed.sql');
export const SITE_KEY = 'demo-site-key-0001';
export const ORIGIN = 'https://shop.example';
export const DEFAULT_ORIGINS = [ORIGIN, 'http://127.0.0.1:8080', 'http://localhost:8080'];
export const SUBPROTOCOL = 'journey.v1';
export const PSQL = existsSync('/usr/lib/postgresql/15/bin/psql')
  ? '/usr/lib/postgresql/15/bin/psql'
  : 'psql';

// Sanitizer and UB reports that fail a test (ASan/LSan/UBSan builds).
const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|ThreadSanitizer/;

export const uuid = () => randomUUID();
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function journeydBin() {
  return path.resolve(ROOT, process.env.JOURNEYD_BIN || 'build/journeyd');
}

// ---------------------------------------------------------------------------------------------
// Schemas

export const CLIENT_TYPES = ['hello', 'answer', 'touch', 'consent', 'ping'];
export const SERVER_TYPES = ['welcome', 'survey', 'ack', 'error', 'pong', 'chat.opened', 'chat.resumed', 'chat.message', 'chat.typing', 'chat.receipt', 'chat.status', 'chat.presence'];
const SCHEMA_DIR = path.join(ROOT, 'proto', 'schema');

let validators = null;
function loadValidators() {
  if (validators) return validators;
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
  addFormats(ajv);
  validators = {};
  for (const file of readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.json')).sort()) {
    const schema = JSON.parse(readFileSync(path.join(SCHEMA_DIR, file), 'utf8'));
    validators[path.basename(file, '.json')] = ajv.compile(schema);
  }
  return validators;
}

export function schemaTypes() {
  return Object.keys(loadValidators());
}

// Validates one frame (object or JSON text) against the schema named by its `type`.
// Returns { valid, errors: [string] }.
export function validateFrame(frame) {
  const v = loadValidators();
  if (typeof frame === 'string' || Buffer.isBuffer(frame)) {
    try {
      frame = JSON.parse(frame.toString());
    } catch (e) {
      return { valid: false, errors: [`not JSON: ${e.message}`] };
    }
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
    return { valid: false, errors: ['frame is not a JSON object'] };
  }
  const validate = typeof frame.type === 'string' && Object.hasOwn(v, frame.type) ? v[frame.type] : null;
  if (!validate) return { valid: false, errors: [`no schema for type ${JSON.stringify(frame.type)}`] };
  const ok = validate(frame);
  return {
    valid: ok,
    errors: ok ? [] : validate.errors.map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`),
  };
}

// ---------------------------------------------------------------------------------------------
// Small utilities

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// GET/POST over plain HTTP. Resolves { status, headers, body, json } (json null when not JSON).
export function httpRequest(url, { method = 'GET', headers = {}, body, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// Polls fn until it returns a truthy value; returns it. Throws after timeoutMs with `what`.
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await sleep(intervalMs);
  }
}

function parseExports(text) {
  const env = {};
  for (const line of text.split('\n')) {
    const m = /^export (\w+)='(.*)'$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  return env;
}

// State dir for run-all.sh's last-resort cleanup: it kills the pids and stops the clusters named here.
function recordState(name, content) {
  const dir = process.env.JD_TEST_STATE_DIR;
  if (!dir) return;
  try {
    writeFileSync(path.join(dir, name), content);
  } catch {
    /* best effort */
  }
}
function forgetState(name) {
  const dir = process.env.JD_TEST_STATE_DIR;
  if (!dir) return;
  rmSync(path.join(dir, name), { force: true });
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL cluster

const liveClusters = new Set();
const liveDaemons = new Set();

process.on('exit', () => {
  for (const d of liveDaemons) {
    try {
      d.proc.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const c of liveClusters) {
    spawnSync('bash', [PG_SH, 'destroy', c.dir], { stdio: 'ignore' });
  }
});

export class PgCluster {
  constructor(dir) {
    this.dir = dir;
    this.port = null;
    this.running = false;
  }

  static async start() {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jdpg.'));
    const c = new PgCluster(dir);
    liveClusters.add(c);
    recordState(`pg.${path.basename(dir)}`, dir);
    await c.start();
    return c;
  }

  async start() {
    const { stdout } = await execFileP('bash', [PG_SH, 'start', this.dir], { encoding: 'utf8' });
    const env = parseExports(stdout);
    this.port = Number(env.PGPORT);
    this.running = true;
  }

  // mode: smart | fast | immediate
  async stop(mode = 'fast') {
    await execFileP('bash', [PG_SH, 'stop', this.dir, mode]);
    this.running = false;
  }

  async destroy() {
    try {
      await execFileP('bash', [PG_SH, 'destroy', this.dir]);
    } finally {
      this.running = false;
      liveClusters.delete(this);
      forgetState(`pg.${path.basename(this.dir)}`);
    }
  }

  url(db = 'postgres') {
    return `postgresql://postgres@127.0.0.1:${this.port}/${db}`;
  }

  serverLog() {
    try {
      return readFileSync(path.join(this.dir, 'server.log'), 'utf8');
    } catch {
      return '';
    }
  }
}

// ---------------------------------------------------------------------------------------------
// WebSocket client

export class Client {
  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    this.frames = []; // every frame received, parsed (or { raw } when not JSON), in order
    this.queue = []; // frames not yet consumed by next()
    this.invalid = []; // { frame, errors } for frames that failed schema validation
    this.waiters = [];
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) w.onClose(this.closeInfo);
        resolve(this.closeInfo);
      });
    });
    ws.on('error', (e) => {
      this.lastError = e;
    });
    ws.on('message', (data, isBinary) => {
      let frame;
      try {
        frame = JSON.parse(data.toString('utf8'));
      } catch {
        frame = { raw: data.toString('utf8'), binary: isBinary };
      }
      if (isBinary) this.invalid.push({ frame, errors: ['server sent a binary frame'] });
      const res = validateFrame(frame);
      if (!res.valid) this.invalid.push({ frame, errors: res.errors });
      this.frames.push(frame);
      this.queue.push(frame);
      this.#dispatch();
    });
  }

  #dispatch() {
    for (const w of [...this.waiters]) {
      const i = this.queue.findIndex(w.pred);
      if (i >= 0) {
        const [f] = this.queue.splice(i, 1);
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(f);
      }
    }
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  // Sends text (string or Buffer; opts e.g. { binary: false }) exactly as given.
  sendRaw(data, opts = { binary: false }) {
    this.ws.send(data, opts);
  }

  // Waits for (and consumes) the first received frame matching pred: a function, a type string,
  // or an object whose members must all be equal (e.g. { type: 'error', id }).
  next(pred = () => true, timeoutMs = 5000) {
    const fn = toPredicate(pred);
    const i = this.queue.findIndex(fn);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
    if (this.closeInfo) {
      return Promise.reject(new Error(`${this.label}: connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for ${describe(pred)}; received ${this.#recent()}`));
    }
    return new Promise((resolve, reject) => {
      const w = {
        pred: fn,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
        onClose: (info) => {
          clearTimeout(timer);
          reject(new Error(`${this.label}: connection closed (${info.code} ${info.reason}) while waiting for ${describe(pred)}; received ${this.#recent()}`));
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`${this.label}: no frame matching ${describe(pred)} within ${timeoutMs} ms; received ${this.#recent()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  // Resolves true if a frame matching pred arrives within ms, false otherwise (does not consume).
  async sees(pred, ms) {
    const fn = toPredicate(pred);
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (this.frames.some(fn)) return true;
      await sleep(20);
    }
    return this.frames.some(fn);
  }

  // Forgets every received frame not yet consumed by next(), so the next next() only sees frames
  // that arrive from now on (this.frames keeps the full history).
  drain() {
    this.queue.length = 0;
  }

  // Every id acked on this connection so far.
  ackedIds() {
    const s = new Set();
    for (const f of this.frames) if (f.type === 'ack' && Array.isArray(f.ids)) for (const id of f.ids) s.add(id);
    return s;
  }

  errorsFor(id) {
    return this.frames.filter((f) => f.type === 'error' && f.id === id);
  }

  // Waits until every id in ids is acked or has an error (or the socket closes). Returns
  // { acked: Set, errors: Map id->error frame, pending: [ids] }.
  async settle(ids, timeoutMs = 15000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const acked = this.ackedIds();
      const errors = new Map();
      for (const f of this.frames) if (f.type === 'error' && f.id) errors.set(f.id, f);
      const pending = ids.filter((id) => !acked.has(id) && !errors.has(id));
      if (pending.length === 0 || this.closeInfo || Date.now() > deadline) return { acked, errors, pending };
      await sleep(20);
    }
  }

  // Waits for the close; resolves { code, reason }. Rejects after timeoutMs.
  waitClose(timeoutMs = 5000) {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return Promise.race([
      this.closed,
      sleep(timeoutMs).then(() => {
        throw new Error(`${this.label}: not closed within ${timeoutMs} ms; received ${this.#recent()}`);
      }),
    ]);
  }

  close(code = 1000) {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      try {
        this.ws.close(code);
      } catch {
        this.ws.terminate();
      }
    }
    return this.waitClose(3000).catch(() => {
      this.ws.terminate();
      return this.closeInfo;
    });
  }

  terminate() {
    this.ws.terminate();
  }

  #recent() {
    const s = JSON.stringify(this.frames.slice(-8));
    return s.length > 2000 ? s.slice(0, 2000) + '...' : s;
  }
}

function toPredicate(pred) {
  if (typeof pred === 'function') return pred;
  if (typeof pred === 'string') return (f) => f.type === pred;
  if (pred && typeof pred === 'object') return (f) => Object.entries(pred).every(([k, v]) => f[k] === v);
  return () => true;
}
function describe(pred) {
  if (typeof pred === 'function') return pred.name || 'predicate';
  return JSON.stringify(pred);
}

// Error thrown by connect() when the upgrade is refused; .statusCode is the HTTP status.
export class UpgradeRefused extends Error {
  constructor(statusCode, body, headers) {
    super(`WebSocket upgrade refused with HTTP ${statusCode}: ${body.slice(0, 200)}`);
    this.statusCode = statusCode;
    this.body = body;
    this.headers = headers;
  }
}

// ---------------------------------------------------------------------------------------------
// Daemon

let clientSeq = 0;

export class Daemon {
  constructor(harness, proc, port, args) {
    this.harness = harness;
    this.proc = proc;
    this.port = port;
    this.args = args;
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}/ws`;
    this.stderrChunks = [];
    this.stdoutChunks = [];
    this.clients = [];
    this.exit = null; // { code, signal } once the process has exited and its pipes closed
    proc.stderr.on('data', (c) => this.stderrChunks.push(c));
    proc.stdout.on('data', (c) => this.stdoutChunks.push(c));
    this.exited = new Promise((resolve) => {
      proc.on('close', (code, signal) => {
        this.exit = { code, signal };
        liveDaemons.delete(this);
        forgetState(`daemon.${proc.pid}`);
        resolve(this.exit);
      });
    });
    liveDaemons.add(this);
    recordState(`daemon.${proc.pid}`, String(proc.pid));
  }

  get pid() {
    return this.proc.pid;
  }

  get stderr() {
    return Buffer.concat(this.stderrChunks).toString('utf8');
  }

  get stdout() {
    return Buffer.concat(this.stdoutChunks).toString('utf8');
  }

  get alive() {
    return this.exit === null;
  }

  // Opens a WebSocket to /ws?site=SITE. Resolves a Client once open; rejects with UpgradeRefused
  // (statusCode) when the server answers the upgrade with an HTTP status.
  connect({ origin = ORIGIN, site = SITE_KEY, protocol = SUBPROTOCOL, headers = {}, query, maxPayload } = {}) {
    let url = this.wsUrl;
    if (query !== undefined) url += query;
    else if (site !== null) url += `?site=${encodeURIComponent(site)}`;
    const opts = { headers: { ...headers }, handshakeTimeout: 10000 };
    if (origin !== null) opts.origin = origin;
    if (maxPayload) opts.maxPayload = maxPayload;
    const ws = new WebSocket(url, protocol === null ? undefined : protocol, opts);
    const client = new Client(ws, `conn#${++clientSeq}`);
    this.clients.push(client);
    this.harness.clients.push(client);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (req, res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          reject(new UpgradeRefused(res.statusCode, Buffer.concat(chunks).toString('utf8'), res.headers));
          ws.terminate();
        });
        res.on('error', () => reject(new UpgradeRefused(res.statusCode, '', res.headers)));
      });
      ws.once('error', (e) => reject(e));
    });
  }

  // connect() + hello; resolves { client, welcome, surveys }.
  async hello({ hello = {}, connect = {}, surveys = 2, timeoutMs = 10000 } = {}) {
    const client = await this.connect(connect);
    const id = uuid();
    client.send({ type: 'hello', id, v: 1, site: connect.site ?? SITE_KEY, respondent: uuid(), page: { url: 'https://shop.example/product/42', lang: 'en-GB', title: 'Product' }, ...hello });
    const welcome = await client.next({ type: 'welcome' }, timeoutMs);
    const got = [];
    for (let i = 0; i < surveys; i++) got.push(await client.next('survey', timeoutMs));
    return { client, welcome, surveys: got, helloId: id };
  }

  get(pathname, opts) {
    return httpRequest(this.url + pathname, opts);
  }

  healthz() {
    return this.get('/healthz');
  }

  // Sends signal and waits for the exit. Resolves the exit code (null when killed by a signal:
  // see this.exit.signal). SIGKILLs and throws after timeoutMs.
  async stop(signal = 'SIGTERM', timeoutMs = 30000) {
    if (this.exit) return this.exit.code;
    try {
      this.proc.kill(signal);
    } catch {
      /* already gone */
    }
    let timer;
    const res = await Promise.race([
      this.exited,
      new Promise((r) => {
        timer = setTimeout(() => r(null), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!res) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`journeyd pid ${this.pid} did not exit within ${timeoutMs} ms of ${signal}`);
    }
    return res.code;
  }

  kill() {
    if (this.exit) return Promise.resolve(this.exit);
    this.proc.kill('SIGKILL');
    return this.exited;
  }
}

// ---------------------------------------------------------------------------------------------
// Harness: one per test file

export class Harness {
  constructor(name) {
    this.name = name;
    this.cluster = null;
    this.dbName = null;
    this.dbUrl = null;
    this.pg = null; // pg.Pool on the test database
    this.daemons = [];
    this.clients = [];
    this.origins = DEFAULT_ORIGINS;
    this.defaultDaemon = null;
    this.defaultDaemonArgs = [];
    this.extraDatabases = [];
  }

  // Creates a harness for a test file and registers before()/after() hooks that set it up and
  // tear it down. opts: { migrate: true, seed: true, origins, daemonArgs }.
  static forFile(metaUrl, opts = {}) {
    const name = path.basename(fileURLToPath(metaUrl)).replace(/\.test\.mjs$/, '').replace(/[^a-z0-9]/gi, '_').toLowerCase();
    const h = new Harness(name);
    if (opts.origins) h.origins = opts.origins;
    if (opts.daemonArgs) h.defaultDaemonArgs = opts.daemonArgs;
    before(async () => {
      await h.setup(opts);
    });
    after(async () => {
      await h.teardown();
    });
    return h;
  }

  async setup({ migrate = true, seed = true } = {}) {
    this.cluster = await PgCluster.start();
    this.dbName = `jd_${this.name}_${process.pid}`;
    this.dbUrl = await this.createDatabase(this.dbName);
    this.pg = new pg.Pool({ connectionString: this.dbUrl, max: 4, connectionTimeoutMillis: 5000 });
    this.pg.on('error', () => {
      /* idle client lost (e.g. the test stopped PostgreSQL); the pool reconnects */
    });
    if (migrate) await this.migrate(this.dbUrl);
    if (seed) await this.seed(this.dbUrl);
  }

  async teardown() {
    const problems = [];
    for (const c of this.clients) c.terminate();
    for (const d of this.daemons) {
      if (d.alive) {
        try {
          await d.stop('SIGTERM', 20000);
        } catch (e) {
          problems.push(e.message);
        }
      }
      const rep = sanitizerReport(d.stderr);
      if (rep) problems.push(`journeyd pid ${d.pid} (${d.args.join(' ')}) printed a sanitizer report:\n${rep}`);
    }
    if (this.pg) await this.pg.end().catch(() => {});
    if (this.cluster) await this.cluster.destroy().catch((e) => problems.push(`pg destroy: ${e.message}`));
    if (problems.length) {
      const err = new Error(`teardown of ${this.name}:\n${problems.join('\n')}`);
      throw err;
    }
  }

  async createDatabase(name) {
    const admin = new pg.Client({ connectionString: this.cluster.url('postgres') });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE "${name}"`);
    } finally {
      await admin.end();
    }
    this.extraDatabases.push(name);
    return this.cluster.url(name);
  }

  // Runs `journeyd migrate`; resolves { code, stdout, stderr } (throws when check and code != 0).
  async migrate(dbUrl = this.dbUrl, { sqlDir = SQL_DIR, check = true, env = {} } = {}) {
    const res = await runJourneyd(['migrate', '--database-url', dbUrl, '--sql-dir', sqlDir], { env });
    if (check && res.code !== 0) {
      throw new Error(`journeyd migrate exited ${res.code}:\n${res.stdout}\n${res.stderr}`);
    }
    return res;
  }

  async seed(dbUrl = this.dbUrl, origins = this.origins) {
    await psql(dbUrl, ['-v', `origins={${origins.join(',')}}`, '-f', SEED_SQL]);
  }

  // Ids of the demo catalog: { siteId, mapId, surveys: {slug: {id, questions: {key: row}}},
  // personas: {slug: id}, stages: {slug: id}, touchpoints: {slug: id}, obstacles: {slug: id} }.
  async catalog() {
    if (this._catalog) return this._catalog;
    const q = (sql, p) => this.pg.query(sql, p).then((r) => r.rows);
    const [site] = await q('SELECT id FROM sites WHERE key = $1', [SITE_KEY]);
    const [map] = await q("SELECT id FROM maps WHERE site_id = $1 AND slug = 'online-purchase'", [site.id]);
    const bySlug = async (table) =>
      Object.fromEntries((await q(`SELECT slug, id FROM ${table} WHERE map_id = $1`, [map.id])).map((r) => [r.slug, Number(r.id)]));
    const surveys = {};
    for (const s of await q("SELECT id, slug FROM surveys WHERE map_id = $1 AND status = 'live'", [map.id])) {
      const questions = {};
      for (const r of await q('SELECT id, key, kind, stage_id, touchpoint_id, options FROM questions WHERE survey_id = $1 AND retired_at IS NULL', [s.id])) {
        questions[r.key] = { id: Number(r.id), kind: r.kind, stageId: r.stage_id === null ? null : Number(r.stage_id), touchpointId: r.touchpoint_id === null ? null : Number(r.touchpoint_id), options: r.options };
      }
      surveys[s.slug] = { id: Number(s.id), questions };
    }
    this._catalog = {
      siteId: Number(site.id),
      mapId: Number(map.id),
      surveys,
      personas: await bySlug('personas'),
      stages: await bySlug('stages'),
      touchpoints: await bySlug('touchpoints'),
      obstacles: await bySlug('obstacles'),
    };
    return this._catalog;
  }

  // Starts journeyd serving this file's database. opts: { args: [...], env: {...},
  // waitHealthy: true, timeoutMs }. Adds http://127.0.0.1:PORT to the demo site's origins.
  async startDaemon({ args = [], env = {}, waitHealthy = true, timeoutMs = 30000, dbUrl = this.dbUrl } = {}) {
    let lastErr;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      await this.pg
        .query(
          `UPDATE sites SET allowed_origins = array_append(allowed_origins, $2)
            WHERE key = $1 AND NOT ($2 = ANY (allowed_origins))`,
          [SITE_KEY, `http://127.0.0.1:${port}`],
        )
        .catch(() => {});
      const fullArgs = ['--listen', `127.0.0.1:${port}`, '--database-url', dbUrl, ...args];
      const proc = spawn(journeydBin(), fullArgs, {
        cwd: ROOT,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const spawnError = new Promise((resolve) => proc.once('error', resolve));
      const d = new Daemon(this, proc, port, fullArgs);
      this.daemons.push(d);
      if (!waitHealthy) return d;
      try {
        await Promise.race([
          waitFor(async () => (await d.healthz().catch(() => ({ status: 0 }))).status === 200, {
            timeoutMs,
            intervalMs: 100,
            what: `GET /healthz 200 from journeyd on port ${port}`,
          }),
          d.exited.then((e) => {
            throw new Error(`journeyd exited during startup (code ${e.code}, signal ${e.signal})`);
          }),
          spawnError.then((e) => {
            throw new Error(`cannot run ${journeydBin()}: ${e.message}`);
          }),
        ]);
        return d;
      } catch (e) {
        lastErr = new Error(`${e.message}\n--- journeyd ${fullArgs.join(' ')} stderr ---\n${tail(d.stderr, 6000)}`);
        if (d.alive) await d.kill();
        if (!/address already in use|EADDRINUSE|bind/i.test(d.stderr)) break;
      }
    }
    throw lastErr;
  }

  // The file's shared daemon with the default (or forFile daemonArgs) flags, started on first use.
  async daemon() {
    if (!this.defaultDaemon || !this.defaultDaemon.alive) {
      this.defaultDaemon = await this.startDaemon({ args: this.defaultDaemonArgs });
    }
    return this.defaultDaemon;
  }

  // An answer frame with a fresh id for question `key` of live survey `surveySlug`.
  async answerFrame(surveySlug, key, value, extra = {}) {
    const cat = await this.catalog();
    const s = cat.surveys[surveySlug];
    if (!s || !s.questions[key]) throw new Error(`no live question ${surveySlug}/${key} in the demo seed`);
    const f = { type: 'answer', id: uuid(), survey: s.id, question: s.questions[key].id, ...extra };
    if (value !== undefined) f.value = value;
    return f;
  }

  async answerRow(clientId) {
    const r = await this.pg.query('SELECT * FROM answers WHERE client_id = $1', [clientId]);
    return r.rows;
  }

  async countAnswers(ids) {
    const r = await this.pg.query('SELECT count(*)::int AS n, count(DISTINCT client_id)::int AS d FROM answers WHERE client_id = ANY($1::uuid[])', [ids]);
    return r.rows[0];
  }

  // Like node:test's test(), plus: daemon stderr appended to failures, sanitizer reports and
  // schema-invalid server frames fail the test.
  test(name, opts, fn) {
    if (typeof opts === 'function') {
      fn = opts;
      opts = {};
    }
    const h = this;
    return nodeTest(name, opts, async (t) => {
      const marks = new Map(h.daemons.map((d) => [d, d.stderrChunks.length]));
      const clientMark = h.clients.length;
      try {
        await fn(t);
      } catch (e) {
        const logs = h.daemons
          .map((d) => `--- journeyd pid ${d.pid} (${d.args.slice(4).join(" ")}) ${d.alive ? 'running' : `exited ${JSON.stringify(d.exit)}`} stderr ---\n${tail(d.stderr, 12000)}`)
          .join('\n');
        if (logs) {
          console.error(`\n[${name}] failed: ${e && e.message}\n${logs}`);
          if (e && typeof e === 'object') {
            try {
              e.message = `${e.message}\n${tail(logs, 4000)}`;
            } catch {
              /* read-only message */
            }
          }
        }
        throw e;
      } finally {
        for (const c of h.clients.slice(clientMark)) if (c.isOpen) c.terminate();
      }
      for (const d of h.daemons) {
        const since = Buffer.concat(d.stderrChunks.slice(marks.get(d) ?? 0)).toString('utf8');
        const rep = sanitizerReport(since);
        if (rep) throw new Error(`journeyd pid ${d.pid} printed a sanitizer report during this test:\n${rep}`);
      }
      const invalid = h.clients.slice(clientMark).flatMap((c) => c.invalid.map((x) => ({ conn: c.label, ...x })));
      if (invalid.length) {
        throw new Error(`server frames that do not match proto/schema:\n${invalid
          .slice(0, 10)
          .map((x) => `${x.conn}: ${JSON.stringify(x.frame).slice(0, 500)}\n   ${x.errors.join('\n   ')}`)
          .join('\n')}`);
      }
    });
  }
}

export function sanitizerReport(text) {
  const m = SANITIZER_RE.exec(text);
  if (!m) return null;
  return text.slice(Math.max(0, m.index - 200), m.index + 6000);
}

function tail(text, n) {
  return text.length > n ? '...' + text.slice(-n) : text;
}

// Runs psql with ON_ERROR_STOP against url; resolves stdout, rejects with stderr.
export async function psql(url, args, { input } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(PSQL, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (err += c));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`psql ${args.join(' ')} exited ${code}: ${err}`))));
    // A process that exits before reading its stdin must not crash the test with EPIPE.
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });
}

// Runs the journeyd binary to completion (no daemon). Resolves { code, signal, stdout, stderr }.
export function runJourneyd(args, { env = {}, timeoutMs = 60000, input } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(journeydBin(), args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (err += c));
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${journeydBin()}: ${e.message}`));
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out, stderr: err });
    });
    // A process that exits before reading its stdin must not crash the test with EPIPE.
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });
}

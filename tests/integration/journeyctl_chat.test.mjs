// journeyctl's chat commands (daemon/journeyctl_chat.c, sql/022_chat_api.sql) with the real
// journeyctl binary against a real PostgreSQL migrated by journeyd and seeded with the demo site:
// `transcripts` in every format (JSONL parses line by line, CSV is strict RFC 4180 with the formula
// guard, text, HTML parsed by jsdom where <img src=x onerror=alert(1)> is text and no element),
// redaction on request and forced by the site, the filters, one conversation, -o; `export` of a
// map with coded chat messages (message evidence, valid against proto/journey-map.schema.json,
// escaped in the HTML map); `agent
// add|passwd|disable|enable|list` with the password from stdin or --password-file (never argv),
// checked by signing in (jd_agent_login) after each change; `erase` takes the chats first; usage
// errors exit 2 and errors exit 1 with one line.
// journeyctl is found next to journeyd (JOURNEYD_BIN, default build/journeyd).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { JSDOM } from 'jsdom';

import { Harness, ROOT, SITE_KEY, journeydBin, sanitizerReport, uuid } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);
const CTL = path.join(path.dirname(journeydBin()), 'journeyctl');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'jdctlchat.'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

const HOSTILE = '<img src=x onerror=alert(1)>';
const ONE_LINE_ERROR = /^journeyctl: \S.*\n$/;

// Runs journeyctl with optional stdin text; resolves { code, stdout, stderr }.
function ctl(args, { input, db = true, timeoutMs = 60000 } = {}) {
  const env = { ...process.env };
  delete env.JOURNEYD_DATABASE_URL;
  if (db) env.JOURNEYD_DATABASE_URL = h.dbUrl;
  return new Promise((resolve, reject) => {
    const p = spawn(CTL, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (err += c));
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${CTL}: ${e.message}`));
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      assert.equal(signal, null, `journeyctl ${args.join(' ')} killed by ${signal}:\n${err}`);
      assert.equal(sanitizerReport(err), null, `journeyctl ${args.join(' ')} sanitizer report:\n${err}`);
      resolve({ code, stdout: out, stderr: err });
    });
    p.stdin.on('error', () => {}); // the command may exit before reading stdin
    p.stdin.end(input ?? '');
  });
}

async function ok(args, opts) {
  const r = await ctl(args, opts);
  assert.equal(r.code, 0, `journeyctl ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout.slice(0, 2000)}`);
  return r.stdout;
}

async function fails(args, code, re, opts) {
  const r = await ctl(args, opts);
  assert.equal(r.code, code, `journeyctl ${args.join(' ')} exit code (stderr ${r.stderr})`);
  assert.match(r.stderr, ONE_LINE_ERROR, `journeyctl ${args.join(' ')}: one line`);
  assert.match(r.stderr, re, `journeyctl ${args.join(' ')}`);
  return r;
}

// Strict RFC 4180: quoted fields (doubled quotes inside), CRLF record ends; throws on anything else.
function parseCsv(text) {
  const records = [];
  let i = 0;
  while (i < text.length) {
    const rec = [];
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (i >= text.length) throw new Error('unterminated quoted field');
          if (text[i] === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
            } else {
              i++;
              break;
            }
          } else field += text[i++];
        }
      } else {
        while (i < text.length && text[i] !== ',' && text[i] !== '\r') {
          if (text[i] === '"' || text[i] === '\n') throw new Error(`bare ${JSON.stringify(text[i])} in an unquoted field at ${i}`);
          field += text[i++];
        }
      }
      rec.push(field);
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text.slice(i, i + 2) !== '\r\n') throw new Error(`record does not end in CRLF at ${i}`);
      i += 2;
      break;
    }
    records.push(rec);
  }
  return records;
}

// The fixture: conversations on the demo site written through jd_chat_insert, one of them coded.
let fx;
async function fixture() {
  if (fx) return fx;
  const cat = await h.catalog();
  const q = (sql, p) => h.pg.query(sql, p).then((r) => r.rows);
  const [{ anna }] = await q("SELECT jd_agent_create($1, 'anna@cli-chat.example', 'Anna', 'agent', 'correct horse battery') AS anna", [cat.siteId]);
  const rita = uuid();
  await q("INSERT INTO respondents (site_id, id, email) VALUES ($1, $2, 'rita@cli-chat.example')", [cat.siteId, rita]);
  const open = async (respondent) =>
    (await q("SELECT conversation_id AS id FROM jd_chat_open($1, $2, NULL, NULL, 'https://shop.example/cart', NULL, NULL)", [cat.siteId, respondent]))[0].id;
  const c1 = await open(rita);
  const c2 = await open(uuid());
  const msg = (conv, body, extra = {}) => ({ conversation_id: conv, site_id: cat.siteId, client_id: uuid(), body, ...extra });
  await q('SELECT jd_chat_insert($1::jsonb)', [JSON.stringify([
    msg(c1, `${HOSTILE} "quoted", and a comma`),
    msg(c1, 'Shipping is £4.99 to 10 Downing St, call +44 20 7946 0958 or mail rita@cli-chat.example', { stage_id: cat.stages.purchase }),
    msg(c1, '=HYPERLINK("http://evil.example")'),
    msg(c1, 'internal: refund her', { sender: 'agent', agent_id: anna, kind: 'note' }),
    msg(c1, 'Line one\nline two', { sender: 'agent', agent_id: anna }),
    msg(c2, 'Just browsing, thanks'),
  ])]);
  await q("SELECT jd_code_message($1, (SELECT id FROM messages WHERE conversation_id = $2 AND seq = 2), 0, 19, 1, ARRAY['shipping-cost'], 'purchase', 'website')", [anna, c1]);
  await q("UPDATE conversations SET created_at = '2026-01-05T10:00Z', last_message_at = '2026-01-05T10:10Z' WHERE id = $1", [c2]);
  fx = { cat, anna, rita, c1, c2 };
  return fx;
}

h.test('usage errors exit 2 with one line; --help lists the chat commands', async () => {
  const c = uuid();
  const cases = [
    [['transcripts', '--format', 'pdf'], /--format must be jsonl, csv, text or html/],
    [['transcripts', '--conversation', 'nope'], /not a conversation id/],
    [['transcripts', '--conversation', c, '--stage', 'purchase'], /--stage selects conversations/],
    [['transcripts', '--limit', '0'], /--limit/],
    [['transcripts', 'extra'], /unexpected argument/],
    [['agent'], /needs one of: add, passwd, disable, enable, list/],
    [['agent', 'frob'], /needs one of/],
    [['agent', 'add', '--email', 'a@b.example'], /--site KEY is required/],
    [['agent', 'add', '--site', SITE_KEY], /--email/],
    [['agent', 'add', '--site', SITE_KEY, '--email', 'a@b.example', '--role', 'owner'], /--role/],
    [['agent', 'add', '--site', SITE_KEY, '--email', 'a@b.example', '--password', 'hunter2hunter2'], /never taken from the command line/],
    [['agent', 'add', '--site', SITE_KEY, '--email', 'a@b.example', '--password=hunter2hunter2'], /never taken from the command line/],
    [['agent', 'passwd', '--site', SITE_KEY], /exactly one of --email EMAIL and --id ID/],
    [['agent', 'disable', '--site', SITE_KEY, '--id', 'x'], /--id/],
    [['agent', 'list', '--site', 'a/b'], /not a site key/],
  ];
  for (const [args, re] of cases) await fails(args, 2, re);
  const nodb = await ctl(['agent', 'list', '--site', SITE_KEY], { db: false });
  assert.equal(nodb.code, 2);
  assert.match(nodb.stderr, /JOURNEYD_DATABASE_URL/);
  const help = await ok(['--help'], { db: false });
  for (const cmd of ['transcripts', 'agent add', 'agent passwd', 'agent disable', 'agent list', 'erase']) assert.ok(help.includes(cmd), `--help lists ${cmd}`);
  assert.match(await ok(['transcripts', '--help'], { db: false }), /--redact/);
  assert.match(await ok(['agent', '--help'], { db: false }), /agent passwd[\s\S]*agent list/);
  assert.match(await ok(['agent', 'add', '-h'], { db: false }), /--password-file/);
});

h.test('transcripts in JSONL, CSV, text and HTML; the hostile message is escaped in HTML', async () => {
  const { c1, c2 } = await fixture();

  const jsonl = await ok(['transcripts', '--site', SITE_KEY]);
  const lines = jsonl.trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => [l.conversation, l.seq]), [[c2, 1], [c1, 1], [c1, 2], [c1, 3], [c1, 5]],
    'JSONL: every message, conversations in the order they were opened, then seq; no private note');
  assert.equal(lines[1].body, `${HOSTILE} "quoted", and a comma`, 'bodies as written');
  assert.deepEqual(lines[2].codes.map((x) => [x.text, x.emotion, x.obstacles, x.stage]), [['Shipping is £4.99 t', 1, ['shipping-cost'], 'purchase']],
    'the current codes ride along');
  assert.ok(!jsonl.includes('internal: refund her'));
  assert.ok((await ok(['transcripts', '--site', SITE_KEY, '--notes'])).includes('internal: refund her'), '--notes adds the notes');

  const csv = await ok(['transcripts', '--site', SITE_KEY, '--format', 'csv']);
  const rows = parseCsv(csv);
  assert.equal(rows[0].join(','), 'conversation_id,respondent_id,consent,seq,created_at,sender,agent,kind,body,page_url,stage,touchpoint,emotions,obstacles,code_stages,code_touchpoints,coded_spans');
  assert.equal(rows.length, 6, 'CSV: header and five messages');
  assert.ok(rows.every((r) => r.length === 17), 'every record has 17 fields');
  const byBody = Object.fromEntries(rows.slice(1).map((r) => [r[3] + '@' + r[0], r]));
  assert.equal(byBody[`1@${c1}`][8], `${HOSTILE} "quoted", and a comma`, 'quotes and commas survive the round trip');
  assert.equal(byBody[`3@${c1}`][8], `'=HYPERLINK("http://evil.example")`, 'a formula gets a leading apostrophe');
  assert.equal(byBody[`5@${c1}`][8], 'Line one\nline two', 'a line break stays inside its field');
  assert.equal(byBody[`2@${c1}`][13], 'shipping-cost', 'codes aggregated per message');

  const text = await ok(['transcripts', '--site', SITE_KEY, '--format', 'text']);
  assert.match(text, new RegExp(`^== Conversation ${c2}, opened 2026-01-05T10:00:00.000Z, waiting ==$`, 'm'));
  assert.match(text, /\] #5 Anna: Line one\n {4}line two\n/);
  assert.ok(text.includes(HOSTILE), 'text is plain text');

  const html = await ok(['transcripts', '--site', SITE_KEY, '--format', 'html']);
  assert.match(html, /^<!DOCTYPE html>\n/);
  assert.ok(!html.includes('<img'), 'no <img in the HTML source');
  assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt; &quot;quoted&quot;'), 'escaped');
  const dom = new JSDOM(html);
  const doc = dom.window.document;
  assert.equal(doc.querySelectorAll('img, script, [onerror]').length, 0, 'no element came out of a message');
  const bodies = [...doc.querySelectorAll('.jd-body')].map((e) => e.textContent);
  assert.ok(bodies.includes(`${HOSTILE} "quoted", and a comma`), 'the message reads as the text it was');
  assert.equal(doc.querySelectorAll('section.jd-conversation').length, 2);
  assert.equal(doc.querySelector(`section[data-conversation="${c1}"] .jd-agent br`) !== null, true, 'line breaks become <br>');
  dom.window.close();
});

h.test('transcripts: redaction, filters, one conversation, -o, errors', async () => {
  const { cat, c1, c2 } = await fixture();
  const red = await ok(['transcripts', '--site', SITE_KEY, '--conversation', c1, '--redact']);
  const body2 = red.trimEnd().split('\n').map((l) => JSON.parse(l)).find((l) => l.seq === 2).body;
  assert.equal(body2, 'Shipping is £4.99 to 10 Downing St, call [phone] or mail [email]', '--redact masks the phone and e-mail, keeps the price');
  assert.ok(!red.includes(c2), '--conversation exports that one only');

  await h.pg.query("UPDATE sites SET redact = 'export' WHERE id = $1", [cat.siteId]);
  try {
    const forced = await ok(['transcripts', '--site', SITE_KEY, '--format', 'csv']);
    assert.ok(!forced.includes('7946') && !forced.includes('rita@cli-chat.example'), 'a site with redact=export is always masked');
  } finally {
    await h.pg.query("UPDATE sites SET redact = 'off' WHERE id = $1", [cat.siteId]);
  }

  const convs = async (args) =>
    [...new Set((await ok(['transcripts', '--site', SITE_KEY, ...args])).trimEnd().split('\n').filter(Boolean).map((l) => JSON.parse(l).conversation))];
  assert.deepEqual(await convs(['--from', '2026-06-01']), [c1], '--from');
  assert.deepEqual(await convs(['--to', '2026-01-06T00:00:00Z']), [c2], '--to');
  assert.deepEqual(await convs(['--stage', 'purchase']), [c1], '--stage');
  assert.deepEqual(await convs(['--code', 'shipping-cost']), [c1], '--code');
  assert.deepEqual(await convs(['--coded']), [c1], '--coded');
  assert.deepEqual(await convs(['--limit', '1']), [c2], '--limit counts conversations');
  assert.equal(await ok(['transcripts', '--site', SITE_KEY, '--from', '2030-01-01']), '', 'nothing in the window: no output');

  const out = path.join(tmp, 'one.html');
  assert.equal(await ok(['transcripts', '--conversation', c1, '--format', 'html', '-o', out]), '');
  assert.ok(readFileSync(out, 'utf8').includes('&lt;img src=x'), '-o writes the file');

  await fails(['transcripts', '--site', SITE_KEY, '--stage', 'nowhere'], 1, /transcripts: .*nowhere.*field stage, HTTP 400/);
  await fails(['transcripts', '--site', SITE_KEY, '--from', 'yesterday'], 1, /field from/);
  await fails(['transcripts', '--site', 'no-such-site'], 1, /no-such-site/);
  await fails(['transcripts', '--conversation', uuid()], 1, /HTTP 404/);
  const { rows } = await h.pg.query("SELECT count(*)::int AS n FROM audit_log WHERE action = 'export' AND object_type = 'conversation' AND actor LIKE 'journeyctl:%'");
  assert.ok(rows[0].n >= 10, 'exports are audited under journeyctl');
});

h.test('agent add, list, passwd, disable and enable; passwords from stdin or a file only', async () => {
  const signIn = async (email, password) =>
    (await h.pg.query('SELECT token, error FROM jd_agent_login($1, $2, $3)', [SITE_KEY, email, password])).rows[0];

  const added = await ok(['agent', 'add', '--site', SITE_KEY, '--email', 'ben@cli-chat.example', '--name', 'Ben', '--role', 'admin'],
    { input: 'first password 1\n' });
  const id = Number(/^id: (\d+)$/m.exec(added)?.[1]);
  assert.ok(id > 0, added);
  assert.match(added, /^role: admin$/m);
  assert.equal((await signIn('ben@cli-chat.example', 'first password 1')).error, null, 'the password from stdin signs in');
  const { rows: [stored] } = await h.pg.query('SELECT password_hash FROM agents WHERE id = $1', [id]);
  assert.match(stored.password_hash, /^\$2a\$10\$/, 'bcrypt');

  const pwFile = path.join(tmp, 'pw');
  writeFileSync(pwFile, 'file password 22\r\n');
  await ok(['agent', 'add', '--site', SITE_KEY, '--email', 'cleo@cli-chat.example', '--password-file', pwFile]);
  assert.equal((await signIn('cleo@cli-chat.example', 'file password 22')).error, null, '--password-file: the first line, CRLF stripped');

  await fails(['agent', 'add', '--site', SITE_KEY, '--email', 'BEN@cli-chat.example'], 1, /agent add: .*exists.*HTTP 409/, { input: 'whatever password\n' });
  await fails(['agent', 'add', '--site', SITE_KEY, '--email', 'dan@cli-chat.example'], 1, /10 characters/, { input: 'short\n' });
  await fails(['agent', 'add', '--site', SITE_KEY, '--email', 'dan@cli-chat.example'], 1, /no password on stdin/, { input: '' });
  await fails(['agent', 'add', '--site', SITE_KEY, '--email', 'dan@cli-chat.example', '--password-file', path.join(tmp, 'missing')], 1, /cannot open/);
  await fails(['agent', 'add', '--site', 'no-such-site', '--email', 'dan@cli-chat.example'], 1, /HTTP 404/, { input: 'long enough password\n' });

  const list = await ok(['agent', 'list', '--site', SITE_KEY]);
  assert.match(list, /^id\s+email\s+name\s+role\s+status\s+online\s+created_at$/m);
  assert.match(list, new RegExp(`^${id}\\s+ben@cli-chat\\.example\\s+Ben\\s+admin\\s+active\\s+no\\s`, 'm'));
  assert.match(list, /cleo@cli-chat\.example\s+cleo\s+agent\s+active/);

  const session = (await signIn('ben@cli-chat.example', 'first password 1')).token;
  const live = async () => (await h.pg.query('SELECT count(*)::int AS n FROM jd_agent_session($1)', [session])).rows[0].n;
  assert.equal(await live(), 1);
  assert.match(await ok(['agent', 'passwd', '--site', SITE_KEY, '--email', 'Ben@CLI-chat.example'], { input: 'second password 3\n' }),
    new RegExp(`^password changed for agent ${id} \\(ben@cli-chat\\.example\\)`));
  assert.equal(await live(), 0, 'a new password ends the console sessions');
  assert.equal((await signIn('ben@cli-chat.example', 'first password 1')).error, 'invalid_credentials', 'the old password no longer works');
  assert.equal((await signIn('ben@cli-chat.example', 'second password 3')).error, null, 'the new one does');
  await fails(['agent', 'passwd', '--site', SITE_KEY, '--email', 'nobody@cli-chat.example'], 1, /no agent with e-mail nobody/, { input: 'long enough password\n' });

  assert.match(await ok(['agent', 'disable', '--site', SITE_KEY, '--id', String(id)]), /^disabled agent \d+ \(ben@cli-chat\.example\)/);
  assert.equal((await signIn('ben@cli-chat.example', 'second password 3')).error, 'invalid_credentials', 'a disabled agent cannot sign in');
  assert.match(await ok(['agent', 'list', '--site', SITE_KEY]), /ben@cli-chat\.example\s+Ben\s+admin\s+disabled/);
  assert.match(await ok(['agent', 'enable', '--site', SITE_KEY, '--email', 'ben@cli-chat.example']), /^enabled agent/);
  assert.equal((await signIn('ben@cli-chat.example', 'second password 3')).error, null, 'enabled again');
  await fails(['agent', 'disable', '--site', SITE_KEY, '--id', '987654'], 1, /no agent with id 987654/);

  // No password anywhere it could leak: not in the audit log, not in a response.
  const { rows } = await h.pg.query("SELECT detail::text AS d FROM audit_log WHERE object_type = 'agent'");
  assert.ok(rows.length >= 5, 'agent changes are audited');
  assert.ok(!rows.some((r) => /password 1|password 22|password 3/.test(r.d)), 'no password in the audit log');
  assert.ok(!added.includes('first password'), 'nor in the output');
});

h.test('export: coded chat messages are map evidence (message ids, chat quotes), valid and escaped', async () => {
  const { cat, anna, c1 } = await fixture();
  const { rows: [m1] } = await h.pg.query('SELECT id FROM messages WHERE conversation_id = $1 AND seq = 1', [c1]);
  await h.pg.query("SELECT jd_code_message($1, $2, NULL, NULL, 2, NULL, 'purchase', 'website')", [anna, m1.id]);
  const { rows: [m2] } = await h.pg.query('SELECT id FROM messages WHERE conversation_id = $1 AND seq = 2', [c1]);

  const doc = JSON.parse(await ok(['export', '--map', String(cat.mapId)]));
  const schema = JSON.parse(readFileSync(path.join(ROOT, 'proto', 'journey-map.schema.json'), 'utf8'));
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  const validate = ajv.compile(schema);
  assert.ok(validate(doc), `the document validates: ${ajv.errorsText(validate.errors)}`);
  const cell = doc.cells.find((c) => c.id === `pall-s${cat.stages.purchase}-t${cat.touchpoints.website}`);
  assert.equal(cell.n, 2, 'the two coded messages are the cell\'s evidence');
  assert.deepEqual(cell.emotion.distribution, [1, 1, 0, 0, 0]);
  assert.deepEqual(cell.evidence.sort(), [`message:${m1.id}`, `message:${m2.id}`].sort());
  assert.deepEqual(cell.obstacles.map((o) => [o.slug, o.count]), [['shipping-cost', 1]]);
  const quote = cell.quotes.find((q) => q.evidence === `message:${m1.id}`);
  assert.equal(quote?.source, 'chat');
  assert.equal(quote?.text, `${HOSTILE} "quoted", and a comma`, 'the coded message is quoted as written');
  const surveyOnly = JSON.parse(await ok(['export', '--map', String(cat.mapId), '--source', 'survey']));
  assert.equal(surveyOnly.cells.find((c) => c.id === cell.id).n, 0, '--source survey leaves the chat out');

  const html = await ok(['export', '--map', String(cat.mapId), '--format', 'html']);
  assert.ok(!html.includes('<img src=x'), 'the quote is escaped in the HTML map');
  const dom = new JSDOM(html);
  assert.equal(dom.window.document.querySelectorAll('img, [onerror]').length, 0);
  assert.ok(dom.window.document.body.textContent.includes(HOSTILE), 'and reads as text');
  dom.window.close();
});

h.test('erase takes the chats first, also those found by e-mail', async () => {
  const { rita, c1, cat } = await fixture();
  const out = await ok(['erase', '--site', SITE_KEY, '--email', 'rita@cli-chat.example']);
  assert.match(out, /^erased respondents=1 answers=0 touch_events=0 sessions=0 conversations=1 messages=5 codes=2 ratings=0$/m,
    'the chat of the respondent with that e-mail is erased (jd_erase_chat ran before jd_erase cleared the e-mail)');
  const { rows } = await h.pg.query('SELECT count(*)::int AS n FROM messages WHERE conversation_id = $1', [c1]);
  assert.equal(rows[0].n, 0);
  const again = await ok(['erase', '--site', SITE_KEY, '--respondent', rita]);
  assert.match(again, /^erased respondents=0 answers=0 touch_events=0 sessions=0 conversations=0 messages=0 codes=0 ratings=0$/m);
  const access = JSON.parse(await ok(['access', '--site', SITE_KEY, '--respondent', rita]));
  assert.deepEqual(access.conversations, [], 'access shows the (now empty) conversations');
  assert.equal(Number((await h.pg.query('SELECT count(*) FROM conversations WHERE site_id = $1', [cat.siteId])).rows[0].count) >= 1, true,
    'other conversations stay');
});

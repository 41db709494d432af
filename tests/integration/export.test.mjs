// Map export end to end: jd_map_export() on the hand-computed fixture (tests/export/fixture.sql,
// with hostile names patched in), rendered by the real C renderer (build/tests/export/render_cli,
// next to the journeyd binary under test), then each file read back by a real consumer:
//   (a) Mermaid: the npm mermaid package under jsdom parses the file, and the tasks, scores and
//       actors its journey db holds are exactly the ones meant, hostile names included;
//   (b) journey.json validates against proto/journey-map.schema.json with ajv;
//   (c) CSV read back by a strict RFC 4180 parser and compared with the document;
//   (d) draw.io checked with xmllint: well formed, ids unique per page, cells 0 and 1, parents exist;
//   (e) HTML opened in Chromium: no console errors, no network request, the XSS quote is text,
//       and a quote's source shows on hover and on keyboard focus; the diff page between two
//       snapshots likewise.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { JSDOM } from 'jsdom';
import { chromium } from 'playwright-core';
import { Harness, ROOT, journeydBin, psql } from '../lib/harness.mjs';

const h = Harness.forFile(import.meta.url);
const MAP = 901;
const HOSTILE = {
  persona: 'title: Boss; #1, "VIP" %%{init}%%',
  stageLook: 'Look: around #1; now',
  stagePurchase: '=HYPERLINK("http://x","y")',
  tpWeb: 'journey; Pay: card: 5: Me',
  tpMail: 'section #web & <b>mail</b>',
};

function renderCli() {
  const bin = path.join(path.dirname(path.resolve(ROOT, journeydBin())), 'tests', 'export', 'render_cli');
  if (!existsSync(bin)) throw new Error(`${bin} not built (tests/export/CMakeLists.txt)`);
  return bin;
}

function render(format, doc, persona) {
  return new Promise((resolve, reject) => {
    const args = persona ? [format, persona] : [format];
    const p = spawn(renderCli(), args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    let err = '';
    p.stdout.on('data', (c) => out.push(c));
    p.stderr.on('data', (c) => (err += c));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out).toString('utf8')) : reject(new Error(`render_cli ${args.join(' ')} exited ${code}: ${err}`))));
    p.stdin.end(typeof doc === 'string' ? doc : JSON.stringify(doc));
  });
}

let fixtureLoaded = false;
async function exportDoc(filters = {}) {
  if (!fixtureLoaded) {
    await psql(h.dbUrl, ['-f', path.join(ROOT, 'tests', 'export', 'fixture.sql')]);
    await h.pg.query('UPDATE personas SET name = $1 WHERE id = 912', [HOSTILE.persona]);
    await h.pg.query('UPDATE stages SET name = $1 WHERE id = 921', [HOSTILE.stageLook]);
    await h.pg.query('UPDATE stages SET name = $1 WHERE id = 922', [HOSTILE.stagePurchase]);
    await h.pg.query('UPDATE touchpoints SET name = $1 WHERE id = 931', [HOSTILE.tpWeb]);
    await h.pg.query('UPDATE touchpoints SET name = $1 WHERE id = 932', [HOSTILE.tpMail]);
    await h.pg.query("UPDATE answers SET action = '+SUM(A1)' WHERE id = 9008");
    fixtureLoaded = true;
  }
  const { rows } = await h.pg.query('SELECT jd_map_export($1, $2)::text AS d', [MAP, JSON.stringify(filters)]);
  return JSON.parse(rows[0].d);
}

const cellOf = (doc, id) => doc.cells.find((c) => c.id === id);
const norm = (s) => s.replace(/\s+/g, ' ').trim();

// ---- (a) Mermaid --------------------------------------------------------------------------------

let mermaidLib;
async function loadMermaid() {
  if (mermaidLib) return mermaidLib;
  const dom = new JSDOM('<!doctype html><html><body></body></html>', { pretendToBeVisual: true });
  globalThis.window = dom.window;
  globalThis.document = dom.window.document;
  for (const k of ['navigator', 'Element', 'HTMLElement', 'SVGElement', 'Node', 'DOMParser']) {
    if (!(k in globalThis)) {
      Object.defineProperty(globalThis, k, { value: dom.window[k], configurable: true, writable: true });
    }
  }
  const { default: mermaid } = await import('mermaid');
  mermaid.initialize({ startOnLoad: false });
  mermaidLib = mermaid;
  return mermaid;
}

// mermaid keeps "#NN;" entities as placeholders after parsing (it turns them into HTML entities
// only when drawing); decode them back to characters.
const decodeMermaid = (s) =>
  s.replace(/ﬂ°°(\d+)¶ß/g, (_, n) => String.fromCodePoint(Number(n))).replace(/ﬂ°(\w+)¶ß/g, (_, n) => `&${n};`);

function expectedTasks(doc, personaId) {
  const want = [];
  for (const s of doc.stages) {
    for (const t of doc.touchpoints) {
      const cell = cellOf(doc, `p${personaId ?? 'all'}-s${s.id}-t${t.id}`);
      if (!cell || cell.emotion.mean === null) continue;
      let people;
      if (personaId) people = [doc.personas.find((p) => p.id === personaId).name];
      else {
        people = doc.personas.filter((p) => (cellOf(doc, `p${p.id}-s${s.id}-t${t.id}`)?.emotion.n ?? 0) > 0).map((p) => p.name);
        if (!people.length) people = ['All personas'];
      }
      want.push({ section: norm(s.name), task: norm(t.name), score: Math.min(5, Math.max(1, Math.round(cell.emotion.mean))), people: people.map(norm) });
    }
  }
  return want;
}

h.test('mermaid: the parsed tasks, scores and actors are exactly the ones meant, hostile names too', async () => {
  const doc = await exportDoc();
  const mermaid = await loadMermaid();
  const views = [...doc.personas.map((p) => [p.slug, p.id]), ['all', null]];
  let hostileSeen = 0;
  for (const [slug, id] of views) {
    const text = await render('mermaid', doc, slug);
    assert.ok(await mermaid.parse(text), `mermaid.parse accepts the ${slug} diagram`);
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
    const got = diagram.db.getTasks().map((t) => ({
      section: decodeMermaid(t.section),
      task: decodeMermaid(t.task),
      score: t.score,
      people: t.people.map(decodeMermaid),
    }));
    const want = expectedTasks(doc, id);
    assert.ok(want.length >= 1, `the ${slug} diagram has tasks`);
    assert.deepEqual(got, want, `tasks of the ${slug} diagram\n${text}`);
    hostileSeen += got.filter((t) => t.task === HOSTILE.tpWeb || t.people.includes(norm(HOSTILE.persona))).length;
    const sections = diagram.db.getSections().map(decodeMermaid);
    assert.deepEqual(sections, doc.stages.map((s) => norm(s.name)), `sections of the ${slug} diagram`);
  }
  assert.ok(hostileSeen >= 3, 'the hostile touchpoint and persona names came through intact');
});

// ---- (b) JSON Schema ----------------------------------------------------------------------------

h.test('journey.json validates against proto/journey-map.schema.json', async () => {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
  addFormats(ajv);
  const validate = ajv.compile(JSON.parse(readFileSync(path.join(ROOT, 'proto', 'journey-map.schema.json'), 'utf8')));
  const cat = await h.catalog();
  const docs = {
    fixture: await exportDoc(),
    persona: await exportDoc({ persona: 'pb', from: '2026-01-10', to: '2026-01-11T00:00:00Z', source: ['survey'] }),
    demo: JSON.parse((await h.pg.query('SELECT jd_map_export($1)::text AS d', [cat.mapId])).rows[0].d),
    snapshot: JSON.parse((await h.pg.query('SELECT jd_map_snapshot($1, $2)::text AS d', [MAP, '{}'])).rows[0].d),
  };
  for (const [name, doc] of Object.entries(docs)) {
    assert.ok(validate(doc), `${name}: ${ajv.errorsText(validate.errors)}`);
  }
  // The C renderer's pretty JSON is the same document.
  assert.deepEqual(JSON.parse(await render('json', docs.fixture)), docs.fixture);
  // The schema is not a rubber stamp.
  const broken = structuredClone(docs.fixture);
  broken.cells[0].emotion.distribution = [1, 2, 3];
  assert.equal(validate(broken), false, 'a 3-bin distribution is refused');
  const broken2 = structuredClone(docs.fixture);
  broken2.cells[0].quotes = [{ text: 'x', evidence: 'row 5', source: 'survey', at: '2026-01-01T00:00:00Z' }];
  assert.equal(validate(broken2), false, 'a malformed evidence id is refused');
});

// ---- (c) CSV ------------------------------------------------------------------------------------

// Strict RFC 4180: records end in CRLF, a field is either unquoted (no quote, comma, CR or LF) or
// wholly quoted with "" for a quote; every record has as many fields as the header.
function parseCsvStrict(text) {
  const rows = [];
  let i = 0;
  let row = [];
  const n = text.length;
  if (!text.endsWith('\r\n')) throw new Error('the file does not end with CRLF');
  while (i < n) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= n) throw new Error('unterminated quoted field');
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
      if (i < n && text[i] !== ',' && text[i] !== '\r') throw new Error(`garbage after a quoted field at ${i}`);
    } else {
      while (i < n && text[i] !== ',' && text[i] !== '\r') {
        if (text[i] === '"' || text[i] === '\n') throw new Error(`bare ${JSON.stringify(text[i])} in an unquoted field at ${i}`);
        field += text[i++];
      }
    }
    row.push(field);
    if (text[i] === ',') i++;
    else if (text[i] === '\r') {
      if (text[i + 1] !== '\n') throw new Error(`CR without LF at ${i}`);
      i += 2;
      rows.push(row);
      row = [];
    }
  }
  const width = rows[0].length;
  rows.forEach((r, k) => {
    if (r.length !== width) throw new Error(`record ${k} has ${r.length} fields, the header ${width}`);
  });
  return rows;
}

const GUARDED = /^[=+\-@\t\r]/;

h.test('CSV (long and grid) reads back with a strict RFC 4180 parser and matches the document', async () => {
  const doc = await exportDoc();
  const rows = parseCsvStrict(await render('csv', doc));
  const [header, ...data] = rows;
  const col = Object.fromEntries(header.map((name, k) => [name, k]));
  const numeric = new Set(['n', 'respondents', 'emotion_n', 'emotion_mean', 'emotion_sd', 'ci95_low', 'ci95_high', 'dist_1', 'dist_2', 'dist_3', 'dist_4', 'dist_5', 'goal_rate']);
  assert.equal(data.length, doc.cells.length * 4 + doc.stages.length, 'four lanes per cell plus a resources row per stage');
  for (const r of data) {
    header.forEach((name, k) => {
      if (!numeric.has(name)) assert.ok(!GUARDED.test(r[k]), `unguarded formula in ${name}: ${JSON.stringify(r[k])}`);
    });
    if (r[col.lane] === 'resources') continue;
    const cell = cellOf(doc, r[col.cell_id]);
    assert.ok(cell, `row names a cell of the document: ${r[col.cell_id]}`);
    assert.equal(Number(r[col.n]), cell.n);
    assert.equal(Number(r[col.respondents]), cell.respondents);
    assert.equal(r[col.thin], String(cell.thin));
    assert.equal(r[col.emotion_mean] === '' ? null : Number(r[col.emotion_mean]), cell.emotion.mean);
    assert.equal(r[col.ci95_low] === '' ? null : Number(r[col.ci95_low]), cell.emotion.ci95?.[0] ?? null);
    assert.deepEqual([1, 2, 3, 4, 5].map((k) => Number(r[col[`dist_${k}`]])), cell.emotion.distribution);
  }
  const web = data.find((r) => r[col.cell_id] === 'p911-s921-t931' && r[col.lane] === 'emotion');
  assert.equal(web[col.emotion_mean], '3.5');
  assert.equal(web[col.ci95_high], '5.5543');
  assert.equal(web[col.touchpoint_name], HOSTILE.tpWeb);
  const purchase = data.find((r) => r[col.cell_id] === 'p911-s922' && r[col.lane] === 'emotion');
  assert.equal(purchase[col.stage_name], `'${HOSTILE.stagePurchase}`, 'a formula-like stage name is neutralised');
  const act = data.find((r) => r[col.cell_id] === 'p912-s921-t931' && r[col.lane] === 'actions');
  assert.equal(act[col.text], "'+SUM(A1) (1)");
  const th = data.find((r) => r[col.cell_id] === 'p912-s921-t931' && r[col.lane] === 'thoughts');
  assert.equal(th[col.text], '"B likes <img src=x onerror=alert(1)>" [answer:9009]');
  assert.equal(th[col.evidence], 'answer:9009');
  assert.equal(data.filter((r) => r[col.persona] === 'pb').length, doc.cells.filter((c) => c.persona_id === 912).length * 4);

  const grid = parseCsvStrict(await render('csv-grid', doc, 'pb'));
  assert.deepEqual(grid[0], [HOSTILE.persona, HOSTILE.stageLook, `'${HOSTILE.stagePurchase}`, 'Review']);
  assert.deepEqual(grid.map((r) => r[0]), [HOSTILE.persona, 'Touchpoints', 'Actions', 'Thoughts', 'Emotion', 'Obstacles', 'Goal reached', 'Reached by', 'Drop-off to next stage', 'Resources']);
  assert.match(grid[4][1], /^1\.5 \(95% CI -4\.85 to 7\.85, n=2\) \[thin\]$/);
  assert.equal(grid[8][1], '62.5%');
  for (const r of grid) for (const f of r) assert.ok(!GUARDED.test(f), `unguarded grid cell ${JSON.stringify(f)}`);
});

// ---- (d) draw.io --------------------------------------------------------------------------------

function xpath(file, expr) {
  try {
    return execFileSync('xmllint', ['--xpath', expr, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if (e.status === 10) return ''; // XPath set is empty
    throw e;
  }
}
const attrValues = (out, name) => [...out.matchAll(new RegExp(`\\b${name}="([^"]*)"`, 'g'))].map((m) => m[1]);

h.test('draw.io: xmllint finds it well formed, one page per persona, ids unique, cells 0/1, every parent', async () => {
  const doc = await exportDoc();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jd-drawio-'));
  try {
    const file = path.join(dir, 'map.drawio');
    writeFileSync(file, await render('drawio', doc));
    execFileSync('xmllint', ['--noout', file]); // throws unless well formed
    const pages = Number(xpath(file, 'count(/mxfile/diagram)').trim());
    assert.equal(pages, doc.personas.length + 1, 'a page per persona plus all personas');
    const names = attrValues(xpath(file, '/mxfile/diagram/@name'), 'name');
    assert.ok(names.includes(HOSTILE.persona.replace(/"/g, '&quot;')), `page names: ${names}`);
    for (let p = 1; p <= pages; p++) {
      const root = `/mxfile/diagram[${p}]/mxGraphModel/root`;
      const ids = attrValues(xpath(file, `${root}//*[self::mxCell or self::UserObject]/@id`), 'id');
      assert.equal(new Set(ids).size, ids.length, `page ${p}: ids are unique`);
      assert.equal(xpath(file, `count(${root}/mxCell[@id="0"])`).trim(), '1', `page ${p}: cell 0`);
      assert.equal(xpath(file, `count(${root}/mxCell[@id="1" and @parent="0"])`).trim(), '1', `page ${p}: cell 1`);
      const parents = attrValues(xpath(file, `${root}//mxCell/@parent`), 'parent');
      for (const par of parents) assert.ok(ids.includes(par), `page ${p}: parent ${par} exists`);
      const vertices = Number(xpath(file, `count(${root}//mxCell[@vertex="1"])`).trim());
      assert.ok(vertices > 20, `page ${p}: ${vertices} vertices`);
    }
    // Page 1 (Persona A): the Website cell carries its evidence, n and CI as properties.
    const obj = xpath(file, '/mxfile/diagram[1]//UserObject[@cell="p911-s921-t931"]');
    assert.match(obj, /\bn="6"/);
    assert.match(obj, /\bci95_low="1\.4457"/);
    assert.match(obj, /\bci95_high="5\.5543"/);
    assert.match(obj, /\bevidence="answer:9001 [^"]*answer:9002"/);
    const label = attrValues(xpath(file, '/mxfile/diagram[2]//UserObject[@cell="p912-s921"]/@label'), 'label');
    assert.ok(label.some((l) => l.includes('&lt;img src=x onerror=alert(1)&gt;')), `escaped quote in ${label}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- (e) HTML -----------------------------------------------------------------------------------

h.test('HTML: Chromium shows it with no console error and no request; the XSS quote is text', async () => {
  const doc = await exportDoc();
  const html = await render('html', doc);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const problems = [];
    const requests = [];
    let dialogs = 0;
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('request', (r) => requests.push(r.url()));
    page.on('dialog', (d) => {
      dialogs++;
      d.dismiss().catch(() => {});
    });
    await page.setContent(html, { waitUntil: 'load' });
    await page.waitForTimeout(300);
    assert.deepEqual(problems, [], 'no console errors');
    assert.deepEqual(requests, [], 'no network requests');
    assert.equal(dialogs, 0, 'no script ran');
    assert.equal(await page.locator('img').count(), 0, 'the quote did not become an element');
    assert.equal(await page.locator('script').count(), 0);
    const quote = page.locator('figure.quote', { hasText: '<img src=x onerror=alert(1)>' }).first();
    assert.equal(await quote.locator('blockquote').textContent(), 'B likes <img src=x onerror=alert(1)>');
    // The source shows on focus (keyboard) and on hover, and is in the title attribute.
    const src = quote.locator('.src');
    assert.equal(await src.isVisible(), false, 'source hidden until hover or focus');
    await quote.focus();
    assert.equal(await src.isVisible(), true, 'source shows on focus');
    assert.match(await src.textContent(), /answer:9009/);
    await quote.evaluate((e) => e.blur());
    await page.mouse.move(0, 0);
    assert.equal(await src.isVisible(), false);
    await quote.hover();
    assert.equal(await src.isVisible(), true, 'source shows on hover');
    assert.match(await quote.getAttribute('title'), /answer:9009/);
    assert.equal(await page.locator('figure.quote[tabindex="0"]').count() >= 3, true);
    // Thin cells are marked; the emotion curve is there with its band; hostile names are text.
    assert.ok((await page.locator('.thin').count()) > 0, 'thin cells are marked');
    assert.ok((await page.locator('svg polygon').count()) >= 1, 'a confidence band');
    assert.ok((await page.locator('svg circle').count()) >= 3, 'curve points');
    assert.ok((await page.locator('.stage', { hasText: HOSTILE.stagePurchase }).count()) >= 1);
    assert.ok((await page.locator('.tp b', { hasText: HOSTILE.tpMail }).count()) >= 1);
    // Printable to A3 landscape.
    const pdf = await page.pdf({ preferCSSPageSize: true });
    assert.ok(pdf.length > 1000);
    const m = /\/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]/.exec(pdf.toString('latin1'));
    assert.ok(m, 'PDF has a MediaBox');
    assert.ok(Math.abs(Number(m[1]) - 1190.55) < 2 && Math.abs(Number(m[2]) - 841.89) < 2, `A3 landscape page: ${m[1]} x ${m[2]}`);
  } finally {
    await browser.close();
  }
});

h.test('diff-html: two snapshots, jd_map_diff, rendered and opened in Chromium', async () => {
  await exportDoc();
  const v1 = JSON.parse((await h.pg.query('SELECT jd_map_snapshot($1)::text AS d', [MAP])).rows[0].d).version;
  await h.pg.query(`INSERT INTO answers (site_id, map_id, client_id, source, persona_id, stage_id, touchpoint_id, emotion, obstacle_ids)
                    SELECT 901, 901, gen_random_uuid(), 'survey', 912, 921, 931, e, CASE WHEN e = 5 THEN '{941}'::bigint[] ELSE '{}' END
                      FROM unnest(ARRAY[5, 5, 4, 5, 5, 4]) e`);
  const v2 = JSON.parse((await h.pg.query('SELECT jd_map_snapshot($1)::text AS d', [MAP])).rows[0].d).version;
  const diff = JSON.parse((await h.pg.query('SELECT jd_map_diff($1, $2, $3)::text AS d', [MAP, v1, v2])).rows[0].d);
  const cell = diff.cells.find((c) => c.id === 'p912-s921-t931');
  assert.equal(cell.n.change, 6);
  assert.equal(cell.persona, HOSTILE.persona);
  assert.equal(cell.emotion.significant, true, `B/look/web 1.5 -> 3.75 is significant: ${JSON.stringify(cell.emotion)}`);
  assert.deepEqual(cell.obstacles_new.map((o) => o.slug), ['price']);
  await assert.rejects(render('diff-html', await exportDoc()), /journeyd.map-diff\/1/);
  const html = await render('diff-html', diff);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage();
    const problems = [];
    const requests = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('request', (r) => requests.push(r.url()));
    await page.setContent(html, { waitUntil: 'load' });
    assert.deepEqual(problems, []);
    assert.deepEqual(requests, []);
    const row = page.locator('tr', { hasText: HOSTILE.tpWeb }).filter({ hasText: HOSTILE.persona });
    assert.equal(await row.count(), 1);
    assert.match(await row.textContent(), /2 → 8/);
    assert.match(await row.textContent(), /significant/);
    assert.equal(await page.locator('h1').textContent(), `Fixture map: "quotes" & <tags>: version ${v1} → ${v2}`);
  } finally {
    await browser.close();
  }
});

// Builds the widget: node web-widget/build.mjs [--limit BYTES] [--out DIR]
// Bundles and minifies src/index.js into DIR/widget.js (default web-widget/dist), copies demo/ to
// DIR/demo, prints the size and fails (exit 1, widget.js removed) when the gzipped size is over the
// limit (default 12288 bytes; WIDGET_GZIP_LIMIT or --limit override it).
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'
import { cpSync, existsSync, readFileSync, rmSync, mkdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const opt = (name) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const limit = Number(opt('--limit') ?? process.env.WIDGET_GZIP_LIMIT ?? 12288)
const out = resolve(opt('--out') ?? process.env.WIDGET_OUT ?? join(here, 'dist'))
if (!Number.isFinite(limit) || limit <= 0) {
  console.error('build: the size limit must be a positive number of bytes')
  process.exit(2)
}

mkdirSync(out, { recursive: true })
const file = join(out, 'widget.js')
await build({
  entryPoints: [join(here, 'src/index.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2019',
  legalComments: 'none',
  outfile: file,
  logLevel: 'warning',
})
rmSync(join(out, 'demo'), { recursive: true, force: true })
cpSync(join(here, 'demo'), join(out, 'demo'), { recursive: true })
// The agent console (served at /agent): static files, no bundling.
rmSync(join(out, 'agent'), { recursive: true, force: true })
if (existsSync(join(here, 'agent'))) cpSync(join(here, 'agent'), join(out, 'agent'), { recursive: true })

const raw = readFileSync(file)
const gz = gzipSync(raw, { level: 9 }).length
console.log(`widget.js: ${raw.length} bytes, ${gz} bytes gzipped (limit ${limit})`)
if (gz > limit) {
  rmSync(file, { force: true })
  console.error(`build failed: widget.js is ${gz} bytes gzipped, over the limit of ${limit} bytes`)
  process.exit(1)
}

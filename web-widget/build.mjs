// Builds the widget: node web-widget/build.mjs [--limit BYTES] [--out DIR]
// Bundles and minifies src/index.js into DIR/widget.js (default web-widget/dist) and the chat,
// src/chat-main.js, into DIR/chat.js (no size limit: loaded lazily), copies demo/ to
// DIR/demo, prints the size and fails (exit 1, widget.js removed) when the gzipped size is over the
// limit (default 12288 bytes; WIDGET_GZIP_LIMIT or --limit override it).
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'
import { createHash } from 'node:crypto'
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
const common = { bundle: true, minify: true, format: 'iife', target: 'es2019', legalComments: 'none', logLevel: 'warning' }
// The chat (dist/chat.js), loaded by widget.js only on sites with chat; widget.js asks for
// chat.js?v=HASH so a cached chat.js never meets a newer widget.js.
const chatFile = join(out, 'chat.js')
await build({ ...common, entryPoints: [join(here, 'src/chat-main.js')], outfile: chatFile })
const chatRaw = readFileSync(chatFile)
const chatV = createHash('sha256').update(chatRaw).digest('hex').slice(0, 12)
await build({ ...common, entryPoints: [join(here, 'src/index.js')], outfile: file, define: { CHAT_V: JSON.stringify(chatV) } })
rmSync(join(out, 'demo'), { recursive: true, force: true })
cpSync(join(here, 'demo'), join(out, 'demo'), { recursive: true })
// The agent console (served at /agent): static files, no bundling.
rmSync(join(out, 'agent'), { recursive: true, force: true })
if (existsSync(join(here, 'agent'))) cpSync(join(here, 'agent'), join(out, 'agent'), { recursive: true })

const raw = readFileSync(file)
const gz = gzipSync(raw, { level: 9 }).length
console.log(`widget.js: ${raw.length} bytes, ${gz} bytes gzipped (limit ${limit})`)
console.log(`chat.js: ${chatRaw.length} bytes, ${gzipSync(chatRaw, { level: 9 }).length} bytes gzipped (loaded only on sites with chat)`)
if (gz > limit) {
  rmSync(file, { force: true })
  console.error(`build failed: widget.js is ${gz} bytes gzipped, over the limit of ${limit} bytes`)
  process.exit(1)
}

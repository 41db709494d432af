// Renders one survey inside a shadow root: corner popover, centred modal (<dialog>) or inline in
// a host element. Built with createElement only (no innerHTML: works under Trusted Types), styled
// with a constructable stylesheet, or a <style nonce> where those are missing.
import CSS from './css.js'

const sheets = {}

export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag)
  for (const k in attrs) {
    const v = attrs[k]
    if (v == null || v === false) continue
    if (k[0] === 'o' && k[1] === 'n') e.addEventListener(k.slice(2), v)
    else e.setAttribute(k, v === true ? '' : v)
  }
  e.append(...kids)
  return e
}

export function face(i) {
  const s = svg('svg', { viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' })
  s.append(
    svg('circle', { cx: 12, cy: 12, r: 10 }),
    svg('circle', { cx: 8.5, cy: 9.5, r: 1.4, class: 'e' }),
    svg('circle', { cx: 15.5, cy: 9.5, r: 1.4, class: 'e' }),
    svg('path', { d: 'M7.5 15.5Q12 ' + (15.5 + (i - 2) * 2.6) + ' 16.5 15.5' })
  )
  return s
}

export function svg(tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag)
  for (const k in attrs) e.setAttribute(k, attrs[k])
  return e
}

export function style(root, nonce, css = CSS) {
  try {
    let s = sheets[css]
    if (!s) {
      s = sheets[css] = new CSSStyleSheet()
      s.replaceSync(css)
    }
    root.adoptedStyleSheets = [s]
  } catch (e) {
    root.append(h('style', { nonce }, css))
  }
}

export const fmt = (s, ...a) => s.replace(/\{(\d)\}/g, (_, i) => a[i])

// ctx: {L, lang, dir, nonce, target, answer(question, value, text), done(reason)}
// Returns {close, err, host}.
export function mount(sv, disp, ctx) {
  const L = ctx.L
  const mode = disp.mode
  const modal = mode === 'modal'
  const inline = mode === 'inline'
  const host = h('div', { 'data-journey': sv.slug || sv.id, dir: ctx.dir })
  const root = host.attachShadow({ mode: 'open' })
  style(root, ctx.nonce)
  const corner = { 'top-left': 'tl', 'top-right': 'tr', 'bottom-left': 'bl' }[disp.corner] || 'br'
  const box = h(modal ? 'dialog' : inline ? 'section' : 'div', {
    class: 'j ' + (modal ? 'm' : inline ? 'i' : 'p ' + corner),
    role: modal || inline ? null : 'dialog',
    'aria-labelledby': 't',
    lang: ctx.lang,
    dir: ctx.dir,
    tabindex: -1,
  })
  const dismiss = () => {
    ctx.done('dismissed')
    close()
  }
  const head = h('div', { class: 'hd' }, h('h2', { id: 't', dir: 'auto' }, sv.title || ''))
  if (!inline) head.append(h('button', { class: 'x', type: 'button', 'aria-label': L.close, onclick: dismiss }, '×'))
  const body = h('div')
  const prog = h('span')
  const st = h('span', { class: 'st', id: 'st', role: 'status', 'aria-live': 'polite' }, prog)
  const nx = h('button', { class: 'nx', type: 'submit' })
  const form = h('form', { novalidate: true, onsubmit: next }, body, h('div', { class: 'ft' }, st, nx))
  box.append(head, form)
  root.append(box)
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !inline) {
      e.preventDefault()
      dismiss()
    }
  })
  box.addEventListener('cancel', (e) => {
    e.preventDefault()
    dismiss()
  })

  const qs = sv.questions || []
  const ans = {}
  let cur, get, errEl, closed
  const test = (c, x) => ('in' in c ? (c.in || []).map(String).includes(String(x)) : String(x) === String(c.equals))
  const shown = (q) => {
    const c = q.show_if
    if (!c) return true
    const a = ans[c.question]
    return a !== undefined && (Array.isArray(a) ? a.some((x) => test(c, x)) : test(c, a))
  }
  // A later question may still be shown when its condition waits on an unanswered question.
  const maybe = (q) => shown(q) || (q.show_if && !(q.show_if.question in ans))

  function err(msg) {
    if (errEl) errEl.remove()
    errEl = msg ? h('span', { class: 'er' }, ' ' + msg) : null
    if (errEl) st.append(errEl)
  }

  function focusFirst() {
    const c = body.querySelector('input:checked') || body.querySelector('input,textarea')
    if (c) c.focus()
  }

  function scale(items, cls, map, desc) {
    const g = h('div', {
      role: 'radiogroup',
      class: cls,
      'aria-labelledby': 'pr',
      'aria-describedby': desc ? 'ds' : null,
      'aria-required': cur.required ? 'true' : null,
    })
    items.forEach((kids, i) =>
      g.append(h('label', { class: 'o' }, h('input', { type: 'radio', name: 'r' + cur.id, value: i }), h('span', {}, ...kids)))
    )
    get = () => {
      const c = g.querySelector('input:checked')
      return c && [map(+c.value)]
    }
    return [g, desc && h('div', { class: 'ds', id: 'ds' }, desc.join(', '))]
  }

  function checks(items, other) {
    const g = h('div', { role: 'group', class: 'ls', 'aria-labelledby': 'pr' })
    items.forEach((o, i) =>
      g.append(h('label', { class: 'o c' }, h('input', { type: 'checkbox', value: i }), h('span', { dir: 'auto' }, o.label)))
    )
    let ot
    if (other) {
      const cb = h('input', { type: 'checkbox', value: '' })
      ot = h('input', { class: 'ot', type: 'text', 'aria-label': L.otherL, maxlength: 4000, hidden: true })
      cb.addEventListener('change', () => {
        ot.hidden = !cb.checked
        if (cb.checked) ot.focus()
      })
      g.append(h('label', { class: 'o c' }, cb, h('span', {}, L.other)), ot)
    }
    get = () => {
      const v = [...g.querySelectorAll('input:checked')].filter((c) => c.value).map((c) => items[c.value].value)
      const t = ot && !ot.hidden ? ot.value.trim() : ''
      return v.length || t ? [v, t || undefined] : null
    }
    return [g]
  }

  function render(q) {
    cur = q
    err()
    const opts = (q.options || []).map((o) => (o && typeof o === 'object' ? { value: o.value, label: o.label || String(o.value) } : { value: o, label: String(o) }))
    let pr = h('span', { class: 'pr', id: 'pr', dir: 'auto' }, q.prompt || '')
    let ctl
    switch (q.kind) {
      case 'emotion':
        ctl = scale(L.emo.map((t, i) => [face(i), t]), 'sc', (i) => i + 1)
        break
      case 'nps':
        ctl = scale([...Array(11)].map((_, i) => [String(i)]), 'sc n', (i) => i, L.nps)
        break
      case 'csat':
        ctl = scale([...Array(5)].map((_, i) => [String(i + 1)]), 'sc', (i) => i + 1, L.csat)
        break
      case 'goal':
        ctl = scale([[L.yes], [L.no]], 'sc', (i) => i === 0)
        break
      case 'single_choice':
        ctl = scale(opts.map((o) => [h('bdi', {}, o.label)]), 'ls', (i) => opts[i].value)
        break
      case 'multi_choice':
        ctl = checks(opts)
        break
      case 'obstacle':
        ctl = checks((sv.obstacles || []).map((o) => ({ value: o.slug, label: o.name || o.slug })), true)
        break
      default: {
        // text (thoughts), action and any kind this version does not know: free text
        const ta = h('textarea', { id: 'f', dir: 'auto', maxlength: 4000, 'aria-required': q.required ? 'true' : null })
        pr = null
        ctl = [h('label', { class: 'pr', for: 'f', dir: 'auto' }, q.prompt || ''), ta]
        get = () => {
          const v = ta.value.trim()
          return v && [v]
        }
      }
    }
    body.replaceChildren(...[pr, ...ctl].filter(Boolean))
    const idx = qs.indexOf(q)
    const before = qs.slice(0, idx).filter(shown).length
    const after = qs.slice(idx + 1).filter(maybe).length
    prog.textContent = fmt(L.of, before + 1, before + 1 + after)
    nx.textContent = after ? L.next : L.send
  }

  function next(e) {
    e.preventDefault()
    if (closed) return
    const r = get()
    if (!r && cur.required) {
      err(L.req)
      focusFirst()
      return
    }
    if (r) {
      ans[cur.key] = r[0]
      ctx.answer(cur, r[0], r[1])
    }
    const had = root.activeElement
    const q = qs.slice(qs.indexOf(cur) + 1).find(shown)
    if (q) {
      render(q)
      if (had) focusFirst()
    } else {
      body.replaceChildren()
      nx.hidden = true
      err()
      prog.textContent = L.thanks
      st.className = 'st ty'
      box.focus()
      ctx.done('answered')
      if (!inline) setTimeout(close, 3000)
    }
  }

  function close() {
    if (closed) return
    closed = true
    if (modal && box.open) box.close()
    host.remove()
    ctx.closed && ctx.closed()
  }

  ;(inline ? ctx.target : document.body).append(host)
  if (modal) box.showModal()
  const first = qs.find(shown)
  if (first) render(first)
  if (modal) focusFirst()
  return { close, err, host }
}

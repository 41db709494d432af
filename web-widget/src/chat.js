// Live chat, visitor side (docs/chat.md, "Visitor protocol"): a launcher button and a panel in
// their own shadow root. widget.js loads this bundle (chat.js) only when its welcome says chat is
// enabled for the site.
//
// Delivery: every chat.message (and chat.email, chat.close, chat.rating) is written to an outbox
// of its own, journey.m.SITE.ID, in the same storage as the survey outbox, and resent until its
// ack. Those frames go out only once this connection has opened or resumed the conversation (the
// server refuses them before). The conversation id and its token live next to the outbox under
// journey.chat.SITE. Messages are shown ordered by seq; a seq already shown is ignored; messages
// not acked yet stay at the end, marked "Sending…".
import { h, face, svg, style, fmt } from './ui.js'
import CSS, { CHAT as CHAT_CSS } from './css.js'
import { locale, CHAT as T } from './i18n.js'

// x: {site, nonce, corner, online, lang(), store(), send(frame) -> sent?, hints() -> {stage,
// touchpoint}, forget(hint), uuid()}. Returns the handlers widget.js calls: on(chat.* frame),
// ack(frame), err(frame) -> handled?, up(off) after each welcome, down() when the socket closes.
export function chat(x) {
  const D = document
  const W = window
  const SK = 'journey.chat.' + x.site // {o: open id, c: conversation, k: token, p: panel open, e: e-mail given, r: rated conversation}
  const MP = 'journey.m.' + x.site + '.'
  const [L0, lg, dir] = locale(x.lang())
  const L = T[lg] || T.en
  const seen = new Map() // seq -> message element
  const pend = new Map() // client id -> element of a message not stored yet
  const sent = new Map() // frame id -> when it was sent on this connection
  let S = load()
  let presence = x.online == null ? null : { online: x.online }
  let live, rsm, status, name, ftimer, ttimer, rtimer, ending
  let opAt = 0
  let typAt = 0
  let clock = 0
  let got = 0 // highest seq received in the server's ordered stream (resume point)
  let maxOther = 0 // highest seq of an agent or system message shown
  let dSent = 0 // how far "delivered" / "read" have been reported
  let rSent = 0
  let unread = 0
  let mine // [seq, element] of the visitor's latest stored message: it carries the receipt
  let rc = {} // how far the agents have received (d) and read (r) the visitor's messages

  // ---- the launcher and the panel ---------------------------------------------------------------

  const side = x.corner === 'left' ? ' l' : ''
  const host = h('div', { 'data-journey-chat': '', dir })
  const root = host.attachShadow({ mode: 'open' })
  style(root, x.nonce, CSS + CHAT_CSS)
  const icon = svg('svg', { viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' })
  icon.append(svg('path', { d: 'M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H10l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z' }))
  const badge = h('span', { class: 'bd', 'aria-hidden': 'true', hidden: true })
  const btn = h('button', { class: 'cl' + side, type: 'button', lang: lg, 'aria-expanded': 'false', 'aria-controls': 'cp', onclick: () => toggle(panel.hidden) }, icon, L.chat, badge)
  const pres = h('p', { class: 'ps' })
  const end = h('button', { class: 'lk', type: 'button', hidden: true, onclick: close }, L.end)
  const log = h('div', { class: 'lg', role: 'log', 'aria-label': L.msgs, tabindex: 0 })
  const typing = h('p', { class: 'tp', role: 'status' })
  const note = h('p', { class: 'nt', hidden: true }, L.offn)
  const em = h('input', { id: 'em', type: 'email', autocomplete: 'email', maxlength: 254, 'aria-describedby': 'sy' })
  const ef = h('div', { class: 'ef', hidden: true }, h('label', { for: 'em' }, L.email), em)
  const ta = h('textarea', { id: 'tx', rows: 2, maxlength: 4000, dir: 'auto', placeholder: L.msg, onkeydown: key, oninput: typed })
  const said = h('p', { class: 'nt', id: 'sy', role: 'status' })
  const form = h(
    'form',
    { class: 'cf', novalidate: true, onsubmit: submit },
    note,
    ef,
    h('label', { class: 'sr', for: 'tx' }, L.msg),
    h('div', { class: 'rw' }, ta, h('button', { class: 'nx', type: 'submit' }, L0.send))
  )
  let rate, faces, rx // the end-of-chat question, there only while it is asked
  const panel = h(
    'section',
    { id: 'cp', class: 'j cp' + side, role: 'dialog', 'aria-labelledby': 'ct', lang: lg, dir, hidden: true },
    h('div', { class: 'hd' }, h('div', { class: 'tt' }, h('h2', { id: 'ct' }, L.title), pres), end, h('button', { class: 'x', type: 'button', 'aria-label': L.min, onclick: () => toggle() }, '×')),
    log,
    typing,
    form,
    said
  )
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault()
      toggle()
    }
  })
  panel.addEventListener('focusin', soon)
  W.addEventListener('focus', soon)
  D.addEventListener('visibilitychange', soon)
  // Another tab opened (or lost) the conversation: follow it. The outbox is shared and stays.
  W.addEventListener('storage', (e) => {
    if (e.key !== SK) return
    const n = load()
    if (n.c !== S.c) {
      reset(1)
      S = n
      up()
    }
  })
  root.append(btn, panel)
  D.body.append(host)

  // Messages still in the outbox (written before a reload) show at the end, marked as sending.
  for (const e of outbox()) if (e.f.type === 'chat.message') pending(e.f)
  refresh()
  if (S.p && (S.c || pend.size)) toggle(1, 1)

  function toggle(o, quiet) {
    panel.hidden = !o
    btn.setAttribute('aria-expanded', !!o)
    S.p = o ? 1 : 0
    save()
    if (o) {
      if (!quiet) (rate ? faces.querySelector('input') : ta).focus()
      bottom()
      soon()
    } else btn.focus()
  }

  function refresh() {
    const off = presence && !presence.online
    pres.textContent = presence ? (off ? L.off : name ? fmt(L.on1, name) : L.on) : ''
    note.hidden = !off
    // The e-mail field: before the chat starts (in case nobody answers) and while nobody is online.
    ef.hidden = !!S.e || !(off || !S.c)
    end.hidden = !S.c || status === 'closed'
    badge.hidden = !unread
    badge.textContent = unread
    unread ? btn.setAttribute('aria-label', fmt(L.unread, unread)) : btn.removeAttribute('aria-label')
    const ask = status === 'closed' && S.r !== S.c
    form.hidden = ask // the question takes the composer's place until answered or declined
    if (!ask && rate) {
      rate.remove()
      rate = 0
    }
    if (ask && !rate) {
      faces = h('div', { role: 'radiogroup', class: 'sc', 'aria-labelledby': 'rq' })
      L0.emo.forEach((t, i) => faces.append(h('label', { class: 'o' }, h('input', { type: 'radio', name: 'emo', value: i + 1 }), h('span', {}, face(i), t))))
      rx = h('textarea', { id: 'rx', maxlength: 4000, dir: 'auto' })
      rate = h(
        'form',
        { class: 'rt', novalidate: true, onsubmit: rated },
        h('p', { class: 'pr', id: 'rq' }, L.rq),
        faces,
        h('label', { class: 'pr', for: 'rx' }, L.rx),
        rx,
        h('div', { class: 'ft' }, h('button', { class: 'lk', type: 'button', onclick: () => rated() }, L.skip), h('button', { class: 'nx', type: 'submit' }, L.rs))
      )
      panel.insertBefore(rate, form)
      bottom()
      // The focus moves to the question when the visitor ended the chat (not when an agent did).
      if (ending && root.activeElement) faces.querySelector('input').focus()
    }
  }

  function tell(t) {
    said.textContent = t
  }

  function bottom() {
    log.scrollTop = log.scrollHeight
  }

  // ---- composing --------------------------------------------------------------------------------

  function key(e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) submit(e)
  }

  // chat.typing on=true at most every 3 s while there is text, on=false once it is gone.
  function typed() {
    const on = !!ta.value.trim()
    const now = Date.now()
    if (on ? now - typAt > 3000 : typAt) {
      typAt = on ? now : 0
      ping({ type: 'chat.typing', on })
    }
  }

  function submit(e) {
    e.preventDefault()
    const body = ta.value
    const mail = em.value.trim()
    if (mail && !em.checkValidity()) {
      em.setAttribute('aria-invalid', 'true')
      tell(L.bad)
      return em.focus()
    }
    em.removeAttribute('aria-invalid')
    tell('')
    if (!body.trim() && !mail) return
    if (body.trim()) pending(out({ type: 'chat.message', body, page: { url: location.href }, ...x.hints(), ts: new Date().toISOString() }))
    if (mail) {
      S.e = 1
      save()
      out({ type: 'chat.email', email: mail })
    }
    ta.value = em.value = ''
    typed()
    refresh()
    flush()
    ta.focus()
  }

  function close() {
    ending = 1
    ta.focus()
    out({ type: 'chat.close' })
    flush()
  }

  function rated(e) {
    if (e) {
      e.preventDefault()
      const c = faces.querySelector(':checked')
      if (!c) {
        tell(L.pick)
        return faces.querySelector('input').focus()
      }
      out({ type: 'chat.rating', emotion: +c.value, text: rx.value.trim() || undefined })
      flush()
      tell(L.thanks)
    }
    S.r = S.c
    save()
    ending = 0
    refresh()
    ta.focus()
  }

  // ---- rendering --------------------------------------------------------------------------------

  function item(m, me) {
    const sys = m.sender === 'system'
    return h(
      'div',
      { class: 'g' + (me ? ' me' : sys ? ' sy' : '') },
      h('span', { class: me || sys ? 'sr' : 'wh' }, me ? L.you + ': ' : sys ? '' : (m.agent && m.agent.name) || L.agent),
      h('span', { class: 'bb', dir: 'auto' }, m.body), // text only: a Text node, never markup
      h('span', { class: 'mt' })
    )
  }

  function meta(li, t) {
    li.lastChild.textContent = t
  }

  function pending(f) {
    const li = item(f, 1)
    li.className += ' pd'
    meta(li, L.sending)
    pend.set(f.id, li)
    log.append(li)
    bottom()
  }

  // Puts a stored message in seq order, before the first higher seq and before the pending ones.
  function place(li, seq, me) {
    seen.set(seq, li)
    li.dataset.s = seq
    li.classList.remove('pd')
    meta(li, '')
    let c = log.firstChild
    while (c && c.dataset.s && +c.dataset.s < seq) c = c.nextSibling
    log.insertBefore(li, c)
    if (me && !(mine && mine[0] > seq)) {
      if (mine) meta(mine[1], '')
      mine = [seq, li]
    }
    marks()
    bottom()
  }

  function marks() {
    if (mine) meta(mine[1], rc.r >= mine[0] ? L.read : rc.d >= mine[0] ? L.deliv : '')
  }

  function msg(m) {
    if (!(m.seq > 0)) return
    if (m.seq > got) got = m.seq
    if (seen.has(m.seq)) return
    const me = m.sender === 'visitor'
    let li = me && pend.get(m.id)
    if (li) pend.delete(m.id) // stored: its ack may still be on the way, or lost
    else li = item(m, me)
    place(li, m.seq, me)
    if (!me) {
      if (m.seq > maxOther) maxOther = m.seq
      if (m.agent) {
        name = m.agent.name
        typing.textContent = ''
      }
      if (m.seq > rSent && !reading()) unread++
      refresh()
      soon()
    }
  }

  // ---- receipts ---------------------------------------------------------------------------------

  function reading() {
    return !panel.hidden && !D.hidden && D.hasFocus()
  }

  function soon() {
    clearTimeout(rtimer)
    rtimer = setTimeout(receipts, 200)
  }

  // "delivered" once agent messages are rendered, "read" while the panel is visible and focused.
  function receipts() {
    if (!live) return
    if (reading()) {
      unread = 0
      refresh()
      if (maxOther > rSent) {
        rSent = maxOther
        if (dSent < rSent) dSent = rSent
        ping({ type: 'chat.read', upto_seq: rSent, what: 'read' })
      }
    }
    if (maxOther > dSent) {
      dSent = maxOther
      ping({ type: 'chat.read', upto_seq: dSent, what: 'delivered' })
    }
  }

  // ---- the outbox -------------------------------------------------------------------------------

  function load() {
    try {
      return JSON.parse(x.store().get(SK)) || {}
    } catch (e) {
      return {}
    }
  }

  function save() {
    x.store().set(SK, JSON.stringify(S))
  }

  function outbox() {
    const st = x.store()
    const list = []
    for (const k of st.keys(MP)) {
      try {
        const e = JSON.parse(st.get(k))
        if (e && e.f) list.push(e)
      } catch (err) {
        st.del(k)
      }
    }
    return list.sort((a, b) => a.t - b.t)
  }

  function entry(id) {
    try {
      return JSON.parse(x.store().get(MP + id))
    } catch (e) {}
  }

  function keep(e) {
    x.store().set(MP + e.f.id, JSON.stringify(e))
  }

  function unkeep(id) {
    sent.delete(id)
    x.store().del(MP + id)
  }

  function out(f) {
    f.id = x.uuid()
    clock = Math.max(clock + 1, Date.now())
    keep({ f, t: clock })
    return f
  }

  // An ephemeral frame (typing, receipts): sent only on a live connection, never kept.
  function ping(f) {
    if (live && S.c) {
      f.id = x.uuid()
      f.conversation = S.c
      if (x.send(f)) sent.set(f.id, 0)
    }
  }

  function open() {
    const now = Date.now()
    if (now - opAt < 10000) return
    if (!S.o) {
      S.o = x.uuid()
      save()
    }
    if (x.send({ type: 'chat.open', id: S.o, page: { url: location.href }, ...x.hints() })) opAt = now
  }

  function flush() {
    clearTimeout(ftimer)
    const list = outbox()
    if (!list.length) return
    ftimer = setTimeout(flush, 3000)
    if (!S.c) return open()
    if (!live) return
    const now = Date.now()
    let n = 0
    for (const e of list) {
      const f = e.f
      if (now - (sent.get(f.id) || 0) < 30000 || n >= 8) continue
      f.conversation = f.conversation || S.c
      // Written while nobody was online (or before that was known): an offline message.
      if (f.type === 'chat.message' && !f.kind) f.kind = presence && !presence.online ? 'offline' : 'text'
      keep(e)
      if (x.send(f)) {
        sent.set(f.id, now)
        n++
      }
    }
  }

  // Forgets the conversation (erased, or its token refused) with what waits for it; quiet: only
  // this tab's view of it (another tab moved on).
  function reset(quiet) {
    if (!quiet) {
      for (const e of outbox()) unkeep(e.f.id)
      S = { p: S.p }
      save()
    }
    live = status = mine = 0
    rc = {}
    seen.clear()
    pend.clear()
    log.replaceChildren()
    got = maxOther = dSent = rSent = unread = 0
    refresh()
  }

  // ---- the protocol -----------------------------------------------------------------------------

  // A new connection was welcomed. off: it may not chat (an opt-in site without consent): no
  // button, nothing sent, until a later welcome allows it.
  function up(off) {
    live = 0
    opAt = 0
    sent.clear()
    btn.hidden = !!off
    if (off) return (panel.hidden = true)
    if (S.c) x.send({ type: 'chat.resume', id: (rsm = x.uuid()), conversation: S.c, token: S.k, after_seq: got })
    else flush()
  }

  function down() {
    live = 0
    typing.textContent = ''
  }

  function ready(m) {
    live = 1
    status = m.status
    if (m.presence) presence = m.presence
    refresh()
    flush()
    soon()
  }

  function on(m) {
    const t = m.type
    if (t === 'chat.opened') {
      if (m.re !== S.o) return
      S.c = m.conversation
      S.k = m.token
      save()
      return ready(m)
    }
    if (t === 'chat.resumed') {
      if (m.re !== rsm) return
      const r = m.receipts || {}
      rc = { d: r.agent_delivered_seq, r: r.agent_read_seq }
      if (r.visitor_delivered_seq > dSent) dSent = r.visitor_delivered_seq
      if (r.visitor_read_seq > rSent) rSent = r.visitor_read_seq
      marks()
      return ready(m)
    }
    if (m.conversation && m.conversation !== S.c) return
    if (t === 'chat.message') msg(m)
    else if (t === 'chat.presence') {
      presence = m
      refresh()
    } else if (t === 'chat.receipt') {
      rc = { d: m.delivered_seq, r: m.read_seq }
      marks()
    } else if (t === 'chat.typing' && m.who !== 'visitor') {
      clearTimeout(ttimer)
      typing.textContent = m.on ? fmt(L.typing, m.name || name || L.agent) : ''
      if (m.on) ttimer = setTimeout(() => (typing.textContent = ''), m.ttl_ms || 6000)
    } else if (t === 'chat.status') {
      if (m.status === 'gone') return reset() // erased
      status = m.status
      if (m.assigned_agent && m.assigned_agent.name) name = m.assigned_agent.name
      refresh()
    }
  }

  function ack(m) {
    for (const id of m.ids || []) {
      if (!entry(id)) continue
      unkeep(id)
      const li = pend.get(id)
      const seq = m.seq && m.seq[id]
      if (li && seq) {
        pend.delete(id)
        seen.has(seq) ? li.remove() : place(li, seq, 1)
      } else if (li) meta(li, '')
    }
  }

  // Errors about chat frames; returns true when the error was one (widget.js ignores it then).
  function err(m) {
    const id = m.id
    const c = m.code || ''
    const slow = /rate_limited$/.test(c)
    if (id && (id === rsm || id === S.o)) {
      if (slow) opAt = 0
      else if (c === 'chat_forbidden') {
        // The conversation is gone, or its token is wrong, or the open id is someone else's.
        console.error('journeyd: chat_forbidden: ' + (m.message || ''))
        id === rsm ? reset() : (S.o = undefined)
      } else if (c === 'consent_required') return true
      setTimeout(id === rsm ? () => up() : flush, 3000)
      return true
    }
    const e = id && entry(id)
    if (!e) return sent.has(id) || /^chat_/.test(c)
    sent.delete(id)
    if (slow) return true // resent by the next flush
    if (c === 'chat_forbidden') {
      up() // this connection lost the conversation: resume, then resend
      return true
    }
    // Refused for an unknown stage or touchpoint hint: resend without it, and forget the hint.
    const f = m.field || { unknown_stage: 'stage', unknown_touchpoint: 'touchpoint' }[c]
    if (/^(stage|touchpoint)$/.test(f) && e.f[f] !== undefined) {
      delete e.f[f]
      keep(e)
      x.forget(f)
      return true
    }
    console.error('journeyd: ' + c + (m.message ? ': ' + m.message : ''))
    unkeep(id)
    const li = pend.get(id)
    if (li) {
      pend.delete(id)
      li.className += ' er'
      meta(li, L.failed)
    }
    return true
  }

  return { on, ack, err, up, down }
}

// journeyd agent console (docs/chat.md, "Agent console"). Plain JavaScript, no framework.
// Every piece of text that comes from the server or from a visitor is rendered with textContent:
// the page runs under a strict CSP with require-trusted-types-for 'script', so an HTML sink
// would throw anyway.
'use strict'
;(() => {
  const $ = (id) => document.getElementById(id)
  const el = (tag, props, ...kids) => {
    const e = document.createElement(tag)
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue
        if (k === 'text') e.textContent = v
        else if (k === 'class') e.className = v
        else if (k === 'dataset') Object.assign(e.dataset, v)
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
        else if (k in e && typeof v !== 'string') e[k] = v
        else e.setAttribute(k, v === true ? '' : v)
      }
    }
    for (const k of kids) if (k !== null && k !== undefined && k !== false) e.append(k)
    return e
  }

  // crypto.randomUUID needs a secure context; getRandomValues does not.
  const uuid = () => {
    if (crypto.randomUUID) return crypto.randomUUID()
    const b = crypto.getRandomValues(new Uint8Array(16))
    b[6] = (b[6] & 0x0f) | 0x40
    b[8] = (b[8] & 0x3f) | 0x80
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
  }
  const base = new URL('.', location.href) // .../agent/
  const route = (p) => new URL(p, base).toString()
  const fmtTime = (at) => {
    if (!at) return ''
    const d = new Date(at)
    return Number.isNaN(d.getTime()) ? String(at) : d.toLocaleString()
  }
  const cpLen = (s) => Array.from(s).length
  const EMOTIONS = { 1: 'very negative', 2: 'negative', 3: 'neutral', 4: 'positive', 5: 'very positive' }
  const RETRY = new Set(['not_ready', 'rate_limited', 'chat_rate_limited', 'shutting_down', 'unavailable', 'internal', 'store_rejected', 'busy', 'overloaded'])
  const TYPING_EVERY = 3000
  const OUTBOX_KEY = 'journeyd.agent.outbox'

  // ---------------------------------------------------------------------------------------------
  // State

  const S = {
    agent: null,
    ws: null,
    ready: false, // welcome received on this socket
    attempt: 0,
    reconnectTimer: null,
    helloTimer: null,
    helloId: null,
    pingTimer: null,
    lastFrameAt: 0,
    stopped: true, // no socket wanted (signed out)
    tab: 'waiting',
    offset: 0,
    limit: 50,
    inboxReq: null,
    inboxTimer: null,
    online: [],
    canned: [],
    catalog: { obstacles: [], stages: [], touchpoints: [], personas: [] },
    conv: null, // the open conversation: {id, summary, msgs: Map seq->msg, els: Map seq->li, ...}
    opened: new Map(), // conversation -> 'pending' | 'open' on this socket
    openIds: new Map(), // open frame id -> conversation
    outbox: new Map(), // frame id -> {f, conv (when it needs an opened conversation), sentOn}
    selection: null, // last text selection inside a visitor message {seq, start, end, text}
    codeForm: null, // {mode: 'create'|'revise', seq, messageId, code}
    historyReq: null,
  }

  // The outbox survives a reload (sessionStorage: this tab only); typing, read receipts and
  // requests are rebuilt instead.
  const DURABLE = new Set(['chat.message', 'chat.close', 'code.create', 'code.revise', 'code.retract', 'canned.save', 'canned.delete'])
  function saveOutbox() {
    try {
      const keep = [...S.outbox.values()].filter((o) => DURABLE.has(o.f.type)).map((o) => ({ f: o.f, conv: o.conv }))
      if (keep.length) sessionStorage.setItem(OUTBOX_KEY, JSON.stringify(keep))
      else sessionStorage.removeItem(OUTBOX_KEY)
    } catch {
      /* storage full or disabled: the in-memory outbox still works */
    }
  }
  function loadOutbox() {
    try {
      const list = JSON.parse(sessionStorage.getItem(OUTBOX_KEY) || '[]')
      for (const o of list) if (o && o.f && o.f.id) S.outbox.set(o.f.id, { f: o.f, conv: o.conv || null, sentOn: null })
    } catch {
      /* ignore */
    }
  }

  // ---------------------------------------------------------------------------------------------
  // HTTP: sign in, sign out, who am I

  async function api(path, opts = {}) {
    const res = await fetch(route(path), { credentials: 'same-origin', cache: 'no-store', ...opts })
    let json = null
    if (res.status !== 204) {
      try {
        json = await res.json()
      } catch {
        json = null
      }
    }
    return { status: res.status, json }
  }

  async function boot() {
    loadOutbox()
    wire()
    let r
    try {
      r = await api('me')
    } catch {
      r = { status: 0 }
    }
    if (r.status === 200 && r.json && r.json.agent) signedIn(r.json.agent)
    else showSignin('')
  }

  function showSignin(msg) {
    S.stopped = true
    S.agent = null
    $('console').hidden = true
    $('whoami').hidden = true
    $('signin').hidden = false
    $('login-error').textContent = msg || ''
    const site = new URLSearchParams(location.search).get('site')
    if (site && !$('login-site').value) $('login-site').value = site
    const first = ['login-site', 'login-email', 'login-password'].map($).find((i) => !i.value) || $('login-submit')
    first.focus()
  }

  function signedIn(agent) {
    S.agent = agent
    $('signin').hidden = true
    $('login-error').textContent = ''
    $('login-password').value = ''
    $('console').hidden = false
    $('whoami').hidden = false
    $('agent-name').textContent = agent.name || agent.email || `agent ${agent.id}`
    $('agent-role').textContent = agent.role ? `(${agent.role})` : ''
    $('canned-admin').hidden = agent.role !== 'admin'
    S.stopped = false
    setTab(S.tab, false)
    connect()
  }

  async function login(ev) {
    ev.preventDefault()
    const site = $('login-site').value.trim()
    const email = $('login-email').value.trim()
    const password = $('login-password').value
    const err = $('login-error')
    if (!site || !email || !password) {
      err.textContent = 'Enter the site key, your e-mail and your password.'
      return
    }
    $('login-submit').disabled = true
    err.textContent = ''
    try {
      const r = await api('login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ site, email, password }),
      })
      if (r.status === 200 && r.json && r.json.agent) {
        signedIn(r.json.agent)
        $('tab-' + S.tab).focus()
      } else if (r.status === 429) {
        err.textContent = (r.json && r.json.error && r.json.error.message) || 'Too many failed sign-ins; try again later.'
      } else if (r.status === 401) {
        err.textContent = (r.json && r.json.error && r.json.error.message) || 'Wrong e-mail or password.'
        $('login-password').value = ''
        $('login-password').focus()
      } else {
        err.textContent = `Sign-in failed (HTTP ${r.status}).`
      }
    } catch {
      err.textContent = 'The server cannot be reached. Try again.'
    } finally {
      $('login-submit').disabled = false
    }
  }

  async function logout() {
    $('logout').disabled = true
    try {
      await api('logout', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })
    } catch {
      /* the session may still be alive; the socket closes anyway */
    }
    $('logout').disabled = false
    S.outbox.clear()
    saveOutbox()
    disconnect()
    closeConversation()
    showSignin('You are signed out.')
  }

  // ---------------------------------------------------------------------------------------------
  // WebSocket

  function wsUrl() {
    const u = new URL('ws', base)
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:'
    return u.toString()
  }

  function setConn(text) {
    $('conn').textContent = text
  }

  function connect() {
    if (S.stopped || S.ws) return
    clearTimeout(S.reconnectTimer)
    S.ready = false
    S.opened.clear()
    S.openIds.clear()
    let ws
    try {
      ws = new WebSocket(wsUrl(), 'journey.agent.v1')
    } catch {
      return scheduleReconnect()
    }
    S.ws = ws
    setConn('Connecting…')
    ws.addEventListener('open', () => {
      if (S.ws !== ws) return
      S.lastFrameAt = Date.now()
      sendHello()
      clearInterval(S.pingTimer)
      S.pingTimer = setInterval(keepAlive, 15000)
    })
    ws.addEventListener('message', (ev) => {
      if (S.ws !== ws) return
      S.lastFrameAt = Date.now()
      let f
      try {
        f = JSON.parse(ev.data)
      } catch {
        return
      }
      if (f && typeof f === 'object') onFrame(f)
    })
    ws.addEventListener('close', (ev) => {
      if (S.ws !== ws) return
      onClosed(ev.code, ev.reason)
    })
  }

  function disconnect() {
    S.stopped = true
    clearTimeout(S.reconnectTimer)
    clearTimeout(S.helloTimer)
    clearInterval(S.pingTimer)
    const ws = S.ws
    S.ws = null
    S.ready = false
    if (ws) {
      try {
        ws.close(1000)
      } catch {
        /* already closing */
      }
    }
    setConn('')
  }

  async function onClosed(code) {
    S.ws = null
    S.ready = false
    clearTimeout(S.helloTimer)
    clearInterval(S.pingTimer)
    for (const o of S.outbox.values()) o.sentOn = null
    if (S.stopped) return
    setConn('Disconnected; reconnecting…')
    // 1008 = the session ended (logout elsewhere, expiry, password change); a refused upgrade
    // shows up as 1006. Either way ask the server whether we are still signed in.
    let r = null
    try {
      r = await api('me')
    } catch {
      r = null
    }
    if (S.stopped) return
    if (r && r.status === 401) {
      disconnect()
      closeConversation()
      showSignin(code === 1008 ? 'Your session has ended. Please sign in again.' : 'Please sign in.')
      return
    }
    scheduleReconnect()
  }

  function scheduleReconnect() {
    if (S.stopped) return
    clearTimeout(S.reconnectTimer)
    const cap = Math.min(15000, 500 * 2 ** Math.min(S.attempt, 8))
    const delay = 250 + Math.random() * cap
    S.attempt++
    S.reconnectTimer = setTimeout(connect, delay)
  }

  function keepAlive() {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return
    if (Date.now() - S.lastFrameAt > 45000) {
      // Nothing heard for too long: the connection is dead even if the browser has not noticed.
      const ws = S.ws
      S.ws = null
      try {
        ws.close(4000)
      } catch {
        /* ignore */
      }
      onClosed(1006)
      return
    }
    raw({ type: 'ping', id: uuid() })
  }

  function raw(f) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return false
    try {
      S.ws.send(JSON.stringify(f))
      return true
    } catch {
      return false
    }
  }

  function sendHello() {
    clearTimeout(S.helloTimer)
    S.helloId = uuid()
    raw({ type: 'hello', id: S.helloId, v: 1 })
    // No welcome yet after a while (the session check is slow or was lost): ask again; the server
    // ignores a hello while it is still checking the first one.
    S.helloTimer = setTimeout(() => {
      if (!S.ready && S.ws) sendHello()
    }, 10000)
  }

  // A frame that must reach the server: it stays in the outbox until its ack or reply, and is
  // sent again on every new connection. conv: the conversation it needs opened on the socket.
  function send(f, conv = null) {
    if (!f.id) f.id = uuid()
    S.outbox.set(f.id, { f, conv, sentOn: null })
    if (DURABLE.has(f.type)) saveOutbox()
    pump()
    return f.id
  }

  function pump() {
    if (!S.ready || !S.ws) return
    for (const o of S.outbox.values()) {
      if (o.sentOn === S.ws) continue
      if (o.conv) {
        const st = S.opened.get(o.conv)
        if (st !== 'open') {
          if (!st) openOnSocket(o.conv, o.conv === (S.conv && S.conv.id) ? S.conv.maxSeq : null)
          continue
        }
      }
      if (raw(o.f)) o.sentOn = S.ws
    }
  }

  // Subscribes this socket to a conversation. after_seq null = only to write into it (e.g. an
  // unacked reply in a conversation the agent has left); the messages are not needed then.
  function openOnSocket(conv, afterSeq) {
    const id = uuid()
    S.opened.set(conv, 'pending')
    S.openIds.set(id, conv)
    raw({ type: 'open', id, conversation: conv, after_seq: afterSeq || 0 })
  }

  function done(id) {
    const o = S.outbox.get(id)
    if (!o) return null
    S.outbox.delete(id)
    if (DURABLE.has(o.f.type)) saveOutbox()
    return o
  }

  // ---------------------------------------------------------------------------------------------
  // Incoming frames

  function onFrame(f) {
    if (f.re && S.historyReq && f.re === S.historyReq && f.type !== 'error') return onHistory(f)
    switch (f.type) {
      case 'welcome':
        return onWelcome(f)
      case 'error':
        return onError(f)
      case 'ack':
        return onAck(f)
      case 'pong':
        return
      case 'inbox':
        return onInbox(f)
      case 'conversation':
        return onConversation(f)
      case 'chat.message':
        return onMessage(f)
      case 'chat.typing':
        return onTyping(f)
      case 'chat.receipt':
        return onReceipt(f)
      case 'chat.status':
        return onStatus(f)
      case 'chat.codes':
        return onCodes(f)
      case 'inbox.update':
        return onInboxUpdate(f)
      case 'chat.presence':
        return setPresence(f.online)
      case 'canned':
        if (f.re) done(f.re)
        return setCanned(f.canned || f.items || f.responses || [])
      default:
        if (f.re) return onReply(f)
    }
  }

  function onWelcome(f) {
    clearTimeout(S.helloTimer)
    S.ready = true
    S.attempt = 0
    setConn('Connected')
    if (f.agent) {
      S.agent = { ...S.agent, ...f.agent }
      $('agent-name').textContent = S.agent.name || S.agent.email || ''
    }
    setPresence(f.online || [])
    if (f.canned) setCanned(f.canned)
    takeCatalog(f)
    // Requests of the old socket are answered by these fresh ones.
    for (const [id, o] of S.outbox) if (o.f.type === 'inbox' || o.f.type === 'codes.history' || o.f.type === 'canned') S.outbox.delete(id)
    requestInbox()
    if (S.conv) openOnSocket(S.conv.id, S.conv.maxSeq)
    else fromHash()
    pump()
  }

  // A link to one conversation: /agent/index.html#c=UUID
  function fromHash() {
    const m = /^#c=([0-9a-fA-F-]{36})$/.exec(location.hash)
    if (m && S.agent && !S.stopped && !(S.conv && S.conv.id === m[1].toLowerCase())) openConversation(m[1].toLowerCase(), null)
  }

  // Optional catalog in welcome / conversation frames: obstacles, stages, touchpoints, personas as
  // arrays of slugs or {slug, name}, possibly under "map" or "catalog".
  function takeCatalog(f) {
    const srcs = [f, f.map, f.catalog].filter((x) => x && typeof x === 'object')
    let changed = false
    for (const k of ['obstacles', 'stages', 'touchpoints', 'personas']) {
      for (const s of srcs) {
        if (Array.isArray(s[k]) && s[k].length) {
          S.catalog[k] = s[k].map((x) => (typeof x === 'string' ? { slug: x, name: x } : { slug: x.slug, name: x.name || x.slug })).filter((x) => x.slug)
          changed = true
          break
        }
      }
    }
    if (changed) renderCatalog()
  }

  function renderCatalog() {
    const fill = (id, list) => {
      const dl = $(id)
      dl.replaceChildren(...list.map((x) => el('option', { value: x.slug, label: x.name })))
    }
    fill('stage-list', S.catalog.stages)
    fill('touchpoint-list', S.catalog.touchpoints)
    fill('persona-list', S.catalog.personas)
    const box = $('obstacle-boxes')
    box.replaceChildren(
      ...S.catalog.obstacles.map((o) => el('label', { class: 'inline' }, el('input', { type: 'checkbox', name: 'obstacle', value: o.slug }), ' ', o.name)),
    )
  }

  function onError(f) {
    if (f.code === 'duplicate_hello') return // a second hello crossed the welcome
    if (f.code === 'not_ready') {
      // The session check is still running: resend hello shortly, keep everything else queued.
      if (!S.ready) {
        clearTimeout(S.helloTimer)
        S.helloTimer = setTimeout(sendHello, 300)
      } else if (f.id && S.outbox.has(f.id)) {
        S.outbox.get(f.id).sentOn = null
        setTimeout(pump, 300)
      }
      return
    }
    // Busy or rate limited: requests are sent again after a pause (outbox frames below).
    if (f.id && RETRY.has(f.code)) {
      const later = (fn) => setTimeout(fn, 1000 + Math.random() * 1000)
      if (f.id === S.helloId && !S.ready) return later(sendHello)
      if (S.openIds.has(f.id)) {
        const conv = S.openIds.get(f.id)
        S.openIds.delete(f.id)
        S.opened.delete(conv)
        return later(() => {
          if (!S.ready || S.opened.has(conv)) return
          if (S.conv && S.conv.id === conv) openOnSocket(conv, S.conv.maxSeq)
          pump()
        })
      }
      if (f.id === S.inboxReq) return later(requestInbox)
      if (f.id === S.historyReq) return later(requestHistory)
    }
    if (f.id && f.id === S.historyReq) {
      S.historyReq = null
      $('history-list').replaceChildren(el('li', { class: 'error', text: `The history cannot be shown: ${errText(f)}` }))
      return
    }
    if (f.id && f.id === S.inboxReq) {
      $('inbox-summary').textContent = `The list cannot be shown: ${errText(f)}`
      return
    }
    if (f.id && S.openIds.has(f.id)) {
      const conv = S.openIds.get(f.id)
      S.openIds.delete(f.id)
      S.opened.delete(conv)
      for (const [id, o] of S.outbox) if (o.conv === conv) done(id)
      if (S.conv && S.conv.id === conv) {
        closeConversation()
        const t = f.code === 'not_found' ? 'Conversation not found.' : `The conversation cannot be opened: ${errText(f)}`
        $('conv-empty').textContent = t
        announce(t)
      }
      return
    }
    if (f.id && S.outbox.has(f.id)) {
      const o = S.outbox.get(f.id)
      if (f.code === 'chat_forbidden' && o.conv && !o.forbidden) {
        // This socket is not (or no longer) subscribed: open the conversation again, then resend.
        o.forbidden = true
        o.sentOn = null
        S.opened.delete(o.conv)
        setTimeout(pump, 200)
        return
      }
      if (RETRY.has(f.code)) {
        o.sentOn = null
        setTimeout(pump, 1000 + Math.random() * 1000)
        return
      }
      done(f.id)
      reportError(o.f, f)
      return
    }
    if (f.id === S.helloId && !S.ready) {
      setConn(`Cannot start: ${f.message || f.code}`)
      return
    }
    if (f.message) announce(`Error: ${f.message}`)
  }

  function errText(e) {
    return `${e.message || e.code}${e.field ? ` (${e.field})` : ''}`
  }

  function reportError(frame, e) {
    switch (frame.type) {
      case 'chat.message': {
        const li = S.conv && S.conv.pending.get(frame.id)
        if (li) {
          li.classList.add('failed')
          li.querySelector('.state').textContent = `Not sent: ${errText(e)}`
        }
        $('reply-error').textContent = `Your message was not sent: ${errText(e)}`
        return
      }
      case 'code.create':
      case 'code.revise':
        if (S.codeForm && S.codeForm.pending === frame.id) {
          S.codeForm.pending = null
          $('code-save').disabled = false
          $('code-status').textContent = ''
          $('code-error').textContent = `The code was not saved: ${errText(e)}`
          $('code-error').focus?.()
        } else $('code-status').textContent = `A code was not saved: ${errText(e)}`
        return
      case 'code.retract':
        $('code-status').textContent = `The code was not retracted: ${errText(e)}`
        return
      case 'canned.save':
      case 'canned.delete':
        $('canned-error').textContent = errText(e)
        return
      case 'chat.close':
        $('reply-error').textContent = `The conversation was not closed: ${errText(e)}`
        return
      default:
        announce(`Error: ${errText(e)}`)
    }
  }

  function onAck(f) {
    for (const id of f.ids || []) {
      const o = done(id)
      if (!o) continue
      if (o.f.type === 'chat.message' && S.conv) {
        const li = S.conv.pending.get(id)
        const seq = f.seq && f.seq[id]
        if (li && !li.classList.contains('failed')) li.querySelector('.state').textContent = seq ? 'Sent' : 'Sent'
      } else if (o.f.type === 'code.create' || o.f.type === 'code.revise' || o.f.type === 'code.retract') {
        codeSaved(o.f)
      } else if (o.f.type === 'canned.save' || o.f.type === 'canned.delete') {
        raw({ type: 'canned', id: uuid() })
      } else if (o.f.type === 'chat.read') {
        refreshInboxSoon() // the unread counts changed
      }
    }
  }

  // Replies carrying "re" that have no case of their own (code results, history, canned.save).
  function onReply(f) {
    const o = done(f.re)
    if (S.historyReq && f.re === S.historyReq) return onHistory(f)
    if (!o) return
    if (o.f.type === 'code.create' || o.f.type === 'code.revise' || o.f.type === 'code.retract') {
      codeSaved(o.f)
      const code = f.code && typeof f.code === 'object' ? f.code : f.id && f.message_id ? f : null
      if (code && S.conv && code.conversation === S.conv.id) mergeCode(code, o.f.type === 'code.retract')
    } else if (o.f.type === 'canned.save' || o.f.type === 'canned.delete') {
      if (Array.isArray(f.canned)) setCanned(f.canned)
      else raw({ type: 'canned', id: uuid() })
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Presence and canned responses

  function setPresence(list) {
    S.online = Array.isArray(list) ? list : []
    $('presence-list').replaceChildren(
      ...(S.online.length ? S.online.map((a) => el('li', { text: `${a.name || `agent ${a.id}`}${S.agent && a.id === S.agent.id ? ' (you)' : ''}` })) : [el('li', { class: 'muted', text: 'nobody' })]),
    )
  }

  function setCanned(list) {
    S.canned = Array.isArray(list) ? list : []
    const sel = $('canned-select')
    const keep = sel.value
    sel.replaceChildren(el('option', { value: '', text: '(none)' }), ...S.canned.map((c, i) => el('option', { value: String(i), text: `${c.title || c.shortcut}${c.shortcut ? ` (/${c.shortcut})` : ''}` })))
    if (keep && Number(keep) < S.canned.length) sel.value = keep
    $('canned-list').replaceChildren(
      ...S.canned.map((c) =>
        el(
          'li',
          null,
          el('span', { text: `/${c.shortcut} · ${c.title || ''}` }),
          ' ',
          el('button', { type: 'button', text: 'Delete', 'aria-label': `Delete /${c.shortcut}`, onclick: () => send({ type: 'canned.delete', shortcut: c.shortcut }) }),
        ),
      ),
    )
  }

  function insertCanned() {
    const i = $('canned-select').value
    if (i === '') return
    const c = S.canned[Number(i)]
    if (!c) return
    const ta = $('reply-body')
    const start = ta.selectionStart ?? ta.value.length
    const end = ta.selectionEnd ?? ta.value.length
    ta.value = ta.value.slice(0, start) + c.body + ta.value.slice(end)
    ta.focus()
    ta.selectionStart = ta.selectionEnd = start + c.body.length
    typingInput()
  }

  function saveCanned(ev) {
    ev.preventDefault()
    const shortcut = $('canned-shortcut').value.trim()
    const title = $('canned-title').value.trim()
    const body = $('canned-body').value
    if (!shortcut || !body.trim()) {
      $('canned-error').textContent = 'A shortcut and a text are needed.'
      return
    }
    $('canned-error').textContent = ''
    send({ type: 'canned.save', shortcut, title: title || shortcut, body })
    $('canned-shortcut').value = $('canned-title').value = $('canned-body').value = ''
  }

  // ---------------------------------------------------------------------------------------------
  // Inbox

  function setTab(status, request = true) {
    S.tab = status
    S.offset = 0
    for (const b of document.querySelectorAll('[role=tab]')) {
      const on = b.dataset.status === status
      b.setAttribute('aria-selected', String(on))
      b.tabIndex = on ? 0 : -1
    }
    $('inbox-panel').setAttribute('aria-labelledby', 'tab-' + status)
    if (request) requestInbox()
  }

  function requestInbox() {
    clearTimeout(S.inboxTimer)
    if (!S.ready) return
    S.inboxReq = uuid()
    raw({ type: 'inbox', id: S.inboxReq, status: S.tab, limit: S.limit, offset: S.offset })
  }

  function refreshInboxSoon() {
    clearTimeout(S.inboxTimer)
    S.inboxTimer = setTimeout(requestInbox, 250)
  }

  function onInbox(f) {
    if (f.re && f.re !== S.inboxReq) return
    const items = f.items || []
    S.items = items
    const total = f.total ?? items.length
    const offset = f.offset ?? 0
    $('inbox-summary').textContent = total ? `${total} ${S.tab} conversation${total === 1 ? '' : 's'}${total > items.length ? `, showing ${offset + 1}–${offset + items.length}` : ''}` : `No ${S.tab} conversations.`
    $('inbox-prev').disabled = offset <= 0
    $('inbox-next').disabled = offset + items.length >= total
    const had = document.activeElement && document.activeElement.closest('#inbox-list') && document.activeElement.dataset.conversation
    $('inbox-list').replaceChildren(...items.map(inboxItem))
    if (had) {
      const b = $('inbox-list').querySelector(`button[data-conversation="${CSS.escape(had)}"]`)
      if (b) b.focus()
    }
  }

  function visitorName(item) {
    const email = item.visitor && item.visitor.email
    return email || 'Anonymous visitor'
  }

  function contextText(ctx) {
    if (!ctx) return ''
    const parts = []
    if (ctx.page) parts.push(ctx.page)
    if (ctx.stage) parts.push(`stage ${ctx.stage.name || ctx.stage.slug}`)
    if (ctx.touchpoint) parts.push(`touchpoint ${ctx.touchpoint.name || ctx.touchpoint.slug}`)
    return parts.join(' · ')
  }

  function journeyItems(list) {
    return (list || []).map((t) =>
      el('li', { text: [t.kind, t.name, t.url, t.stage && `stage ${t.stage}`, t.touchpoint && `touchpoint ${t.touchpoint}`, t.at && fmtTime(t.at)].filter(Boolean).join(' · ') }),
    )
  }

  function inboxItem(item) {
    const current = S.conv && S.conv.id === item.conversation
    const last = item.last_message
    const unread = Number(item.unread || 0)
    const btn = el(
      'button',
      { type: 'button', class: 'item', dataset: { conversation: item.conversation }, 'aria-current': current ? 'true' : null, onclick: () => openConversation(item.conversation, item) },
      el('span', { class: 'who', text: visitorName(item) }),
      unread ? el('span', { class: 'badge', text: `${unread} unread` }) : null,
      el('span', { class: 'status-pill', text: item.status }),
      last ? el('span', { class: 'last', text: `${last.sender === 'visitor' ? 'Visitor' : last.sender === 'agent' ? (last.kind === 'note' ? 'Note' : 'Agent') : 'System'}: ${last.body}` }) : el('span', { class: 'last muted', text: 'No messages yet' }),
      el('span', { class: 'ctx', text: contextText(item.context) }),
    )
    const jl = item.journey || []
    const li = el('li', { class: current ? 'current' : null }, btn)
    if (jl.length) li.append(el('details', { class: 'journey' }, el('summary', { text: `Journey path (${jl.length})` }), el('ol', { class: 'journey-list' }, ...journeyItems(jl))))
    return li
  }

  function onInboxUpdate(f) {
    refreshInboxSoon()
    if (S.conv && f.conversation === S.conv.id && f.status) setStatus(f.status, f.assigned_agent)
  }

  // ---------------------------------------------------------------------------------------------
  // Conversation

  function openConversation(id, item) {
    if (S.conv && S.conv.id === id) {
      $('reply-body').focus()
      return
    }
    closeConversation()
    S.conv = {
      id,
      summary: item || null,
      msgs: new Map(), // seq -> message
      els: new Map(), // seq -> li
      pending: new Map(), // client id -> li (own messages not yet seen with a seq)
      codes: [],
      maxSeq: 0,
      maxVisitorSeq: 0,
      readSent: 0,
      deliveredSent: 0,
      receipts: { delivered: 0, read: 0 },
      typingTimer: null,
      lastTypingAt: 0,
      typingOn: false,
      status: item ? item.status : '',
    }
    $('conv-empty').hidden = true
    $('conv').hidden = false
    $('transcript').replaceChildren()
    $('history').hidden = true
    $('reply-error').textContent = ''
    $('visitor-typing').textContent = ''
    if (item) renderHeader(item)
    else $('conv-title').textContent = 'Loading…'
    try {
      history.replaceState(null, '', '#c=' + id)
    } catch {
      /* ignore */
    }
    setDownloads()
    for (const b of $('inbox-list').querySelectorAll('button[data-conversation]')) {
      const on = b.dataset.conversation === id
      if (on) b.setAttribute('aria-current', 'true')
      else b.removeAttribute('aria-current')
      b.parentElement.classList.toggle('current', on)
    }
    // Unacked replies of this conversation show as pending.
    for (const o of S.outbox.values()) if (o.f.type === 'chat.message' && o.f.conversation === id) addPending(o.f)
    if (S.ready) openOnSocket(id, 0)
    $('conversation').focus()
  }

  function closeConversation() {
    const c = S.conv
    if (!c) return
    stopTyping()
    clearTimeout(c.visitorTypingTimer)
    // Leave unless unacked frames still need the subscription.
    if (S.ready && ![...S.outbox.values()].some((o) => o.conv === c.id)) {
      raw({ type: 'leave', id: uuid(), conversation: c.id })
      S.opened.delete(c.id)
    }
    S.conv = null
    S.selection = null
    hideCodeForm()
    try {
      history.replaceState(null, '', location.pathname + location.search)
    } catch {
      /* ignore */
    }
    $('conv').hidden = true
    $('conv-empty').hidden = false
    $('conv-empty').textContent = 'Choose a conversation from the list.'
  }

  function renderHeader(s) {
    const c = S.conv
    c.summary = { ...(c.summary || {}), ...s }
    $('conv-title').textContent = `Conversation with ${visitorName(c.summary)}`
    setStatus(c.summary.status, c.summary.assigned_agent)
    const ctx = c.summary.context || {}
    $('ctx-page').textContent = ctx.page || '—'
    $('ctx-stage').textContent = ctx.stage ? `${ctx.stage.name || ctx.stage.slug} (${ctx.stage.slug})` : '—'
    $('ctx-touchpoint').textContent = ctx.touchpoint ? `${ctx.touchpoint.name || ctx.touchpoint.slug} (${ctx.touchpoint.slug})` : '—'
    const jl = c.summary.journey || []
    $('journey-count').textContent = String(jl.length)
    $('journey-list').replaceChildren(...journeyItems(jl))
  }

  function setStatus(status, assigned) {
    const c = S.conv
    if (!c || !status) return
    c.status = status
    $('conv-status').textContent = status
    $('conv-status').dataset.status = status
    if (assigned !== undefined) $('conv-assigned').textContent = assigned ? `assigned to ${assigned.name || `agent ${assigned.id}`}` : 'unassigned'
    $('close-btn').disabled = status === 'closed' || status === 'gone'
    if (status === 'gone') {
      $('conv-title').textContent = 'This conversation was erased.'
      $('reply-send').disabled = true
    } else $('reply-send').disabled = false
  }

  function setDownloads() {
    const c = S.conv
    if (!c) return
    const redact = $('dl-redact').checked
    for (const fmt of ['html', 'text', 'csv', 'jsonl']) {
      const q = new URLSearchParams({ conversation: c.id, format: fmt })
      if (redact) q.set('redact', '1')
      const a = $('dl-' + fmt)
      a.href = route('transcript?' + q.toString())
      a.setAttribute('download', `transcript-${c.id}.${fmt === 'text' ? 'txt' : fmt}`)
    }
  }

  function onConversation(f) {
    const conv = (f.re && S.openIds.get(f.re)) || f.conversation
    if (f.re) S.openIds.delete(f.re)
    if (conv) S.opened.set(conv, 'open')
    takeCatalog(f)
    if (S.conv && S.conv.id === conv) {
      renderHeader(f)
      const st = f.state || {}
      if (st.status) setStatus(st.status, st.assigned_agent)
      if (st.receipts) setReceipts(st.receipts.visitor_delivered_seq, st.receipts.visitor_read_seq)
      if (st.visitor_typing) showTyping({ who: 'visitor', on: true, ttl_ms: 6000 })
      if (Array.isArray(f.codes)) setCodes(f.codes, st.codes_version)
    }
    pump()
  }

  function onMessage(f) {
    const c = S.conv
    if (!c || f.conversation !== c.id) return
    const seq = Number(f.seq)
    if (!Number.isInteger(seq) || seq <= 0 || c.els.has(seq)) return // ordered by seq; shown once
    c.msgs.set(seq, f)
    const li = messageItem(f)
    c.els.set(seq, li)
    // Insert in seq order (before the first shown message with a higher seq, else before the
    // pending ones at the end).
    let before = null
    for (const [s, e] of c.els) if (s > seq && (!before || s < Number(before.dataset.seq))) before = e
    const pend = f.id && c.pending.get(f.id)
    if (pend) {
      c.pending.delete(f.id)
      pend.remove()
    }
    const list = $('transcript')
    const atEnd = !before && nearBottom()
    if (before) list.insertBefore(li, before)
    else {
      const firstPending = list.querySelector('li.pending')
      list.insertBefore(li, firstPending)
    }
    if (atEnd) scrollDown()
    if (seq > c.maxSeq) c.maxSeq = seq
    if (f.sender === 'visitor') {
      if (seq > c.maxVisitorSeq) c.maxVisitorSeq = seq
      if (f.kind !== 'note') hideTyping()
      markSeen()
    }
    if (f.sender !== 'visitor' || f.kind === 'note') updateReceiptLabel(li, f)
  }

  function senderLabel(m) {
    if (m.sender === 'visitor') return visitorName(S.conv.summary || {})
    if (m.sender === 'agent') {
      const mine = S.agent && m.agent && m.agent.id === S.agent.id
      return `${(m.agent && m.agent.name) || 'Agent'}${mine ? ' (you)' : ''}`
    }
    return 'System'
  }

  function messageItem(m) {
    const note = m.kind === 'note'
    const li = el('li', {
      class: `msg from-${m.sender}${note ? ' note' : ''}${m.kind === 'offline' ? ' offline' : ''}`,
      dataset: { seq: String(m.seq), id: m.id || '', messageId: m.message_id ? String(m.message_id) : '' },
    })
    const head = el(
      'p',
      { class: 'meta' },
      el('span', { class: 'sender', text: senderLabel(m) }),
      note ? el('span', { class: 'tag', text: 'Private note' }) : null,
      m.kind === 'offline' ? el('span', { class: 'tag', text: 'Offline message' }) : null,
      el('time', { datetime: m.at || '', text: fmtTime(m.at) }),
      el('span', { class: 'seqno', text: `#${m.seq}` }),
    )
    const body = el('p', { class: 'body', text: m.body })
    li.append(head, body)
    if (m.sender === 'visitor') {
      const ctx = [m.page, m.stage && `stage ${m.stage}`, m.touchpoint && `touchpoint ${m.touchpoint}`].filter(Boolean).join(' · ')
      if (ctx) li.append(el('p', { class: 'msg-ctx', text: ctx }))
      if (m.message_id) {
        li.append(
          el('div', { class: 'msg-actions' }, el('button', { type: 'button', class: 'code-btn', text: 'Code', 'aria-label': `Code message ${m.seq}`, onclick: () => startCode(m.seq, false) })),
        )
      }
      li.append(el('ul', { class: 'codes', 'aria-label': `Codes of message ${m.seq}` }))
      renderMessageCodes(m.seq)
    } else if (!note && m.sender === 'agent') {
      li.append(el('p', { class: 'state receipt' }))
    }
    return li
  }

  function addPending(f) {
    const c = S.conv
    if (!c || c.pending.has(f.id)) return
    const li = el(
      'li',
      { class: `msg from-agent pending${f.kind === 'note' ? ' note' : ''}`, dataset: { id: f.id } },
      el('p', { class: 'meta' }, el('span', { class: 'sender', text: `${(S.agent && S.agent.name) || 'You'} (you)` }), f.kind === 'note' ? el('span', { class: 'tag', text: 'Private note' }) : null),
      el('p', { class: 'body', text: f.body }),
      el('p', { class: 'state', text: 'Sending…' }),
    )
    c.pending.set(f.id, li)
    $('transcript').append(li)
    scrollDown()
  }

  // The transcript follows new messages while the agent is reading its end.
  function nearBottom() {
    const t = $('transcript')
    return t.scrollHeight - t.scrollTop - t.clientHeight < 80
  }

  function scrollDown() {
    const t = $('transcript')
    t.scrollTop = t.scrollHeight
  }

  // ---------------------------------------------------------------------------------------------
  // Reading, receipts, typing

  function focused() {
    return document.visibilityState === 'visible' && document.hasFocus()
  }

  function markSeen() {
    clearTimeout(S.seenTimer)
    S.seenTimer = setTimeout(markSeenNow, 50)
  }

  function markSeenNow() {
    const c = S.conv
    if (!c || !c.maxVisitorSeq) return
    const upto = c.maxVisitorSeq
    if (focused()) {
      if (upto > c.readSent) {
        c.readSent = upto
        c.deliveredSent = Math.max(c.deliveredSent, upto)
        send({ type: 'chat.read', conversation: c.id, upto_seq: upto, what: 'read' }, c.id)
      }
    } else if (upto > c.deliveredSent) {
      c.deliveredSent = upto
      send({ type: 'chat.read', conversation: c.id, upto_seq: upto, what: 'delivered' }, c.id)
    }
  }

  function setReceipts(delivered, read) {
    const c = S.conv
    if (!c) return
    c.receipts.delivered = Math.max(c.receipts.delivered, Number(delivered || 0))
    c.receipts.read = Math.max(c.receipts.read, Number(read || 0))
    for (const [seq, li] of c.els) updateReceiptLabel(li, c.msgs.get(seq))
  }

  function updateReceiptLabel(li, m) {
    const st = li.querySelector('.receipt')
    if (!st || !m) return
    const c = S.conv
    const seq = Number(m.seq)
    const v = seq <= c.receipts.read ? 'read' : seq <= c.receipts.delivered ? 'delivered' : 'sent'
    st.textContent = v === 'read' ? 'Read' : v === 'delivered' ? 'Delivered' : 'Sent'
    li.dataset.receipt = v
  }

  function onReceipt(f) {
    if (S.conv && f.conversation === S.conv.id) setReceipts(f.delivered_seq, f.read_seq)
  }

  function onStatus(f) {
    if (S.conv && f.conversation === S.conv.id) {
      setStatus(f.status, f.assigned_agent)
      announce(`Conversation ${f.status}`)
    }
    refreshInboxSoon()
  }

  function onTyping(f) {
    if (!S.conv || f.conversation !== S.conv.id) return
    if (f.who === 'agent' && f.agent && S.agent && f.agent.id === S.agent.id) return
    if (f.who === 'agent' && !f.agent && !f.name) return
    if (f.on) showTyping(f)
    else hideTyping()
  }

  function showTyping(f) {
    const c = S.conv
    const who = f.who === 'visitor' ? 'The visitor' : (f.agent && f.agent.name) || f.name || 'Another agent'
    $('visitor-typing').textContent = `${who} is typing…`
    clearTimeout(c.visitorTypingTimer)
    c.visitorTypingTimer = setTimeout(hideTyping, Number(f.ttl_ms) || 6000)
  }

  function hideTyping() {
    $('visitor-typing').textContent = ''
    if (S.conv) clearTimeout(S.conv.visitorTypingTimer)
  }

  function typingInput() {
    const c = S.conv
    if (!c) return
    const text = $('reply-body').value
    if (!text.trim()) return stopTyping()
    if ($('reply-note').checked) return stopTyping() // writing a note is not typing to the visitor
    const now = Date.now()
    if (!c.typingOn || now - c.lastTypingAt >= TYPING_EVERY) {
      if (c.typingOn || S.opened.get(c.id) === 'open') {
        c.lastTypingAt = now
        c.typingOn = true
        raw({ type: 'chat.typing', id: uuid(), conversation: c.id, on: true })
      }
    }
  }

  function stopTyping() {
    const c = S.conv
    if (!c || !c.typingOn) return
    c.typingOn = false
    c.lastTypingAt = 0
    raw({ type: 'chat.typing', id: uuid(), conversation: c.id, on: false })
  }

  // ---------------------------------------------------------------------------------------------
  // Sending

  function sendReply(ev) {
    if (ev) ev.preventDefault()
    const c = S.conv
    if (!c) return
    const body = $('reply-body').value
    const err = $('reply-error')
    if (!body.trim()) {
      err.textContent = 'Write a message first.'
      return
    }
    if (cpLen(body) > 4000) {
      err.textContent = 'A message can have 4000 characters at most.'
      return
    }
    err.textContent = ''
    const kind = $('reply-note').checked ? 'note' : 'text'
    stopTyping()
    const f = { type: 'chat.message', id: uuid(), conversation: c.id, body, kind }
    addPending(f)
    send(f, c.id)
    $('reply-body').value = ''
    $('reply-body').focus()
  }

  function closeChat() {
    const c = S.conv
    if (!c || c.status === 'closed') return
    send({ type: 'chat.close', conversation: c.id }, c.id)
    $('close-btn').disabled = true
  }

  // ---------------------------------------------------------------------------------------------
  // Research coding

  // The last non-empty selection inside the body of a visitor message, as code-point offsets.
  function captureSelection() {
    const sel = document.getSelection()
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed || !S.conv) return
    const range = sel.getRangeAt(0)
    const node = range.commonAncestorContainer
    const host = (node.nodeType === 1 ? node : node.parentElement)?.closest('li.msg.from-visitor')
    if (!host || !host.dataset.seq) return
    const bodyEl = host.querySelector('.body')
    const m = S.conv.msgs.get(Number(host.dataset.seq))
    if (!bodyEl || !m || !m.message_id) return
    const r = span16(bodyEl, range)
    if (!r || r[1] <= r[0]) return
    // UTF-16 offsets into the body -> code points (an emoji counts once, as in PostgreSQL).
    const start = cpLen(m.body.slice(0, r[0]))
    const end = cpLen(m.body.slice(0, r[1]))
    if (end <= start) return
    const old = S.selection
    if (old && old.seq === m.seq && old.start === start && old.end === end && S.codeForm && S.codeForm.seq === m.seq) return
    const text = Array.from(m.body).slice(start, end).join('')
    S.selection = { seq: m.seq, start, end, text }
    startCode(m.seq, true)
  }

  // The part of range that lies inside bodyEl, as UTF-16 offsets into its text.
  function span16(bodyEl, range) {
    const all = document.createRange()
    all.selectNodeContents(bodyEl)
    const len = bodyEl.textContent.length
    const offsetOf = (container, offset) => {
      const r = document.createRange()
      r.setStart(bodyEl, 0)
      r.setEnd(container, offset)
      return r.toString().length
    }
    let s = 0
    let e = len
    if (range.compareBoundaryPoints(Range.START_TO_START, all) > 0) s = offsetOf(range.startContainer, range.startOffset)
    if (range.compareBoundaryPoints(Range.END_TO_END, all) < 0) e = offsetOf(range.endContainer, range.endOffset)
    if (range.compareBoundaryPoints(Range.START_TO_END, all) <= 0 || range.compareBoundaryPoints(Range.END_TO_START, all) >= 0) return null
    return [Math.max(0, Math.min(len, s)), Math.max(0, Math.min(len, e))]
  }

  function startCode(seq, fromSelection, code = null) {
    const c = S.conv
    const m = c && c.msgs.get(seq)
    if (!m) return
    S.codeForm = { mode: code ? 'revise' : 'create', seq, messageId: m.message_id, code }
    const form = $('code-form')
    form.hidden = false
    $('code-save').disabled = false
    $('coding-help').hidden = true
    $('code-error').textContent = ''
    $('code-status').textContent = ''
    $('code-mode').textContent = code ? `Revise code ${code.id}` : 'New code'
    $('code-target').textContent = `Message #${seq} from ${visitorName(c.summary || {})}: “${m.body.length > 120 ? m.body.slice(0, 120) + '…' : m.body}”`
    const sel = S.selection && S.selection.seq === seq ? S.selection : null
    if (code) {
      $('code-quote').value = code.span ? code.text || '' : ''
      S.codeForm.span = code.span ? [code.span[0], code.span[1]] : null
      setEmotion(code.emotion)
      setObstacles(code.obstacles || [])
      $('code-stage').value = code.stage || ''
      $('code-touchpoint').value = code.touchpoint || ''
      $('code-persona').value = code.persona || ''
      $('code-memo').value = code.memo || ''
    } else {
      $('code-quote').value = fromSelection && sel ? sel.text : ''
      S.codeForm.span = fromSelection && sel ? [sel.start, sel.end] : null
      setEmotion(null)
      setObstacles([])
      $('code-stage').value = m.stage || ''
      $('code-touchpoint').value = m.touchpoint || ''
      $('code-persona').value = ''
      $('code-memo').value = ''
    }
    if (!fromSelection) {
      const first = form.querySelector('input[name=emotion]:checked') || form.querySelector('input[name=emotion]')
      ;(code ? first : $('code-quote')).focus()
    }
  }

  function setEmotion(v) {
    for (const r of document.querySelectorAll('input[name=emotion]')) r.checked = r.value === (v ? String(v) : '')
  }

  function setObstacles(list) {
    const known = new Set(S.catalog.obstacles.map((o) => o.slug))
    for (const b of document.querySelectorAll('input[name=obstacle]')) b.checked = list.includes(b.value)
    $('code-obstacles').value = list.filter((s) => !known.has(s)).join(', ')
  }

  function hideCodeForm() {
    S.codeForm = null
    $('code-form').hidden = true
    $('coding-help').hidden = false
  }

  function submitCode(ev) {
    ev.preventDefault()
    const cf = S.codeForm
    const c = S.conv
    if (!cf || !c) return
    const m = c.msgs.get(cf.seq)
    const err = $('code-error')
    err.textContent = ''
    // Span: the selection when the quote still matches it, else the quote's first occurrence.
    const quote = $('code-quote').value
    let span = null
    if (quote !== '') {
      const chars = Array.from(m.body)
      if (cf.span && chars.slice(cf.span[0], cf.span[1]).join('') === quote) span = cf.span
      else {
        const at = m.body.indexOf(quote)
        if (at < 0) {
          err.textContent = 'The quote must be an exact part of the message (or empty for the whole message).'
          $('code-quote').focus()
          return
        }
        const start = cpLen(m.body.slice(0, at))
        span = [start, start + cpLen(quote)]
      }
      if (span[0] === 0 && span[1] === cpLen(m.body)) span = null
    }
    const emo = document.querySelector('input[name=emotion]:checked')
    const emotion = emo && emo.value ? Number(emo.value) : null
    const obstacles = [
      ...[...document.querySelectorAll('input[name=obstacle]:checked')].map((b) => b.value),
      ...$('code-obstacles')
        .value.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ].filter((s, i, a) => a.indexOf(s) === i)
    const stage = $('code-stage').value.trim() || null
    const touchpoint = $('code-touchpoint').value.trim() || null
    const persona = $('code-persona').value.trim() || null
    const memo = $('code-memo').value.trim() || null
    if (emotion === null && !obstacles.length && !stage && !touchpoint && !persona) {
      err.textContent = 'Choose an emotion, an obstacle, a stage, a touchpoint or a persona.'
      return
    }
    const f =
      cf.mode === 'revise'
        ? { type: 'code.revise', code: cf.code.id, span, emotion, obstacles, stage, touchpoint, persona, memo }
        : { type: 'code.create', message_id: Number(cf.messageId), span, emotion, obstacles, stage, touchpoint, persona, map: null, memo }
    cf.pending = send(f)
    $('code-save').disabled = true
    $('code-status').textContent = S.ready ? 'Saving the code…' : 'Saving the code (it is sent when the connection is back)…'
  }

  function codeSaved(frame) {
    $('code-status').textContent = frame.type === 'code.retract' ? 'Code retracted.' : 'Code saved.'
    const cf = S.codeForm
    if (cf && cf.pending === frame.id) {
      S.selection = null
      hideCodeForm()
      const btn = S.conv && S.conv.els.get(cf.seq)?.querySelector('.code-btn')
      if (btn) btn.focus()
    }
  }

  function retract(code) {
    send({ type: 'code.retract', code: code.id })
    $('code-status').textContent = 'Retracting the code…'
  }

  function onCodes(f) {
    if (S.conv && f.conversation === S.conv.id && Array.isArray(f.codes)) setCodes(f.codes, f.codes_version)
  }

  function setCodes(codes, version) {
    const c = S.conv
    if (version !== undefined && c.codesVersion !== undefined && version < c.codesVersion) return
    if (version !== undefined) c.codesVersion = version
    c.codes = codes.filter((x) => !x.superseded_at)
    for (const seq of c.els.keys()) renderMessageCodes(seq)
  }

  function mergeCode(code, retracted) {
    const c = S.conv
    c.codes = c.codes.filter((x) => x.id !== code.id && x.id !== code.revises)
    if (!retracted && !code.superseded_at) c.codes.push(code)
    renderMessageCodes(Number(code.seq))
  }

  function codeSummary(k) {
    const parts = []
    parts.push(k.span ? `“${k.text ?? ''}” [${k.span[0]}–${k.span[1]}]` : 'whole message')
    if (k.emotion) parts.push(`emotion ${k.emotion} (${EMOTIONS[k.emotion] || ''})`)
    if (k.obstacles && k.obstacles.length) parts.push(`obstacles: ${k.obstacles.join(', ')}`)
    if (k.stage) parts.push(`stage ${k.stage}`)
    if (k.touchpoint) parts.push(`touchpoint ${k.touchpoint}`)
    if (k.persona) parts.push(`persona ${k.persona}`)
    if (k.memo) parts.push(`memo: ${k.memo}`)
    return parts.join(' · ')
  }

  function renderMessageCodes(seq) {
    const c = S.conv
    const li = c && c.els.get(seq)
    const ul = li && li.querySelector('ul.codes')
    if (!ul) return
    const mine = c.codes.filter((k) => Number(k.seq) === seq)
    ul.replaceChildren(
      ...mine.map((k) =>
        el(
          'li',
          { class: 'code', dataset: { code: String(k.id) } },
          el('span', { class: 'code-text', text: codeSummary(k) }),
          el('span', { class: 'coder muted', text: ` — ${(k.coder && k.coder.name) || 'unknown coder'}, ${fmtTime(k.created_at)}` }),
          ' ',
          el('button', { type: 'button', text: 'Revise', 'aria-label': `Revise code ${k.id}`, onclick: () => startCode(seq, false, k) }),
          ' ',
          el('button', { type: 'button', text: 'Retract', 'aria-label': `Retract code ${k.id}`, onclick: () => retract(k) }),
        ),
      ),
    )
    li.classList.toggle('coded', mine.length > 0)
  }

  function requestHistory() {
    const c = S.conv
    if (!c || !S.ready) return
    S.historyReq = uuid()
    raw({ type: 'codes.history', id: S.historyReq, conversation: c.id })
    $('history').hidden = false
    $('history-list').replaceChildren(el('li', { class: 'muted', text: 'Loading…' }))
    $('history-title').focus?.()
  }

  function onHistory(f) {
    S.historyReq = null
    const codes = f.codes || f.items || f.history || []
    $('history-list').replaceChildren(
      ...(codes.length
        ? codes.map((k) =>
            el(
              'li',
              { class: k.superseded_at ? 'old' : 'current' },
              el('span', { text: `Code ${k.id} on message #${k.seq}: ${codeSummary(k)}` }),
              el('span', { class: 'muted', text: ` — ${(k.coder && k.coder.name) || 'unknown coder'}, ${fmtTime(k.created_at)}` }),
              el('span', { class: 'hist-state', text: k.superseded_at ? (k.superseded_by ? ` — revised by code ${k.superseded_by} at ${fmtTime(k.superseded_at)}` : ` — retracted at ${fmtTime(k.superseded_at)}`) : ' — current' }),
            ),
          )
        : [el('li', { class: 'muted', text: 'No codes yet.' })]),
    )
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring

  function announce(text) {
    const a = $('announce')
    a.textContent = ''
    setTimeout(() => (a.textContent = text), 50)
  }

  function wire() {
    $('login-form').addEventListener('submit', login)
    $('logout').addEventListener('click', logout)
    const tabs = [...document.querySelectorAll('[role=tab]')]
    for (const b of tabs) {
      b.addEventListener('click', () => setTab(b.dataset.status))
      b.addEventListener('keydown', (e) => {
        const i = tabs.indexOf(b)
        let j = null
        if (e.key === 'ArrowRight') j = (i + 1) % tabs.length
        else if (e.key === 'ArrowLeft') j = (i + tabs.length - 1) % tabs.length
        else if (e.key === 'Home') j = 0
        else if (e.key === 'End') j = tabs.length - 1
        if (j === null) return
        e.preventDefault()
        tabs[j].focus()
        setTab(tabs[j].dataset.status)
      })
    }
    $('inbox-prev').addEventListener('click', () => {
      S.offset = Math.max(0, S.offset - S.limit)
      requestInbox()
    })
    $('inbox-next').addEventListener('click', () => {
      S.offset += S.limit
      requestInbox()
    })
    $('reply-form').addEventListener('submit', sendReply)
    $('reply-body').addEventListener('input', typingInput)
    $('reply-body').addEventListener('blur', stopTyping)
    $('reply-body').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) sendReply(e)
    })
    $('reply-note').addEventListener('change', () => {
      $('reply-form').classList.toggle('as-note', $('reply-note').checked)
      $('reply-send').textContent = $('reply-note').checked ? 'Add note' : 'Send'
      if ($('reply-note').checked) stopTyping()
    })
    $('canned-insert').addEventListener('click', insertCanned)
    $('canned-form').addEventListener('submit', saveCanned)
    $('close-btn').addEventListener('click', closeChat)
    $('dl-redact').addEventListener('change', setDownloads)
    $('history-btn').addEventListener('click', requestHistory)
    $('history-close').addEventListener('click', () => {
      $('history').hidden = true
      $('history-btn').focus()
    })
    $('code-form').addEventListener('submit', submitCode)
    $('code-cancel').addEventListener('click', () => {
      const seq = S.codeForm && S.codeForm.seq
      hideCodeForm()
      const btn = seq && S.conv && S.conv.els.get(seq)?.querySelector('.code-btn')
      if (btn) btn.focus()
    })
    $('transcript').addEventListener('mouseup', () => setTimeout(captureSelection, 0))
    $('transcript').addEventListener('keyup', (e) => {
      if (e.shiftKey) captureSelection()
    })
    document.addEventListener('selectionchange', () => {
      clearTimeout(S.selTimer)
      S.selTimer = setTimeout(captureSelection, 200)
    })
    window.addEventListener('hashchange', fromHash)
    window.addEventListener('focus', markSeen)
    document.addEventListener('visibilitychange', markSeen)
    window.addEventListener('online', () => {
      if (!S.ws && !S.stopped) connect()
    })
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot)
  else boot()
})()

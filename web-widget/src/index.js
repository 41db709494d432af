// journeyd survey widget. One async script tag:
//   <script async src="https://HOST/widget.js" data-site="KEY"></script>
// Commands queue before the script loads:
//   window.journey = window.journey || function(){(journey.q=journey.q||[]).push(arguments)}
//   journey('identify', {persona, attributes}); journey('stage', slug); journey('track', name)
//   journey('show', idOrSlug, {mode, target, corner}); journey('consent', bool)
// Live chat (data-chat="off" disables it) is a second bundle, chat.js, loaded from the same place
// as this script when the welcome says the site has chat.
// Nothing runs on the host page until the browser is idle (or a command needs it).
import { makeStore, uuid } from './store.js'
import { matchUrl, bucket, utm, scrollPct } from './triggers.js'
import { locale } from './i18n.js'
import { mount } from './ui.js'

const W = window
const D = document
const me = D.currentScript || D.querySelector('script[data-site][src]')
const prev = W.journey

if (me && !(prev && prev.jd)) init()

function init() {
  const site = me.dataset.site
  const src = me.src
  const nonce = me.nonce || me.getAttribute('nonce') || me.dataset.nonce || undefined
  const queue = (prev && prev.q) || []
  let ready = false
  const api = function () {
    ready ? run(arguments) : queue.push(arguments)
  }
  api.jd = 1
  W.journey = api
  if (!site) return console.error('journeyd: the widget script tag needs data-site')

  const OP = 'journey.o.' + site + '.' // outbox entries, one key per frame id
  const CD = 'journey.cd.' + site + '.' // cooldown start per survey id
  const OK = 'journey.ok.' + site // this origin has been welcomed before
  const S = { attrs: {} } // persona, stage, touchpoint, lang, consent
  const sent = new Map() // frame id -> when it was sent on the current connection
  const surveys = new Map() // survey id -> survey
  const armed = new Map() // survey id -> {t: delay timer, f: fired}
  const active = new Map() // survey id -> mounted ui
  const waiting = [] // surveys triggered while another overlay was open
  const later = [] // show commands for surveys not received yet
  let local, sess, tab, rid, brid, cfg, collect, cookieless, welcomed, ws, timer, ftimer, overlay, pv, url, sp
  let attempt = 0
  let hid // id of the last hello
  let fails = 0
  let opened = false
  let stopped = false
  let pend = [] // touches made before the first welcome: consent is not known yet
  let chat // the chat (chat.js), once loaded
  let pres // the latest chat.presence frame
  let chatP // chat.js is loading
  let pol // the Trusted Types policy that makes chat.js's URL

  const idle = W.requestIdleCallback || ((f) => setTimeout(f, 1))
  idle(start, { timeout: 2000 })

  function start() {
    local = makeStore('localStorage')
    sess = makeStore('sessionStorage')
    tab = uuid()
    rid = local.get('journey.rid') || uuid()
    brid = rid
    url = location.href
    if (local.get('journey.consent')) S.consent = local.get('journey.consent') === '1'
    ready = true
    queue.forEach(run)
    queue.length = 0
    for (const m of ['pushState', 'replaceState']) {
      const f = history[m]
      history[m] = function () {
        const r = f.apply(this, arguments)
        nav()
        return r
      }
    }
    W.addEventListener('popstate', nav)
    W.addEventListener('hashchange', nav)
    D.addEventListener('mouseout', (e) => {
      if (!e.relatedTarget && e.clientY <= 0) fireWhere((t) => t.exit_intent)
    })
    W.addEventListener(
      'scroll',
      () => {
        if (!sp)
          sp = setTimeout(() => {
            sp = 0
            const p = scrollPct()
            fireWhere((t) => t.scroll_pct > 0 && p >= t.scroll_pct)
          }, 150)
      },
      { passive: true }
    )
    W.addEventListener('pagehide', () => {
      // Let the next page (a reload) or another tab resend what this page could not deliver.
      for (const [k, e, st] of entries()) if (e.c === tab && e.s) st.set(k, JSON.stringify({ ...e, s: 0 }))
    })
    W.addEventListener('storage', (e) => e.key && e.key.startsWith(OP) && e.newValue && setTimeout(flush, 50))
    W.addEventListener('online', () => {
      if (!ws && !stopped) {
        attempt = 0
        connect()
      }
    })
    connect()
  }

  function run(a) {
    const [c, x, o] = a
    if (c === 'identify') {
      const v = x || {}
      if ('persona' in v) S.persona = v.persona || undefined
      if (v.stage) S.stage = v.stage
      if (v.touchpoint) S.touchpoint = v.touchpoint
      // A signed identity (JWT from the host's backend) or an unverified subject.
      if (v.identity) S.identity = v.identity
      if (v.subject) S.subject = String(v.subject)
      Object.assign(S.attrs, v.attributes)
      evaluate()
    } else if (c === 'stage' || c === 'touchpoint') {
      S[c] = x || undefined
      evaluate()
    }
    else if (c === 'language') S.lang = x
    else if (c === 'track') {
      touch('event', String(x))
      fireWhere((t) => t.event === x)
    } else if (c === 'show') show(x, o)
    else if (c === 'consent') {
      S.consent = !!x
      x ? local.set('journey.consent', '1') : local.set('journey.consent', '0')
      if (!x) pend = []
      // The consent travels in hello: start a new session with it.
      if (ws) {
        const old = ws
        ws = null
        welcomed = false
        sent.clear()
        old.close()
        connect()
      }
    } else console.error('journeyd: unknown command ' + c)
  }

  // ---- transport -------------------------------------------------------------------------------

  function connect() {
    clearTimeout(timer)
    if (stopped || ws) return
    const u = new URL('/ws?site=' + encodeURIComponent(site), src)
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:'
    let s
    let open = false
    try {
      s = ws = new WebSocket(u, 'journey.v1')
    } catch (e) {
      ws = null
      return retry(false)
    }
    s.onopen = () => {
      open = opened = true
      hello(s)
    }
    s.onmessage = (e) => s === ws && receive(e.data)
    s.onclose = () => {
      if (s !== ws) return
      if (chat) chat.down()
      ws = null
      welcomed = false
      sent.clear()
      retry(open)
    }
  }

  function hello(s) {
    s.send(
      JSON.stringify({
        type: 'hello',
        id: (hid = uuid()),
        v: 1,
        site,
        respondent: rid,
        page: { url: location.href, referrer: D.referrer, lang: lang(), title: D.title, utm: utm(location.href) },
        persona: S.persona,
        stage: S.stage,
        touchpoint: S.touchpoint,
        consent: S.consent,
        identity: S.identity,
        subject: S.subject,
        attributes: S.attrs,
      })
    )
  }

  function retry(wasOpen) {
    // A site whose origin is not allowed fails every upgrade (403) before open. The browser does
    // not tell 403 from a refused connection, so give up only when this origin never got in.
    if (!wasOpen && !opened && !local.get(OK) && ++fails >= 5) {
      stopped = true
      return console.error('journeyd: this site (origin ' + location.origin + ') is not allowed for site key ' + site)
    }
    // Exponential backoff with full jitter, capped at 30 s.
    timer = setTimeout(connect, Math.random() * Math.min(30000, 500 * 2 ** Math.min(attempt++, 6)))
  }

  function receive(data) {
    let m
    try {
      m = JSON.parse(data)
    } catch (e) {
      return
    }
    if (m.type === 'welcome') welcome(m)
    else if (m.type === 'survey' && m.survey) {
      surveys.set(m.survey.id, m.survey)
      for (let i = later.length; i--; ) {
        const [x, o] = later[i]
        if (m.survey.id == x || m.survey.slug === x) {
          later.splice(i, 1)
          display(m.survey, o, true)
        }
      }
      evaluate()
    } else if (m.type === 'ack') {
      ;(m.ids || []).forEach(drop)
      if (chat) chat.ack(m)
    } else if (m.type === 'error') (chat && chat.err(m)) || fault(m)
    else if (/^chat\./.test(m.type)) {
      // Presence follows the welcome, usually before chat.js has loaded: keep the latest.
      if (m.type === 'chat.presence') pres = m
      if (chat) chat.on(m)
    }
  }

  function welcome(m) {
    cfg = m.config || {}
    welcomed = true
    attempt = 0
    collect = cfg.collect !== false
    cookieless = cfg.consent_mode === 'cookieless'
    if (cookieless) {
      local.del('journey.rid')
      local.del('journey.consent')
      brid = m.respondent || rid
    } else {
      if (collect) local.set('journey.rid', rid)
      local.set(OK, '1')
      for (const k of sess.keys(OP)) {
        local.set(k, sess.get(k))
        sess.del(k)
      }
    }
    if (collect) pend.forEach(enqueue)
    pend = []
    pageview()
    flush()
    const c = m.chat
    if (chat) chat.up(!collect)
    else if (!chatP && collect && c && c.enabled && me.dataset.chat !== 'off') loadChat(c)
  }

  // Loads chat.js (a classic script next to this one, with a Trusted Types policy where the page
  // enforces them), which calls journey.c with the chat.
  function loadChat(c) {
    chatP = 1
    api.c = (make) => {
      if (chat) return
      chat = make({
        site,
        nonce,
        corner: me.dataset.chat,
        online: pres ? pres.online : c.online,
        lang,
        uuid,
        store: cstore,
        send: (f) => !!(ws && welcomed) && (ws.send(JSON.stringify(f)), true),
        hints: () => ({ stage: S.stage, touchpoint: S.touchpoint }),
        forget(k) {
          S[k] = undefined
        },
      })
      if (welcomed) chat.up(!collect)
    }
    const u = new URL('chat.js?v=' + (typeof CHAT_V === 'string' ? CHAT_V : 0), src).href
    const s = D.createElement('script')
    try {
      const tt = W.trustedTypes
      s.src = tt ? (pol = pol || tt.createPolicy('journeyd', { createScriptURL: () => u })).createScriptURL(u) : u
    } catch (e) {
      return console.error("journeyd: chat needs the Trusted Types policy 'journeyd'")
    }
    s.async = true
    if (nonce) s.nonce = nonce
    s.onerror = () => {
      chatP = 0
      console.error('journeyd: cannot load ' + u)
    }
    D.head.append(s)
  }

  function fault(m) {
    const c = m.code
    const ui = [...active.values()].pop()
    const L = locale(lang())[0]
    if (c === 'rate_limited') {
      // Kept in the outbox; the next flush resends it.
      if (m.id) sent.delete(m.id)
      return ui && ui.err(L.wait)
    }
    console.error('journeyd: ' + c + (m.message ? ': ' + m.message : ''))
    if (c === 'consent_required' && ui) ui.err(L.consent)
    if (c === 'unsupported_version' || c === 'unknown_site') stopped = true
    // A refused hello gets no welcome: drop the hint at fault (an unknown persona slug, a bad
    // identity token) and say hello again rather than stay silent.
    const f = m.field || { unknown_persona: 'persona', unknown_stage: 'stage', unknown_touchpoint: 'touchpoint', bad_identity: 'identity' }[c]
    if (m.id && m.id === hid && ws && S[f] !== undefined) {
      S[f] = undefined
      hello(ws)
    }
    // An answer or touch refused for a bad hint is resent without it (same id: not stored yet).
    if (/^(persona|stage|touchpoint)$/.test(f) && m.id) {
      for (const [k, e, st] of entries())
        if (e.f.id === m.id && e.f[f] !== undefined) {
          if (S[f] === e.f[f]) S[f] = undefined
          delete e.f[f]
          e.s = 0
          st.set(k, JSON.stringify(e))
          sent.delete(m.id)
          return setTimeout(flush, 100)
        }
    }
    if (m.id) drop(m.id) // rejected: resending would not help
  }

  // ---- outbox: every answer and touch stays in storage until acked -----------------------------

  function store() {
    return cookieless || !cfg ? sess : local
  }

  function entries() {
    const out = []
    for (const st of [local, sess])
      for (const k of st.keys(OP)) {
        try {
          const e = JSON.parse(st.get(k))
          if (e && e.f) out.push([k, e, st])
        } catch (err) {
          st.del(k)
        }
      }
    return out.sort((a, b) => a[1].t - b[1].t)
  }

  function drop(id) {
    sent.delete(id)
    local.del(OP + id)
    sess.del(OP + id)
  }

  function enqueue(f) {
    // A bounded outbox: past 500 waiting frames (a long outage), page views and events are
    // dropped; answers never are.
    if (f.type === 'touch' && entries().length >= 500) return
    f.id = uuid()
    const now = Date.now()
    store().set(OP + f.id, JSON.stringify({ f, t: now, s: now, c: tab }))
    flush()
  }

  // Sends what is due. An entry belongs to the tab that sent it last (c) for 10 s (s), so two
  // tabs do not both flood; a page that goes away releases its entries (pagehide sets s to 0).
  function flush() {
    clearTimeout(ftimer)
    if (!welcomed) return
    const now = Date.now()
    let n = 0
    let left = 0
    for (const [k, e, st] of entries()) {
      const id = e.f.id
      if (e.f.type === 'touch' && !collect) {
        st.del(k)
        continue
      }
      left++
      const at = sent.get(id)
      if (at ? now - at < 30000 : e.c !== tab && now - e.s < 10000) continue
      if (n >= 20) continue
      n++
      e.s = now
      e.c = tab
      st.set(k, JSON.stringify(e))
      sent.set(id, now)
      ws.send(JSON.stringify(e.f))
    }
    if (left) ftimer = setTimeout(flush, n >= 20 ? 1000 : 3000)
  }

  function touch(kind, name) {
    const f = { type: 'touch', kind, url: location.href, stage: S.stage, touchpoint: S.touchpoint, name, ts: new Date().toISOString() }
    if (!cfg) pend.push(f)
    else if (collect) enqueue(f)
  }

  function pageview() {
    if (cfg && collect && pv !== location.href) {
      pv = location.href
      touch('pageview')
    }
  }

  // ---- triggers --------------------------------------------------------------------------------

  function nav() {
    if (location.href === url) return
    url = location.href
    pageview()
    evaluate()
  }

  function cstore() {
    return cookieless ? sess : local
  }

  function eligible(s) {
    const t = s.trigger || {}
    if (t.url && !matchUrl(t.url, location.href)) return false
    if (t.percent != null && bucket(brid + ':' + s.id) >= t.percent) return false
    if (t.persona && t.persona !== S.persona) return false
    if (t.stage && t.stage !== S.stage) return false
    for (const k in t.attributes || {}) if (String(S.attrs[k]) !== String(t.attributes[k])) return false
    // Answered or dismissed: shown again only after cooldown_days (never without one).
    const c = +cstore().get(CD + s.id)
    return !c || (t.cooldown_days != null && Date.now() - c >= t.cooldown_days * 864e5)
  }

  function evaluate() {
    for (const s of surveys.values()) {
      const t = s.trigger || {}
      const ok = eligible(s)
      const a = armed.get(s.id)
      if (ok && !a) {
        const b = {}
        armed.set(s.id, b)
        if (t.delay_ms > 0) b.t = setTimeout(() => fire(s), t.delay_ms)
        else if (!(t.exit_intent || t.scroll_pct > 0 || t.event)) fire(s)
      } else if (!ok && a) {
        clearTimeout(a.t)
        armed.delete(s.id)
      }
      // A survey that no longer matches the URL (single-page apps) closes.
      const ui = active.get(s.id)
      if (ui && !ui.forced && t.url && !matchUrl(t.url, location.href)) ui.close()
    }
  }

  function fire(s) {
    const a = armed.get(s.id)
    if (!a || a.f) return
    a.f = 1
    clearTimeout(a.t)
    display(s)
  }

  function fireWhere(p) {
    for (const s of surveys.values()) if (armed.has(s.id) && p(s.trigger || {})) fire(s)
  }

  function show(x, o) {
    for (const s of surveys.values()) if (s.id == x || s.slug === x) return display(s, o, true)
    later.push([x, o])
  }

  function lang() {
    return S.lang || D.documentElement.lang || navigator.language || 'en'
  }

  function display(s, o, forced) {
    if (active.has(s.id) || !(s.questions || []).length) return
    const d = Object.assign({}, s.display, o)
    d.mode = d.mode === 'modal' || d.mode === 'inline' ? d.mode : 'popover'
    let target
    if (d.mode === 'inline') {
      try {
        target = D.querySelector(d.target)
      } catch (e) {}
      if (!target) return console.error('journeyd: inline target ' + d.target + ' not found')
    } else if (overlay) return waiting.includes(s) || waiting.push(s)
    const [L, lg, dir] = locale(lang())
    const cool = () => cstore().set(CD + s.id, Date.now())
    const ui = mount(s, d, {
      L,
      lang: lg,
      dir,
      nonce,
      target,
      answer(q, value, text) {
        cool()
        enqueue({
          type: 'answer',
          survey: s.id,
          question: q.id,
          value,
          text,
          persona: S.persona,
          stage: S.stage,
          touchpoint: S.touchpoint,
          ts: new Date().toISOString(),
        })
      },
      done: cool,
      closed() {
        active.delete(s.id)
        if (overlay === s.id) {
          overlay = null
          while (waiting.length) {
            const w = waiting.shift()
            if (eligible(w)) return display(w)
          }
        }
      },
    })
    ui.forced = forced
    active.set(s.id, ui)
    if (d.mode !== 'inline') overlay = s.id
  }
}

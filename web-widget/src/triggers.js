// Pure trigger helpers: URL rules, the stable percentage bucket and page context.

// A rule whose value starts with "/" is matched against path + query + hash, any other value
// against the full URL. Unknown ops never match.
export function matchUrl(rule, href) {
  const v = String(rule.value == null ? '' : rule.value)
  const u = new URL(href)
  const t = v[0] === '/' ? u.pathname + u.search + u.hash : href
  switch (rule.op || 'contains') {
    case 'exact':
      return t === v
    case 'contains':
      return t.includes(v)
    case 'not_contains':
      return !t.includes(v)
    case 'starts_with':
      return t.startsWith(v)
    case 'ends_with':
      return t.endsWith(v)
    case 'regex':
      try {
        const r = new RegExp(v)
        return r.test(href) || r.test(u.pathname + u.search + u.hash)
      } catch (e) {
        return false
      }
  }
  return false
}

// 0..99, stable for one (respondent, survey) pair: FNV-1a.
export function bucket(s) {
  let h = 2166136261
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
  return (h >>> 0) % 100
}

export function utm(href) {
  const p = new URL(href).searchParams
  const o = {}
  for (const k of ['source', 'medium', 'campaign', 'term', 'content']) {
    const v = p.get('utm_' + k)
    if (v) o[k] = v
  }
  return o
}

// How far down the page the visitor has seen, 0..100.
export function scrollPct() {
  const d = document.documentElement
  const h = Math.max(d.scrollHeight, document.body ? document.body.scrollHeight : 0)
  return h ? Math.min(100, ((scrollY + innerHeight) / h) * 100) : 100
}

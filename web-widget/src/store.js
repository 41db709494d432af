// Storage that never throws: when Web Storage is missing, disabled or full, values live in memory
// for the life of the page instead.
export function makeStore(kind) {
  let s = null
  try {
    s = window[kind]
    s.length
  } catch (e) {
    s = null
  }
  const mem = new Map()
  return {
    get(k) {
      try {
        const v = s.getItem(k)
        if (v != null) return v
      } catch (e) {}
      return mem.has(k) ? mem.get(k) : null
    },
    set(k, v) {
      try {
        s.setItem(k, v)
        mem.delete(k)
      } catch (e) {
        mem.set(k, v)
      }
    },
    del(k) {
      mem.delete(k)
      try {
        s.removeItem(k)
      } catch (e) {}
    },
    keys(prefix) {
      const out = new Set()
      try {
        for (let i = 0; i < s.length; i++) {
          const k = s.key(i)
          if (k && k.startsWith(prefix)) out.add(k)
        }
      } catch (e) {}
      for (const k of mem.keys()) if (k.startsWith(prefix)) out.add(k)
      return [...out]
    },
  }
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID()
  const b = crypto.getRandomValues(new Uint8Array(16))
  b[6] = (b[6] & 15) | 64
  b[8] = (b[8] & 63) | 128
  const h = [...b].map((x) => (x + 256).toString(16).slice(1)).join('')
  return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20)
}

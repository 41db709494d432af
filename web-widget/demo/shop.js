// The demo shop's own script (external: the pages' CSP allows no inline script). It queues widget
// commands before /widget.js has loaded. ?persona=SLUG picks the persona (budget-parent default).
window.journey = window.journey || function () { (journey.q = journey.q || []).push(arguments) }
;(function () {
  var b = document.body.dataset
  var p = new URLSearchParams(location.search)
  journey('identify', { persona: p.get('persona') || 'budget-parent', attributes: { plan: 'family', basket: 2 } })
  if (b.stage) journey('stage', b.stage)
  journey('touchpoint', 'website')
  if (b.inline) journey('show', b.inline, { mode: 'inline', target: '#feedback' })
  document.addEventListener('click', function (e) {
    var t = e.target.closest('[data-track]')
    if (t) journey('track', t.getAttribute('data-track'))
  })
})()

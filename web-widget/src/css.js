// The widget's stylesheet. Themeable through inherited custom properties set by the host page:
// --journey-accent, --journey-bg, --journey-fg, --journey-radius, --journey-font.
export default `
:host{all:initial}
.j{--a:var(--journey-accent,#1d4ed8);--b:var(--journey-bg,#fff);--f:var(--journey-fg,#1a1a1a);--r:var(--journey-radius,12px);
font:15px/1.45 var(--journey-font,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif);color:var(--f);background:var(--b);
border-radius:var(--r);padding:16px;box-sizing:border-box;width:min(380px,calc(100vw - 24px));text-align:start}
.j *{box-sizing:border-box;font:inherit;color:inherit;margin:0}
.p,.m{box-shadow:0 10px 32px rgba(0,0,0,.28);border:1px solid rgba(0,0,0,.15)}
.p{position:fixed;z-index:2147483646;bottom:16px;right:16px;animation:in .25s ease-out}
.p.tl,.p.tr{top:16px;bottom:auto}.p.tl,.p.bl{left:16px;right:auto}
.m{margin:auto;max-height:90vh;overflow:auto;animation:in .2s ease-out}
.m::backdrop{background:rgba(0,0,0,.5)}
.i{width:100%;max-width:560px;border:1px solid rgba(0,0,0,.2)}
.hd{display:flex;align-items:flex-start;gap:8px;margin-bottom:10px}
.j h2{font-size:17px;font-weight:600;flex:1}
.x{border:0;background:none;cursor:pointer;font-size:22px;line-height:1;padding:2px 8px;border-radius:6px}
.pr{font-weight:600;margin-bottom:10px;display:block}
.sc{display:flex;gap:6px;flex-wrap:wrap}
.ls{display:grid;gap:6px}
.o{position:relative;flex:1 1 0;min-width:0;cursor:pointer}
.sc.n .o{flex:1 0 26px}
.o input{position:absolute;opacity:0;width:1px;height:1px;margin:0}
.o span{display:flex;flex-direction:column;align-items:center;gap:4px;text-align:center;border:1px solid #767676;border-radius:8px;padding:7px 4px;font-size:13px;height:100%}
.ls .o span{flex-direction:row;text-align:start;padding:8px 10px;font-size:14px}
.ls .o span:before{content:"";width:14px;height:14px;border:2px solid currentColor;border-radius:50%;flex:none}
.ls .c span:before{border-radius:3px}
.o input:checked+span{background:var(--a);color:var(--b);border-color:var(--a)}
.ls .o input:checked+span:before{background:currentColor;box-shadow:inset 0 0 0 2px var(--a)}
.o:hover span{border-color:var(--a)}
:focus-visible,.o input:focus-visible+span{outline:3px solid var(--a);outline-offset:2px}
.ds{font-size:13px;margin-top:6px;opacity:.85}
textarea,.ot{width:100%;border:1px solid #767676;border-radius:8px;padding:8px;background:var(--b);resize:vertical}
textarea{min-height:80px}.ot{margin-top:8px}
svg{width:30px;height:30px;fill:none;stroke:currentColor;stroke-width:1.5;stroke-linecap:round}
svg .e{fill:currentColor;stroke:none}
.ft{display:flex;align-items:center;gap:8px;margin-top:14px}
.st{flex:1;font-size:13px}
.er{color:#b00020;font-weight:600}
.o input:checked+span .er{color:inherit}
.nx{border:0;border-radius:8px;padding:8px 18px;background:var(--a);color:var(--b);cursor:pointer;font-weight:600}
.ty{font-size:16px;padding:12px 0}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
[hidden]{display:none!important}
@keyframes in{from{opacity:0;transform:translateY(10px)}}
@media (prefers-reduced-motion:reduce){.p,.m{animation:none}}
`

// The chat launcher and panel (used by the chat bundle only, after the stylesheet above).
export const CHAT = `
.cl{position:fixed;z-index:2147483645;bottom:16px;right:16px;display:flex;align-items:center;gap:8px;border:0;border-radius:999px;
padding:10px 16px;background:var(--journey-accent,#1d4ed8);color:var(--journey-bg,#fff);font:600 15px/1.2 var(--journey-font,system-ui,sans-serif);
cursor:pointer;box-shadow:0 4px 16px rgba(0,0,0,.25)}
.cl svg{width:22px;height:22px;fill:currentColor;stroke:none}
.bd{background:#b00020;color:#fff;border-radius:999px;padding:1px 7px;font-size:12px}
.cp{position:fixed;z-index:2147483645;bottom:72px;right:16px;display:flex;flex-direction:column;padding:0;
max-height:min(560px,calc(100vh - 96px));overflow:auto;box-shadow:0 10px 32px rgba(0,0,0,.28);border:1px solid rgba(0,0,0,.15);animation:in .2s ease-out}
.l{left:16px;right:auto}
.cp .hd{padding:12px 14px;margin:0;border-bottom:1px solid rgba(0,0,0,.12);align-items:center}
.tt{flex:1}
.ps,.wh,.mt,.nt,.ef label,.lk{font-size:13px}
.lk{border:0;background:none;cursor:pointer;text-decoration:underline;padding:4px}
.lg{padding:12px 14px;overflow:auto;flex:1;min-height:100px;display:flex;flex-direction:column;gap:8px}
.g{max-width:85%;display:flex;flex-direction:column;align-self:flex-start}
.me{align-self:flex-end;align-items:flex-end}
.sy{align-self:center;font-style:italic;text-align:center}
.bb{padding:7px 11px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;background:#ececec;color:#1a1a1a}
.me .bb{background:var(--a);color:var(--b)}
.pd .bb{background:var(--b);color:var(--f);border:1px dashed var(--a)}
.sy .bb{background:none;color:inherit;padding:0}
.mt:empty,.tp:empty,.nt:empty{display:none}
.tp{font-size:13px;font-style:italic;padding:0 14px 6px}
.cf,.rt{padding:10px 14px 14px;border-top:1px solid rgba(0,0,0,.12)}
.nt,.ef,.rt textarea{margin-bottom:8px}
.cp>.nt{padding:0 14px;margin:0 0 10px}
.rt textarea{min-height:56px}
.ef label{display:block}
.ef input{width:100%;border:1px solid #767676;border-radius:8px;padding:6px 8px;background:var(--b)}
.rw{display:flex;gap:8px;align-items:flex-end}
.rw textarea{min-height:44px;max-height:120px;flex:1}
.rt .sc{margin-bottom:8px}
@media (prefers-reduced-motion:reduce){.cp{animation:none}}
`

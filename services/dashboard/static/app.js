// AEGIS dashboard: renders the page model the server pushes (server-sent events, /api/events)
// and sends the operator's commands (POST /api/..., the token in a header, never a cookie).
// Hand-written, no library: every value goes into the page as text (textContent), never as HTML.
"use strict";

const state = { model: null, lastMsg: 0, token: "", armed: null, armTimer: 0 };
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting
function fmt(n, dp = 2, sign = false) {
  if (n === null || n === undefined || !isFinite(n)) return "-";
  const s = Number(n).toLocaleString("en-US", { minimumFractionDigits: dp, maximumFractionDigits: dp });
  return sign && n > 0 ? "+" + s : s;
}
function px(n) {
  if (n === null || n === undefined || !isFinite(n)) return "-";
  const a = Math.abs(n);
  return fmt(n, a >= 1000 ? 2 : a >= 10 ? 3 : a >= 1 ? 4 : 6);
}
function qty(n) {
  if (n === null || n === undefined || !isFinite(n)) return "-";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: 6 });
}
function int(n) { return n === null || n === undefined || !isFinite(n) ? "-" : Math.round(n).toLocaleString("en-US"); }
function hms(ms) {
  if (!ms) return "-";
  const d = new Date(ms);
  return d.toISOString().substring(11, 19);
}
function age(s) {
  if (s === null || s === undefined) return "-";
  s = Math.max(0, s);  // two clocks a few ms apart must not show "-0.0s"
  return s < 60 ? s.toFixed(1) + "s" : Math.round(s / 60) + "m";
}
function signCls(n) { return n > 0 ? "pos" : n < 0 ? "neg" : ""; }

// ---------------------------------------------------------------- DOM helpers
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "cls") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}
function td(text, cls, raw) { return el("td", { cls, text, "data-v": raw === undefined ? null : String(raw) }); }
function num(text, raw, extra) { return td(text, "r" + (extra ? " " + extra : ""), raw); }
function fill(tbodyParent, rows, cols, empty) {
  const body = tbodyParent.tagName === "TBODY" ? tbodyParent : tbodyParent.querySelector("tbody");
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { cls: "empty", colspan: cols, text: empty }))]));
}
function setText(id, text, cls, raw) {
  const e = $(id);
  e.textContent = text;
  if (cls !== undefined) e.className = "num" + (e.classList.contains("big") ? " big" : "") + (cls ? " " + cls : "");
  if (raw !== undefined) e.dataset.v = String(raw);
}

// ---------------------------------------------------------------- panels
function header(m) {
  const a = m.account;
  $("mode").textContent = m.mode;
  setText("equity", a.equity ? fmt(a.equity) : "-", "", a.equity);
  setText("net-pnl", fmt(a.net, 2, true), signCls(a.net), a.net);
  setText("realized", fmt(a.realized, 2, true), signCls(a.realized), a.realized);
  setText("unrealized", fmt(a.unrealized, 2, true), signCls(a.unrealized), a.unrealized);
  setText("fees", fmt(a.fees), "", a.fees);
  setText("npos", String(a.positions), "", a.positions);
  setText("wl", a.trades ? `${a.wins}/${a.trades - a.wins}` : "0/0", "");
  setText("tps", int(m.pipeline.ticks_per_s), "", m.pipeline.ticks_per_s);
  const t = m.trading;
  const ent = $("entries-state");
  ent.textContent = t.paused ? "ENTRIES PAUSED" : "ENTRIES ON";
  ent.className = "pill " + (t.paused ? "warn" : "ok");
  const ks = $("kill-state");
  ks.textContent = t.halted ? "KILL SWITCH TRIPPED" : "KILL SWITCH ARMED";
  ks.className = "pill " + (t.halted ? "bad" : "ok");
  // the orchestrator's verdict: its journal can write and reconciliation passed
  const rc = $("recon-state"), perm = t.permission;
  if (perm) {
    rc.textContent = perm.allowed ? "JOURNAL+RECON OK" : "ENTRIES BLOCKED: " + perm.reason;
    rc.className = "pill " + (perm.allowed ? "ok" : "bad");
    rc.title = perm.detail || "";
  } else {
    rc.textContent = t.reconcile_ok === null ? "RECON -" : t.reconcile_ok ? "RECON OK" : "RECON FAILING";
    rc.className = "pill " + (t.reconcile_ok === null ? "" : t.reconcile_ok ? "ok" : "bad");
  }
  // a button for what cannot happen now is greyed (the API answers such a command anyway)
  $("btn-pause").disabled = t.paused;
  $("btn-resume").disabled = !t.paused;
  $("btn-clear").disabled = !t.halted;
  $("btn-closeall").disabled = m.positions.length === 0;
  const b = $("banner");
  if (t.halted) {
    b.className = "banner halted";
    b.textContent = `KILL SWITCH TRIPPED: ${t.halt_reason} ${t.halt_detail}. No new entries; exits, stops and targets go on. ` +
      "Clear it (Clear kill switch) once you accept the loss so far.";
  } else if (t.paused) {
    b.className = "banner paused";
    b.textContent = `ENTRIES PAUSED by ${t.paused_by || "?"} at ${hms(t.paused_at_ms)} UTC: every new signal is refused (PAUSED). ` +
      "Open positions keep their stops and targets. Resume to trade again.";
  } else {
    b.className = "banner hidden";
  }
  const c = m.control;
  const parts = [];
  if (!c.enabled) parts.push("control off: no token configured");
  if (c.unauthorized) parts.push(`${c.unauthorized} unauthorized`);
  if (c.forbidden) parts.push(`${c.forbidden} forbidden`);
  if (c.rate_limited) parts.push(`${c.rate_limited} rate-limited`);
  $("refused").textContent = parts.length ? "refused: " + parts.join(", ") : "";
  $("refused").dataset.unauthorized = String(c.unauthorized);
  $("db-note").textContent = m.db_error ? "database: " + m.db_error : "";
}

function tag(label) { return el("span", { cls: "tag " + label, text: label }); }

function positions(m) {
  const rows = m.positions.map((p) => el("tr", { "data-symbol": p.symbol },
    td(p.symbol, "mono"), td(p.side, "side-" + p.side),
    num(qty(Math.abs(p.qty)), p.qty), num(px(p.entry), p.entry), num(px(p.mark), p.mark),
    num(px(p.stop), p.stop), el("td", {}, tag(p.stop_state)),
    num(px(p.target), p.target), el("td", {}, tag(p.target_state)),
    num(fmt(p.upnl, 2, true), p.upnl, signCls(p.upnl)), num(p.r === null ? "-" : fmt(p.r, 2, true) + "R", p.r, signCls(p.r)),
    num(p.confidence === null ? "-" : fmt(p.confidence * 100, 0) + "%", p.confidence),
    el("td", { cls: "r" }, closeButton(p.symbol))));
  fill($("positions"), rows, 13, "flat: no open position");
  $("pos-note").textContent = m.positions.length ? `${m.positions.length} open` : "";
}

function closeButton(symbol) {
  const key = "close:" + symbol;
  const armed = state.armed === key;
  const b = el("button", { cls: "btn small red" + (armed ? " armed" : ""), text: armed ? "Confirm close" : "Close",
    "data-symbol": symbol });
  b.addEventListener("click", () => guarded(key, "close", { symbol }));
  return b;
}

function signals(m) {
  const rows = m.signals.map((s) => {
    const kind = s.outcome.startsWith("ORDER") ? "ORDER" : s.outcome.startsWith("REFUSED") ? "REFUSED" : "none";
    // short: green = the order's status, red = the refusal's reason
    const outcome = kind === "none" ? "not taken" : s.outcome.substring(s.outcome.indexOf(" ") + 1);
    const bar = el("span", { cls: "confbar" }, el("i", {}));
    bar.firstChild.style.width = Math.round(s.confidence * 100) + "%";
    return el("tr", { "data-signal": s.id },
      td(hms(s.time_ms), "mono"), td(s.symbol, "mono"), td(s.side, "side-" + s.side),
      el("td", { cls: "r", "data-v": String(s.confidence) }, bar, fmt(s.confidence * 100, 0) + "%" + (s.cold ? "*" : "")),
      num(px(s.entry), s.entry), num(px(s.stop), s.stop), num(px(s.target), s.target),
      el("td", { cls: "outcome-" + kind, text: outcome, title: kind === "none" ?
        "no order: the rotation kept its positions (slots full, cooldown) or trading is off" : s.outcome }));
  });
  fill($("signals"), rows, 8, "no signal yet");
  $("sig-count").textContent = `${int(m.account.signals)} total` + (m.signals.some((s) => s.cold) ? " · * model still cold" : "");
}

function rejects(m) {
  const max = Math.max(1, ...m.rejects.by_reason.map((r) => r[1]));
  const rows = m.rejects.by_reason.map(([reason, n]) => {
    const bar = el("div", { cls: "bar" }, el("i", {}));
    bar.firstChild.style.width = (100 * n / max).toFixed(1) + "%";
    return el("div", { cls: "row", "data-reason": reason }, el("span", { cls: "name", text: reason }), bar,
      el("span", { cls: "n", text: int(n), "data-v": String(n) }));
  });
  $("reasons").replaceChildren(...(rows.length ? rows : [el("div", { cls: "muted", text: "no rejection" })]));
  const recent = m.rejects.recent.slice(0, 6).map((r) => el("tr", {},
    td(hms(r.time_ms), "mono"), td(r.symbol, "mono"), td(r.reason, "neg"), el("td", { cls: "detail", text: r.detail, title: r.detail })));
  $("rejects").querySelector("tbody").replaceChildren(...recent);
  $("rej-count").textContent = `${int(m.account.risk_rejects)} total`;
}

function orders(m) {
  const rows = m.orders.map((o) => el("tr", { "data-cid": o.cid },
    td(hms(o.time_ms), "mono"), td(o.symbol, "mono"), td(o.side + (o.reduce_only ? " RO" : ""), "side-" + o.side),
    num(qty(o.qty), o.qty), num(qty(o.filled), o.filled), num(o.avg ? px(o.avg) : "-", o.avg),
    td(o.status, "st st-" + o.status)));
  fill($("orders"), rows, 7, "no order yet");
  $("ord-count").textContent = `${int(m.account.orders)} total · ${int(m.account.open_orders)} open`;
  const frows = m.fills.map((f) => el("tr", { "data-trade": f.trade_id, "data-symbol": f.symbol },
    td(hms(f.time_ms), "mono"), td(f.symbol, "mono"), td(f.side, "side-" + f.side),
    num(qty(f.qty), f.qty), num(px(f.price), f.price), num(fmt(f.fee, 4), f.fee)));
  fill($("fills"), frows, 6, "no fill yet");
  $("fill-count").textContent = `${int(m.account.fills)} total`;
}

function services(m) {
  const rows = m.services.map((s) => el("tr", { "data-service": s.name },
    td(s.name, "mono"), td(s.state, "st st-" + s.state.split(" ")[0]), num(s.pid === null ? "-" : String(s.pid), s.pid),
    num(s.restarts === null ? "-" : `${s.restarts}` + (s.warm_restarts ? ` (${s.warm_restarts} warm)` : ""), s.restarts),
    td(s.spare === null || s.spare === "none" ? "-" : s.spare, s.spare === "warm" ? "pos" : "muted"),
    num(age(s.heartbeat_age_s), s.heartbeat_age_s)));
  fill($("services"), rows, 6, "-");
  const p = m.pipeline;
  const f = p.feed || {};
  const stats = [
    ["ring written", int(p.ring_written), "ticks-written", p.ring_written], ["ring lag", int(p.ring_lag), "ring-lag", p.ring_lag],
    ["ticks lost", int(p.ring_lost), "ring-lost", p.ring_lost], ["candles", int(p.candles), "candles", p.candles],
    ["ticks rejected", int(p.rejected_ticks), "ticks-rejected", p.rejected_ticks],
    ["journal gaps", int(p.journal_gaps), "journal-gaps", p.journal_gaps],
    ["feed", f.state ? `${f.state} ${f.symbols} sym` : "-", "feed-state", null],
    ["uptime", p.uptime_s ? age(p.uptime_s) : "-", "uptime", p.uptime_s],
  ];
  $("pipeline").replaceChildren(...stats.map(([label, text, id, raw]) =>
    el("div", {}, el("label", { text: label }), el("span", { id, text, "data-v": raw === null || raw === undefined ? null : String(raw) }))));
}

function commands(m) {
  const rows = m.controls.map((c) => el("tr", {},
    td(hms(c.time_ms), "mono"), td(c.command + (c.symbol ? " " + c.symbol : ""), "mono"), td(`${c.client} (${c.via})`, "muted"),
    el("td", { title: c.detail }, el("span", { cls: "st st-" + c.status, text: c.status }), " " + c.detail.substring(0, 60))));
  fill($("commands"), rows, 4, "none yet");
}

// ---------------------------------------------------------------- charts (SVG, by hand)
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}
function niceTicks(lo, hi, n) {
  const span = hi - lo || Math.abs(hi) || 1;
  const step0 = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= step0);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(v);
  return out;
}

function equity(m) {
  const box = $("chart");
  const W = Math.max(300, box.clientWidth), H = box.clientHeight || 230;
  const pad = { l: 8, r: 70, t: 10, b: 20 };
  let pts = m.equity.points, label = "account equity (USDT), from the brain's heartbeat";
  if (pts.length < 2 && m.equity.realized_curve.length) {
    pts = [[m.equity.realized_curve[0][0] - 1, 0], ...m.equity.realized_curve];
    label = "net realized PnL (USDT), closed trades";
  }
  $("eq-note").textContent = label;
  if (pts.length < 2) {
    box.replaceChildren(el("div", { cls: "muted", text: "waiting for the account's equity ..." }));
    return;
  }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  const padY = (y1 - y0) * 0.12 || Math.max(1, Math.abs(y1) * 0.0005);
  y0 -= padY; y1 += padY;
  const X = (t) => pad.l + (W - pad.l - pad.r) * (x1 > x0 ? (t - x0) / (x1 - x0) : 1);
  const Y = (v) => pad.t + (H - pad.t - pad.b) * (1 - (v - y0) / (y1 - y0));
  const g = svg("g", {});
  const lastY = Y(ys[ys.length - 1]);
  for (const v of niceTicks(y0, y1, 4)) g.append(svg("line", { x1: pad.l, x2: W - pad.r, y1: Y(v), y2: Y(v), stroke: "#1f2630" }));
  for (const v of niceTicks(y0, y1, 4)) {
    if (Math.abs(Y(v) - lastY) < 14) continue;  // the last value's label sits there
    g.append(svg("text", { x: W - pad.r + 6, y: Y(v) + 3 }, document.createTextNode(fmt(v, Math.abs(y1 - y0) < 10 ? 2 : 0))));
  }
  for (let i = 0; i <= 4; i++) {
    const t = x0 + (x1 - x0) * i / 4;
    g.append(svg("text", { x: X(t), y: H - 5, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" },
      document.createTextNode(hms(t))));
  }
  const d = pts.map((p, i) => (i ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join("");
  const up = ys[ys.length - 1] >= ys[0];
  const color = up ? "#0ecb81" : "#f6465d";
  const grad = svg("linearGradient", { id: "eqfill", x1: 0, x2: 0, y1: 0, y2: 1 },
    svg("stop", { offset: "0%", "stop-color": color, "stop-opacity": "0.28" }),
    svg("stop", { offset: "100%", "stop-color": color, "stop-opacity": "0" }));
  const area = d + `L${X(x1).toFixed(1)},${(H - pad.b).toFixed(1)}L${X(x0).toFixed(1)},${(H - pad.b).toFixed(1)}Z`;
  g.append(svg("path", { d: area, fill: "url(#eqfill)", stroke: "none" }));
  g.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": "1.6" }));
  // each closed trade, at its close, on the curve
  for (const [t, pnl, sym, why] of m.equity.closes) {
    if (t < x0 || t > x1) continue;
    let k = xs.findIndex((x) => x >= t);
    if (k < 0) k = xs.length - 1;
    const c = svg("circle", { cx: X(t), cy: Y(ys[k]), r: 3.5, fill: pnl >= 0 ? "#0ecb81" : "#f6465d", stroke: "#0b0e11" });
    c.append(svg("title", {}, document.createTextNode(`${sym} ${why} ${fmt(pnl, 2, true)} USDT`)));
    g.append(c);
  }
  const last = ys[ys.length - 1];
  g.append(svg("rect", { x: W - pad.r + 2, y: Y(last) - 8, width: pad.r - 4, height: 16, fill: color, rx: 2 }));
  g.append(svg("text", { x: W - pad.r + 6, y: Y(last) + 4, class: "lastval" }, document.createTextNode(fmt(last, 2))));
  box.replaceChildren(svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` }, svg("defs", {}, grad), g));
}

function hist(id, h, unit) {
  const box = $(id);
  if (!h || !h.count) {
    box.replaceChildren(el("div", { cls: "muted", text: "no data yet" }));
    return;
  }
  const W = Math.max(200, box.clientWidth), H = 92, pad = 16;
  const n = h.counts.length, bw = (W - 4) / n, max = Math.max(...h.counts);
  const g = svg("g", {});
  h.counts.forEach((c, i) => {
    const bh = c ? Math.max(1.5, (H - pad - 4) * c / max) : 0;
    const r = svg("rect", { x: 2 + i * bw + 1, y: H - pad - bh, width: Math.max(1, bw - 2), height: bh, fill: "#4c8dff", opacity: "0.85" });
    const lo = i ? h.bounds[i - 1] : 0, hi = i < h.bounds.length ? h.bounds[i] : Infinity;
    r.append(svg("title", {}, document.createTextNode(`${hi === Infinity ? "> " + lo : lo + "-" + hi} ${unit}: ${c}`)));
    g.append(r);
    if (i % 2 === 0 && i < h.bounds.length) {
      const b = h.bounds[i];
      g.append(svg("text", { x: 2 + (i + 1) * bw, y: H - 4, "text-anchor": "middle" },
        document.createTextNode(b >= 1000 ? b / 1000 + "k" : String(b))));
    }
  });
  g.append(svg("line", { x1: 0, x2: W, y1: H - pad, y2: H - pad, stroke: "#2a3340" }));
  const extra = h.p50 !== undefined && h.p50 !== null ? ` · p50 ${fmt(h.p50, 0)} · p99 ${fmt(h.p99, 0)} ${unit}`
    : h.mean !== undefined && h.mean !== null ? ` · mean ${fmt(h.mean, 1)} ${unit}` : "";
  const kinds = h.kinds ? " · " + Object.entries(h.kinds).map(([k, n]) => `${k} ${n}`).join(", ") : "";
  box.replaceChildren(svg("svg", { width: W, height: H }, g), el("div", { cls: "sum", text: `${int(h.count)} samples${extra}${kinds}` }));
}

// ---------------------------------------------------------------- render
function render(m) {
  state.model = m;
  header(m);
  positions(m);
  signals(m);
  rejects(m);
  orders(m);
  services(m);
  commands(m);
  equity(m);
  hist("h-feed", m.latency.feed_to_brain_us, "µs");
  hist("h-ttt", m.latency.tick_to_trade_us, "µs");
  hist("h-sig", m.latency.signal_to_order_ms, "ms");
  hist("h-fill", m.latency.order_to_fill_ms, "ms");
  document.body.dataset.updated = String(m.now_ms);
}

function setConn(kind, text) {
  $("conn").className = "dot " + kind;
  $("conn-text").textContent = text;
}

function connect() {
  const es = new EventSource("/api/events");
  es.onmessage = (ev) => {
    state.lastMsg = Date.now();
    setConn("on", "live");
    try { render(JSON.parse(ev.data)); } catch (e) { console.error(e); }
  };
  es.onerror = () => setConn("off", "reconnecting ...");
}

setInterval(() => {
  $("clock").textContent = new Date().toISOString().substring(11, 19) + " UTC";
  if (state.lastMsg && Date.now() - state.lastMsg > 4000 && $("conn").classList.contains("on")) setConn("stale", "stale");
}, 500);

// ---------------------------------------------------------------- commands
function toast(text, ok) {
  const t = $("toast");
  t.textContent = text;
  t.className = "toast " + (ok ? "ok" : "err");
}

async function send(path, body) {
  const token = $("token").value.trim();
  if (!token) {
    toast("paste the control token first (aegis keys writes it; see docs/operate.md)", false);
    $("token").focus();
    return;
  }
  try {
    const r = await fetch("/api/" + path, {
      method: "POST", cache: "no-store", credentials: "omit",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json", "X-Aegis-Via": "page" },
      body: JSON.stringify(body || {}),
    });
    const a = await r.json().catch(() => ({}));
    const what = (a.command || path.toUpperCase()) + (a.symbol ? " " + a.symbol : "");
    toast(`${what}: ${a.status || a.error || r.status} ${a.message || ""}`, r.ok);
  } catch (e) {
    toast(`${path}: the dashboard did not answer (${e})`, false);
  }
}

// destructive commands take two clicks: the first arms the button for four seconds
// (by key: a position's Close button is drawn anew at every update)
const LABELS = { closeall: ["Close all", "Confirm: close ALL"], "killswitch/clear": ["Clear kill switch", "Confirm: clear kill switch"] };
function guarded(key, path, body) {
  clearTimeout(state.armTimer);
  if (state.armed === key) {
    state.armed = null;
    redrawArmed();
    send(path, body);
    return;
  }
  state.armed = key;
  redrawArmed();
  state.armTimer = setTimeout(() => { state.armed = null; redrawArmed(); }, 4000);
}
function redrawArmed() {
  for (const [path, id] of [["closeall", "btn-closeall"], ["killswitch/clear", "btn-clear"]]) {
    const b = $(id), on = state.armed === path;
    b.textContent = LABELS[path][on ? 1 : 0];
    b.classList.toggle("armed", on);
  }
  if (state.model) positions(state.model);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (e) => e.preventDefault());
  $("btn-pause").addEventListener("click", () => send("pause"));
  $("btn-resume").addEventListener("click", () => send("resume"));
  $("btn-closeall").addEventListener("click", () => guarded("closeall", "closeall"));
  $("btn-clear").addEventListener("click", () => guarded("killswitch/clear", "killswitch/clear"));
  window.addEventListener("resize", () => state.model && render(state.model));
  connect();
});

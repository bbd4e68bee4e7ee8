// The status page: polls /admin/status every 2 s and redraws. No library, no external asset.
"use strict";

const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const badge = (text) => `<span class="badge ${esc(text)}">${esc(text)}</span>`;
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "");
const rate = (n) => (n >= 10 ? n.toFixed(0) : n.toFixed(2));

function ago(t, now) {
  const s = Math.max(0, now - t);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function table(el, headers, rows, empty) {
  if (!rows.length) {
    el.innerHTML = `<tr><td class="empty">${esc(empty)}</td></tr>`;
    return;
  }
  const head = headers.map((h) => `<th class="${h.endsWith("/s") ? "num" : ""}">${esc(h)}</th>`);
  el.innerHTML = `<tr>${head.join("")}</tr>` + rows.map((r) => `<tr>${r.join("")}</tr>`).join("");
}
const td = (html, cls = "") => `<td class="${cls}">${html}</td>`;

function niceMax(value) {
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function drawChart(series) {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 900;
  const height = canvas.clientHeight || 160;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  // At least a minute wide, so that a fresh gateway's first seconds do not fill the chart.
  const slots = Math.max(60, series.requests.length);
  const max = niceMax(Math.max(1, ...series.requests, ...series.rejections));
  const pad = { left: 40, right: 8, top: 8, bottom: 18 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  ctx.strokeStyle = "#e3e6ec";
  ctx.fillStyle = "#6b7385";
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const y = pad.top + h - f * h;
    ctx.beginPath(); ctx.moveTo(pad.left, y); ctx.lineTo(pad.left + w, y); ctx.stroke();
    ctx.fillText(String(+(max * f).toFixed(1)), 4, y + 4);
  }
  const span = slots * series.interval_s;
  ctx.fillText(span >= 120 ? `-${Math.round(span / 60)} min` : `-${Math.round(span)} s`,
    pad.left, height - 4);
  ctx.fillText("now", pad.left + w - 22, height - 4);
  const css = getComputedStyle(document.documentElement);
  const points = (values) => values.map((v, i) => [
    pad.left + ((slots - values.length + i + 1) / slots) * w,
    pad.top + h - (v / max) * h,
  ]);
  const area = (values, color) => {
    const pts = points(values);
    if (!pts.length) return;
    ctx.beginPath();
    ctx.moveTo(pts[0][0], pad.top + h);
    pts.forEach(([x, y]) => ctx.lineTo(x, y));
    ctx.lineTo(pts[pts.length - 1][0], pad.top + h);
    ctx.closePath();
    ctx.globalAlpha = 0.18; ctx.fillStyle = color; ctx.fill();
    ctx.globalAlpha = 1; ctx.strokeStyle = color; ctx.lineWidth = 1.8;
    ctx.beginPath();
    pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
  };
  area(series.requests, css.getPropertyValue("--req").trim() || "#2f6fdf");
  area(series.rejections, css.getPropertyValue("--rej").trim() || "#d9480f");
  const last = (xs) => (xs.length ? xs[xs.length - 1] : 0);
  $("rates").textContent = ` · now ${rate(last(series.requests))} req/s, ` +
    `${rate(last(series.rejections))} rejected/s`;
}

function render(s) {
  const p = s.policy;
  const store = s.ratelimit.store || {};
  $("summary").innerHTML =
    `policy <b>generation ${esc(p.generation)}</b> · <code>${esc(p.sha256.slice(0, 12))}</code>` +
    ` · store <b>${esc(store.kind)}</b> ${badge(store.mode || "primary")}` +
    ` · ${s.health.ready ? badge("ok") : badge("fail")} ready` +
    ` · up ${esc(Math.round(s.uptime_s))} s${s.draining ? " · <b>draining</b>" : ""}`;

  drawChart(s.series);

  const breakers = s.breakers.map((b) => {
    const moves = b.transitions.slice(0, 5).map((t) =>
      `<li>${esc(clock(t.at))}: ${esc(t.from)} → <b>${esc(t.to)}</b> (${esc(t.reason)})</li>`);
    return `<div class="breaker" data-breaker="${esc(b.name)}" data-state="${esc(b.state)}">` +
      `<div class="head"><code>${esc(b.name)}</code>${badge(b.state)}</div>` +
      `<div class="muted">${esc(b.calls)} calls, ${esc(b.failures)} failed ` +
      `(${(b.failure_rate * 100).toFixed(0)}%)` +
      `${b.retry_after_s > 0 ? `, retry in ${esc(b.retry_after_s.toFixed(1))} s` : ""}</div>` +
      (moves.length ? `<ol>${moves.join("")}</ol>` : "") + `</div>`;
  });
  $("breakers").innerHTML = breakers.join("") || `<p class="empty">no route has a breaker</p>`;

  const comps = Object.entries(s.health.components).map(([name, c]) =>
    `<tr><td><code>${esc(name)}</code></td><td>${badge(c.status)}</td>` +
    `<td class="muted">${esc(c.mode || c.kind || (c.generation ? `generation ${c.generation}` : ""))}` +
    `${c.error ? ` · ${esc(c.error)}` : ""}</td></tr>`);
  $("health").innerHTML = `<table>${comps.join("")}</table>`;

  $("store").textContent = `store ${store.kind} · ${store.mode || "primary"}` +
    (store.switches ? ` · ${store.switches} switches` : "");
  table($("rules"), ["route", "rule", "mode", "limit", "allowed/s", "limited/s", "shadow/s", "store errors/s"],
    s.ratelimit.rules.map((r) => [
      td(esc(r.route)), td(`<code>${esc(r.rule)}</code>`), td(esc(r.mode)),
      td(`${esc(r.limit)} / ${r.window_s ? `${esc(r.window_s)} s` : esc(r.algorithm)}`),
      td(rate(r.rates.allowed), "num"), td(rate(r.rates.limited), "num"),
      td(rate(r.rates.shadow_limited), "num"), td(rate(r.rates.store_error), "num"),
    ]), "no rate-limit rule");

  const errors = s.errors;
  table($("errors"), ["reason", "route", "status", "count", "last seen"],
    errors.groups.map((g) => [
      td(`<code>${esc(g.reason)}</code>`), td(esc(g.route)), td(esc(g.status)),
      td(esc(g.count), "num"), td(esc(g.last_seen ? ago(g.last_seen, s.now) : "")),
    ]), errors.running ? "no errors captured" : "error capture is not running");

  table($("routes"), ["route", "match", "upstream", "rate limits", "validation", "breaker"],
    s.routes.map((r) => [
      td(`<code>${esc(r.name)}</code>`),
      td(`<code>${esc(Object.entries(r.match).map(([k, v]) => `${k}: ${v}`).join(", "))}</code>`),
      td(esc(r.upstream)), td(esc(r.rate_limit.join(", "))), td(esc(r.validation || "")),
      td(esc(r.breaker || "")),
    ]), "no routes");

  $("policy-source").textContent = p.source;
  table($("reloads"), ["time", "trigger", "result", "generation", "sha256", "errors"],
    p.reloads.map((r) => [
      td(esc(clock(r.at))), td(esc(r.trigger)), td(badge(r.result === "failure" ? "fail" : "ok") +
        ` ${esc(r.result)}`), td(esc(r.generation)), td(`<code>${esc((r.sha256 || "").slice(0, 12))}</code>`),
      td(esc(r.errors.join("; ")), "bad"),
    ]), "no reload yet");
}

function headers() {
  const token = sessionStorage.getItem("gateway-admin-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function refresh() {
  try {
    const response = await fetch("/admin/status", { headers: headers(), cache: "no-store" });
    if (response.status === 401) {
      $("login").hidden = false;
      $("live").classList.add("stale");
      return;
    }
    if (!response.ok) throw new Error(`status ${response.status}`);
    $("login").hidden = true;
    render(await response.json());
    $("live").classList.remove("stale");
  } catch (error) {
    $("live").classList.add("stale");
    $("live").title = `last refresh failed: ${error.message}`;
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("gateway-admin-token", $("token").value);
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);

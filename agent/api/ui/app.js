// Sluice dashboard: polls the JSON API of the agent that served this page
// and draws what it reads. Every number element carries data-k (its path in
// /api/v1/status) and data-v (the raw value); text is set with textContent
// only, never parsed as HTML.
"use strict";

const POLL_MS = 1000;
const HISTORY = 120; // samples kept for the small charts
const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#718096"];

const hist = { in: [], out: [], buf: [], dead: [] };
let token = sessionStorage.getItem("sluiceToken") || "";
let updates = 0;
let ruleTick = 0;

const $ = (id) => document.getElementById(id);

function headers() {
  return token ? { Authorization: "Bearer " + token } : {};
}

async function getJSON(path) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  if (r.status === 401) {
    $("login").hidden = false;
    throw new Error("the API needs a token");
  }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function fmtNum(v) {
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function fmtBytes(v) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  let x = v;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return (i === 0 ? String(x) : x.toFixed(1)) + " " + units[i];
}

function fmtAge(s) {
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

// set writes v into every element with data-k=key.
function set(key, v, text) {
  for (const el of document.querySelectorAll('[data-k="' + CSS.escape(key) + '"]')) {
    el.dataset.v = String(v);
    el.textContent = text === undefined ? fmtNum(v) : text;
  }
}

function cell(row, key, v, text, cls) {
  const td = document.createElement("td");
  td.dataset.k = key;
  td.dataset.v = String(v);
  td.textContent = text === undefined ? fmtNum(v) : text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function stateCell(row, key, text, good, warn) {
  const td = document.createElement("td");
  const s = document.createElement("span");
  s.className = "state " + (good ? "ok" : warn ? "warn" : "bad");
  s.dataset.k = key;
  s.dataset.v = text;
  s.textContent = text;
  td.appendChild(s);
  row.appendChild(td);
}

function push(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.shift();
}

// spark draws series (arrays of numbers) as lines scaled to the canvas.
function spark(canvas, series) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  let lo = Infinity, hi = -Infinity, n = 0;
  for (const s of series) for (const v of s) { lo = Math.min(lo, v); hi = Math.max(hi, v); n = Math.max(n, s.length); }
  if (n === 0) return;
  if (hi === lo) { hi += 1; lo -= lo === 0 ? 0 : 1; }
  series.forEach((s, k) => {
    ctx.strokeStyle = COLORS[k % COLORS.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.forEach((v, i) => {
      const x = n === 1 ? w / 2 : (i / (n - 1)) * (w - 2) + 1;
      const y = h - 2 - ((v - lo) / (hi - lo)) * (h - 4);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  });
}

function renderStatus(st) {
  set("gateway", st.gateway, st.gateway);
  set("version", st.version, st.version);
  const ready = $("ready");
  ready.dataset.v = String(st.ready);
  ready.textContent = st.ready ? "ready" : "not ready";
  ready.className = "badge " + (st.ready ? "ok" : "bad");
  $("uptime").textContent = fmtAge((Date.parse(st.time) - Date.parse(st.started)) / 1000);
  $("updated").textContent = "updated " + new Date(st.time).toLocaleTimeString();

  let inRate = 0, dead = 0;
  const inputs = $("inputs");
  inputs.replaceChildren();
  for (const i of st.inputs) {
    inRate += i.rate;
    dead += i.dead_letters;
    const tr = document.createElement("tr");
    const p = "inputs." + i.name + ".";
    cell(tr, p + "name", i.name, i.name);
    stateCell(tr, p + "state", i.connected ? (i.subscribed ? "subscribed" : "connected") : "disconnected", i.connected && i.subscribed, i.connected);
    cell(tr, p + "received", i.received, undefined, "n");
    cell(tr, p + "messages", i.messages, undefined, "n");
    cell(tr, p + "dead_letters", i.dead_letters, undefined, "n");
    cell(tr, p + "duplicates", i.duplicates, undefined, "n");
    cell(tr, p + "rate", i.rate, undefined, "n");
    inputs.appendChild(tr);
  }
  const uplinks = $("uplinks");
  uplinks.replaceChildren();
  for (const u of st.uplinks) {
    const tr = document.createElement("tr");
    const p = "uplinks." + u.name + ".";
    cell(tr, p + "name", u.name, u.name);
    stateCell(tr, p + "state", u.state, u.connected, u.state === "starting");
    cell(tr, p + "lag", u.lag, undefined, "n");
    cell(tr, p + "delivered", u.delivered, undefined, "n");
    cell(tr, p + "failures", u.failures, undefined, "n");
    cell(tr, p + "rate", u.rate, undefined, "n");
    cell(tr, p + "last_error", u.last_error || "", u.last_error || "—");
    uplinks.appendChild(tr);
  }
  set("in_rate", inRate);
  set("out_rate", st.pipeline.out_rate);
  set("dead_letters", dead);
  set("buffer.records", st.buffer.records);
  set("buffer.bytes", st.buffer.bytes, fmtBytes(st.buffer.bytes));
  set("buffer.oldest_age_seconds", st.buffer.oldest_age_seconds, fmtAge(st.buffer.oldest_age_seconds));
  set("buffer.dropped", st.buffer.dropped);

  push(hist.in, inRate);
  push(hist.out, st.pipeline.out_rate);
  push(hist.buf, st.buffer.records);
  push(hist.dead, dead);
  spark($("chart-in"), [hist.in]);
  spark($("chart-out"), [hist.out]);
  spark($("chart-buf"), [hist.buf]);
  spark($("chart-dead"), [hist.dead]);
}

// ruleCard returns the card of a rule, creating it the first time.
function ruleCard(name) {
  const id = "rule-" + name;
  let card = document.getElementById(id);
  if (card) return card;
  card = document.createElement("div");
  card.className = "rule";
  card.id = id;
  const h = document.createElement("h2");
  h.textContent = name;
  const p = document.createElement("p");
  for (const [k, label] of [["processed", "in"], ["filtered", "filtered"], ["emitted", "out"], ["in_rate", "in/s"], ["out_rate", "out/s"]]) {
    const s = document.createElement("span");
    s.dataset.k = "rules." + name + "." + k;
    p.append(label + " ", s, "  ");
  }
  const c = document.createElement("canvas");
  c.width = 320;
  c.height = 90;
  const legend = document.createElement("div");
  legend.className = "legend";
  const last = document.createElement("code");
  card.append(h, p, c, legend, last);
  $("rules").appendChild(card);
  return card;
}

function renderRules(data) {
  for (const r of data.rules) {
    const card = ruleCard(r.name);
    const p = "rules." + r.name + ".";
    for (const k of ["processed", "filtered", "emitted", "in_rate", "out_rate"]) set(p + k, r[k]);
    // One line per numeric value of the last outputs, oldest first.
    const fields = new Map();
    for (const o of r.last_outputs) {
      const vals = (o.envelope && o.envelope.values) || {};
      for (const [k, v] of Object.entries(vals)) {
        if (typeof v !== "number") continue;
        if (!fields.has(k)) { if (fields.size >= COLORS.length) continue; fields.set(k, []); }
        fields.get(k).push(v);
      }
    }
    spark(card.querySelector("canvas"), [...fields.values()]);
    const legend = card.querySelector(".legend");
    legend.replaceChildren();
    [...fields.keys()].forEach((k, i) => {
      const s = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = COLORS[i % COLORS.length];
      s.append(sw, k);
      legend.appendChild(s);
    });
    const newest = r.last_outputs[r.last_outputs.length - 1];
    card.querySelector("code").textContent = newest ? JSON.stringify(newest.envelope) : "no output yet";
  }
}

function renderDeadLetters(data) {
  const body = $("deadletters");
  body.replaceChildren();
  for (const d of data.samples.slice(0, 20)) {
    const tr = document.createElement("tr");
    for (const v of [new Date(d.time).toLocaleTimeString(), d.input, d.topic, d.reason, d.sample]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function refresh() {
  try {
    const st = await getJSON("api/v1/status");
    renderStatus(st);
    if (ruleTick++ % 2 === 0) {
      renderRules(await getJSON("api/v1/rules"));
      renderDeadLetters(await getJSON("api/v1/deadletters"));
    }
    $("error").hidden = true;
    updates++;
    document.body.dataset.updates = String(updates);
  } catch (e) {
    $("error").textContent = String(e.message || e);
    $("error").hidden = false;
  }
  setTimeout(refresh, POLL_MS);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("sluiceToken", token);
  $("login").hidden = true;
});

refresh();

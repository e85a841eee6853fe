// replicar status page: polls GET /group on the node that served it and
// draws the group, the followers' lag and the write/ack rates. Plain
// JavaScript and canvas, nothing loaded from outside.
"use strict";

const POLL_MS = 1000;
const WINDOW_MS = 120 * 1000; // the charts show the last two minutes
const PALETTE = ["#2b6cb0", "#d69e2e", "#38a169", "#9f7aea", "#e53e3e", "#319795", "#dd6b20", "#718096"];

const state = {
  // samples: {t, lags: {node: entries}, writes, acks} (rates per second)
  samples: [],
  // prev: the leader's offsets at the last poll, for the rates
  prev: null,
  // rows: node → its last row, kept after it leaves the view ("gone")
  rows: new Map(),
  roles: new Map(),
  colors: new Map(),
  polls: 0,
};

const $ = (id) => document.getElementById(id);

function colorOf(name) {
  if (!state.colors.has(name)) {
    state.colors.set(name, PALETTE[state.colors.size % PALETTE.length]);
  }
  return state.colors.get(name);
}

function fmtBytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function fmtTime(d) {
  return d.toLocaleTimeString([], { hour12: false });
}

function healthLevel(h) {
  if (h === "ok") return "ok";
  if (["lagging", "connecting", "election", "handover", "not ready", "resync", "gone"].includes(h)) return "warn";
  return "bad";
}

function addEvent(text) {
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = fmtTime(new Date());
  li.append(time, document.createTextNode(text));
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 100) list.lastChild.remove();
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function lagText(n) {
  if (n.role !== "follower") return "–";
  return `${n.lag_entries} (${fmtBytes(n.lag_bytes)}, ${n.lag_seconds.toFixed(2)}s)`;
}

function renderTable(group) {
  const now = new Set();
  for (const n of group.nodes) {
    now.add(n.node);
    state.rows.set(n.node, n);
    const before = state.roles.get(n.node);
    if (before !== undefined && before !== n.role) {
      addEvent(` ${n.node}: ${before} → ${n.role}`);
    }
    state.roles.set(n.node, n.role);
  }
  const tbody = $("nodes").tBodies[0];
  tbody.replaceChildren();
  const names = [...state.rows.keys()].sort();
  for (const name of names) {
    const n = state.rows.get(name);
    const gone = !now.has(name);
    if (gone && n.health !== "gone") {
      addEvent(` ${name} left the group view`);
      n.health = "gone";
      n.role = n.role || "";
      state.roles.set(name, "gone");
    }
    const tr = document.createElement("tr");
    tr.dataset.node = name;
    tr.dataset.role = gone ? "gone" : n.role;
    tr.dataset.health = n.health;
    const health = cell(n.health, "health");
    health.dataset.level = healthLevel(n.health);
    tr.append(
      cell(name, "node"),
      cell(gone ? "–" : n.role, "role"),
      cell(gone ? "–" : n.state, "state"),
      cell(String(n.epoch), "epoch num"),
      cell(n.role === "router" ? "–" : n.reachable ? String(n.offset) : "?", "offset num"),
      cell(n.role === "router" ? "–" : String(n.applied), "applied num"),
      cell(gone ? "–" : lagText(n), "lag num"),
      cell(n.in_isr && !gone ? "yes" : "no", "isr"),
      health,
    );
    tbody.append(tr);
  }
}

function sample(group) {
  const t = Date.now();
  const leader = group.nodes.find((n) => n.role === "leader" && n.reachable);
  const s = { t, lags: {}, writes: null, acks: null };
  if (leader) {
    for (const n of group.nodes) {
      if (n.role === "follower") s.lags[n.node] = n.lag_entries;
    }
    const p = state.prev;
    if (p && t > p.t) {
      const dt = (t - p.t) / 1000;
      s.writes = Math.max(0, leader.offset - p.offset) / dt;
      s.acks = Math.max(0, leader.committed - p.committed) / dt;
    }
    state.prev = { t, offset: leader.offset, committed: leader.committed };
  } else {
    state.prev = null;
  }
  state.samples.push(s);
  while (state.samples.length && state.samples[0].t < t - WINDOW_MS) state.samples.shift();
}

// drawChart draws series [{name, color, points: [{t, v}]}] on canvas, time
// on x over the last WINDOW_MS, values on y from 0 to a rounded maximum.
function drawChart(canvas, series, legend, unit) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);

  const left = 56, right = 10, top = 10, bottom = 22;
  const pw = w - left - right, ph = h - top - bottom;
  const tmax = Date.now(), tmin = tmax - WINDOW_MS;
  let vmax = 0;
  for (const s of series) for (const p of s.points) vmax = Math.max(vmax, p.v);
  vmax = niceMax(vmax);

  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7485";
  ctx.strokeStyle = "#dde1e8";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + pw, y);
    ctx.stroke();
    const v = (vmax * i) / 4;
    ctx.textAlign = "right";
    ctx.fillText(fmtValue(v) + unit, left - 6, y + 4);
  }
  ctx.textAlign = "center";
  for (let s = 0; s <= WINDOW_MS / 1000; s += 30) {
    const x = left + pw - (pw * s * 1000) / WINDOW_MS;
    ctx.fillText(s === 0 ? "now" : `-${s}s`, x, h - 6);
  }

  const x = (t) => left + ((t - tmin) / WINDOW_MS) * pw;
  const y = (v) => top + ph - (v / vmax) * ph;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let pen = false;
    for (const p of s.points) {
      if (p.v === null || p.v === undefined) { pen = false; continue; }
      if (pen) ctx.lineTo(x(p.t), y(p.v));
      else { ctx.moveTo(x(p.t), y(p.v)); pen = true; }
    }
    ctx.stroke();
  }
  canvas.dataset.series = String(series.length);

  legend.replaceChildren();
  for (const s of series) {
    const li = document.createElement("li");
    li.style.setProperty("--swatch", s.color);
    li.dataset.series = s.name;
    // The latest sample only: a follower that now leads has no lag.
    const last = s.points[s.points.length - 1];
    const known = last && last.v !== null && last.v !== undefined;
    li.textContent = `${s.name}: ${known ? fmtValue(last.v) + unit : "–"}`;
    legend.append(li);
  }
}

function niceMax(v) {
  if (v <= 0) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * mag) return m * mag;
  return 10 * mag;
}

function fmtValue(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (v >= 100 || Number.isInteger(v)) return v.toFixed(0);
  return v.toFixed(1);
}

function renderCharts() {
  const followers = new Set();
  for (const s of state.samples) for (const n of Object.keys(s.lags)) followers.add(n);
  const lagSeries = [...followers].sort().map((name) => ({
    name,
    color: colorOf(name),
    points: state.samples.map((s) => ({ t: s.t, v: name in s.lags ? s.lags[name] : null })),
  }));
  drawChart($("lag-chart"), lagSeries, $("lag-legend"), "");
  const rateSeries = [
    { name: "acks/s", color: "#38a169", points: state.samples.map((s) => ({ t: s.t, v: s.acks })) },
    // Dashed, drawn over the acks: the two lines coincide when every
    // write is acknowledged as fast as it comes.
    { name: "writes/s", color: "#2b6cb0", dash: [6, 4], points: state.samples.map((s) => ({ t: s.t, v: s.writes })) },
  ];
  drawChart($("rate-chart"), rateSeries, $("rate-legend"), "");
}

function render(group) {
  $("group").textContent = group.group;
  $("leader").textContent = group.leader || "none (election)";
  $("epoch").textContent = String(group.epoch);
  $("asked").textContent = group.asked;
  const before = document.body.dataset.leader;
  if (before !== undefined && before !== (group.leader || "")) {
    addEvent(` leader ${before || "none"} → ${group.leader || "none"} (epoch ${group.epoch})`);
  }
  document.body.dataset.leader = group.leader || "";
  const warn = $("warning");
  warn.hidden = !group.error;
  warn.textContent = group.error || "";
  renderTable(group);
  sample(group);
  renderCharts();
}

async function poll() {
  const conn = $("conn");
  try {
    const res = await fetch("/group", { cache: "no-store" });
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    const group = await res.json();
    render(group);
    state.polls++;
    document.body.dataset.polls = String(state.polls);
    conn.dataset.state = "ok";
    conn.textContent = `updated ${fmtTime(new Date())}`;
  } catch (err) {
    conn.dataset.state = "error";
    conn.textContent = `cannot reach this node: ${err.message}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();

// crossroom ops dashboard: reads /v1/ops (JSON frames, operator key) and draws what it says.
"use strict";

const $ = (id) => document.getElementById(id);
const HISTORY = 120; // samples kept for the charts (one a second)
const AUDIT_ROWS = 200;

const series = {
  connections: [], sessions: [],
  messages: [], deliveries: [],
  commit50: [], commit99: [], fanout99: [],
};
let ws = null;

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (cls || "");
}

function connect(key) {
  $("login-error").textContent = "";
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${scheme}//${location.host}/v1/ops`);
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: key }));
  ws.onmessage = (m) => onFrame(JSON.parse(m.data), key);
  ws.onclose = (e) => {
    setStatus(`disconnected (${e.code}${e.reason ? ": " + e.reason : ""})`, "bad");
    if (e.code === 4500) {
      $("login").hidden = false;
      $("board").hidden = true;
      $("login-error").textContent = "wrong operator key";
      sessionStorage.removeItem("crossroom.operator");
    }
  };
}

function onFrame(f, key) {
  switch (f.type) {
    case "hello":
      sessionStorage.setItem("crossroom.operator", key);
      $("login").hidden = true;
      $("board").hidden = false;
      setStatus(`connected · v${f.version}`, "good");
      $("f-companies").value = f.companies.join(",");
      $("f-kinds").value = f.kinds.join(",");
      break;
    case "stats":
      showStats(f);
      break;
    case "audit":
      showAudit(f);
      break;
    case "error":
      showAudit({ ts: Date.now(), action: `error: ${f.code}`, actor: "", room: "", detail: f.message, companies: [] });
      break;
  }
}

function push(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.shift();
}

function fmt(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n * 100) / 100);
}

function showStats(s) {
  $("connections").textContent = fmt(s.connections);
  $("sessions").textContent = fmt(s.sessions);
  $("rooms").textContent = fmt(s.rooms);
  $("messages-rate").textContent = fmt(s.per_sec.messages);
  $("deliveries-rate").textContent = fmt(s.per_sec.deliveries);
  $("messages-total").textContent = String(s.totals.messages);
  $("commit-p99").textContent = fmt(s.commit_ms.p99);
  $("fanout-p99").textContent = fmt(s.fanout_ms.p99);
  $("slow-consumers").textContent = String(s.totals.slow_consumers);

  push(series.connections, s.connections);
  push(series.sessions, s.sessions);
  push(series.messages, s.per_sec.messages);
  push(series.deliveries, s.per_sec.deliveries);
  push(series.commit50, s.commit_ms.p50);
  push(series.commit99, s.commit_ms.p99);
  push(series.fanout99, s.fanout_ms.p99);
  chart("chart-connections", [series.connections, series.sessions]);
  chart("chart-throughput", [series.messages, series.deliveries]);
  chart("chart-latency", [series.commit50, series.commit99, series.fanout99]);

  const rows = (id, list, cells) => {
    const tb = $(id);
    tb.replaceChildren();
    for (const item of list) {
      const tr = document.createElement("tr");
      for (const c of cells(item)) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.appendChild(td);
      }
      tb.appendChild(tr);
    }
  };
  rows("busiest", s.busiest_rooms, (r) => [r.room, fmt(r.events_per_sec), String(r.subscribers)]);
  rows("companies", Object.entries(s.sessions_by_company), ([c, n]) => [c, String(n)]);
}

const COLORS = ["#2f6fde", "#e0782f", "#2fa36b"];

// A line chart of a few series sharing one y axis, newest sample at the right edge.
function chart(id, lines) {
  const c = $(id);
  const g = c.getContext("2d");
  const w = c.width, h = c.height, pad = 28;
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...lines.flat());
  g.strokeStyle = "#ccc";
  g.fillStyle = "#666";
  g.font = "11px sans-serif";
  g.beginPath();
  g.moveTo(pad, 4);
  g.lineTo(pad, h - 14);
  g.lineTo(w - 4, h - 14);
  g.stroke();
  g.fillText(fmt(max), 2, 12);
  g.fillText("0", 2, h - 14);
  g.fillText(`last ${HISTORY}s`, w - 70, h - 2);
  lines.forEach((data, i) => {
    g.strokeStyle = COLORS[i % COLORS.length];
    g.lineWidth = 1.5;
    g.beginPath();
    data.forEach((v, j) => {
      const x = pad + ((w - pad - 4) * (HISTORY - data.length + j)) / (HISTORY - 1);
      const y = h - 14 - ((h - 20) * v) / max;
      if (j === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  });
}

function showAudit(a) {
  const ol = $("audit");
  const li = document.createElement("li");
  li.className = "audit";
  li.dataset.action = a.action;
  const detail = typeof a.detail === "string" ? a.detail : JSON.stringify(a.detail);
  li.textContent = `${new Date(a.ts).toLocaleTimeString()}  ${a.action}  ${a.room}  by ${a.actor}  [${a.companies.join(", ")}]  ${detail}`;
  ol.prepend(li);
  while (ol.children.length > AUDIT_ROWS) ol.lastChild.remove();
}

window.addEventListener("DOMContentLoaded", () => {
  $("connect").onclick = () => connect($("key").value.trim());
  $("key").addEventListener("keydown", (e) => {
    if (e.key === "Enter") connect($("key").value.trim());
  });
  $("apply-filter").onclick = () => {
    const list = (id) => $(id).value.split(",").map((s) => s.trim()).filter(Boolean);
    if (ws) ws.send(JSON.stringify({ type: "filter", companies: list("f-companies"), kinds: list("f-kinds") }));
  };
  const m = location.hash.match(/key=([^&]+)/);
  const key = m ? decodeURIComponent(m[1]) : sessionStorage.getItem("crossroom.operator");
  if (m) history.replaceState(null, "", location.pathname);
  if (key) connect(key);
});

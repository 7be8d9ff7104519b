// crossroom ops dashboard: reads /v1/ops (JSON frames, operator key) and draws what it says.
"use strict";

const $ = (id) => document.getElementById(id);
const HISTORY = 120; // samples kept for the charts (one a second)
const AUDIT_ROWS = 1000; // records kept in the feed (live and loaded)
const PAGE = 50; // records asked for per backlog page

// Each chart: its series, each with a label, a colour and up to HISTORY samples (null: a gap).
const CHARTS = {
  connections: [
    { key: "connections", label: "connections", color: "#2f6fde" },
    { key: "sessions", label: "sessions", color: "#e0782f" },
  ],
  throughput: [
    { key: "messages", label: "messages/s", color: "#2f6fde" },
    { key: "deliveries", label: "deliveries/s", color: "#e0782f" },
  ],
  latency: [
    { key: "commit50", label: "commit p50", color: "#2fa36b" },
    { key: "commit99", label: "commit p99", color: "#2f6fde" },
    { key: "fanout99", label: "fan-out p99", color: "#e0782f" },
  ],
};
const series = {};
for (const lines of Object.values(CHARTS)) for (const l of lines) series[l.key] = [];

let ws = null;
let next = undefined; // the backlog's next `before`; null once the oldest record is shown
const seen = new Set(); // records shown, by content (a live record may come again in a page)
const lastLatency = { commit: null, fanout: null }; // { p99, at } of the last measured interval

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

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
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
      // A new filter: the feed starts over from the newest stored record.
      $("audit").replaceChildren();
      seen.clear();
      next = undefined;
      send({ type: "backlog", limit: PAGE });
      for (const name of Object.keys(CHARTS)) chart(name);
      break;
    case "stats":
      showStats(f);
      break;
    case "audit":
      showAudit(f, "live");
      break;
    case "backlog":
      for (const r of f.records) showAudit(r, "stored");
      next = f.next;
      $("older").hidden = next === null;
      $("audit-end").hidden = next !== null;
      break;
    case "error":
      showError(f);
      break;
  }
}

function push(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.shift();
}

function fmt(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n * 100) / 100);
}

// A latency tile keeps the last measured value when an interval had nothing to measure, and
// says how old it is.
function latencyTile(name, p, now) {
  if (p.count > 0) lastLatency[name] = { p99: p.p99, at: now };
  const last = lastLatency[name];
  $(`${name}-p99`).textContent = last ? fmt(last.p99) : "–";
  const age = last ? Math.round((now - last.at) / 1000) : 0;
  $(`${name}-age`).textContent = !last ? "nothing measured yet" : age >= 2 ? `idle · measured ${age} s ago` : "";
}

function showStats(s) {
  const now = Date.now();
  $("connections").textContent = fmt(s.connections);
  $("sessions").textContent = fmt(s.sessions);
  $("rooms").textContent = fmt(s.rooms);
  $("messages-rate").textContent = fmt(s.per_sec.messages);
  $("deliveries-rate").textContent = fmt(s.per_sec.deliveries);
  $("messages-total").textContent = String(s.totals.messages);
  latencyTile("commit", s.commit_ms, now);
  latencyTile("fanout", s.fanout_ms, now);
  $("slow-consumers").textContent = String(s.totals.slow_consumers);

  push(series.connections, s.connections);
  push(series.sessions, s.sessions);
  push(series.messages, s.per_sec.messages);
  push(series.deliveries, s.per_sec.deliveries);
  // No observation in the interval: a gap, not a fall to 0.
  push(series.commit50, s.commit_ms.count > 0 ? s.commit_ms.p50 : null);
  push(series.commit99, s.commit_ms.count > 0 ? s.commit_ms.p99 : null);
  push(series.fanout99, s.fanout_ms.count > 0 ? s.fanout_ms.p99 : null);
  for (const name of Object.keys(CHARTS)) chart(name);

  const rows = (id, list, cells) => {
    const tb = $(id);
    tb.replaceChildren();
    for (const item of list) {
      const tr = document.createElement("tr");
      for (const [text, title] of cells(item)) {
        const td = document.createElement("td");
        td.textContent = text;
        if (title) td.title = title;
        tr.appendChild(td);
      }
      tb.appendChild(tr);
    }
  };
  rows("busiest", s.busiest_rooms, (r) => [[r.name || r.room, r.room], [fmt(r.events_per_sec)], [String(r.subscribers)]]);
  $("busiest-idle").hidden = s.busiest_rooms.length > 0;
  rows("companies", Object.entries(s.sessions_by_company), ([c, n]) => [[c], [String(n)]]);
}

// Round steps for an axis: 1, 2 or 5 times a power of ten.
function niceStep(range, ticks) {
  const raw = range / ticks;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

// A line chart of a few series on one y axis with ticks and gridlines, the x axis in seconds
// before now (newest sample at the right edge), and a legend under it.
function chart(name) {
  const lines = CHARTS[name];
  const c = $(`chart-${name}`);
  const g = c.getContext("2d");
  const w = c.width, h = c.height;
  const left = 44, right = 8, top = 8, bottom = 22;
  const pw = w - left - right, ph = h - top - bottom;
  g.clearRect(0, 0, w, h);
  const values = lines.flatMap((l) => series[l.key]).filter((v) => v !== null);
  const step = niceStep(Math.max(1, ...values), 4);
  const max = step * Math.max(1, Math.ceil(Math.max(1, ...values) / step));
  g.font = "11px sans-serif";
  g.lineWidth = 1;
  // y: gridlines and tick labels.
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (let v = 0; v <= max + step / 2; v += step) {
    const y = top + ph - (ph * v) / max;
    g.strokeStyle = v === 0 ? "#a0aec0" : "#edf0f4";
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(w - right, y);
    g.stroke();
    g.fillStyle = "#718096";
    g.fillText(fmt(v), left - 4, y);
  }
  // x: a tick every 30 s, labelled in seconds before now.
  g.textAlign = "center";
  g.textBaseline = "top";
  for (let s = 0; s <= HISTORY; s += 30) {
    const x = left + pw - (pw * s) / (HISTORY - 1);
    g.strokeStyle = "#edf0f4";
    g.beginPath();
    g.moveTo(x, top);
    g.lineTo(x, top + ph + 4);
    g.stroke();
    g.fillStyle = "#718096";
    g.fillText(s === 0 ? "now" : `−${s} s`, Math.max(left, Math.min(x, w - right - 12)), top + ph + 6);
  }
  g.strokeStyle = "#a0aec0";
  g.beginPath();
  g.moveTo(left, top);
  g.lineTo(left, top + ph);
  g.stroke();
  for (const l of lines) {
    const data = series[l.key];
    g.strokeStyle = l.color;
    g.lineWidth = 1.5;
    g.beginPath();
    let pen = false;
    data.forEach((v, j) => {
      if (v === null) {
        pen = false;
        return;
      }
      const x = left + (pw * (HISTORY - data.length + j)) / (HISTORY - 1);
      const y = top + ph - (ph * v) / max;
      if (pen) g.lineTo(x, y);
      else g.moveTo(x, y);
      pen = true;
    });
    g.stroke();
  }
  const legend = $(`legend-${name}`);
  if (!legend.childElementCount) {
    for (const l of lines) {
      const s = document.createElement("span");
      s.textContent = l.label;
      s.style.setProperty("--c", l.color);
      legend.appendChild(s);
    }
  }
}

// Who an id is, for people: their name when the stream found one.
function who(id, names) {
  if (!id) return "someone";
  if (id.startsWith("#admin@")) return `an admin of ${id.slice(7)}`;
  if (id.startsWith("#policy@")) return `the policy of ${id.slice(8)}`;
  return names[id] || id;
}

function people(ids, names) {
  const list = (ids || []).map((u) => who(u, names));
  if (list.length === 0) return "nobody";
  if (list.length <= 3) return list.join(", ");
  return `${list.slice(0, 3).join(", ")} and ${list.length - 3} more`;
}

function count(list, noun) {
  const n = (list || []).length;
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

// One line a person can read, for an audit record.
function summary(a) {
  const n = a.names || {};
  const d = a.detail && typeof a.detail === "object" ? a.detail : {};
  const by = who(a.actor, n);
  const room = `“${n[a.room] || d.name || a.room}”`;
  switch (a.action) {
    case "created":
      return `${by} created ${room} with ${count(d.members, "member")} and ${count(d.masters, "master")}`;
    case "members_added":
      return `${by} added ${people(d.users, n)} to ${room}`;
    case "member_removed":
      return `${by} removed ${who(d.user, n)} from ${room}` + (d.reason && d.reason !== "removed" ? ` (${d.reason})` : "");
    case "masters_added":
      return `${by} made ${people(d.users, n)} master of ${room}`;
    case "master_removed":
      return `${by} removed ${who(d.user, n)} as master of ${room}`;
    case "group_updated": {
      const what = Object.keys(d).filter((k) => k !== "kind" && d[k] !== null && d[k] !== undefined);
      return `${by} changed the ${what.length ? what.join(", ") : "settings"} of ${room}`;
    }
    case "converted":
      return `${by} converted ${room} into an external group` +
        (d.left_out && d.left_out.length ? `, leaving out ${people(d.left_out.map((l) => l.user), n)}` : "");
    case "deleted":
      return `${by} deleted ${room}`;
    case "invite_created":
      return `${by} made a new invitation link for ${room}`;
    case "invite_revoked":
      return `${by} revoked the invitation link of ${room}`;
    case "invite_updated":
      return `the invitation link of ${room} no longer admits ${people(d.barred, n)}`;
    default:
      return `${by}: ${a.action} in ${room}`;
  }
}

function detailRow(dl, term, text) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  if (text instanceof Node) dd.appendChild(text);
  else dd.textContent = text;
  dl.append(dt, dd);
}

// Add a record to the feed: a live one on top, a stored one (a backlog page) at the bottom.
function showAudit(a, how) {
  const key = `${a.ts}|${a.room}|${a.action}|${a.actor}`;
  if (seen.has(key)) return;
  seen.add(key);
  const li = document.createElement("li");
  li.className = "audit";
  li.dataset.action = a.action;
  li.dataset.room = a.room;
  const details = document.createElement("details");
  const head = document.createElement("summary");
  const time = document.createElement("time");
  const at = new Date(a.ts);
  time.dateTime = at.toISOString();
  time.textContent = at.toLocaleString();
  const kind = document.createElement("span");
  kind.className = "action";
  kind.textContent = a.action;
  head.append(time, summary(a), kind);
  const dl = document.createElement("dl");
  detailRow(dl, "room", `${(a.names || {})[a.room] || "?"} (${a.room})`);
  detailRow(dl, "by", `${who(a.actor, a.names || {})} (${a.actor})`);
  detailRow(dl, "companies", (a.companies || []).join(", "));
  detailRow(dl, "record", a.id ? `#${a.id}` : "live");
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(a.detail, null, 2);
  detailRow(dl, "detail", pre);
  details.append(head, dl);
  li.appendChild(details);
  const ol = $("audit");
  if (how === "live") ol.prepend(li);
  else ol.appendChild(li);
  while (ol.children.length > AUDIT_ROWS) ol.lastChild.remove();
}

function showError(f) {
  const li = document.createElement("li");
  li.className = "error";
  li.textContent = `${new Date().toLocaleTimeString()} · ${f.code}: ${f.message}`;
  $("audit").prepend(li);
}

window.addEventListener("DOMContentLoaded", () => {
  $("connect").onclick = () => connect($("key").value.trim());
  $("key").addEventListener("keydown", (e) => {
    if (e.key === "Enter") connect($("key").value.trim());
  });
  $("apply-filter").onclick = () => {
    const list = (id) => $(id).value.split(",").map((s) => s.trim()).filter(Boolean);
    send({ type: "filter", companies: list("f-companies"), kinds: list("f-kinds") });
  };
  $("older").onclick = () => {
    if (next) send({ type: "backlog", before: next, limit: PAGE });
  };
  const m = location.hash.match(/key=([^&]+)/);
  const key = m ? decodeURIComponent(m[1]) : sessionStorage.getItem("crossroom.operator");
  if (m) history.replaceState(null, "", location.pathname);
  if (key) connect(key);
});

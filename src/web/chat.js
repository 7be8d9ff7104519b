// crossroom chat page: a plain WebSocket client of /v1/ws with JSON frames (crossroom.v1.json),
// written from protocol/PROTOCOL.md like any other client.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  me: null,
  nextId: 1,
  pending: new Map(), // request id -> {resolve, reject}
  rooms: new Map(), // room id -> rooms line
  current: null, // room id shown
  names: new Map(), // user id -> display name (from the room's members)
};

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/ws`;
}

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (cls || "");
}

// One request, answered by the frame carrying the same id (an `error` rejects).
function request(frame) {
  const id = state.nextId++;
  frame.id = id;
  return new Promise((resolve, reject) => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      reject(new Error("not connected"));
      return;
    }
    state.pending.set(id, { resolve, reject });
    state.ws.send(JSON.stringify(frame));
  });
}

function signIn(token) {
  $("signin-error").textContent = "";
  setStatus("connecting…");
  const ws = new WebSocket(wsUrl(), "crossroom.v1.json");
  state.ws = ws;
  ws.onopen = () => {
    const id = state.nextId++;
    state.pending.set(id, {
      resolve: (hello) => started(hello, token),
      reject: (e) => {
        $("signin-error").textContent = e.message;
        setStatus("signed out");
      },
    });
    ws.send(JSON.stringify({ type: "auth", id, token }));
  };
  ws.onmessage = (m) => onFrame(JSON.parse(m.data));
  ws.onclose = (e) => {
    for (const p of state.pending.values()) p.reject(new Error("connection closed"));
    state.pending.clear();
    if (state.ws === ws) {
      setStatus(`disconnected (${e.code}${e.reason ? ": " + e.reason : ""})`, "bad");
      $("compose").disabled = true;
      $("send").disabled = true;
    }
  };
}

async function started(hello, token) {
  state.me = hello.user;
  sessionStorage.setItem("crossroom.token", token);
  $("me").textContent = `${hello.user.name} (${hello.user.id})`;
  setStatus("connected", "good");
  $("signin").hidden = true;
  $("app").hidden = false;
  const r = await request({ type: "list_rooms" });
  state.rooms.clear();
  for (const room of r.rooms) state.rooms.set(room.id, room);
  renderRooms();
}

function onFrame(f) {
  if (f.id !== undefined && f.id !== null && state.pending.has(f.id)) {
    const p = state.pending.get(f.id);
    state.pending.delete(f.id);
    if (f.type === "error") p.reject(new Error(`${f.code}: ${f.message}`));
    else p.resolve(f);
    return;
  }
  switch (f.type) {
    case "event":
      if (f.room === state.current) showEvent(f);
      if (state.rooms.has(f.room)) state.rooms.get(f.room).head = f.seq;
      break;
    case "joined":
      state.rooms.set(f.room.id, f.room);
      renderRooms();
      break;
    case "removed":
    case "room_deleted":
      dropRoom(f.room, f.type === "removed" ? `you were removed (${f.reason})` : "the group was deleted");
      break;
    case "reset":
      if (f.room === state.current) openRoom(f.room);
      break;
    case "error":
      $("post-error").textContent = `${f.code}: ${f.message}`;
      break;
    default:
      break; // typing, task_notice, …: not shown here
  }
}

function renderRooms() {
  const ul = $("rooms");
  ul.replaceChildren();
  for (const room of state.rooms.values()) {
    const li = document.createElement("li");
    li.dataset.room = room.id;
    // A group one masters without being a member is managed, not read ("groups I manage").
    const managed = room.role === "master_only";
    li.textContent = (room.name || room.id) + (managed ? " (you manage it)" : "");
    if (room.kind === "group") li.classList.add("group");
    if (room.id === state.current) li.classList.add("active");
    li.onclick = managed
      ? () => {
          const n = $("notice");
          n.textContent = `${room.name}: you are a master of this group, not a member`;
          n.hidden = false;
        }
      : () => openRoom(room.id);
    ul.appendChild(li);
  }
}

function dropRoom(id, why) {
  const room = state.rooms.get(id);
  state.rooms.delete(id);
  renderRooms();
  if (state.current === id) {
    state.current = null;
    $("room-name").textContent = "Pick a room";
    $("messages").replaceChildren();
    for (const l of ["members", "notes", "tasks"]) $(l).replaceChildren();
    $("compose").disabled = true;
    $("send").disabled = true;
  }
  const n = $("notice");
  n.textContent = `${room ? room.name : id}: ${why}`;
  n.hidden = false;
}

async function openRoom(id) {
  if (state.current && state.current !== id) {
    request({ type: "unsubscribe", room: state.current }).catch(() => {});
  }
  state.current = id;
  renderRooms();
  $("notice").hidden = true;
  $("post-error").textContent = "";
  $("room-name").textContent = state.rooms.get(id)?.name || id;
  $("messages").replaceChildren();
  try {
    // Live from now, then the page before it: no event is missed or shown twice.
    const sub = await request({ type: "subscribe", room: id });
    const info = await request({ type: "get_room", room: id });
    state.names.clear();
    renderMembers(info.room);
    const hist = await request({ type: "history", room: id, before: sub.head + 1, limit: 50 });
    if (state.current !== id) return;
    const box = $("messages");
    const live = Array.from(box.children);
    box.replaceChildren();
    for (const e of hist.events) showEvent(e);
    for (const el of live) box.appendChild(el);
    $("compose").disabled = false;
    $("send").disabled = false;
    $("compose").focus();
    refreshItems(id, info.room.features);
    if (sub.head > 0) request({ type: "mark_read", room: id, seq: sub.head }).catch(() => {});
  } catch (e) {
    $("post-error").textContent = e.message;
  }
}

function renderMembers(room) {
  const ul = $("members");
  ul.replaceChildren();
  const masters = new Set(room.masters || []);
  for (const u of room.members || []) {
    const li = document.createElement("li");
    li.dataset.user = u;
    li.textContent = u + (masters.has(u) ? " ★" : "");
    ul.appendChild(li);
  }
}

function nameOf(user) {
  return user.split("@")[0];
}

function describe(e) {
  const b = e.body;
  switch (b.kind) {
    case "created": return `${nameOf(e.author)} created “${b.name}”`;
    case "members_added": return `${nameOf(e.author)} added ${b.users.map(nameOf).join(", ")}`;
    case "member_removed": return `${nameOf(b.user)} is no longer a member (${b.reason})`;
    case "masters_added": return `${b.users.map(nameOf).join(", ")} became master`;
    case "master_removed": return `${nameOf(b.user)} is no longer a master`;
    case "group_updated": return `${nameOf(e.author)} changed the group settings`;
    case "notice": return b.text;
    default: return `${nameOf(e.author)}: ${b.kind.replaceAll("_", " ")}`;
  }
}

function showEvent(e) {
  const box = $("messages");
  if (box.querySelector(`[data-seq="${e.seq}"]`)) return;
  const div = document.createElement("div");
  div.dataset.seq = e.seq;
  if (e.body.kind === "message") {
    div.className = "msg" + (state.me && e.author === state.me.id ? " mine" : "");
    const who = document.createElement("span");
    who.className = "author";
    who.textContent = nameOf(e.author);
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = e.body.recalled ? "(recalled)" : e.body.text;
    const when = document.createElement("time");
    when.textContent = new Date(e.ts).toLocaleTimeString();
    div.append(who, text, when);
  } else {
    div.className = "event";
    div.textContent = describe(e);
  }
  box.appendChild(div);
  box.scrollTop = box.scrollHeight;
  if (e.room === state.current && /^(note|task)_/.test(e.body.kind)) refreshItems(e.room);
  if (e.room === state.current && /^(members_added|member_removed|masters_added|master_removed)$/.test(e.body.kind)) {
    request({ type: "get_room", room: e.room }).then((r) => renderMembers(r.room)).catch(() => {});
  }
}

async function refreshItems(room, features) {
  const fill = (id, items, line) => {
    const ul = $(id);
    ul.replaceChildren();
    for (const it of items) {
      const li = document.createElement("li");
      li.textContent = line(it);
      ul.appendChild(li);
    }
  };
  if (!features || features.note) {
    request({ type: "query", room, query: { q: "notes" } })
      .then((r) => fill("notes", r.result.notes, (n) => (n.fields.pinned ? "📌 " : "") + n.fields.title))
      .catch(() => fill("notes", [], () => ""));
  }
  if (!features || features.task) {
    request({ type: "query", room, query: { q: "tasks" } })
      .then((r) => fill("tasks", r.result.tasks, (t) => (t.done ? "✔ " : "☐ ") + t.fields.title))
      .catch(() => fill("tasks", [], () => ""));
  }
}

async function send() {
  const input = $("compose");
  const text = input.value.trim();
  if (!text || !state.current) return;
  $("post-error").textContent = "";
  const cmid = `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  input.value = "";
  try {
    await request({ type: "post", room: state.current, client_msg_id: cmid, text });
  } catch (e) {
    input.value = text;
    $("post-error").textContent = e.message;
  }
}

window.addEventListener("DOMContentLoaded", () => {
  $("signin-button").onclick = () => signIn($("token").value.trim());
  $("send").onclick = send;
  $("compose").addEventListener("keydown", (e) => {
    if (e.key === "Enter") send();
  });
  // A token in the fragment (never sent to the server) or from this tab's last sign-in.
  const m = location.hash.match(/token=([^&]+)/);
  const token = m ? decodeURIComponent(m[1]) : sessionStorage.getItem("crossroom.token");
  if (m) history.replaceState(null, "", location.pathname);
  if (token) {
    $("token").value = token;
    signIn(token);
  }
});

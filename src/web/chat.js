// crossroom chat page, on the client library (/assets/crossroom.mjs): it reconnects by itself and
// resumes every room with no gap, retries posts without doubling them, and follows every room of
// the user for unread counts.
import { Client, TYPING_MS } from "/assets/crossroom.mjs";

const $ = (id) => document.getElementById(id);
const HISTORY_PAGE = 50;

const state = {
  client: null,
  me: null,
  rooms: new Map(), // room id -> rooms line (with a live `unread`)
  current: null, // room id shown
  oldest: null, // seq of the oldest event shown
  names: new Map(), // user id -> display name (contacts, self)
  typing: new Map(), // user id -> timer, for the room shown
  online: new Set(), // members of the room shown with a live session
  lastTyping: 0,
};

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (cls || "");
}

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/ws`;
}

// --- people ---------------------------------------------------------------------------------

function companyOf(user) {
  return user.split("@")[1] || "";
}

function displayName(user) {
  return state.names.get(user) || user.split("@")[0];
}

/** A name, with a badge naming the company for people of another company than mine. */
function person(user) {
  const span = document.createElement("span");
  span.className = "person";
  span.textContent = displayName(user);
  span.title = user;
  if (state.me && companyOf(user) !== state.me.company && !user.startsWith("#")) {
    const badge = document.createElement("span");
    badge.className = "company";
    badge.textContent = companyOf(user);
    span.append(" ", badge);
  }
  return span;
}

// --- connection -----------------------------------------------------------------------------

function signIn(token) {
  $("signin-error").textContent = "";
  if (state.client) state.client.close();
  const client = new Client({ url: wsUrl(), token });
  state.client = client;
  client.addEventListener("state", (e) => onState(e.detail));
  client.addEventListener("hello", (e) => started(e.detail, token));
  client.addEventListener("event", (e) => onEvent(e.detail));
  client.addEventListener("reset", (e) => {
    if (e.detail.room === state.current) openRoom(e.detail.room);
  });
  client.addEventListener("joined", (e) => {
    state.rooms.set(e.detail.room.id, e.detail.room);
    follow(e.detail.room);
    renderRooms();
  });
  client.addEventListener("removed", (e) =>
    dropRoom(e.detail.room, `you were removed from this room (${e.detail.reason}); nothing more of it reaches you`));
  client.addEventListener("room_deleted", (e) => dropRoom(e.detail.room, "this group was deleted, with everything in it"));
  client.addEventListener("typing", (e) => onTyping(e.detail));
  client.addEventListener("presence", (e) => onPresence(e.detail));
  client.connect().catch((e) => {
    $("signin-error").textContent = e.serverMessage || e.message;
    $("signin").hidden = false;
    $("app").hidden = true;
    sessionStorage.removeItem("crossroom.token");
  });
}

let countdown = null;
function onState(s) {
  clearInterval(countdown);
  switch (s.state) {
    case "connecting":
      setStatus(s.attempt ? "reconnecting…" : "connecting…", "");
      break;
    case "open":
      setStatus("connected", "good");
      enableComposer(true);
      break;
    case "waiting": {
      enableComposer(false);
      const until = Date.now() + s.retryIn;
      const why = s.code === 1001 ? "server restarting" : `connection lost (${s.code})`;
      const show = () => setStatus(`${why} · reconnecting in ${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s`, "bad");
      show();
      countdown = setInterval(show, 500);
      if (!state.me && s.code === 1006) explainRefusal();
      break;
    }
    case "closed":
      enableComposer(false);
      setStatus(s.code === 1000 ? "signed out" : `disconnected (${s.code}${s.reason ? ": " + s.reason : ""})`, "bad");
      break;
  }
}

/** A socket that never opened may have been refused for its origin: ask the server why. */
async function explainRefusal() {
  try {
    const r = await fetch("/v1/origin", { method: "POST" });
    const v = await r.json();
    if (!v.admitted) {
      $("signin").hidden = false;
      $("signin-error").textContent = v.message;
    }
  } catch (e) {
    // The server is not there: the status line says so.
  }
}

async function started(hello, token) {
  const first = !state.me;
  state.me = hello.user;
  state.names.set(hello.user.id, hello.user.name);
  sessionStorage.setItem("crossroom.token", token);
  $("me").replaceChildren(document.createTextNode(`${hello.user.name} · ${hello.user.company}`));
  $("signin").hidden = true;
  $("app").hidden = false;
  if (!first) return; // a reconnect: the client resumed every room itself
  try {
    const contacts = await state.client.request({ type: "list_contacts" });
    for (const c of contacts.contacts) state.names.set(c.id, c.name);
  } catch (e) {
    // Names are a nicety: ids still show.
  }
  const r = await state.client.request({ type: "list_rooms" });
  state.rooms.clear();
  for (const room of r.rooms) {
    state.rooms.set(room.id, room);
    follow(room);
  }
  renderRooms();
}

/** Follow a room I am a member of (live events, for the unread badge); managed-only groups
 * are not readable. */
function follow(room) {
  if (room.role === "master_only") return;
  state.client.subscribe(room.id).catch(() => {});
}

function enableComposer(on) {
  const open = on && state.current && state.client && state.client.state === "open";
  $("compose").disabled = !open;
  $("send").disabled = !open;
}

// --- room list ------------------------------------------------------------------------------

function renderRooms() {
  const lists = { rooms: $("rooms"), managed: $("managed") };
  lists.rooms.replaceChildren();
  lists.managed.replaceChildren();
  const sorted = Array.from(state.rooms.values()).sort((a, b) => (a.name || "").localeCompare(b.name || ""));
  for (const room of sorted) {
    const managed = room.role === "master_only";
    const li = document.createElement("li");
    li.dataset.room = room.id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = room.name || room.id;
    li.appendChild(name);
    if (room.kind === "group") li.classList.add("group");
    if (room.id === state.current) li.classList.add("active");
    if (!managed && room.unread > 0 && room.id !== state.current) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = room.unread > 99 ? "99+" : String(room.unread);
      li.appendChild(badge);
    }
    li.onclick = managed
      ? () => notice(`${room.name}: you manage this group (you are a master, not a member), so its messages are not shown here`)
      : () => openRoom(room.id);
    (managed ? lists.managed : lists.rooms).appendChild(li);
  }
  $("managed-title").hidden = lists.managed.childElementCount === 0;
}

function notice(text) {
  const n = $("notice");
  n.textContent = text;
  n.hidden = !text;
}

function dropRoom(id, why) {
  const room = state.rooms.get(id);
  state.rooms.delete(id);
  renderRooms();
  if (state.current === id) {
    state.current = null;
    $("room-name").textContent = room ? room.name : "Pick a room";
    clearMessages();
    for (const l of ["members", "notes", "tasks"]) $(l).replaceChildren();
    enableComposer(false);
  }
  notice(`${room ? room.name : id}: ${why}`);
}

// --- the room shown -------------------------------------------------------------------------

function clearMessages() {
  const box = $("messages");
  for (const el of Array.from(box.children)) if (el.id !== "older") el.remove();
  $("older").hidden = true;
  $("typing").textContent = "";
  state.oldest = null;
}

async function openRoom(id) {
  state.current = id;
  document.body.classList.remove("show-rooms");
  const room = state.rooms.get(id);
  if (room) room.unread = 0;
  renderRooms();
  notice("");
  $("post-error").textContent = "";
  $("room-name").textContent = room?.name || id;
  clearMessages();
  state.typing.clear();
  state.online.clear();
  enableComposer(true);
  try {
    // Live events already flow (the client follows the room); resubscribing with presence
    // adds who is online. Then the page of history before them.
    await state.client.subscribe(id, { presence: true });
    const info = await state.client.request({ type: "get_room", room: id });
    if (state.current !== id) return;
    renderMembers(info.room);
    const pos = state.client.position(id);
    const hist = await state.client.history(id, { before: pos ? pos.seq + 1 : undefined, limit: HISTORY_PAGE });
    if (state.current !== id) return;
    for (const e of hist.events) showEvent(e, "older");
    $("older").hidden = !hist.has_more;
    scrollToEnd();
    $("compose").focus();
    refreshItems(id, info.room.features);
    markRead(id);
  } catch (e) {
    $("post-error").textContent = e.serverMessage || e.message;
  }
}

async function loadOlder() {
  const id = state.current;
  if (!id || state.oldest === null) return;
  const box = $("messages");
  const before = box.scrollHeight;
  const hist = await state.client.history(id, { before: state.oldest, limit: HISTORY_PAGE });
  if (state.current !== id) return;
  for (const e of hist.events.slice().reverse()) showEvent(e, "top");
  $("older").hidden = !hist.has_more;
  box.scrollTop += box.scrollHeight - before; // keep the reader where they were
}

function markRead(id) {
  const pos = state.client.position(id);
  if (pos && pos.seq > 0) state.client.markRead(id, pos.seq).catch(() => {});
}

function renderMembers(room) {
  // The room names its people (display name, company): authors show by name from here on.
  for (const [id, p] of Object.entries(room.people || {})) state.names.set(id, p.name);
  for (const el of document.querySelectorAll("#messages .person")) {
    const id = el.title;
    if (state.names.has(id)) el.firstChild.textContent = state.names.get(id);
  }
  const ul = $("members");
  ul.replaceChildren();
  const masters = new Set(room.masters || []);
  const all = [...new Set([...(room.members || []), ...(room.masters || [])])];
  for (const u of all) {
    const li = document.createElement("li");
    li.dataset.user = u;
    const dot = document.createElement("span");
    dot.className = "presence" + (state.online.has(u) ? " online" : "");
    dot.title = state.online.has(u) ? "online" : "offline";
    li.append(dot, person(u));
    if (masters.has(u)) {
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = (room.members || []).includes(u) ? "master" : "master (not a member)";
      li.append(" ", role);
    }
    ul.appendChild(li);
  }
}

function onPresence(p) {
  if (p.room !== state.current) return;
  if (p.snapshot) state.online = new Set(p.online);
  else {
    for (const u of p.online) state.online.add(u);
    for (const u of p.offline) state.online.delete(u);
  }
  for (const li of $("members").children) {
    const dot = li.querySelector(".presence");
    const on = state.online.has(li.dataset.user);
    dot.className = "presence" + (on ? " online" : "");
    dot.title = on ? "online" : "offline";
  }
}

function onTyping(t) {
  if (t.room !== state.current || t.user === state.me.id) return;
  clearTimeout(state.typing.get(t.user));
  state.typing.set(t.user, setTimeout(() => {
    state.typing.delete(t.user);
    renderTyping();
  }, TYPING_MS));
  renderTyping();
}

function renderTyping() {
  const who = Array.from(state.typing.keys()).map(displayName);
  $("typing").textContent = who.length === 0 ? "" : `${who.join(", ")} ${who.length === 1 ? "is" : "are"} typing…`;
}

function onEvent(e) {
  const room = state.rooms.get(e.room);
  if (room) room.head = e.seq;
  if (e.room === state.current) {
    const atEnd = nearEnd();
    showEvent(e, "live");
    if (atEnd) scrollToEnd();
    if (e.body.kind === "message") {
      state.typing.delete(e.author);
      renderTyping();
      if (document.visibilityState === "visible") markRead(e.room);
    }
  } else if (room && e.body.kind === "message" && e.author !== state.me.id) {
    room.unread = (room.unread || 0) + 1;
    renderRooms();
  }
}

function nearEnd() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function describe(e) {
  const b = e.body;
  const who = (u) => displayName(u);
  switch (b.kind) {
    case "created": return `${who(e.author)} created “${b.name}”`;
    case "members_added": return `${who(e.author)} added ${b.users.map(who).join(", ")}`;
    case "member_removed": return `${who(b.user)} is no longer a member (${b.reason})`;
    case "masters_added": return `${b.users.map(who).join(", ")} became master`;
    case "master_removed": return `${who(b.user)} is no longer a master`;
    case "group_updated": return `${who(e.author)} changed the group's ${Object.keys(b).filter((k) => k !== "kind" && b[k] !== null).join(", ")}`;
    case "converted": return `${who(e.author)} turned this room into an external group “${b.name}”`;
    case "notice": return b.text;
    default: return `${who(e.author)}: ${b.kind.replaceAll("_", " ")}`;
  }
}

/** Show an event: "live" and "older" (a first page, in order) at the bottom, "top" above. */
function showEvent(e, where) {
  const box = $("messages");
  if (box.querySelector(`[data-seq="${e.seq}"]`)) return;
  const div = document.createElement("div");
  div.dataset.seq = e.seq;
  if (e.body.kind === "message") {
    div.className = "msg" + (state.me && e.author === state.me.id ? " mine" : "");
    const head = document.createElement("div");
    head.className = "head";
    const who = person(e.author);
    who.classList.add("author");
    const when = document.createElement("time");
    when.dateTime = new Date(e.ts).toISOString();
    when.textContent = new Date(e.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    head.append(who, when);
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = e.body.recalled ? "(recalled)" : e.body.text;
    div.append(head, text);
    for (const a of e.body.attachments || []) {
      const f = document.createElement("div");
      f.className = "attachment";
      f.textContent = `📎 ${a.name} (${Math.ceil(a.size / 1024)} KiB)`;
      div.appendChild(f);
    }
  } else {
    div.className = "event";
    div.textContent = describe(e);
  }
  if (state.oldest === null || e.seq < state.oldest) state.oldest = e.seq;
  const older = $("older");
  if (where === "top") older.after(div);
  else box.appendChild(div);
  if (/^(note|task)_/.test(e.body.kind)) refreshItems(e.room);
  if (where === "live" && /^(members_added|member_removed|masters_added|master_removed)$/.test(e.body.kind)) {
    state.client.request({ type: "get_room", room: e.room }).then((r) => renderMembers(r.room)).catch(() => {});
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
    state.client.request({ type: "query", room, query: { q: "notes" } })
      .then((r) => fill("notes", r.result.notes, (n) => (n.fields.pinned ? "📌 " : "") + n.fields.title))
      .catch(() => fill("notes", [], () => ""));
  }
  if (!features || features.task) {
    state.client.request({ type: "query", room, query: { q: "tasks" } })
      .then((r) => fill("tasks", r.result.tasks, (t) => (t.done ? "✔ " : "☐ ") + t.fields.title))
      .catch(() => fill("tasks", [], () => ""));
  }
}

async function send() {
  const input = $("compose");
  const text = input.value.trim();
  if (!text || !state.current) return;
  $("post-error").textContent = "";
  input.value = "";
  try {
    // Retried by the client (same client_msg_id) if the connection drops before `posted`.
    await state.client.post(state.current, text);
  } catch (e) {
    if (!input.value) input.value = text;
    $("post-error").textContent = e.serverMessage || e.message;
  }
}

window.addEventListener("DOMContentLoaded", () => {
  $("signin-button").onclick = () => signIn($("token").value.trim());
  $("send").onclick = send;
  $("older").onclick = loadOlder;
  $("toggle-rooms").onclick = () => document.body.classList.toggle("show-rooms");
  $("toggle-details").onclick = () => document.body.classList.toggle("show-details");
  $("compose").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $("compose").addEventListener("input", () => {
    // Tell the room at most every 3 s.
    const now = Date.now();
    if (state.current && now - state.lastTyping > 3000) {
      state.lastTyping = now;
      state.client.typing(state.current);
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.current) markRead(state.current);
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

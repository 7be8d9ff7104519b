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
  info: null, // the room shown, as get_room answered
  pendingFiles: [], // attachments uploaded for the next post
  folder: null, // the folder shown in the files panel ({id, name, parent}); null: the root
  invite: null, // an invitation token from the link this page was opened with
  window: false, // the room shown is an older stretch (opened at a search result), not its end
  search: null, // the search shown: {query, next}
};

/** An element: `h("li", {class: "x", onclick}, "text", child…)`. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

function isMaster() {
  return !!(state.info && state.me && (state.info.masters || []).includes(state.me.id));
}

function act(action) {
  return state.client.request({ type: "act", room: state.current, action });
}

function query(q) {
  return state.client.request({ type: "query", room: state.current, query: q }).then((r) => r.result);
}

function fail(e) {
  $("post-error").textContent = e.serverMessage || e.message;
}

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
  if (state.invite) joinByInvite(state.invite);
}

/** Opened from an invitation link (`/#invite=TOKEN`): join, then show the group. */
async function joinByInvite(token) {
  state.invite = null;
  try {
    const c = await state.client.request({ type: "join_by_invite", token });
    notice("You joined the group through its invitation link.");
    await waitFor(() => state.rooms.has(c.room));
    openRoom(c.room);
  } catch (e) {
    notice(`This invitation link did not work: ${e.serverMessage || e.message}`);
  }
}

function waitFor(check, ms = 5000) {
  return new Promise((resolve) => {
    const end = Date.now() + ms;
    const poll = () => (check() || Date.now() > end ? resolve() : setTimeout(poll, 50));
    poll();
  });
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

async function openRoom(id, at) {
  state.current = id;
  state.window = false;
  $("newest").hidden = true;
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
  state.folder = null;
  enableComposer(true);
  try {
    // Live events already flow (the client follows the room); resubscribing with presence
    // adds who is online. Then the page of history before them.
    await state.client.subscribe(id, { presence: true });
    const info = await state.client.request({ type: "get_room", room: id });
    if (state.current !== id) return;
    state.info = info.room;
    renderMembers(info.room);
    renderGroupPanel();
    const pos = state.client.position(id);
    const end = pos ? pos.seq + 1 : undefined;
    // Opened at a search result: the page around it (the newest entries only when it is one of them).
    const around = at && end !== undefined && end - at > HISTORY_PAGE / 2 ? at + HISTORY_PAGE / 2 : end;
    const hist = await state.client.history(id, { before: around, limit: HISTORY_PAGE });
    if (state.current !== id) return;
    for (const e of hist.events) showEvent(e, "older");
    $("older").hidden = !hist.has_more;
    state.window = around !== end;
    $("newest").hidden = !state.window;
    const found = at && $("messages").querySelector(`[data-seq="${at}"]`);
    if (found) {
      found.classList.add("found");
      found.scrollIntoView({ block: "center" });
    } else scrollToEnd();
    $("compose").focus();
    refreshItems(id, info.room.features);
    refreshCalendar();
    refreshFiles();
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
    if (room.kind === "group" && isMaster() && u !== state.me.id) {
      if (!masters.has(u)) {
        li.append(h("button", { type: "button", class: "small", title: "make master",
          onclick: () => state.client.request({ type: "add_masters", room: room.id, users: [u] }).catch(fail) }, "★"));
      }
      li.append(h("button", { type: "button", class: "small remove", title: "remove from the group",
        onclick: () => state.client.request({ type: "remove_member", room: room.id, user: u }).catch(fail) }, "✕"));
    }
    ul.appendChild(li);
  }
  // Assignees and the add-member suggestions come from the people we know.
  const sel = $("task-assignees");
  sel.replaceChildren(...(room.members || []).map((u) => h("option", { value: u, selected: u === state.me.id }, displayName(u))));
  $("known-people").replaceChildren(...Array.from(state.names.keys()).map((u) => h("option", { value: u }, displayName(u))));
  $("add-member").hidden = !(room.kind === "group" && isMaster());
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
  // A rename (by a master or the owner's admin) shows in the list at once, open or not.
  if (room && e.body.kind === "group_updated" && e.body.name) {
    room.name = e.body.name;
    if (e.room === state.current) $("room-name").textContent = e.body.name;
    renderRooms();
  }
  if (e.room === state.current && state.window) {
    // An older stretch is shown: the newest come with "Jump to the newest messages".
    if (room && e.body.kind === "message" && e.author !== state.me.id) room.unread = (room.unread || 0) + 1;
  } else if (e.room === state.current) {
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
    case "members_added":
      return b.users.length === 1 && b.users[0] === e.author
        ? `${who(e.author)} joined through the invitation link`
        : `${who(e.author)} added ${b.users.map(who).join(", ")}`;
    case "member_removed": return `${who(b.user)} is no longer a member (${b.reason})`;
    case "masters_added": return `${b.users.map(who).join(", ")} became master`;
    case "master_removed": return `${who(b.user)} is no longer a master`;
    case "group_updated": return `${who(e.author)} changed the group's ${Object.keys(b).filter((k) => k !== "kind" && b[k] !== null).join(", ")}`;
    case "converted": return `${who(e.author)} turned this room into an external group “${b.name}”`;
    case "notice": return b.text;
    default: {
      const done = {
        note_posted: "posted a note", note_edited: "edited a note", note_deleted: "deleted a note",
        note_commented: "commented on a note", comment_deleted: "deleted a comment", note_liked: "liked a note",
        calendar_event_created: "added an event to the calendar", calendar_event_updated: "changed an event",
        calendar_event_deleted: "deleted an event", task_created: "created a task", task_updated: "changed a task",
        task_completed: "completed a task", task_reopened: "reopened a task", task_deleted: "deleted a task",
        folder_created: "made a folder", folder_updated: "renamed a folder", file_added: `added ${b.name ? `“${b.name}”` : "a file"} to the folder`,
        item_trashed: "moved something to the trash", item_restored: "restored something from the trash",
        item_purged: "deleted something for good", message_recalled: "recalled a message",
      }[b.kind];
      return `${who(e.author)} ${done || b.kind.replaceAll("_", " ")}`;
    }
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
    for (const a of e.body.attachments || []) div.appendChild(attachment(e.room, a));
    if (state.me && e.author === state.me.id && !e.body.recalled) {
      const receipts = h("button", { type: "button", class: "small receipts" }, "seen by…");
      receipts.onclick = () => showReceipts(e, receipts);
      head.appendChild(receipts);
    }
  } else {
    div.className = "event";
    div.textContent = describe(e);
  }
  if (state.oldest === null || e.seq < state.oldest) state.oldest = e.seq;
  const older = $("older");
  if (where === "top") older.after(div);
  else box.appendChild(div);
  if (where === "live") {
    if (/^(note|task|comment)_/.test(e.body.kind)) refreshItems(e.room);
    if (/^calendar_event_/.test(e.body.kind)) refreshCalendar();
    if (/^(folder_|file_added|item_)/.test(e.body.kind)) refreshFiles();
    if (/^(group_updated|members_added|member_removed|masters_added|master_removed)$/.test(e.body.kind)) {
      refreshRoomSoon(e.room);
    }
  }
}

/** Ask for the room again after a change to it — once for a burst of changes, and after a
 * random pause, so that the pages of a large room do not all ask in the same instant. */
let roomRefresh = null;
function refreshRoomSoon(room) {
  if (roomRefresh) return;
  roomRefresh = setTimeout(() => {
    roomRefresh = null;
    if (room !== state.current) return;
    state.client.request({ type: "get_room", room }).then((r) => {
      if (room !== state.current) return;
      state.info = r.room;
      renderMembers(r.room);
      renderGroupPanel();
      refreshItems(room);
    }).catch(() => {});
  }, 200 + Math.random() * 800);
}

async function refreshItems(room, features) {
  if (room !== state.current) return;
  features = features || (state.info && state.info.features) || {};
  if (features.note !== false) {
    query({ q: "notes" }).then((r) => renderNotes(r.notes)).catch(() => $("notes").replaceChildren());
  }
  if (features.task !== false) {
    query({ q: "tasks" }).then((r) => renderTasks(r.tasks)).catch(() => $("tasks").replaceChildren());
  }
}

function renderNotes(notes) {
  $("notes").replaceChildren(...notes.map((n) => {
    const mine = n.author === state.me.id;
    const liked = (n.likes || []).includes(state.me.id);
    const comment = h("input", { placeholder: "Comment", maxlength: "10000" });
    return h("li", { class: "item note", "data-note": String(n.id) },
      h("div", { class: "item-title" }, n.fields.pinned ? "📌 " : "", n.fields.title),
      h("div", { class: "item-body" }, n.fields.body),
      h("div", { class: "hint" }, person(n.author), ` · ${(n.likes || []).length} like(s) · read by ${(n.readers || []).length}`),
      h("div", { class: "row" },
        h("button", { type: "button", class: "small like", onclick: () => act({ op: "like_note", note: n.id, like: !liked }).catch(fail) }, liked ? "♥ Unlike" : "♡ Like"),
        h("button", { type: "button", class: "small", onclick: () => act({ op: "edit_note", note: n.id, pinned: !n.fields.pinned }).catch(fail) }, n.fields.pinned ? "Unpin" : "Pin"),
        mine || n.fields.others_may_edit ? h("button", { type: "button", class: "small edit", onclick: () => {
          const title = prompt("Title", n.fields.title);
          if (title === null) return;
          const body = prompt("Note", n.fields.body);
          if (body === null) return;
          act({ op: "edit_note", note: n.id, title, body }).catch(fail);
        } }, "Edit") : null,
        mine || isMaster() ? h("button", { type: "button", class: "small remove", onclick: () => act({ op: "delete_note", note: n.id }).catch(fail) }, "Delete") : null),
      h("ul", { class: "comments" }, ...(n.comments || []).map((c) => h("li", {}, person(c.author), ": ", c.text))),
      h("form", { class: "row", onsubmit: (e) => {
        e.preventDefault();
        if (comment.value.trim()) act({ op: "comment_note", note: n.id, text: comment.value.trim() }).then(() => (comment.value = "")).catch(fail);
      } }, comment, h("button", { type: "submit", class: "small" }, "Comment")));
  }));
}

function renderTasks(tasks) {
  $("tasks").replaceChildren(...tasks.map((t) => {
    const assignee = t.fields.assignees.includes(state.me.id);
    const myPart = t.status && t.status[state.me.id];
    return h("li", { class: "item task" + (t.done ? " done" : ""), "data-task": String(t.id) },
      h("label", {},
        h("input", { type: "checkbox", checked: assignee ? !!myPart : t.done, disabled: !assignee,
          onchange: (e) => act({ op: e.target.checked ? "complete_task" : "reopen_task", task: t.id }).catch(fail) }),
        " ", t.done ? "✔ " : "☐ ", t.fields.title),
      h("div", { class: "hint" }, "for ", ...t.fields.assignees.flatMap((u, i) => (i ? [", ", person(u)] : [person(u)])), ` · by `, person(t.assigner)));
  }));
}

/** The calendar panel: a month grid (the default) or the list of the next 60 days. */
async function refreshCalendar() {
  if (!state.current || (state.info && state.info.features.event === false)) return;
  const view = state.calendarView || "month";
  const month = state.calendarMonth || new Date(new Date().getFullYear(), new Date().getMonth(), 1);
  const [from, to] = view === "month"
    ? [month.getTime(), new Date(month.getFullYear(), month.getMonth() + 1, 1).getTime()]
    : [Date.now() - 86400000, Date.now() + 60 * 86400000];
  $("calendar-month").textContent = view === "month" ? month.toLocaleDateString([], { month: "long", year: "numeric" }) : "the next 60 days";
  try {
    const r = await query({ q: "calendar", from, to });
    const events = new Map(r.events.map((e) => [e.id, e]));
    const title = (o) => (events.get(o.event)?.fields.title) || "No title";
    if (view === "month") {
      $("calendar").replaceChildren();
      const grid = h("div", { class: "month" }, ...["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].map((d) => h("div", { class: "dow" }, d)));
      const lead = (month.getDay() + 6) % 7; // Monday first
      for (let i = 0; i < lead; i++) grid.append(h("div", { class: "day empty" }));
      const days = new Date(month.getFullYear(), month.getMonth() + 1, 0).getDate();
      for (let d = 1; d <= days; d++) {
        const start = new Date(month.getFullYear(), month.getMonth(), d).getTime();
        const end = start + 86400000;
        const here = r.occurrences.filter((o) => o.start < end && o.end > start);
        grid.append(h("div", { class: "day" + (here.length ? " busy" : ""), "data-day": String(d) },
          h("span", { class: "num" }, String(d)),
          ...here.map((o) => h("span", { class: "occ", "data-event": String(o.event), title: new Date(o.start).toLocaleString() }, title(o)))));
      }
      $("calendar").append(h("li", { class: "grid" }, grid));
      return;
    }
    $("calendar").replaceChildren(...r.occurrences.map((o) => {
      const e = events.get(o.event);
      const f = e ? e.fields : {};
      const when = f.all_day ? new Date(o.start).toLocaleDateString() : new Date(o.start).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      return h("li", { class: "item event-item", "data-event": String(o.event) },
        h("div", { class: "item-title" }, f.title || "No title"),
        h("div", { class: "hint" }, when, f.recurrence ? ` · repeats ${f.recurrence.freq}` : "", f.location ? ` · ${f.location}` : ""));
    }));
  } catch (e) {
    $("calendar").replaceChildren();
  }
}

async function refreshFiles() {
  if (!state.current || (state.info && state.info.features.folder === false)) return;
  const room = state.current;
  try {
    const here = state.folder ? { q: "folder", folder: state.folder.id } : { q: "folder" };
    const [live, trash] = await Promise.all([query(here), query({ q: "folder", trash: true })]);
    if (room !== state.current) return;
    const open = (f) => { state.folder = f; refreshFiles(); };
    const line = (it, trashed) => h("li", { class: "item file", "data-item": String(it.id) },
      it.item === "folder"
        ? (trashed ? `📁 ${it.name}` : h("a", { href: "#", class: "folder", onclick: (e) => { e.preventDefault(); open({ id: it.id, name: it.name, parent: state.folder }); } }, `📁 ${it.name}`))
        : h("a", { href: "#", onclick: (e) => { e.preventDefault(); save(room, it); } }, `📄 ${it.name}`),
      it.item === "file" ? h("span", { class: "hint" }, ` ${kib(it.size)}`) : null,
      h("button", { type: "button", class: "small", onclick: () => act(trashed ? { op: "restore", item: it.id } : { op: "trash", item: it.id }).catch(fail) }, trashed ? "Restore" : "Trash"));
    const path = [];
    for (let f = state.folder; f; f = f.parent) path.unshift(f);
    $("folder-path").replaceChildren(
      h("a", { href: "#", onclick: (e) => { e.preventDefault(); open(null); } }, "Folder"),
      ...path.flatMap((f) => [" / ", h("a", { href: "#", onclick: (e) => { e.preventDefault(); open(f); } }, f.name)]));
    $("files").replaceChildren(...live.items.map((it) => line(it, false)));
    $("trash").replaceChildren(...trash.items.map((it) => line(it, true)));
  } catch (e) {
    $("files").replaceChildren();
  }
}

function kib(bytes) {
  return bytes < 1024 ? `${bytes} B` : bytes < 1048576 ? `${Math.ceil(bytes / 1024)} KiB` : `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Download a file of the room (with the token, so not a plain link) and hand it to the browser. */
async function save(room, f) {
  try {
    const blob = await state.client.download(room, f.file);
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: f.name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    fail(e);
  }
}

function renderGroupPanel() {
  const info = state.info;
  const manage = !!info && info.kind === "group" && isMaster();
  $("tab-group").hidden = !manage;
  if (!manage) return;
  const sw = $("switches");
  sw.replaceChildren(...Object.entries(info.features).map(([k, v]) =>
    h("label", { class: "switch" }, h("input", { type: "checkbox", checked: v, "data-switch": k,
      onchange: (e) => state.client.request({ type: "update_group", room: info.id, features: { [k]: e.target.checked } }).catch(fail) }), ` ${k.replace("_", " ")}`)));
  state.client.request({ type: "get_invite", room: info.id })
    .then((r) => ($("invite-link").value = r.token ? pageLink(r.token) : ""))
    .catch(() => {});
}

/** The link people open in a browser: this page, which joins them. */
function pageLink(token) {
  return `${location.origin}/#invite=${token}`;
}

/** Show an attachment: images as a thumbnail (fetched with the token), others as a link. */
function attachment(room, a) {
  const box = h("div", { class: "attachment" });
  const link = h("a", { href: "#", onclick: (e) => { e.preventDefault(); save(room, a); } }, `📎 ${a.name}`);
  box.append(link, h("span", { class: "hint" }, ` ${kib(a.size)}`));
  if (/^image\/(png|jpeg|gif|webp)$/.test(a.content_type)) {
    state.client.download(room, a.file).then((blob) => {
      const img = h("img", { class: "thumb", alt: a.name, src: URL.createObjectURL(blob) });
      img.onclick = () => save(room, a);
      box.prepend(img);
    }).catch(() => {});
  }
  return box;
}

/** Receipts of my own message, asked when I look (M2). */
async function showReceipts(e, button) {
  try {
    const r = await query({ q: "receipts", message: e.seq });
    const readers = r.readers ? `: ${r.readers.map(displayName).join(", ")}` : "";
    button.textContent = `read by ${r.read_count}${readers}`;
  } catch (err) {
    fail(err);
  }
}

async function attachFiles(files) {
  const room = state.current;
  for (const f of files) {
    const row = h("li", {}, `📎 ${f.name} `, h("progress", { max: "1", value: "0" }));
    $("pending").appendChild(row);
    try {
      const up = await state.client.upload(room, f, {
        onProgress: (sent, total) => (row.querySelector("progress").value = total ? sent / total : 0),
      });
      row.replaceChildren(`📎 ${f.name} · ready to post`);
      state.pendingFiles.push({ id: up.file, row });
    } catch (e) {
      row.replaceChildren(`📎 ${f.name}: ${e.serverMessage || e.message}`);
      row.classList.add("error");
    }
  }
}

async function createGroup(e) {
  e.preventDefault();
  $("create-error").textContent = "";
  const members = Array.from(document.querySelectorAll("#create-people input:checked")).map((i) => i.value);
  try {
    const r = await state.client.request({
      type: "create_group", name: $("create-name").value.trim(), members,
      add_self_as_member: $("create-self").checked,
    });
    $("create").hidden = true;
    $("create-name").value = "";
    if (r.left_out && r.left_out.length) {
      notice(`Left out: ${r.left_out.map((l) => `${displayName(l.user)} (${l.reason.replaceAll("_", " ")})`).join(", ")}`);
    }
    await waitFor(() => state.rooms.has(r.room.id));
    if ($("create-self").checked) openRoom(r.room.id);
  } catch (err) {
    $("create-error").textContent = err.serverMessage || err.message;
  }
}

async function showCreate() {
  const form = $("create");
  form.hidden = !form.hidden;
  if (form.hidden) return;
  try {
    const c = await state.client.request({ type: "list_contacts" });
    for (const p of c.contacts) state.names.set(p.id, p.name);
    $("create-people").replaceChildren(...c.contacts.map((p) =>
      h("label", { class: "switch" }, h("input", { type: "checkbox", value: p.id }), " ", person(p.id))));
    if (!c.contacts.length) $("create-people").append(h("p", { class: "hint" }, "No contacts yet: your admin adds them, or add colleagues later."));
  } catch (err) {
    $("create-error").textContent = err.serverMessage || err.message;
  }
}

function showTab(name) {
  for (const b of document.querySelectorAll("#details .tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll("#details [data-panel]")) p.hidden = p.dataset.panel !== name;
}

function wirePanels() {
  for (const b of document.querySelectorAll("#details .tabs button")) b.onclick = () => showTab(b.dataset.tab);
  $("new-group").onclick = showCreate;
  $("create").onsubmit = createGroup;
  $("attach").onchange = (e) => {
    attachFiles(Array.from(e.target.files));
    e.target.value = "";
  };
  $("new-note").onsubmit = (e) => {
    e.preventDefault();
    act({ op: "post_note", title: $("note-title").value.trim(), body: $("note-body").value, pinned: $("note-pinned").checked })
      .then(() => { $("note-title").value = ""; $("note-body").value = ""; })
      .catch(fail);
  };
  $("new-task").onsubmit = (e) => {
    e.preventDefault();
    const assignees = Array.from($("task-assignees").selectedOptions).map((o) => o.value);
    act({ op: "create_task", title: $("task-title").value.trim(), assignees: assignees.length ? assignees : [state.me.id], completion: "all" })
      .then(() => ($("task-title").value = ""))
      .catch(fail);
  };
  $("new-event").onsubmit = (e) => {
    e.preventDefault();
    const start = new Date($("event-start").value).getTime();
    const minutes = Number($("event-minutes").value) || 60;
    const freq = $("event-repeat").value;
    const action = { op: "create_calendar_event", title: $("event-title").value.trim() || undefined, start, end: start + minutes * 60000,
      time_zone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" };
    if (freq) action.recurrence = { freq, interval: 1 };
    act(action).then(() => ($("event-title").value = "")).catch(fail);
  };
  $("folder-upload").onchange = async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    const bar = $("folder-progress");
    bar.hidden = false;
    try {
      const folder = state.folder ? state.folder.id : null;
      await state.client.upload(state.current, f, { folder, onProgress: (s, t) => (bar.value = t ? s / t : 0) });
    } catch (err) {
      fail(err);
    }
    bar.hidden = true;
    e.target.value = "";
  };
  const moveMonth = (by) => {
    const m = state.calendarMonth || new Date(new Date().getFullYear(), new Date().getMonth(), 1);
    state.calendarMonth = new Date(m.getFullYear(), m.getMonth() + by, 1);
    state.calendarView = "month";
    refreshCalendar();
  };
  $("calendar-prev").onclick = () => moveMonth(-1);
  $("calendar-next").onclick = () => moveMonth(1);
  $("calendar-list").onclick = () => {
    state.calendarView = state.calendarView === "list" ? "month" : "list";
    $("calendar-list").textContent = state.calendarView === "list" ? "Month" : "List";
    refreshCalendar();
  };
  $("new-folder").onsubmit = (e) => {
    e.preventDefault();
    const action = { op: "create_folder", name: $("folder-name").value.trim(), notify_on_new_file: $("folder-notify").checked };
    if (state.folder) action.parent = state.folder.id;
    act(action).then(() => ($("folder-name").value = "")).catch(fail);
  };
  $("add-member").onsubmit = (e) => {
    e.preventDefault();
    const user = $("add-member-id").value.trim();
    state.client.request({ type: "add_members", room: state.current, users: [user] })
      .then((c) => {
        $("add-member-result").textContent = c.left_out && c.left_out.length
          ? `left out: ${c.left_out.map((l) => `${displayName(l.user)} (${l.reason.replaceAll("_", " ")})`).join(", ")}`
          : `${displayName(user)} added`;
        $("add-member-id").value = "";
      })
      .catch((err) => ($("add-member-result").textContent = err.serverMessage || err.message));
  };
  $("make-invite").onclick = () => state.client.request({ type: "create_invite", room: state.current })
    .then((r) => { $("invite-link").value = pageLink(r.token); $("invite-link").select(); })
    .catch(fail);
  $("send-invites").onclick = () => {
    const emails = $("invite-emails").value.split(",").map((x) => x.trim()).filter(Boolean);
    state.client.request({ type: "send_invites", room: state.current, emails })
      .then(() => ($("invite-result").textContent = `sent to ${emails.length} address(es)`))
      .catch((err) => ($("invite-result").textContent = err.serverMessage || err.message));
  };
  $("delete-group").onclick = () => {
    const name = state.info ? state.info.name : "this group";
    if (confirm(`Delete “${name}” with all its messages, notes, events, tasks and files, for every company? This cannot be undone.`)) {
      state.client.request({ type: "delete_group", room: state.current }).catch(fail);
    }
  };
}

async function send() {
  const input = $("compose");
  const text = input.value.trim();
  if (!text || !state.current) return;
  $("post-error").textContent = "";
  input.value = "";
  const files = state.pendingFiles.splice(0);
  try {
    // Retried by the client (same client_msg_id) if the connection drops before `posted`.
    await state.client.post(state.current, text, { attachments: files.map((f) => f.id) });
    for (const f of files) f.row.remove();
  } catch (e) {
    state.pendingFiles.unshift(...files);
    if (!input.value) input.value = text;
    $("post-error").textContent = e.serverMessage || e.message;
  }
}

/** Search messages (M6): the first page for a new query, the next page for "More results". */
async function search(more) {
  const query = more ? state.search.query : $("search").value.trim();
  $("search-error").textContent = "";
  if (!more) $("search-results").replaceChildren();
  if (!query) {
    $("search-more").hidden = true;
    return;
  }
  try {
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const r = await state.client.request({
      type: "search_messages",
      query,
      tz,
      cursor: more ? state.search.next : undefined,
      limit: 20,
    });
    state.search = { query, next: r.next };
    for (const hit of r.results) $("search-results").append(searchResult(hit));
    if (!more && r.results.length === 0) $("search-results").append(h("li", { class: "hint" }, "Nothing found"));
    $("search-more").hidden = !r.next;
  } catch (e) {
    $("search-error").textContent = e.serverMessage || e.message;
  }
}

/** One search result: where, who, when, and the snippet with its matches marked. */
function searchResult(hit) {
  const room = state.rooms.get(hit.room);
  const snippet = h("div", { class: "snippet" }, ...hit.snippet.map((p) => (p.hit ? h("mark", {}, p.text) : p.text)));
  const when = new Date(hit.ts).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  return h(
    "li",
    { class: "result", "data-room": hit.room, "data-seq": String(hit.seq) },
    h(
      "button",
      { type: "button", onclick: () => openRoom(hit.room, hit.seq) },
      h("span", { class: "where" }, room?.name || hit.room, " · ", displayName(hit.author), " · ", when),
      snippet,
    ),
  );
}

window.addEventListener("DOMContentLoaded", () => {
  wirePanels();
  $("signin-button").onclick = () => signIn($("token").value.trim());
  $("send").onclick = send;
  $("older").onclick = loadOlder;
  $("newest").onclick = () => state.current && openRoom(state.current);
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search(false);
  });
  $("search-more").onclick = () => search(true);
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
  const inv = location.hash.match(/invite=([^&]+)/);
  if (inv) {
    state.invite = decodeURIComponent(inv[1]);
    notice("Sign in to join the group this invitation link opens.");
  }
  const m = location.hash.match(/token=([^&]+)/);
  const token = m ? decodeURIComponent(m[1]) : sessionStorage.getItem("crossroom.token");
  if (m || inv) history.replaceState(null, "", location.pathname);
  if (token) {
    $("token").value = token;
    signIn(token);
  }
});

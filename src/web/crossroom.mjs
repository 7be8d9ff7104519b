// crossroom.mjs — the JavaScript client of the crossroom protocol (protocol/PROTOCOL.md), an ES
// module with no dependency and no build step. Served by the server at /assets/crossroom.mjs; the
// chat page (/) is built on it, and other web apps may import it.
//
//   import { Client } from "/assets/crossroom.mjs";
//   const c = new Client({ url: "wss://chat.example.com/v1/ws", token });
//   c.addEventListener("event", (e) => show(e.detail));       // room events, in seq order
//   await c.connect();                                         // resolves with `hello`
//   await c.subscribe(room);                                   // resumed after every reconnect
//   await c.post(room, "hello");                               // retried with its client_msg_id
//
// What it does for you: request/reply by id (an `error` rejects with a CrossroomError); both
// encodings (JSON text, MessagePack binary); the close-code reactions of PROTOCOL.md — reconnect
// at once after 1001, with backoff and jitter after 1006/1011/4000–4499, never after 1000,
// 1009 and 4500–4999; per-room positions, resumed with `since` after a reconnect (a `reset`
// tells you to reload); posts retried on the new session with the same `client_msg_id`, so
// none is lost or doubled; presence and typing.
//
// Events (EventTarget, the payload in `event.detail`): `state` ({state, code, reason, retryIn}),
// `hello`, `event`, `reset`, `typing`, `presence`, `joined`, `removed`, `room_deleted`,
// `task_notice`, `push` (every push frame, whatever its type).

/** A refusal or failure the server answered (`error` frame), or a closed connection. */
export class CrossroomError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "CrossroomError";
    this.code = code;
    this.serverMessage = message;
  }
}

/** What to do after the connection closed with `code`: "stop", "now" or "backoff". */
export function closeReaction(code) {
  if (code === 1000 || code === 1009) return "stop";
  if (code === 1001) return "now";
  if (code >= 4500 && code <= 4999) return "stop";
  return "backoff"; // 1006 (no close frame: network), 1011, 4000–4499
}

/** The delay before reconnect attempt `attempt` (0-based): `min` doubling to `max`, "full
 * jitter" (a random point of the window), so that many clients do not come back together. */
export function backoffDelay(attempt, { min = 500, max = 30000 } = {}, random = Math.random) {
  const window = Math.min(max, min * Math.pow(2, attempt));
  return Math.round(min / 2 + random() * (window - min / 2));
}

// --- MessagePack: the subset the protocol uses (maps with string keys, strings, integers,
// floats, booleans, nil, arrays, binary). ------------------------------------------------------

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

export function encodeMsgpack(value) {
  const out = [];
  const bytes = (...b) => out.push(...b);
  const be = (n, width) => {
    for (let i = width - 1; i >= 0; i--) out.push(Number((BigInt(n) >> BigInt(8 * i)) & 0xffn));
  };
  const put = (v) => {
    if (v === null || v === undefined) bytes(0xc0);
    else if (v === false) bytes(0xc2);
    else if (v === true) bytes(0xc3);
    else if (typeof v === "number" && Number.isInteger(v)) {
      if (v >= 0) {
        if (v < 0x80) bytes(v);
        else if (v < 0x100) bytes(0xcc, v);
        else if (v < 0x10000) (bytes(0xcd), be(v, 2));
        else if (v < 0x100000000) (bytes(0xce), be(v, 4));
        else (bytes(0xcf), be(v, 8));
      } else {
        if (v >= -32) bytes(v & 0xff);
        else if (v >= -128) bytes(0xd0, v & 0xff);
        else if (v >= -32768) (bytes(0xd1), be(v & 0xffff, 2));
        else if (v >= -2147483648) (bytes(0xd2), be(v >>> 0, 4));
        else (bytes(0xd3), be(BigInt.asUintN(64, BigInt(v)), 8));
      }
    } else if (typeof v === "number") {
      const b = new DataView(new ArrayBuffer(8));
      b.setFloat64(0, v);
      bytes(0xcb, ...new Uint8Array(b.buffer));
    } else if (typeof v === "string") {
      const s = utf8.encode(v);
      if (s.length < 32) bytes(0xa0 | s.length);
      else if (s.length < 0x100) bytes(0xd9, s.length);
      else if (s.length < 0x10000) (bytes(0xda), be(s.length, 2));
      else (bytes(0xdb), be(s.length, 4));
      for (const c of s) out.push(c);
    } else if (v instanceof Uint8Array) {
      if (v.length < 0x100) bytes(0xc4, v.length);
      else if (v.length < 0x10000) (bytes(0xc5), be(v.length, 2));
      else (bytes(0xc6), be(v.length, 4));
      for (const c of v) out.push(c);
    } else if (Array.isArray(v)) {
      if (v.length < 16) bytes(0x90 | v.length);
      else if (v.length < 0x10000) (bytes(0xdc), be(v.length, 2));
      else (bytes(0xdd), be(v.length, 4));
      for (const x of v) put(x);
    } else if (typeof v === "object") {
      const entries = Object.entries(v).filter(([, x]) => x !== undefined);
      if (entries.length < 16) bytes(0x80 | entries.length);
      else if (entries.length < 0x10000) (bytes(0xde), be(entries.length, 2));
      else (bytes(0xdf), be(entries.length, 4));
      for (const [k, x] of entries) (put(k), put(x));
    } else {
      throw new TypeError(`cannot encode ${typeof v} as MessagePack`);
    }
  };
  put(value);
  return new Uint8Array(out);
}

export function decodeMsgpack(input) {
  const b = input instanceof Uint8Array ? input : new Uint8Array(input);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 0;
  const need = (n) => {
    if (at + n > b.length) throw new RangeError("truncated MessagePack");
  };
  const u = (width) => {
    need(width);
    let v = 0n;
    for (let i = 0; i < width; i++) v = (v << 8n) | BigInt(b[at + i]);
    at += width;
    return Number(v);
  };
  const str = (n) => {
    need(n);
    const s = fromUtf8.decode(b.subarray(at, at + n));
    at += n;
    return s;
  };
  const bin = (n) => {
    need(n);
    const s = b.slice(at, at + n);
    at += n;
    return s;
  };
  const arr = (n) => Array.from({ length: n }, () => get());
  const map = (n) => {
    const o = {};
    for (let i = 0; i < n; i++) {
      const k = get();
      o[String(k)] = get();
    }
    return o;
  };
  const get = () => {
    need(1);
    const t = b[at++];
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return map(t & 0x0f);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f);
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(u(1));
      case 0xc5: return bin(u(2));
      case 0xc6: return bin(u(4));
      case 0xca: need(4); at += 4; return view.getFloat32(at - 4);
      case 0xcb: need(8); at += 8; return view.getFloat64(at - 8);
      case 0xcc: return u(1);
      case 0xcd: return u(2);
      case 0xce: return u(4);
      case 0xcf: return u(8);
      case 0xd0: need(1); at += 1; return view.getInt8(at - 1);
      case 0xd1: need(2); at += 2; return view.getInt16(at - 2);
      case 0xd2: need(4); at += 4; return view.getInt32(at - 4);
      case 0xd3: need(8); at += 8; return Number(view.getBigInt64(at - 8));
      case 0xd9: return str(u(1));
      case 0xda: return str(u(2));
      case 0xdb: return str(u(4));
      case 0xdc: return arr(u(2));
      case 0xdd: return arr(u(4));
      case 0xde: return map(u(2));
      case 0xdf: return map(u(4));
      default: throw new RangeError(`MessagePack type 0x${t.toString(16)} is not used by crossroom`);
    }
  };
  const v = get();
  if (at !== b.length) throw new RangeError("trailing bytes after a MessagePack value");
  return v;
}

/** An HTTP answer: its JSON on success, a CrossroomError from its error body otherwise. */
async function httpAnswer(status, textPromise) {
  const text = await textPromise;
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (e) {
    body = null;
  }
  if (status >= 200 && status < 300) return body;
  const err = body && body.error ? body.error : { code: "internal", message: `HTTP ${status}` };
  throw new CrossroomError(err.code, err.message);
}

// --- the client ----------------------------------------------------------------------------

const SUBPROTOCOL = { json: "crossroom.v1.json", msgpack: "crossroom.v1.msgpack" };
/** How long a request waits for its reply before it rejects (`timeout`). */
const REQUEST_TIMEOUT_MS = 30000;
/** How long a connection attempt may neither open nor close before it is given up and tried
 * again: an attempt that reached a server in the middle of stopping could hang without either
 * event (seen with Node 20's WebSocket), and the client then never came back. */
const CONNECT_TIMEOUT_MS = 8000;
/** Show a `typing` push for this long. */
export const TYPING_MS = 5000;

let cmidCounter = 0;
/** A fresh client_msg_id (1–64 characters). */
export function newClientMsgId() {
  cmidCounter = (cmidCounter + 1) % 1e9;
  return `js-${Date.now().toString(36)}-${cmidCounter.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

export class Client extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.url          `ws://host/v1/ws` or `wss://…`
   * @param {string} o.token        a user token (sent in an `auth` frame: browsers cannot set headers)
   * @param {"json"|"msgpack"} [o.encoding]
   * @param {{min:number,max:number}} [o.backoff]  reconnect delays in ms (default 500 doubling to 30000)
   * @param {Function} [o.WebSocket]  the WebSocket class (default the global one; tests pass a fake)
   */
  constructor({ url, token, encoding = "json", backoff, WebSocket: Ws, random, timers } = {}) {
    super();
    this.url = url;
    this.token = token;
    this.encoding = encoding;
    this.backoff = { min: 500, max: 30000, ...(backoff || {}) };
    this.Ws = Ws || globalThis.WebSocket;
    this.random = random || Math.random;
    this.timers = timers || { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) };
    this.state = "idle"; // idle | connecting | open | waiting | closed
    this.hello = null;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject, timer}
    this.rooms = new Map(); // room -> {presence, epoch, seq} (subscribed rooms and positions)
    this.posts = new Map(); // client_msg_id -> {frame, resolve, reject} (unacknowledged posts)
    this.attempt = 0;
    this.retryTimer = null;
    this.stopped = false;
    this.firstConnect = null;
  }

  /** Open the session; resolves with `hello` (the first time), rejects when the server refuses
   * the token. Afterwards the client reconnects by itself until `close()`. */
  connect() {
    this.stopped = false;
    if (!this.firstConnect) {
      this.firstConnect = new Promise((resolve, reject) => {
        this._onFirst = { resolve, reject };
      });
    }
    this._open();
    return this.firstConnect;
  }

  /** Close for good (no reconnect). */
  close() {
    this.stopped = true;
    if (this.retryTimer) this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws) this.ws.close(1000);
    this._setState("closed", { code: 1000 });
  }

  /** Send a request frame (its `id` is set here); resolves with the reply, rejects with a
   * CrossroomError. */
  request(frame) {
    if (this.state !== "open") return Promise.reject(new CrossroomError("not_connected", "not connected"));
    return this._send(frame);
  }

  /** Subscribe to `room` (with presence if asked); resumed from the last event seen after every
   * reconnect. Resolves with `subscribed`. */
  async subscribe(room, { presence = false, since } = {}) {
    const known = this.rooms.get(room);
    const entry = { presence, epoch: since?.epoch ?? known?.epoch, seq: since?.seq ?? known?.seq };
    this.rooms.set(room, entry);
    if (this.state !== "open") return null; // done on (re)connect
    return this._subscribe(room, entry);
  }

  async unsubscribe(room) {
    this.rooms.delete(room);
    if (this.state === "open") return this.request({ type: "unsubscribe", room }).catch(() => null);
    return null;
  }

  /** The last event of `room` this client holds: `{epoch, seq}` or null. */
  position(room) {
    const r = this.rooms.get(room);
    return r && r.epoch !== undefined ? { epoch: r.epoch, seq: r.seq } : null;
  }

  /** Post a message. Resolves with `posted` once the server stored it; if the connection drops
   * first, the same post (same `client_msg_id`) goes again on the next session: stored once. */
  post(room, text, { attachments, mentions, clientMsgId } = {}) {
    const frame = { type: "post", room, client_msg_id: clientMsgId || newClientMsgId(), text };
    if (attachments && attachments.length) frame.attachments = attachments;
    if (mentions && mentions.length) frame.mentions = mentions;
    return new Promise((resolve, reject) => {
      this.posts.set(frame.client_msg_id, { frame, resolve, reject });
      if (this.state === "open") this._sendPost(frame.client_msg_id);
    });
  }

  /** Posts not yet acknowledged, oldest first. */
  unacknowledged() {
    return Array.from(this.posts.values()).map((p) => p.frame);
  }

  /** Say you are typing in `room` (at most every few seconds is plenty). */
  typing(room) {
    if (this.state !== "open") return Promise.resolve(null);
    return this.request({ type: "typing", room }).catch(() => null);
  }

  history(room, { before, limit = 50 } = {}) {
    const f = { type: "history", room, limit };
    if (before !== undefined && before !== null) f.before = before;
    return this.request(f);
  }

  markRead(room, seq) {
    return this.request({ type: "mark_read", room, seq });
  }

  /** The server's HTTP base (`https://host`), from the WebSocket URL. */
  httpBase() {
    return this.url.replace(/^ws/, "http").replace(/\/v1\/ws$/, "");
  }

  /** Upload `blob` to `room`: an attachment for a later post (default), or with `folder`
   * (a folder id, or `null` for the root) a file into the folder. `onProgress(sent, total)` is
   * called as the bytes go (browsers). Resolves with the server's answer (`{file, name, …}`). */
  upload(room, blob, { name, folder, onProgress } = {}) {
    const n = encodeURIComponent(name || blob.name || "file");
    const path = folder === undefined
      ? `/v1/rooms/${room}/attachments?name=${n}`
      : `/v1/rooms/${room}/files?name=${n}${folder === null ? "" : `&folder=${folder}`}`;
    const url = this.httpBase() + path;
    const type = blob.type || "application/octet-stream";
    if (typeof XMLHttpRequest === "undefined") {
      return fetch(url, { method: "POST", headers: { authorization: `Bearer ${this.token}`, "content-type": type }, body: blob })
        .then((r) => httpAnswer(r.status, r.text()));
    }
    return new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      x.open("POST", url);
      x.setRequestHeader("authorization", `Bearer ${this.token}`);
      x.setRequestHeader("content-type", type);
      if (onProgress) x.upload.onprogress = (e) => onProgress(e.loaded, e.total);
      x.onload = () => httpAnswer(x.status, Promise.resolve(x.responseText)).then(resolve, reject);
      x.onerror = () => reject(new CrossroomError("not_connected", "the upload failed"));
      x.send(blob);
    });
  }

  /** Download a file of `room` (attachment or folder file) as a Blob. */
  async download(room, file) {
    const r = await fetch(`${this.httpBase()}/v1/rooms/${room}/files/${file}`, {
      headers: { authorization: `Bearer ${this.token}` },
    });
    if (!r.ok) return httpAnswer(r.status, r.text());
    return r.blob();
  }

  // --- internals ---

  _setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _open() {
    if (this.stopped) return;
    this._setState("connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new this.Ws(this.url, SUBPROTOCOL[this.encoding]);
    } catch (e) {
      this._closed(1006, String(e && e.message));
      return;
    }
    if (this.encoding === "msgpack") ws.binaryType = "arraybuffer";
    this.ws = ws;
    const giveUp = this.timers.setTimeout(() => {
      if (this.ws !== ws) return;
      this.ws = null; // its close, should it ever come, is not this client's to handle
      try {
        ws.close();
      } catch (e) {
        // Closing a socket that never opened may throw; it is abandoned either way.
      }
      this._closed(1006, "connection attempt timed out");
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      this.timers.clearTimeout(giveUp);
      this._authenticate();
    };
    ws.onmessage = (m) => this._onMessage(m.data);
    ws.onclose = (e) => {
      this.timers.clearTimeout(giveUp);
      if (this.ws === ws) this._closed(e.code, e.reason);
    };
    ws.onerror = () => {};
  }

  async _authenticate() {
    let hello;
    try {
      hello = await this._send({ type: "auth", token: this.token });
    } catch (e) {
      // The server closes too (4500…): that close decides about reconnecting.
      if (this._onFirst && e instanceof CrossroomError && e.code !== "not_connected") {
        this._onFirst.reject(e);
        this._onFirst = null;
      }
      return;
    }
    this.hello = hello;
    this.authError = null;
    this.attempt = 0;
    this._setState("open");
    this._emit("hello", hello);
    if (this._onFirst) {
      this._onFirst.resolve(hello);
      this._onFirst = null;
    }
    // Resume every room from where it was, then send what was not acknowledged.
    for (const [room, entry] of this.rooms) this._subscribe(room, entry).catch(() => {});
    for (const cmid of this.posts.keys()) this._sendPost(cmid);
  }

  async _subscribe(room, entry) {
    const f = { type: "subscribe", room };
    if (entry.presence) f.presence = true;
    if (entry.epoch !== undefined && entry.seq !== undefined) f.since = { epoch: entry.epoch, seq: entry.seq };
    const sub = await this._send(f);
    // Replayed events (or a reset) came first; from here on everything after `head` follows.
    const now = this.rooms.get(room);
    if (now) {
      // What the replay brought counts; a position of another epoch does not.
      const held = now.epoch === sub.epoch ? now.seq || 0 : 0;
      now.epoch = sub.epoch;
      now.seq = Math.max(held, sub.head);
    }
    return sub;
  }

  _sendPost(cmid) {
    const p = this.posts.get(cmid);
    if (!p) return;
    this._send({ ...p.frame }).then(
      (posted) => {
        this.posts.delete(cmid);
        p.resolve(posted);
      },
      (e) => {
        // A dropped connection or `unavailable`: the post goes again with the same
        // client_msg_id on the next session. Anything else is final.
        if (e.code === "not_connected" || e.code === "unavailable" || e.code === "timeout") {
          if (e.code === "unavailable" && this.state === "open") {
            this.timers.setTimeout(() => this._sendPost(cmid), backoffDelay(0, this.backoff, this.random));
          }
          return;
        }
        this.posts.delete(cmid);
        p.reject(e);
      },
    );
  }

  _send(frame) {
    const id = this.nextId++;
    frame.id = id;
    return new Promise((resolve, reject) => {
      const ws = this.ws;
      if (!ws || ws.readyState !== 1) {
        reject(new CrossroomError("not_connected", "not connected"));
        return;
      }
      const timer = this.timers.setTimeout(() => {
        if (this.pending.delete(id)) reject(new CrossroomError("timeout", "no reply in time"));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer, type: frame.type });
      ws.send(this.encoding === "msgpack" ? encodeMsgpack(frame) : JSON.stringify(frame));
    });
  }

  _onMessage(data) {
    let f;
    try {
      f = typeof data === "string" ? JSON.parse(data) : decodeMsgpack(new Uint8Array(data));
    } catch (e) {
      return; // not a frame: ignore
    }
    if (f.id !== undefined && f.id !== null && this.pending.has(f.id)) {
      const p = this.pending.get(f.id);
      this.pending.delete(f.id);
      this.timers.clearTimeout(p.timer);
      if (f.type === "error") {
        const e = new CrossroomError(f.code, f.message);
        // The server closes right after refusing a token: that close reports this error.
        if (p.type === "auth") this.authError = e;
        p.reject(e);
      } else p.resolve(f);
      return;
    }
    this._onPush(f);
  }

  _onPush(f) {
    const room = f.room && typeof f.room === "object" ? f.room.id : f.room;
    const entry = room ? this.rooms.get(room) : null;
    switch (f.type) {
      case "event":
        if (entry) {
          // Never twice: an event at or before the position is already held.
          if (entry.epoch === f.epoch && entry.seq !== undefined && f.seq <= entry.seq) return;
          entry.epoch = f.epoch;
          entry.seq = f.seq;
        }
        break;
      case "reset":
        if (entry) {
          entry.epoch = f.epoch;
          entry.seq = f.head;
        }
        break;
      case "removed":
      case "room_deleted":
        this.rooms.delete(room);
        break;
      default:
        break;
    }
    this._emit(f.type, f);
    this._emit("push", f);
  }

  _closed(code, reason) {
    this.ws = null;
    for (const p of this.pending.values()) {
      this.timers.clearTimeout(p.timer);
      p.reject(new CrossroomError("not_connected", "connection closed"));
    }
    this.pending.clear();
    if (this.stopped) return;
    const reaction = closeReaction(code);
    if (reaction === "stop") {
      this.stopped = true;
      if (this._onFirst) {
        this._onFirst.reject(this.authError || new CrossroomError("closed", `closed with ${code}${reason ? ": " + reason : ""}`));
        this._onFirst = null;
      }
      this._setState("closed", { code, reason });
      return;
    }
    const delay = reaction === "now" ? Math.round(this.random() * 250) : backoffDelay(this.attempt, this.backoff, this.random);
    this.attempt += 1;
    this._setState("waiting", { code, reason, retryIn: delay });
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this._open();
    }, delay);
  }
}

// Unit tests of the JavaScript client (src/web/crossroom.mjs) with Node's built-in runner:
//   node --test tests/js/
// A fake WebSocket and fake timers stand in for the network and the clock; the MessagePack codec
// is checked against the protocol's test vectors (written by the Rust encoder).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  Client,
  CrossroomError,
  backoffDelay,
  closeReaction,
  decodeMsgpack,
  encodeMsgpack,
} from "../../src/web/crossroom.mjs";

const vectors = JSON.parse(readFileSync(new URL("../../protocol/vectors/frames.json", import.meta.url)));

class FakeWs {
  static all = [];
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = 0;
    this.sent = [];
    FakeWs.all.push(this);
  }
  static get last() {
    return FakeWs.all[FakeWs.all.length - 1];
  }
  send(data) {
    this.sent.push(typeof data === "string" ? JSON.parse(data) : decodeMsgpack(data));
  }
  close(code = 1000) {
    this.drop(code);
  }
  open() {
    this.readyState = 1;
    this.onopen();
  }
  recv(frame) {
    this.onmessage({ data: JSON.stringify(frame) });
  }
  drop(code, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose({ code, reason });
  }
  /** The last frame of `type` sent. */
  lastSent(type) {
    return [...this.sent].reverse().find((f) => f.type === type);
  }
}

/** Timers that fire only when the test says so. */
function fakeTimers() {
  const due = [];
  return {
    setTimeout(f, ms) {
      const t = { f, ms, done: false };
      due.push(t);
      return t;
    },
    clearTimeout(t) {
      if (t) t.done = true;
    },
    /** Fire every timer of at most `ms` (the reconnect ones); returns the delays fired. */
    fire(ms = Infinity) {
      const fired = [];
      for (const t of due.splice(0)) {
        if (!t.done && t.ms <= ms) {
          t.done = true;
          fired.push(t.ms);
          t.f();
        } else if (!t.done) due.push(t);
      }
      return fired;
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

const HELLO = { type: "hello", protocol: 1, session: "s1", user: { id: "alice@acme.example", company: "acme.example", name: "Alice", kind: "works" }, limits: {} };

/** A client connected through a fake socket; returns [client, timers, socket]. */
async function connected(options = {}) {
  FakeWs.all = [];
  const timers = fakeTimers();
  const c = new Client({ url: "ws://x/v1/ws", token: "t0k", WebSocket: FakeWs, timers, random: () => 0.5, ...options });
  const hello = c.connect();
  FakeWs.last.open();
  const auth = FakeWs.last.lastSent("auth");
  assert.equal(auth.token, "t0k");
  FakeWs.last.recv({ ...HELLO, id: auth.id });
  assert.equal((await hello).session, "s1");
  return [c, timers, FakeWs.last];
}

test("close codes decide about reconnecting as PROTOCOL.md says", () => {
  assert.equal(closeReaction(1000), "stop");
  assert.equal(closeReaction(1001), "now");
  assert.equal(closeReaction(1006), "backoff");
  assert.equal(closeReaction(1009), "stop");
  assert.equal(closeReaction(1011), "backoff");
  for (const c of [4000, 4001, 4002, 4003, 4004]) assert.equal(closeReaction(c), "backoff");
  for (const c of [4500, 4501, 4502, 4503]) assert.equal(closeReaction(c), "stop");
});

test("backoff doubles to its ceiling, with jitter inside the window", () => {
  const o = { min: 500, max: 30000 };
  assert.equal(backoffDelay(0, o, () => 0), 250);
  assert.equal(backoffDelay(0, o, () => 1), 500);
  assert.equal(backoffDelay(3, o, () => 1), 4000);
  assert.equal(backoffDelay(20, o, () => 1), 30000);
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(4, o)));
  assert.ok(spread.size > 10, "jitter spreads the clients");
});

test("MessagePack: the protocol's vectors decode to their JSON, and frames round-trip", () => {
  const hex = (h) => Uint8Array.from(h.match(/../g).map((b) => parseInt(b, 16)));
  let n = 0;
  for (const v of vectors.frames) {
    if (!v.msgpack_hex) continue;
    assert.deepEqual(decodeMsgpack(hex(v.msgpack_hex)), v.json, v.name);
    assert.deepEqual(decodeMsgpack(encodeMsgpack(v.json)), v.json, v.name);
    n++;
  }
  assert.ok(n > 10, `${n} vectors`);
  const odd = { big: 4503599627370495, neg: -40000, small: -3, f: 1.5, s: "héllo 👋".repeat(20), list: Array.from({ length: 20 }, (_, i) => i * 1000), none: null };
  assert.deepEqual(decodeMsgpack(encodeMsgpack(odd)), odd);
});

test("requests are answered by id; an error rejects with its code", async () => {
  const [c, , ws] = await connected();
  const a = c.request({ type: "list_rooms" });
  const b = c.request({ type: "get_room", room: "r_x" });
  const [fa, fb] = ws.sent.slice(-2);
  assert.notEqual(fa.id, fb.id);
  ws.recv({ type: "error", id: fb.id, code: "not_found", message: "room r_x not found" });
  ws.recv({ type: "rooms", id: fa.id, rooms: [] });
  assert.deepEqual((await a).rooms, []);
  await assert.rejects(b, (e) => e instanceof CrossroomError && e.code === "not_found");
});

test("after 1001 it reconnects at once, resumes every room from its position, and sends unacknowledged posts again with the same client_msg_id", async () => {
  const [c, timers, ws] = await connected();
  const events = [];
  c.addEventListener("event", (e) => events.push(e.detail.seq));
  const sub = c.subscribe("r_a", { presence: true });
  ws.recv({ type: "subscribed", id: ws.lastSent("subscribe").id, room: "r_a", epoch: 7, head: 10, replayed: 0 });
  await sub;
  ws.recv({ type: "event", room: "r_a", epoch: 7, seq: 11, ts: 1, author: "bob@acme.example", body: { kind: "message", text: "hi" } });
  assert.deepEqual(c.position("r_a"), { epoch: 7, seq: 11 });
  const posted = c.post("r_a", "are you there?");
  const first = ws.lastSent("post");
  ws.drop(1001, "server shutting down");
  assert.equal(c.state, "waiting");
  assert.ok(timers.fire(250).length >= 1, "reconnects within 250 ms");
  const again = FakeWs.last;
  assert.notEqual(again, ws);
  again.open();
  again.recv({ ...HELLO, id: again.lastSent("auth").id });
  await tick();
  const resub = again.lastSent("subscribe");
  assert.deepEqual(resub.since, { epoch: 7, seq: 11 });
  assert.equal(resub.presence, true);
  const retry = again.lastSent("post");
  assert.equal(retry.client_msg_id, first.client_msg_id);
  assert.equal(retry.text, "are you there?");
  // The replay: seq 11 again is dropped (held already), 12 is new.
  again.recv({ type: "event", room: "r_a", epoch: 7, seq: 11, ts: 1, author: "bob@acme.example", body: { kind: "message", text: "hi" } });
  again.recv({ type: "event", room: "r_a", epoch: 7, seq: 12, ts: 2, author: "alice@acme.example", body: { kind: "message", text: "are you there?" } });
  again.recv({ type: "subscribed", id: resub.id, room: "r_a", epoch: 7, head: 12, replayed: 1 });
  again.recv({ type: "posted", id: retry.id, room: "r_a", epoch: 7, seq: 12, ts: 2, duplicate: false });
  assert.equal((await posted).seq, 12);
  assert.deepEqual(events, [11, 12]);
  assert.equal(c.unacknowledged().length, 0);
});

test("a network drop backs off with growing delays; 4500 stops for good", async () => {
  const [c, timers, ws] = await connected();
  const states = [];
  c.addEventListener("state", (e) => states.push(e.detail));
  ws.drop(1006);
  const waits = [];
  for (let i = 0; i < 3; i++) {
    waits.push(states.at(-1).retryIn);
    timers.fire();
    FakeWs.last.drop(1006);
  }
  assert.ok(waits[0] < waits[1] && waits[1] < waits[2], `${waits}`);
  timers.fire();
  FakeWs.last.open();
  FakeWs.last.recv({ type: "error", id: FakeWs.last.lastSent("auth").id, code: "unauthorized", message: "tokens revoked" });
  FakeWs.last.drop(4500, "tokens revoked");
  assert.equal(c.state, "closed");
  const sockets = FakeWs.all.length;
  assert.deepEqual(timers.fire(), []);
  assert.equal(FakeWs.all.length, sockets, "no reconnect after 4500");
});

test("a reset moves the position to the head and is told; removal forgets the room", async () => {
  const [c, , ws] = await connected();
  const told = [];
  c.addEventListener("reset", (e) => told.push(e.detail.head));
  c.addEventListener("removed", (e) => told.push(e.detail.reason));
  const sub = c.subscribe("r_b", { since: { epoch: 1, seq: 5 } });
  assert.deepEqual(ws.lastSent("subscribe").since, { epoch: 1, seq: 5 });
  ws.recv({ type: "reset", room: "r_b", epoch: 2, head: 40 });
  ws.recv({ type: "subscribed", id: ws.lastSent("subscribe").id, room: "r_b", epoch: 2, head: 40, replayed: 0 });
  await sub;
  assert.deepEqual(c.position("r_b"), { epoch: 2, seq: 40 });
  ws.recv({ type: "removed", room: "r_b", reason: "policy" });
  assert.deepEqual(told, [40, "policy"]);
  assert.equal(c.position("r_b"), null);
});

test("a refused token rejects connect(), and MessagePack sessions speak binary", async () => {
  FakeWs.all = [];
  const timers = fakeTimers();
  const c = new Client({ url: "ws://x/v1/ws", token: "bad", encoding: "msgpack", WebSocket: FakeWs, timers });
  const p = c.connect();
  assert.equal(FakeWs.last.protocol, "crossroom.v1.msgpack");
  FakeWs.last.open();
  const auth = FakeWs.last.lastSent("auth");
  FakeWs.last.onmessage({ data: encodeMsgpack({ type: "error", id: auth.id, code: "unauthorized", message: "invalid token" }).buffer });
  FakeWs.last.drop(4500);
  await assert.rejects(p, (e) => e.code === "unauthorized");
  assert.equal(c.state, "closed");
});

test("an attempt that neither opens nor closes is given up after a while and tried again", async () => {
  const [c, timers, ws] = await connected();
  ws.drop(1001);
  timers.fire(250); // after 1001: at once
  const hung = FakeWs.last;
  assert.notEqual(hung, ws);
  assert.deepEqual(timers.fire(1000), [], "the attempt is given time");
  timers.fire(8000);
  assert.equal(hung.readyState, 3, "the hung attempt is closed");
  assert.equal(c.state, "waiting", "and the client waits to try again, not stopped");
  timers.fire();
  const next = FakeWs.last;
  assert.notEqual(next, hung, "a new attempt");
  next.open();
  next.recv({ ...HELLO, id: next.lastSent("auth").id });
  await tick();
  assert.equal(c.state, "open");
});

// The JavaScript client against the real server, across a restart. Run by tests/it/js_client.rs,
// which starts the server and gives, in the environment: CROSSROOM_WS (the WebSocket URL),
// ALICE and CAROL (tokens of two users of two companies), ROOM (a group of both). Node 20 needs
// --experimental-websocket for its WebSocket.
//
// It prints "restart" when it wants the server restarted and reads "restarted" on stdin; it ends
// with "ok" and exit 0 when carol got every message alice posted exactly once, in order — those
// posted while the server was down included — over JSON and MessagePack.

import assert from "node:assert/strict";
import { createInterface } from "node:readline";
import { Client } from "../../src/web/crossroom.mjs";

const { CROSSROOM_WS: url, ALICE, CAROL, ROOM: room } = process.env;
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((r) => lines.once("line", r));
const until = async (what, check, ms = 20000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

// Every wait is bounded and named: a hang ends the script with what it waited for.
const within = (what, promise, ms = 20000) =>
  Promise.race([
    promise,
    new Promise((_, fail) =>
      setTimeout(() => fail(new Error(`timed out: ${what}; states: ${JSON.stringify(trail)}`)), ms),
    ),
  ]);

const trail = []; // both clients' state changes, said when a wait fails
const fast = { min: 100, max: 1000 };
const alice = new Client({ url, token: ALICE, encoding: "json", backoff: fast });
const carol = new Client({ url, token: CAROL, encoding: "msgpack", backoff: fast });
const got = [];
const seqs = [];
carol.addEventListener("event", (e) => {
  const ev = e.detail;
  seqs.push(ev.seq);
  if (ev.body.kind === "message") got.push(ev.body.text);
});
const resets = [];
carol.addEventListener("reset", (e) => resets.push(e.detail));
const states = [];
carol.addEventListener("state", (e) => states.push({ t: Date.now() % 100000, ...e.detail }));
alice.addEventListener("state", (e) => trail.push({ who: "alice", t: Date.now() % 100000, ...e.detail }));
carol.addEventListener("state", (e) => trail.push({ who: "carol", t: Date.now() % 100000, ...e.detail }));
let typing = 0;
carol.addEventListener("typing", (e) => {
  if (e.detail.user === alice.hello.user.id) typing++;
});

assert.equal((await within("alice connects", alice.connect())).user.id.split("@")[1], "acme.example");
assert.equal((await within("carol connects", carol.connect())).user.id.split("@")[1], "globex.example");
await within("alice subscribes", alice.subscribe(room));
const sub = await within("carol subscribes", carol.subscribe(room, { presence: true }));
assert.ok(sub.head >= 1);

const sent = [];
for (let i = 0; i < 5; i++) {
  sent.push(`before ${i}`);
  const posted = await within(`post before ${i}`, alice.post(room, `before ${i}`));
  assert.ok(posted.seq > 0);
}
await within("typing", alice.typing(room));
await until("carol has the first five", () => got.length === 5);
await until("a typing push", () => typing > 0);

// The server goes away (1001) and comes back at the same address.
console.log("restart");
const during = alice.post(room, "while down"); // queued, sent again once reconnected
sent.push("while down");
await nextLine();
await within("the post made while down, acknowledged after the restart", during);
for (let i = 0; i < 5; i++) {
  sent.push(`after ${i}`);
  await within(`post after ${i}`, alice.post(room, `after ${i}`));
}
await until("carol has every message", () => got.length >= sent.length).catch((e) => {
  throw new Error(`${e.message}; states: ${JSON.stringify(trail)}`);
});
await new Promise((r) => setTimeout(r, 200)); // nothing more (no duplicate) comes late
assert.deepEqual(got, sent, "every message once, in order");
for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `no gap: ${seqs}`);
assert.deepEqual(resets, [], "resumed, not reset");
assert.ok(
  states.some((s) => s.state === "waiting" && s.code === 1001),
  `told 1001: ${JSON.stringify(states)}`,
);
assert.equal(alice.unacknowledged().length, 0);
alice.close();
carol.close();
console.log("ok");
process.exit(0);

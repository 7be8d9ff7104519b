// A minimal broadcast server on Socket.IO, for `loadtest --target socketio`.
//   node server.js [--port 18600] [--redis redis://127.0.0.1:6379]
// With --redis, rooms fan out through the Redis adapter (as a Socket.IO cluster does);
// without it, in process. Events: `join` (room, acknowledged) and `post` (room, text), which
// is sent as `msg` to the room's other sockets.
const http = require("http");
const { Server } = require("socket.io");

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const port = Number(flag("--port", "18600"));
const redisUrl = flag("--redis", "");

async function main() {
  const server = http.createServer();
  const io = new Server(server, { transports: ["websocket"], serveClient: false });
  if (redisUrl) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(String(room));
      if (typeof ack === "function") ack();
    });
    socket.on("post", (room, text) => {
      socket.to(String(room)).emit("msg", text);
    });
  });
  server.listen(port, "127.0.0.1", () => {
    console.log(`socketio listening on 127.0.0.1:${port}${redisUrl ? " with the Redis adapter" : ""}`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

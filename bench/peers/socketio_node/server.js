"use strict";
// Socket.IO 4 peer for `roost bench`, wire shape `socketio`: the "reliable" configuration a Socket.IO user would
// pick: the Redis Streams adapter (every broadcast goes through a Redis stream) and connection state recovery.
//
//   node bench/peers/socketio_node/server.js --port 9003 --redis redis://127.0.0.1:6379 --stream roost-bench-1
//
// Engine.IO v4 over WebSocket only (/socket.io/?EIO=4&transport=websocket, no polling), namespace "/":
//   421["join","R"]               -> socket.join(R), ack 431[]
//   42<id>["msg",{"room":R,...}]  -> io.to(R).emit("msg", data) (sender included), ack 43<id>[]
// With connection state recovery on, Socket.IO appends the packet's offset (the Redis stream entry id) to every
// room broadcast, so members receive 42["msg",{...},"<offset>"]: read element 1, ignore what follows. The adapter
// writes the broadcast to the stream before delivering it locally, so the sender's ack usually arrives first.
//
// --stream is the adapter's stream name (give each run a fresh one); it also prefixes the adapter's pub/sub
// channels so concurrent runs cannot see each other. Nothing is printed per message. SIGTERM/SIGINT: close every
// client and the listener, disconnect from Redis, exit 0.

const http = require("node:http");
const { parseArgs } = require("node:util");
const { createClient } = require("redis");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-streams-adapter");

const { values: opts } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    redis: { type: "string", default: "redis://127.0.0.1:6379" },
    stream: { type: "string", default: "roost-bench-socketio" },
  },
});
if (!opts.port) {
  console.error("usage: node server.js --port N [--redis URL] [--stream NAME] [--host ADDR]");
  process.exit(2);
}

async function main() {
  const redisClient = createClient({ url: opts.redis });
  let redisErrorShown = false;
  redisClient.on("error", (err) => {
    if (!redisErrorShown) {
      redisErrorShown = true;
      console.error("socketio_node: redis error:", err.message);
    }
  });
  const noRedis = setTimeout(() => {
    console.error(`socketio_node: no Redis at ${opts.redis} after 10 s`);
    process.exit(1);
  }, 10000);
  await redisClient.connect(); // node-redis retries a refused connection on its own
  clearTimeout(noRedis);

  const httpServer = http.createServer((req, res) => {
    res.writeHead(404).end(); // anything that is not /socket.io/
  });

  const io = new Server(httpServer, {
    serveClient: false,
    transports: ["websocket"],
    perMessageDeflate: false,
    httpCompression: false,
    pingInterval: 25000,
    pingTimeout: 60000,
    connectionStateRecovery: {}, // defaults: 2 min maxDisconnectionDuration, skipMiddlewares
    adapter: createAdapter(redisClient, { streamName: opts.stream, channelPrefix: opts.stream }),
  });

  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(String(room));
      if (typeof ack === "function") ack();
    });
    socket.on("msg", (data, ack) => {
      if (data !== null && typeof data === "object" && "room" in data) {
        io.to(String(data.room)).emit("msg", data);
      }
      if (typeof ack === "function") ack();
    });
  });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 3000).unref(); // whatever still hangs (e.g. a blocked XREAD) is cut here
    try {
      httpServer.close(); // no new connections
      io.disconnectSockets(true); // every client gets the Socket.IO disconnect packet "41", then a WebSocket close
      await new Promise((resolve) => setTimeout(resolve, 200)); // let those frames go out
      await io.close(); // stops the Engine.IO server (and whatever is left)
    } catch (_) {}
    try {
      await redisClient.close();
    } catch (_) {}
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  httpServer.listen({ port: Number(opts.port), host: opts.host, backlog: 4096 });
  await new Promise((resolve, reject) => {
    httpServer.once("listening", resolve);
    httpServer.once("error", reject);
  });
}

main().catch((err) => {
  console.error("socketio_node:", err);
  process.exit(1);
});

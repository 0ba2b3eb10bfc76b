"use strict";
// The Node.js load generator of `roost bench --generator node`: the same plan in, the same JSON lines out, the same
// measurement as src/roost/bench/loadgen.py (the Python generator on picows), on the `ws` client.
//
//   node bench/gen_node/generator.js '<json plan>'     (or "-": the plan is the first line on stdin)
//
// It prints one JSON object per line on stdout: step-start / step-end around every measured window (the runner
// samples the server's CPU over exactly that window), step with its figures, ready / opened / measure / written
// along the way, error when a probe fails, done at the end. After "measure" it waits for a line on stdin.
//
// Why a second generator: the Python one saturates its core before the bare servers do on a 2-core machine, and an
// outside Node generator loaded Roost differently. Both behind one plan interface, one run can compare them.
// Why byte searches: a client that JSON.parse'd every delivered frame would cost about what the server spends
// sending it. Delivered frames are scanned for the timed body marks (~T<ns>:<step>:, wire.js) and, for Roost,
// for ack lines; only setup frames (auth, join, subscribe) are parsed.
//
// Clock: process.hrtime (CLOCK_MONOTONIC, the clock of Python's time.monotonic_ns), in ns, in the body mark; the
// sender and the receiver are this one process, so only differences are read.

const readline = require("node:readline");
const WebSocket = require("ws");
const { issueToken } = require("./token");
const wire = require("./wire");

const MARK = Buffer.from(wire.BODY_MARK);
const ACK_TYPE = Buffer.from('"type":"ack"');
const ACK_LINE = Buffer.from('{"type":"ack"');
const MSG_LINE = Buffer.from('{"type":"msg"');
const LIVE_LINE = Buffer.from('{"type":"live"');
const SEQ_KEY = Buffer.from('"seq":');
const NEWLINE = 10;
const COLON = 58;
const QUOTE = 34;
const COMMA = 44;
const MINUS = 45;
const ZERO = 48;
const INFINITELY_LATE_US = 10 ** 12;
/** Keys whose numbers loadgen.py writes as floats (wire.pyDumps writes them as 1.0, not 1). */
const FLOATS = new Set([
  "seconds",
  "p50",
  "p99",
  "p999",
  "gen_cpu",
  "open_seconds",
  "connect_seconds",
  "join_follow_seconds",
  "seconds_all_caught_up",
  "p50_s",
  "p99_s",
]);

const nowNs = () => Number(process.hrtime.bigint());
const monotonic = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What one measured window saw. */
class Step {
  constructor(index, members) {
    this.index = index;
    this.members = members;
    this.sent = 0;
    this.received = 0;
    this.latUs = [];
    this.ackUs = [];
  }
}

/** Shared state of every client: the current steps, the counters, pending acks. */
class Gen {
  constructor(shape) {
    this.shape = shape;
    /** step index -> Step, in insertion order (acks go to the newest, as loadgen.py's dict) */
    this.steps = new Map();
    /** Roost send ref -> send time, ns */
    this.pending = new Map();
    this.dropped = 0;
    this.closing = false;
    this.stormReceived = 0;
    /** How long opening (and authenticating) every connection took, s. */
    this.connectS = 0;
    /** How long joining and following the rooms took, after that, s. */
    this.enterS = 0;
  }

  newestStep() {
    let last;
    for (const s of this.steps.values()) last = s;
    return last;
  }
}

/** Frames a client receives during setup, for expect() to read in order. */
class FrameQueue {
  constructor() {
    this.items = [];
    this.waiter = null;
  }

  put(data) {
    if (this.waiter !== null) {
      const waiter = this.waiter;
      this.waiter = null;
      waiter(data);
    } else {
      this.items.push(data);
    }
  }

  get(timeoutMs) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error("timed out waiting for a frame"));
      }, timeoutMs);
      this.waiter = (data) => {
        clearTimeout(timer);
        resolve(data);
      };
    });
  }
}

function startsAt(data, at, prefix) {
  if (at + prefix.length > data.length) return false;
  for (let k = 0; k < prefix.length; k++) if (data[at + k] !== prefix[k]) return false;
  return true;
}

/** One connection. During setup it queues frames for expect(); afterwards it only counts. */
class Client {
  constructor(gen, index, room, user) {
    this.gen = gen;
    this.index = index;
    this.room = room;
    this.user = user;
    this.ws = null;
    this.opened = false;
    /** Closed by the generator itself (the storm's departure): not a drop. */
    this.leaving = false;
    this.setup = new FrameQueue();
    this.acks = new Map();
    this.ackCounter = 10;
    this.stormDone = null;
    this.stormSeen = 0;
    this.lastSeq = 0;
  }

  onClose() {
    if (this.opened && !this.gen.closing && !this.leaving) this.gen.dropped += 1;
  }

  onMessage(data, isBinary) {
    if (isBinary) return;
    const shape = this.gen.shape;
    if (shape === "socketio" && data[0] !== 0x34 /* "4" */) {
      if (data.length === 1 && data[0] === 0x32 /* "2": Engine.IO ping */) this.ws.send("3");
      else if (this.setup !== null) this.setup.put(data); // the open packet
      return;
    }
    if (this.setup !== null) {
      this.setup.put(data);
      return;
    }
    const now = nowNs();
    if (shape === "roost") this.roost(data, now);
    else if (shape === "bare") this.count(data, 0, now);
    else this.socketio(data, now);
  }

  /** Count every timed body in `data` from `start`; returns how many were found. The generator's hot loop. */
  count(data, start, now) {
    let found = 0;
    const steps = this.gen.steps;
    const end = data.length;
    let i = data.indexOf(MARK, start);
    while (i >= 0) {
      let p = i + 2;
      let t = 0;
      let c;
      while (p < end && (c = data[p]) !== COLON) {
        t = t * 10 + (c - ZERO);
        p++;
      }
      p++;
      let sign = 1;
      if (data[p] === MINUS) {
        sign = -1;
        p++;
      }
      let index = 0;
      while (p < end && (c = data[p]) !== COLON) {
        index = index * 10 + (c - ZERO);
        p++;
      }
      if (p >= end) break; // a truncated mark: not a timed body
      const s = steps.get(sign * index);
      if (s !== undefined) {
        s.received += 1;
        s.latUs.push(Math.floor((now - t) / 1000));
      }
      found += 1;
      i = data.indexOf(MARK, p);
    }
    return found;
  }

  roost(data, now) {
    if (this.stormDone !== null) {
      this.storm(data);
      return;
    }
    this.count(data, 0, now);
    if (data.indexOf(ACK_TYPE) >= 0) {
      let at = 0;
      while (at < data.length) {
        let nl = data.indexOf(NEWLINE, at);
        if (nl < 0) nl = data.length;
        if (startsAt(data, at, ACK_LINE)) {
          const ref = data.toString("latin1", at + 21, data.indexOf(QUOTE, at + 21));
          const tNs = this.gen.pending.get(ref);
          if (tNs !== undefined) {
            this.gen.pending.delete(ref);
            this.ack(tNs, now);
          }
        }
        at = nl + 1;
      }
    }
  }

  socketio(data, now) {
    if (data[0] === 0x34 && data[1] === 0x33 /* "43": an ack */) {
      let ack = 0;
      for (let p = 2; p < data.length && data[p] !== 0x5b /* "[" */; p++) ack = ack * 10 + (data[p] - ZERO);
      const tNs = this.acks.get(ack);
      if (tNs !== undefined) {
        this.acks.delete(ack);
        this.ack(tNs, now);
      }
      return;
    }
    this.count(data, 0, now);
  }

  ack(tNs, now) {
    // The ack belongs to the step its message was sent in; the newest step is where it was sent.
    const s = this.gen.newestStep();
    if (s !== undefined) s.ackUs.push(Math.floor((now - tNs) / 1000));
  }

  storm(data) {
    let at = 0;
    while (at < data.length) {
      let nl = data.indexOf(NEWLINE, at);
      if (nl < 0) nl = data.length;
      if (startsAt(data, at, MSG_LINE)) {
        this.stormSeen += 1;
        this.gen.stormReceived += 1;
        let p = data.indexOf(SEQ_KEY, at) + SEQ_KEY.length;
        let seq = 0;
        for (; data[p] !== COMMA && p < nl; p++) seq = seq * 10 + (data[p] - ZERO);
        this.lastSeq = seq;
      } else if (startsAt(data, at, LIVE_LINE) && this.stormDone !== null && !this.stormDone.done) {
        this.stormDone.resolve();
      }
      at = nl + 1;
    }
  }

  send(text) {
    this.ws.send(text);
  }

  /** Setup only: wait for a frame (Roost frames may be newline-batched) that `accept` takes. */
  async expect(accept, timeoutS = 30) {
    const deadline = monotonic() + timeoutS;
    for (;;) {
      const data = await this.setup.get(Math.max(10, (deadline - monotonic()) * 1000));
      for (const part of data.toString().split("\n")) {
        if (!part) continue;
        let obj;
        if (this.gen.shape === "socketio") {
          obj = { raw: part };
        } else {
          obj = JSON.parse(part);
          if (obj.type === "error" && obj.code !== 4409) throw new Error(`${this.user}: ${JSON.stringify(obj)}`);
        }
        if (accept(obj)) return obj;
      }
    }
  }
}

function deferred() {
  const d = { done: false };
  d.promise = new Promise((resolve) => {
    d.resolve = () => {
      d.done = true;
      resolve();
    };
  });
  return d;
}

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- connecting ---------------------------------------------------------------------------------

function open(gen, index, room, user, url) {
  let target;
  if (gen.shape === "bare") target = `${url}/ws?room=${room}`;
  else if (gen.shape === "socketio") target = `${url}/socket.io/?EIO=4&transport=websocket`;
  else target = `${url}/ws`;
  const client = new Client(gen, index, room, user);
  return new Promise((resolve, reject) => {
    // No compression (picows offers none either); the server's UTF-8 is not validated: a generator reads marks.
    const ws = new WebSocket(target, { perMessageDeflate: false, handshakeTimeout: 60000, skipUTF8Validation: true });
    client.ws = ws;
    ws.on("message", (data, isBinary) => client.onMessage(data, isBinary));
    ws.on("close", () => client.onClose());
    ws.on("error", (err) => {
      if (!client.opened) reject(err); // after the handshake an error is followed by "close", counted there
    });
    ws.once("open", () => {
      client.opened = true;
      resolve(client);
    });
  });
}

async function connect(gen, plan, index, room, user, url) {
  const client = await open(gen, index, room, user, url);
  if (gen.shape === "roost") {
    const token = issueToken(plan.secret, user, 3600);
    client.send(wire.pyDumps({ type: "auth", token }));
    await client.expect((f) => f.type === "welcome");
  } else if (gen.shape === "socketio") {
    await client.expect((f) => f.raw.startsWith("0"));
    client.send("40");
    await client.expect((f) => f.raw.startsWith("40"));
  }
  return client;
}

/** Join the client's room (the first member creates it) and follow it until live. */
async function enter(client, first, after = null) {
  const shape = client.gen.shape;
  const room = client.room;
  if (shape === "socketio") {
    client.send(wire.socketioJoin(room));
    await client.expect((f) => f.raw.startsWith("431"));
  } else if (shape === "roost") {
    const ref = first ? "c" : "j";
    client.send(wire.pyDumps({ type: first ? "create" : "join", room, id: ref }));
    await client.expect((f) => (f.type === "ok" || f.type === "error") && f.ref === ref);
    await follow(client, after);
  }
}

async function follow(client, after) {
  const frame = { type: "subscribe", room: client.room, id: "s" };
  if (after !== null) frame.after = after;
  client.send(wire.pyDumps(frame));
  const live = await client.expect((f) => f.type === "live");
  client.lastSeq = Number.parseInt(live.seq, 10);
}

/** Run the thunks with at most `limit` in flight, in order; their results in order. */
async function gatherLimited(thunks, limit) {
  const results = new Array(thunks.length);
  let next = 0;
  async function worker() {
    while (next < thunks.length) {
      const i = next++;
      results[i] = await thunks[i]();
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, thunks.length) }, worker));
  return results;
}

/** Connect rooms x members clients, spread over the server URLs, each in its room, live. */
async function openRooms(gen, plan) {
  const { urls, rooms, members, prefix } = plan;
  const specs = [];
  for (let r = 0; r < rooms; r++) {
    for (let m = 0; m < members; m++) specs.push([r * members + m, `${prefix}r${r}`, `${prefix}u${r}-${m}`]);
  }
  const t0 = monotonic();
  const clients = await gatherLimited(
    specs.map(([i, room, user]) => () => connect(gen, plan, i, room, user, urls[i % urls.length])),
    plan.handshakes_in_flight ?? 200,
  );
  gen.connectS = monotonic() - t0;
  // The first member of each room creates it, then everyone else joins and follows.
  const t1 = monotonic();
  const firsts = clients.filter((_, position) => position % members === 0);
  await gatherLimited(
    firsts.map((c) => () => enter(c, true)),
    200,
  );
  const others = clients.filter((c) => c.index % members);
  await gatherLimited(
    others.map((c) => () => enter(c, false)),
    200,
  );
  gen.enterS = monotonic() - t1;
  return clients;
}

// ---- the fan-out ladder ------------------------------------------------------------------------

/** The q-quantile of `sorted` (µs) in ms; `missing` more values, infinitely late, sit above them. */
function percentile(sorted, q, missing = 0) {
  const n = sorted.length + missing;
  if (!n) return null;
  const at = Math.min(n - 1, Math.floor(q * n));
  return (at < sorted.length ? sorted[at] : INFINITELY_LATE_US) / 1000;
}

/** Sends timed messages at a fixed offered rate, rotating the publisher over all clients. */
class Sender {
  constructor(gen, clients, size) {
    this.gen = gen;
    this.size = size;
    this.setTurn(clients);
    this.counter = 0;
  }

  setTurn(clients) {
    this.turn = clients;
    this.position = 0;
  }

  sendOne(step) {
    const client = this.turn[this.position];
    this.position = (this.position + 1) % this.turn.length;
    const now = nowNs();
    const n = this.counter++;
    const text = wire.body(now, step, this.size);
    const shape = this.gen.shape;
    if (shape === "roost") {
      const ref = String(n);
      this.gen.pending.set(ref, now);
      client.send(wire.roostSend(client.room, `b${n}`, text, ref));
    } else if (shape === "bare") {
      client.send(wire.bareSend(client.room, n, now, text));
    } else {
      const ack = client.ackCounter++;
      client.acks.set(ack, now);
      client.send(wire.socketioSend(client.room, ack, now, text));
    }
  }

  async run(step, rate, duration) {
    const start = monotonic();
    for (;;) {
      const elapsed = monotonic() - start;
      if (elapsed >= duration) break;
      const due = Math.floor(elapsed * rate) - step.sent;
      for (let k = 0; k < due; k++) this.sendOne(step.index);
      step.sent += Math.max(0, due);
      await sleep(2);
    }
  }
}

async function fanout(gen, plan) {
  const clients = await openRooms(gen, plan);
  const members = plan.members;
  for (const c of clients) c.setup = null;
  emit({ event: "ready", connections: clients.length, dropped: gen.dropped });
  const sender = new Sender(gen, clients, plan.size);
  // Probe: one message into every room; every member must receive it.
  const probe = new Step(0, members);
  gen.steps.set(0, probe);
  for (let position = 0; position < clients.length; position += members) {
    sender.setTurn([clients[position]]);
    sender.sendOne(0);
    probe.sent += 1;
  }
  sender.setTurn(clients);
  await drain(probe, 15);
  if (probe.received < probe.sent * members) {
    emit({ event: "error", reason: `probe: ${probe.received}/${probe.sent * members} frames` });
    return;
  }
  // Warm-up at the first rate, not measured.
  const warm = new Step(-1, members);
  gen.steps.set(-1, warm);
  await sender.run(warm, plan.rates[0], plan.warmup_s ?? 2.0);
  await drain(warm, 10);
  gen.steps.delete(-1);
  gen.pending.clear();
  for (const [i, rate] of plan.rates.entries()) {
    const index = i + 1;
    const step = new Step(index, members);
    gen.steps.set(index, step);
    emit({ event: "step-start", rate });
    const cpu0 = process.cpuUsage();
    const wall0 = monotonic();
    const dropped0 = gen.dropped;
    await sender.run(step, rate, plan.duration_s);
    const wall = monotonic() - wall0;
    const inWindow = step.received;
    const cpu = process.cpuUsage(cpu0);
    const genCpu = ((cpu.user + cpu.system) / 1e6 / wall) * 100;
    emit({ event: "step-end", rate });
    await drain(step, plan.drain_s ?? 10.0);
    await acksSettled(gen, clients, 5);
    const result = summarize(step, rate, wall, inWindow, gen.dropped - dropped0, genCpu, plan);
    gen.steps.delete(index);
    gen.pending.clear();
    emit(result);
    if (!result.sustainable && (plan.stop_on_fail ?? true)) break;
  }
}

async function drain(step, limitS) {
  const deadline = monotonic() + limitS;
  while (step.received < step.sent * step.members && monotonic() < deadline) await sleep(20);
}

/** A sender may see its own message before the ack for it: wait for the acks too. */
async function acksSettled(gen, clients, limitS) {
  const deadline = monotonic() + limitS;
  while (monotonic() < deadline) {
    if (gen.shape === "roost" && !gen.pending.size) return;
    if (gen.shape === "socketio" && !clients.some((c) => c.acks.size)) return;
    if (gen.shape === "bare") return;
    await sleep(20);
  }
}

const round = (value, digits) => Math.round(value * 10 ** digits) / 10 ** digits;

function summarize(step, rate, wall, inWindow, dropped, genCpu, plan) {
  const expected = step.sent * step.members;
  const lost = Math.max(0, expected - step.received);
  const lat = Float64Array.from(step.latUs).sort();
  const acks = Float64Array.from(step.ackUs).sort();
  // Frames never received count as infinitely late: they push the percentiles up, never down.
  const p99 = percentile(lat, 0.99, lost);
  const sustainable =
    inWindow >= 0.95 * expected && lost === 0 && dropped === 0 && p99 !== null && p99 < plan.p99_ms;
  return {
    event: "step",
    rate,
    seconds: round(wall, 3),
    sent: step.sent,
    expected_frames: expected,
    delivered_in_window: inWindow,
    delivered_per_s: Math.round(inWindow / wall),
    lost,
    dropped,
    e2e_ms: { p50: percentile(lat, 0.5, lost), p99, p999: percentile(lat, 0.999, lost) },
    ack_ms: { p50: percentile(acks, 0.5), p99: percentile(acks, 0.99), p999: percentile(acks, 0.999) },
    acks: acks.length,
    gen_cpu: round(genCpu, 1),
    sustainable,
  };
}

// ---- idle connections --------------------------------------------------------------------------

/** Open many connections (each in a room, following it), hold them, then check they still work. */
async function idle(gen, plan) {
  emit({ event: "step-start", connections: plan.rooms * plan.members });
  const t0 = monotonic();
  const clients = await openRooms(gen, plan);
  const seconds = monotonic() - t0;
  for (const c of clients) c.setup = null;
  emit({ event: "opened", connections: clients.length, seconds: round(seconds, 3) });
  await sleep((plan.hold_s ?? 3.0) * 1000);
  emit({ event: "measure" }); // the runner reads the server's memory now
  await stdinLine();
  // Liveness: one message into each of the first check_rooms rooms.
  const members = plan.members;
  const step = new Step(1, members);
  gen.steps.set(1, step);
  const sender = new Sender(gen, clients, plan.size);
  const firsts = clients.filter((_, position) => position % members === 0).slice(0, plan.check_rooms ?? 10);
  for (const first of firsts) {
    sender.setTurn([first]);
    sender.sendOne(1);
    step.sent += 1;
  }
  await drain(step, 20);
  emit({
    event: "step",
    connections: clients.length,
    open_seconds: round(seconds, 3),
    connect_seconds: round(gen.connectS, 3),
    handshakes_per_s: Math.round(clients.length / gen.connectS),
    join_follow_seconds: round(gen.enterS, 3),
    liveness: [step.received, step.sent * members],
    dropped: gen.dropped,
  });
}

// ---- catch-up storm ----------------------------------------------------------------------------

/** Clients follow their rooms, go away, fall `behind` messages back, and all return at once. */
async function storm(gen, plan) {
  const clients = await openRooms(gen, plan);
  const behind = plan.behind;
  // Everyone's cursor is the room's head once all members are in (the last join's seq).
  const heads = new Map();
  for (const c of clients) heads.set(c.room, Math.max(heads.get(c.room) ?? 0, c.lastSeq));
  const cursors = new Map(clients.map((c) => [c.index, heads.get(c.room)]));
  gen.closing = true;
  for (const c of clients) {
    c.leaving = true;
    c.ws.close(1000);
  }
  await sleep(500);
  gen.closing = false;
  // One writer per room puts `behind` messages in while everyone is away.
  const rooms = Array.from({ length: plan.rooms }, (_, r) => r);
  const writers = await gatherLimited(
    rooms.map((r) => () => connect(gen, plan, -1, `${plan.prefix}r${r}`, `${plan.prefix}u${r}-0`, plan.urls[0])),
    200,
  );

  async function write(w) {
    for (let n = 0; n < behind; n++) {
      const ref = `w${n}`;
      w.send(wire.roostSend(w.room, `storm-${n}`, wire.body(0, -9, plan.size), ref));
      if (n % 50 === 49 || n === behind - 1) await w.expect((f) => f.type === "ack" && f.ref === ref, 120);
    }
  }

  const tWrite = monotonic();
  await Promise.all(writers.map(write));
  const writeS = monotonic() - tWrite;
  emit({ event: "written", messages: behind * writers.length, seconds: round(writeS, 3) });
  // Everyone reconnects at once and resumes from their cursor.
  emit({ event: "step-start", clients: clients.length });
  const t0 = monotonic();
  const doneAt = [];

  async function comeBack(old) {
    const url = plan.urls[old.index % plan.urls.length];
    const c = await connect(gen, plan, old.index, old.room, old.user, url);
    c.stormDone = deferred();
    c.setup = null;
    c.send(wire.pyDumps({ type: "subscribe", room: c.room, after: cursors.get(old.index), id: "s" }));
    await within(c.stormDone.promise, 120000, `${c.user} catching up`);
    doneAt.push(monotonic() - t0);
    return c;
  }

  const back = await gatherLimited(
    clients.map((c) => () => comeBack(c)),
    plan.handshakes_in_flight ?? 2000,
  );
  const total = monotonic() - t0;
  const complete = back.filter((c) => c.stormSeen >= behind).length;
  doneAt.sort((a, b) => a - b);
  let p99At = Math.floor(doneAt.length * 0.99) - 1;
  if (p99At < 0) p99At += doneAt.length; // loadgen.py's index -1: the last
  emit({
    event: "step",
    clients: back.length,
    behind,
    seconds_all_caught_up: round(total, 3),
    p50_s: round(doneAt[Math.floor(doneAt.length / 2)], 3),
    p99_s: round(doneAt[p99At], 3),
    complete,
    messages_delivered: gen.stormReceived,
    dropped: gen.dropped,
  });
}

// ---- plumbing ----------------------------------------------------------------------------------

function emit(obj) {
  process.stdout.write(`${wire.pyDumps(obj, FLOATS)}\n`);
}

let lines = null;

/** The next line on stdin: the plan (with "-"), or the runner's "go" after it measured. */
function stdinLine() {
  if (lines === null) {
    const queue = [];
    const waiters = [];
    readline.createInterface({ input: process.stdin }).on("line", (line) => {
      if (waiters.length) waiters.shift()(line);
      else queue.push(line);
    });
    lines = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiters.push(resolve)));
  }
  return lines();
}

async function main() {
  const arg = process.argv[2];
  const plan = JSON.parse(arg !== "-" ? arg : await stdinLine());
  const gen = new Gen(plan.shape);
  const scenario = { fanout, idle, storm }[plan.scenario];
  if (scenario === undefined) throw new Error(`unknown scenario ${plan.scenario}`);
  let code = 0;
  try {
    await scenario(gen, plan);
  } catch (err) {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    code = 1;
  } finally {
    gen.closing = true;
    emit({ event: "done" });
  }
  process.stdout.write("", () => process.exit(code));
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  });
}

module.exports = { FLOATS, percentile, summarize, Step };

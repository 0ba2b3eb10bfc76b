"use strict";
// The three wire shapes of src/roost/bench/wire.py, ported byte for byte: Roost's protocol, bare broadcast,
// Socket.IO. Every shape carries the send time in the message body (~T<ns>:<step>:), so one byte search finds it
// in whatever frame comes back, however the server re-serialized the JSON around it. tests/test_bench.py compares
// every function here with its Python original.

const BODY_MARK = "~T";
const SHAPES = ["roost", "bare", "socketio"];

const padding = new Map();

/** A message body of `size` bytes that names its send time (ns) and the step it belongs to. */
function body(tNs, step, size) {
  const head = `~T${tNs}:${step}:`;
  const n = Math.max(0, size - head.length);
  let pad = padding.get(n);
  if (pad === undefined) {
    pad = "x".repeat(n);
    padding.set(n, pad);
  }
  return head + pad;
}

function roostSend(room, cmid, text, ref) {
  return `{"type":"send","room":"${room}","cmid":"${cmid}","body":"${text}","id":"${ref}"}`;
}

function bareSend(room, seq, tNs, text) {
  return `{"room":"${room}","seq":${seq},"t":${tNs},"body":"${text}"}`;
}

function socketioSend(room, ack, tNs, text) {
  return `42${ack}["msg",{"room":"${room}","t":${tNs},"body":"${text}"}]`;
}

function socketioJoin(room) {
  return `421${pyDumps(["join", room])}`;
}

/**
 * JSON as Python's json.dumps writes it by default (", " and ": " separators, ASCII only): the setup frames
 * loadgen.py sends (auth, create, join, subscribe) put the same bytes on the wire from either generator, and the
 * JSON lines out read the same. JSON has one number type; a number under a key in `floats` is written as Python
 * writes a float (1.0, not 1), because loadgen.py's floats (latencies, seconds, CPU %) are floats in its output.
 */
function pyDumps(value, floats = null, key = null) {
  if (typeof value === "number" && floats !== null && floats.has(key) && Number.isFinite(value)) {
    return Number.isInteger(value) && Math.abs(value) < 1e16 ? value.toFixed(1) : String(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => pyDumps(v, floats, key)).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value)
      .map(([k, v]) => `${pyDumps(k)}: ${pyDumps(v, floats, k)}`)
      .join(", ")}}`;
  }
  if (typeof value === "string") {
    const escape = (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
    return JSON.stringify(value).replace(/[\u0080-\uffff]/g, escape);
  }
  if (value === undefined) return "null";
  return JSON.stringify(value);
}

module.exports = { BODY_MARK, SHAPES, body, roostSend, bareSend, socketioSend, socketioJoin, pyDumps };

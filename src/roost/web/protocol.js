// protocol.js: the wire protocol as data, the counterpart of roost.protocol.codes and roost.protocol.frames.
//
// The codes with their retry rule, the server frames' field specs and the decoder that applies them.
// No I/O and no state: the client (roost.js) and the sync machine (sync.js) import it, and so can Node
// (tests/vectors/run_js.mjs checks it against the same vector files as the Python modules).

/** Error and close codes (docs/protocol.md section 12); tests/vectors/codes.json holds them to roost.protocol.codes. */
export const Code = Object.freeze({
  BAD_FRAME: 4400,
  UNAUTHORIZED: 4401,
  FORBIDDEN: 4403,
  UNKNOWN_ROOM: 4404,
  AUTH_TIMEOUT: 4408,
  CONFLICT: 4409,
  RESYNC_REQUIRED: 4410,
  TOO_LARGE: 4413,
  UNSUPPORTED_TYPE: 4415,
  TOO_MANY_ROOMS: 4422,
  RATE_LIMITED: 4429,
  INTERNAL: 4500,
  UNAVAILABLE: 4503,
  NODE_UNREADY: 4504,
  SLOW_CONSUMER: 4508,
  GOING_AWAY: 4509,
});

/** True when the same request may succeed later unchanged (the SDK's `Code.retryable`). */
export function isRetryable(code) {
  return code >= 4500 || code === Code.RATE_LIMITED;
}

export class FrameError extends Error {
  constructor(reason) {
    super(reason);
    this.name = "FrameError";
  }
}

/** This library was called wrongly (a bug in the caller), as roost.protocol.errors.UsageError: never sent anywhere. */
export class UsageError extends Error {
  constructor(reason) {
    super(reason);
    this.name = "UsageError";
  }
}

// ---- frames ----------------------------------------------------------------------------------

// Field specs, mirroring roost.protocol.frames: "str" required, "str|null" required but may be null,
// "str?" optional (absent or null), "str=text" optional with a default and never null; "msgs" a list of
// messages. tests/vectors/test_frame_specs.py derives the same table from the Python structs.
export const MESSAGE_FIELDS = Object.freeze({
  room: "str", seq: "int", cmid: "str", sender: "str", body: "str", ts: "int", kind: "str=text",
});

export const SERVER_FRAMES = Object.freeze({
  welcome: { user: "str", session: "str", max_body_bytes: "int", max_frame_bytes: "int", ref: "str?", inbox: "str?" },
  ok: { ref: "str|null", room: "str" },
  subscribed: { ref: "str|null", room: "str", epoch: "str", head: "int", after: "int" },
  live: { room: "str", seq: "int" },
  ack: { ref: "str|null", room: "str", cmid: "str", seq: "int", ts: "int", dup: "bool" },
  history: {
    ref: "str|null", room: "str", messages: "msgs", has_more: "bool", epoch: "str", head: "int", first: "int",
  },
  pong: { ref: "str?" },
  typing: { room: "str", user: "str" },
  receipt: { room: "str", user: "str", seq: "int" },
  presence: { room: "str", user: "str", status: "str" },
  error: {
    code: "int", reason: "str", ref: "str?", room: "str?", retry_after_s: "float?", epoch: "str?", head: "int?",
    first: "int?",
  },
  msg: MESSAGE_FIELDS,
});

/** The frame types this client knows (unknown ones are ignored, as the protocol asks). */
export const SERVER_FRAME_TYPES = Object.freeze(Object.keys(SERVER_FRAMES));

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

const wellFormed = typeof String.prototype.isWellFormed === "function"
  ? (s) => s.isWellFormed()
  : (s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

function checkValue(spec, value, path, floats, holder, key) {
  switch (spec) {
    case "str":
      return typeof value === "string" ? null : `expected a string at ${path}`;
    case "bool":
      return typeof value === "boolean" ? null : `expected a bool at ${path}`;
    case "float":
      return typeof value === "number" && Number.isFinite(value) ? null : `expected a number at ${path}`;
    case "int":
      if (typeof value !== "number" || !Number.isInteger(value) || floats.get(holder)?.has(key)) {
        return `expected an int at ${path}`;
      }
      // JavaScript numbers hold integers exactly only up to 2**53: refuse what cannot be a cursor.
      return Number.isSafeInteger(value) ? null : `integer out of range at ${path}`;
    case "msgs": {
      if (!Array.isArray(value)) return `expected an array at ${path}`;
      for (let i = 0; i < value.length; i++) {
        const item = value[i];
        if (!isObject(item)) return `expected an object at ${path}[${i}]`;
        if ("type" in item && item.type !== "msg") return `expected type "msg" at ${path}[${i}].type`;
        const why = checkFields(MESSAGE_FIELDS, item, `${path}[${i}]`, floats);
        if (why) return why;
      }
      return null;
    }
    default:
      throw new Error(`bad spec ${spec}`);
  }
}

function checkFields(fields, obj, path, floats) {
  for (const [key, raw] of Object.entries(fields)) {
    let spec = raw;
    let mode = "required";
    if (spec.endsWith("|null")) { spec = spec.slice(0, -5); mode = "nullable"; }
    else if (spec.endsWith("?")) { spec = spec.slice(0, -1); mode = "optional"; }
    else if (spec.includes("=")) { [spec] = spec.split("="); mode = "default"; }
    const present = Object.prototype.hasOwnProperty.call(obj, key);
    const value = obj[key];
    if (!present) {
      if (mode === "required" || mode === "nullable") return `missing required field ${path}.${key}`;
      continue;
    }
    if (value === null && (mode === "nullable" || mode === "optional")) continue;
    const why = checkValue(spec, value, `${path}.${key}`, floats, obj, key);
    if (why) return why;
  }
  return null;
}

function applyDefaults(fields, obj) {
  for (const [key, spec] of Object.entries(fields)) {
    const at = spec.indexOf("=");
    if (at > 0 && !(key in obj)) obj[key] = spec.slice(at + 1);
  }
}

/**
 * Decode one server frame (one part of a WebSocket message), the way the server's own
 * `roost.protocol.frames.decode_server` does: the JSON must be an object whose `type` is a known
 * server frame with every required field of the right type (ints written as integers, not `1.0`);
 * unknown fields are ignored. Returns the frame (a plain object, `kind` defaulted on messages) or
 * throws FrameError.
 */
export function decodeServerFrame(text) {
  if (typeof text !== "string") throw new FrameError("expected a string");
  const floats = new WeakMap(); // holder -> keys written as non-integer literals (1.0, 1e2)
  let bad = null;
  let value;
  try {
    value = JSON.parse(text, function (key, val, context) {
      if (typeof val === "number") {
        // Source text access (Chrome 114+, Firefox 135+, Safari 18.4+) tells 1 from 1.0; without it
        // a float literal with an integral value is accepted as an int.
        const source = context && context.source;
        if (typeof source === "string" && /[.eE]/.test(source)) {
          let keys = floats.get(this);
          if (!keys) floats.set(this, (keys = new Set()));
          keys.add(key);
        }
      } else if (typeof val === "string" && !wellFormed(val)) {
        bad = "a string with a lone surrogate";
      }
      if (!wellFormed(key)) bad = "a key with a lone surrogate";
      return val;
    });
  } catch (e) {
    throw new FrameError(`malformed JSON: ${e.message}`);
  }
  if (bad) throw new FrameError(`invalid text: ${bad}`);
  return checkFrame(value, floats);
}

/** The checks of decodeServerFrame on a value already decoded: the frame, defaults applied, or FrameError. */
function checkFrame(value, floats) {
  if (!isObject(value)) throw new FrameError("invalid server frame: expected an object");
  if (!("type" in value)) throw new FrameError("invalid server frame: missing required field type");
  if (typeof value.type !== "string") throw new FrameError("invalid server frame: expected a string at $.type");
  const fields = Object.prototype.hasOwnProperty.call(SERVER_FRAMES, value.type) ? SERVER_FRAMES[value.type] : null;
  if (!fields) throw new FrameError(`invalid server frame: unknown type ${JSON.stringify(value.type)}`);
  const why = checkFields(fields, value, "$", floats);
  if (why) throw new FrameError(`invalid server frame: ${why}`);
  applyDefaults(fields, value);
  if (value.type === "history") for (const m of value.messages) applyDefaults(MESSAGE_FIELDS, m);
  return value;
}

/** A lone surrogate in any string or key of `value` (a MessagePack decoder may make one from bad UTF-8). */
function illFormed(value) {
  if (typeof value === "string") return !wellFormed(value);
  if (Array.isArray(value)) return value.some(illFormed);
  if (isObject(value)) return Object.entries(value).some(([k, v]) => !wellFormed(k) || illFormed(v));
  return false;
}

/**
 * Check one server frame that a MessagePack decoder made (an element of a server message's array, R-WIRE-10)
 * with decodeServerFrame's rules: a map whose `type` is a known server frame with every required field of the
 * right type (a `bin` is not a string); unknown fields ignored. A float with an integral value cannot be told
 * from an integer once decoded, so it passes as one (as JSON's `1.0` does without source text access).
 */
export function decodeServerObject(value) {
  if (illFormed(value)) throw new FrameError("invalid text: a string with a lone surrogate");
  return checkFrame(value, new WeakMap());
}

/** `{ok: true, frame}` or `{ok: false, reason}`: decodeServerFrame without exceptions. */
export function checkServerFrame(text) {
  try {
    return { ok: true, frame: decodeServerFrame(text) };
  } catch (e) {
    if (e instanceof FrameError) return { ok: false, reason: e.message };
    throw e;
  }
}

/** The JSON objects of one server WebSocket message: split on "\n", empty parts dropped. */
export function splitFrames(data) {
  return String(data).split("\n").filter((part) => part.length > 0);
}

// ---- the per-user event stream (docs/protocol.md section 19; roost.protocol.inbox) -----------

/** The kinds of the events of a user's stream and the fields of each one's body. */
export const INBOX_EVENTS = Object.freeze({
  invited: { room: "str", by: "str" },
  uninvited: { room: "str", by: "str", reason: "str" },
  added: { room: "str", by: "str", seq: "int" },
  removed: { room: "str", by: "str", how: "str", seq: "int" },
  mention: { room: "str", seq: "int", sender: "str" },
  read: { room: "str", seq: "int" },
  notify: { room: "str", level: "str" },
});

/**
 * The event a message of the user's stream carries, as roost.protocol.inbox.decode_event: `{seq, ts, kind,
 * content}` where `seq` is the event's place in the stream and `content` the body's fields when the kind is
 * known and the body has them (`{room, by}` for `invited`, ...), else null (shown neutrally, never an error:
 * the stream may grow new kinds).
 */
export function inboxEvent(m) {
  const event = { seq: m.seq, ts: m.ts, kind: m.kind, content: null };
  const fields = Object.prototype.hasOwnProperty.call(INBOX_EVENTS, m.kind) ? INBOX_EVENTS[m.kind] : null;
  let body;
  try { body = JSON.parse(m.body); } catch { body = null; }
  if (!fields || !isObject(body) || checkFields(fields, body, "$", new WeakMap())) return event;
  event.content = {};
  for (const key of Object.keys(fields)) event.content[key] = body[key];
  return event;
}

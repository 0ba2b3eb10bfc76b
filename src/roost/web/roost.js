// roost.js: the Roost JavaScript client. Plain ES modules with no dependencies and no build step.
//
//   import { RoostClient } from "http://127.0.0.1:8080/roost.js";
//   const client = new RoostClient({ url: "ws://127.0.0.1:8080/ws", token, user: "alice" });
//   client.on("message", (m) => show(m));          // every message of every followed room, once, in order
//   client.start();
//   await client.subscribe("lobby");                // from the saved cursor, else from now
//   client.send("lobby", "hello");                   // outbox: survives reconnects and page reloads
//
// The client is split along the seams of the Python SDK, so that each rule has one counterpart:
//
//   protocol.js   codes and their retry rule, server frame specs, the decoder  (roost.protocol.codes, .frames)
//   encoding.js   JSON, or MessagePack by subprotocol (`encoding: "msgpack"`)  (roost.protocol.encoding)
//   sync.js       RoomSync: dedupe, gap filling, resync                        (roost.protocol.sync)
//   relations.js  the fold of edits, deletions and reactions                   (roost.protocol.relations)
//   backoff.js    reconnect and retry delays                                   (roost.client.backoff)
//   roost.js      this file: the client that drives them over a WebSocket      (roost.client.connection)
//
// The semantics are those of docs/protocol.md section 11: an outbox of client message ids (cmid)
// re-sent on every reconnect until acked, a cursor (epoch, seq) per room taken from `subscribed.after`
// and then from each delivered message, a RoomSync per followed room deciding what is delivered, what
// is fetched from `history` and when continuity is lost (a resync), 4403 on a room as "left",
// reconnects with exponential backoff. The outbox and the cursors are persisted (localStorage by
// default), so a reload loses neither. The user's event stream (`welcome.inbox`, protocol section 19) is
// followed like a room after every welcome and handed over as `inbox` events; a room someone else added
// the user to is followed at once (R-CLIENT-73). Everything the other modules export is exported here too.

import { backoff, RECONNECT, retryDelay, SEND_RETRY } from "./backoff.js";
import { JSON_CODEC, loadCodec, SUBPROTOCOLS } from "./encoding.js";
import { Code, FrameError, inboxEvent, isRetryable, UsageError } from "./protocol.js";
import { decode_content, text_of } from "./relations.js";
import { Deliver, Fetch, Resync, RoomSync } from "./sync.js";

export * from "./backoff.js";
export * from "./encoding.js";
export * from "./protocol.js";
export * from "./relations.js";
export * from "./sync.js";
/** The content of a relation event, or null (the name roost.js exported before relations.js). */
export const relationOf = decode_content;

export const VERSION = "0.1.0";

/** The server answered a request with an error frame; `code` says which. */
export class RequestFailed extends Error {
  constructor(reason, code, frame = null) {
    super(reason);
    this.name = "RequestFailed";
    this.code = code;
    this.frame = frame;
  }
}

/** The connection dropped before the reply came; the request may be retried. */
export class ConnectionLost extends Error {
  constructor(reason = "connection lost") {
    super(reason);
    this.name = "ConnectionLost";
    this.code = Code.UNAVAILABLE;
  }
}

export class ClientClosed extends Error {
  constructor(reason = "client closed") {
    super(reason);
    this.name = "ClientClosed";
    this.code = Code.GOING_AWAY;
  }
}

// ---- storage ---------------------------------------------------------------------------------

/** A synchronous key-value store over window.localStorage (the default). */
export function localStorageAdapter(ls = globalThis.localStorage) {
  return {
    area: ls, // lets the client hear other tabs' writes (storage events)
    get(key) {
      try { return ls.getItem(key); } catch { return null; }
    },
    set(key, value) {
      try { ls.setItem(key, value); return true; } catch (e) {
        console.warn("roost: could not persist", key, e);
        return false;
      }
    },
    remove(key) {
      try { ls.removeItem(key); } catch { /* storage unavailable */ }
    },
    keys(prefix) {
      const out = [];
      try {
        for (let i = 0; i < ls.length; i++) {
          const key = ls.key(i);
          if (key !== null && key.startsWith(prefix)) out.push(key);
        }
      } catch { /* storage unavailable */ }
      return out;
    },
  };
}

/** The same interface in memory (nothing survives a reload): for tests and private windows. */
export function memoryStorage() {
  const map = new Map();
  return {
    get: (key) => (map.has(key) ? map.get(key) : null),
    set: (key, value) => { map.set(key, String(value)); return true; },
    remove: (key) => { map.delete(key); },
    keys: (prefix) => [...map.keys()].filter((key) => key.startsWith(prefix)),
  };
}

function readJSON(storage, key) {
  const text = storage.get(key);
  if (text === null) return null;
  try { return JSON.parse(text); } catch { return null; }
}

/** The `sub` claim of a JWT, unverified (the server verifies): used to name the storage. */
export function tokenSubject(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(part + "===".slice((part.length + 3) % 4));
    const json = new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    const sub = JSON.parse(json).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

/** A fresh client message id: 32 random hex digits (printable ASCII, no spaces, under 64). */
export function newCmid() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function defaultUrl() {
  if (typeof location === "undefined") throw new Error("url is required outside a browser page");
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
}

// ---- the client ------------------------------------------------------------------------------

const DEFAULTS = {
  initialBackoffMs: RECONNECT.initialMs,
  maxBackoffMs: RECONNECT.maxMs,
  connectTimeoutMs: 10000,
  pingIntervalMs: 20000,
  pongTimeoutMs: 10000,
  typingIntervalMs: 3000,
  retryInitialMs: SEND_RETRY.initialMs,
  retryMaxMs: SEND_RETRY.maxMs,
  // Messages asked per gap-repair read: a `history` request costs frame budget by what it asks for, and
  // the server bounds a page by bytes anyway (R-HIST-50), so 100 repairs big messages cheaper.
  historyPage: 100,
  // Follow the user's event stream (invitations, rooms added, mentions, read positions) after each welcome.
  inbox: true,
  // The wire's encoding: "json" (no subprotocol, the server's default) or "msgpack" (roost.v1.msgpack,
  // binary frames: docs/protocol.md R-WIRE-9). Compression needs nothing here: a browser offers
  // permessage-deflate by itself, and a server with ws_compression = deflate accepts it (R-WIRE-12).
  encoding: "json",
};

/**
 * A connection to Roost that stays connected, resumes rooms from their cursors and never loses a
 * send. Events (use `client.on(type, fn)`, `fn` gets the event's detail, or addEventListener):
 *
 * - `state`     {state, nextAttemptAt, code, reason}: "idle", "connecting", "connected",
 *               "reconnecting" (nextAttemptAt: ms since the epoch), "offline", "unauthorized",
 *               "forbidden", "closed"
 * - `welcome`   the welcome frame
 * - `message`   a msg frame: each message of each followed room, once, in seq order
 * - `subscribed` {room, cursor, head}; `live` {room, seq}
 * - `typing`    {room, user}; `receipt` {room, user, seq}; `presence` {room, user, status}
 * - `queued`    {entry}: a send entered the outbox ({room, cmid, body, t})
 * - `ack`       {entry, sent}: sent = {room, cmid, seq, ts, dup}
 * - `sendfailed` {entry, code, reason}: a non-retryable error; the entry is kept in `failed`
 * - `resync`    {room, reason, epoch, head, first}: continuity lost; the room restarts at `first`
 * - `left`      {room, code, reason}: the room is no longer followed (left elsewhere, or gone)
 * - `inbox`     an event of the user's own stream, once, in order: {seq, ts, kind, content} (kind invited,
 *               uninvited, added, removed, mention, read, notify: protocol section 19; content null for a kind this
 *               version does not know); a room someone
 *               else added the user to (`added`) is followed from the user's join before the event is emitted
 * - `error`     an error frame nobody was waiting for
 */
export class RoostClient extends EventTarget {
  constructor(options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    const urls = options.url ?? options.urls ?? defaultUrl();
    this.urls = Array.isArray(urls) ? [...urls] : [urls];
    if (this.urls.length === 0) throw new Error("at least one URL is needed");
    this._token = options.token;
    if (this._token === undefined) throw new Error("token is required (a string or a function)");
    this.user = options.user ?? (typeof this._token === "string" ? tokenSubject(this._token) : null);
    this.storage = options.storage ?? (globalThis.localStorage ? localStorageAdapter() : memoryStorage());
    if (options.namespace) {
      this.namespace = options.namespace;
    } else {
      if (!this.user) throw new Error("user (or namespace) is required to name the client's storage");
      this.namespace = `roost:v1:${new URL(this.urls[0], "http://x/").host}:${this.user}:`;
    }
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._codec = JSON_CODEC; // the encoding's codec, loaded on the first connection (loadCodec)
    if (!Object.hasOwn(SUBPROTOCOLS, this.options.encoding)) {
      throw new UsageError(`encoding must be "json" or "msgpack", not ${JSON.stringify(this.options.encoding)}`);
    }

    this.state = "idle";
    this.nextAttemptAt = null;
    this.reconnects = 0;
    this.welcome = null;
    this.inbox = null; // the user's event stream (welcome.inbox), once connected
    this.maxBodyBytes = 16384;

    this._rooms = new Map(); // room -> followed room state
    this._outbox = new Map(); // cmid -> entry, in send order
    this._failed = new Map(); // cmid -> entry that failed for good (kept until retry/discard)
    this._pending = new Map(); // request id -> {resolve, reject}
    this._connectWaiters = [];
    this._ids = 0;
    this._order = 0;
    this._conn = 0;
    this._ws = null;
    this._welcomed = false;
    this._closed = false;
    this._started = false;
    this._fatal = null;
    this._timer = null;
    this._authTimer = null;
    this._heartbeat = null;
    this._awaitingPong = 0;
    this._authFailures = 0;
    this._lastTyping = new Map();
    this._delays = this._newDelays();
    this._load();
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  /** Start connecting. Resolves once the first connection is up (rejects on a fatal auth error). */
  start() {
    if (this._closed) return Promise.reject(new ClientClosed());
    if (!this._started) {
      this._started = true;
      if (typeof window !== "undefined") {
        this._onOnline = () => this.retryNow();
        this._onOffline = () => { if (!this._welcomed) this._setState("offline"); };
        this._onVisible = () => {
          if (document.visibilityState === "visible" && this.state === "reconnecting") this.retryNow();
        };
        this._onStorage = (event) => this._fromOtherTab(event);
        window.addEventListener("online", this._onOnline);
        window.addEventListener("offline", this._onOffline);
        window.addEventListener("storage", this._onStorage);
        document.addEventListener("visibilitychange", this._onVisible);
      }
      this._connect();
    }
    return this._whenConnected();
  }

  /** Close for good. Unacked sends reject with ClientClosed but stay in storage: the next client of
   * this user (a reload) sends them. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    if (typeof window !== "undefined" && this._onOnline) {
      window.removeEventListener("online", this._onOnline);
      window.removeEventListener("offline", this._onOffline);
      window.removeEventListener("storage", this._onStorage);
      document.removeEventListener("visibilitychange", this._onVisible);
    }
    const ws = this._ws;
    if (ws) this._drop(ws, 1000, "client closed");
    const closed = new ClientClosed();
    for (const waiter of this._connectWaiters.splice(0)) waiter.reject(closed);
    // Unacked sends stay in storage (the next client of this user sends them); this one's promises end.
    for (const entry of this._outbox.values()) entry.reject(closed);
    for (const st of this._rooms.values()) for (const w of st.waiters.splice(0)) w.reject(closed);
    this._setState("closed");
  }

  /** Skip the backoff wait and connect now (a "retry now" button). */
  retryNow() {
    if (this._closed || this._fatal || this._ws) return;
    clearTimeout(this._timer);
    this._connect();
  }

  /** Drop the current connection as a network failure would; the client reconnects and resumes. */
  reconnect() {
    if (this._ws) this._drop(this._ws, 1006, "reconnect requested");
  }

  get connected() {
    return this._welcomed;
  }

  // ---- rooms ----------------------------------------------------------------------------------

  /** Where each followed room stands: `{room: {epoch, seq}}`. */
  get cursors() {
    const out = {};
    for (const [room, st] of this._rooms) if (st.cursor) out[room] = { ...st.cursor };
    return out;
  }

  /** The cursor of `room` ({epoch, seq}): the last message handed to the app; saved ones too. */
  cursor(room) {
    const st = this._rooms.get(room);
    const c = st ? st.cursor : readJSON(this.storage, this._key("cursor:", room));
    return c ? { epoch: c.epoch ?? null, seq: c.seq } : null;
  }

  /** The rooms being followed. */
  get rooms() {
    return [...this._rooms.keys()];
  }

  /**
   * Follow `room`: from `after`/`epoch` if given, else from the saved cursor, else from now.
   * Resolves with the cursor the room is followed from once the server confirms; the backlog
   * arrives as `message` events. Rejects with RequestFailed if the server refuses.
   */
  subscribe(room, { after = undefined, epoch = null } = {}) {
    if (this._closed) return Promise.reject(new ClientClosed());
    let st = this._rooms.get(room);
    if (!st || after !== undefined) {
      const cursor = after !== undefined && after !== null
        ? { epoch, seq: after }
        : (st ? st.cursor : this.cursor(room));
      const waiters = st ? st.waiters : [];
      if (st) this._unfollow(st);
      st = this._newRoom(room, cursor);
      st.waiters = waiters;
      this._rooms.set(room, st);
      if (cursor) this._saveCursor(st);
      if (this._welcomed) this._sendSubscribe(st);
    } else if (st.confirmed) {
      return Promise.resolve({ ...st.cursor });
    }
    return new Promise((resolve, reject) => st.waiters.push({ resolve, reject }));
  }

  /** Stop following `room` on this connection (membership unchanged). The cursor is kept. */
  async unsubscribe(room) {
    const st = this._rooms.get(room);
    if (!st) return;
    this._rooms.delete(room);
    this._unfollow(st);
    for (const w of st.waiters.splice(0)) w.reject(new ClientClosed("unsubscribed"));
    if (this._welcomed) await this._request({ type: "unsubscribe", room }).catch(() => {});
  }

  /** `kind`: "public" (the default) or "private" (joined by invitation only). */
  create(room, kind = "public") {
    return this._request(kind === "public" ? { type: "create", room } : { type: "create", room, kind });
  }

  /** Open the direct conversation with `user`: the `ok` frame's `room` is `dm:<a>:<b>`. */
  dm(user) {
    return this._request({ type: "dm", user });
  }

  /** Moderation (owner or admin): `verb` is "invite", "uninvite" (revoke), "kick", "ban" or "unban". */
  moderate(verb, room, user) {
    if (!["invite", "uninvite", "kick", "ban", "unban"].includes(verb)) {
      throw new FrameError(`not a moderation verb: ${verb}`);
    }
    return this._request({ type: verb, room, user });
  }

  /** Decline my invitation to `room` (rejects with 4404 when I hold none). */
  decline(room) {
    return this._request({ type: "decline", room });
  }

  /** Owner only: `role` is "admin" or "member". */
  setRole(room, user, role) {
    return this._request({ type: "role", room, user, role });
  }

  join(room) {
    return this._request({ type: "join", room });
  }

  /** Leave the room (membership ends); its cursor is forgotten. */
  leave(room) {
    this._forget(room);
    return this._request({ type: "leave", room });
  }

  /**
   * A page of stored messages: `{messages, has_more, epoch, head, first}` (see the `history` frame). At
   * most `limit` messages and the server's page bytes (256 KiB by default, at least one message):
   * `has_more` says more follow (R-HIST-50); gap filling reads on up to each page's `head` (R-CLIENT-50).
   */
  history(room, { after = null, before = null, limit = 50, thread = null } = {}) {
    const frame = { type: "history", room, limit };
    if (after !== null && after !== undefined) frame.after = after;
    if (before !== null && before !== undefined) frame.before = before;
    if (thread !== null && thread !== undefined) frame.thread = thread; // only that thread: its root and replies
    return this._request(frame);
  }

  ping() {
    return this._request({ type: "ping" });
  }

  /** Tell the room's followers "I am typing", at most every typingIntervalMs. True if sent. */
  typing(room) {
    const now = Date.now();
    if (!this._welcomed || now - (this._lastTyping.get(room) ?? 0) < this.options.typingIntervalMs) return false;
    this._lastTyping.set(room, now);
    return this._write({ type: "typing", room });
  }

  /** Move this user's read position in `room` (servers with read receipts). */
  markRead(room, seq) {
    return this._request({ type: "read", room, seq });
  }

  // ---- edits, deletions, reactions ------------------------------------------------------------
  // Stored as relation events (protocol section 18); they come back to every follower as `message`
  // events of kind edit/delete/react/unreact, which `Relations` folds. Not kept in the outbox: on
  // ConnectionLost call again (an edit with the same cmid; delete and react are keyed by the server).

  /** Replace the text of my message `target`. Resolves with the `ack` frame. */
  edit(room, target, body, { cmid = null } = {}) {
    return this._request({ type: "edit", room, target, body, cmid: cmid ?? this.newCmid() });
  }

  /** Delete message `target` (mine, or any in a room I moderate); `erase`: also remove its text from the server's
   * store (R-ERASE-1). */
  delete(room, target, { erase = false } = {}) {
    const frame = { type: "delete", room, target };
    if (erase) frame.erase = true;
    return this._request(frame);
  }

  /** Put `emoji` on message `target`, or take it back with `remove`. */
  react(room, target, emoji, { remove = false } = {}) {
    const frame = { type: "react", room, target, emoji };
    if (remove) frame.remove = true;
    return this._request(frame);
  }

  // ---- sending --------------------------------------------------------------------------------

  newCmid() {
    return newCmid();
  }

  /**
   * Store `body` in `room`. The message enters the persisted outbox at once (event `queued`) and
   * is (re)sent with the same cmid until the server acks it. Resolves with
   * `{room, cmid, seq, ts, dup}` on the ack; rejects with RequestFailed on a non-retryable error.
   * Safe to call while disconnected. `replyTo`: the seq of the message this one replies to; `thread`: the
   * seq of the root of the thread it is a reply in (protocol section 22); `attachments`: ids of my uploads to the
   * room (`upload`, protocol section 25) the message carries; all are kept in the outbox.
   */
  send(room, body, { cmid = null, replyTo = null, thread = null, attachments = [] } = {}) {
    if (this._closed) return Promise.reject(new ClientClosed());
    cmid = cmid ?? this.newCmid();
    const existing = this._outbox.get(cmid);
    if (existing) return existing.promise;
    const entry = this._newEntry({
      room, cmid, body, t: Date.now(), n: ++this._order, reply_to: replyTo, thread, attachments,
    });
    this._outbox.set(cmid, entry);
    this.storage.set(this._key("out:", cmid), JSON.stringify(publicEntry(entry)));
    this._emit("queued", { entry: publicEntry(entry) });
    this._transmit(entry);
    return entry.promise;
  }

  /** Unacked sends, in send order: `[{room, cmid, body, t, n, reply_to, thread}]`. */
  get outbox() {
    return [...this._outbox.values()].map(publicEntry);
  }

  /** Sends that failed for good (non-retryable error), with `code` and `reason`. */
  get failed() {
    return [...this._failed.values()].map((e) => ({ ...publicEntry(e), code: e.code, reason: e.reason }));
  }

  /** Send a failed message again, as a new message (new cmid: nothing was stored for the old one). */
  retry(cmid) {
    const entry = this._failed.get(cmid);
    if (!entry) return Promise.reject(new Error(`no failed message ${cmid}`));
    this.discard(cmid);
    return this.send(entry.room, entry.body, {
      replyTo: entry.reply_to ?? null, thread: entry.thread ?? null, attachments: entry.attachments ?? [],
    });
  }

  /** Forget a failed message. */
  discard(cmid) {
    this._failed.delete(cmid);
    this.storage.remove(this._key("failed:", cmid));
  }

  // ---- events ---------------------------------------------------------------------------------

  /** `client.on("message", (m) => ...)`; returns a function that removes the listener. */
  on(type, fn) {
    const listener = (event) => fn(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, extra = {}) {
    this.state = state;
    if (state !== "reconnecting") this.nextAttemptAt = null;
    this._emit("state", { state, nextAttemptAt: this.nextAttemptAt, ...extra });
  }

  // ---- persistence ----------------------------------------------------------------------------

  _key(kind, id) {
    return `${this.namespace}${kind}${id}`;
  }

  _load() {
    const entries = [];
    for (const key of this.storage.keys(this._key("out:", ""))) {
      const e = readJSON(this.storage, key);
      if (e && typeof e.room === "string" && typeof e.cmid === "string" && typeof e.body === "string") entries.push(e);
    }
    entries.sort((a, b) => (a.t - b.t) || ((a.n ?? 0) - (b.n ?? 0)));
    for (const e of entries) {
      this._order = Math.max(this._order, e.n ?? 0);
      this._outbox.set(e.cmid, this._newEntry(e));
    }
    const failed = [];
    for (const key of this.storage.keys(this._key("failed:", ""))) {
      const e = readJSON(this.storage, key);
      if (e && typeof e.cmid === "string") failed.push(e);
    }
    failed.sort((a, b) => a.t - b.t);
    for (const e of failed) this._failed.set(e.cmid, e);
  }

  /** Another tab of the same user queued a message: send it from here too (the cmid makes it one). */
  _fromOtherTab(event) {
    const prefix = this._key("out:", "");
    if (!this.storage.area || event.storageArea !== this.storage.area || !event.key?.startsWith(prefix)) return;
    if (event.newValue === null || this._closed) return; // acked there: our own copy gets a dup ack
    const cmid = event.key.slice(prefix.length);
    if (this._outbox.has(cmid)) return;
    let e;
    try { e = JSON.parse(event.newValue); } catch { return; }
    if (typeof e?.room !== "string" || typeof e.body !== "string") return;
    const entry = this._newEntry({ ...e, cmid });
    this._outbox.set(cmid, entry);
    this._emit("queued", { entry: publicEntry(entry) });
    this._transmit(entry);
  }

  _saveCursor(st) {
    if (st.cursor) this.storage.set(this._key("cursor:", st.room), JSON.stringify(st.cursor));
    else this.storage.remove(this._key("cursor:", st.room));
  }

  _newEntry(e) {
    const entry = {
      room: e.room, cmid: e.cmid, body: e.body, t: e.t, n: e.n ?? 0, sentOn: 0, refusals: 0,
      reply_to: Number.isSafeInteger(e.reply_to) ? e.reply_to : null,
      thread: Number.isSafeInteger(e.thread) ? e.thread : null,
      attachments: Array.isArray(e.attachments) ? e.attachments.filter((a) => typeof a === "string") : [],
    };
    entry.promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    entry.promise.catch(() => {}); // events report failures too: an unawaited send is not an error
    return entry;
  }

  _newRoom(room, cursor) {
    return {
      room, cursor, subId: null, confirmed: false, sync: null, fetching: false, fetchFailures: 0, fetchTimer: null,
      waiters: [], head: null,
    };
  }

  _forget(room) {
    const st = this._rooms.get(room);
    this._rooms.delete(room);
    this.storage.remove(this._key("cursor:", room));
    if (!st) return;
    this._unfollow(st);
    for (const w of st.waiters.splice(0)) w.reject(new ClientClosed("left"));
  }

  // ---- connection -----------------------------------------------------------------------------

  _retryOptions() {
    return { initialMs: this.options.retryInitialMs, maxMs: this.options.retryMaxMs };
  }

  _newDelays() {
    return backoff({ initialMs: this.options.initialBackoffMs, maxMs: this.options.maxBackoffMs });
  }

  async _connect() {
    if (this._closed || this._fatal || this._ws) return;
    const conn = ++this._conn;
    const url = this.urls[(conn - 1) % this.urls.length];
    this._setState("connecting");
    let token;
    try {
      token = typeof this._token === "function" ? await this._token({ stale: this._authFailures > 0 }) : this._token;
    } catch (e) {
      // The token function failed (the identity service is unreachable, say): try again later.
      if (this._closed || conn !== this._conn) return;
      this._scheduleReconnect(1006, `could not get a token: ${e}`);
      return;
    }
    if (this._closed || conn !== this._conn) return;
    if (typeof token !== "string" || !token) {
      this._fail("unauthorized", Code.UNAUTHORIZED, "no token");
      return;
    }
    let codec;
    try {
      codec = await loadCodec(this.options.encoding);
    } catch (e) {
      if (this._closed || conn !== this._conn) return;
      this._scheduleReconnect(1006, `could not load the ${this.options.encoding} codec: ${e}`); // (the server is away)
      return;
    }
    if (this._closed || conn !== this._conn) return;
    this._codec = codec;
    let ws;
    try {
      ws = codec.subprotocol ? new this._WebSocket(url, [codec.subprotocol]) : new this._WebSocket(url);
      if (codec.binary) ws.binaryType = "arraybuffer";
    } catch (e) {
      this._scheduleReconnect(1006, String(e));
      return;
    }
    this._ws = ws;
    this._welcomed = false;
    ws._roostConn = conn;
    ws._authError = null;
    ws.onopen = () => ws.send(codec.encode({ type: "auth", token }));
    ws.onmessage = (event) => this._onData(ws, event.data);
    ws.onclose = (event) => this._onClose(ws, event.code, event.reason);
    ws.onerror = () => {}; // a close event follows
    this._authTimer = setTimeout(() => this._drop(ws, 1006, "no welcome in time"), this.options.connectTimeoutMs);
  }

  /** Forget `ws` at once (a dead or unwanted connection) and run the close path. */
  _drop(ws, code, reason) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(); } catch { /* already closed */ }
    this._onClose(ws, code, reason);
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    const welcomed = this._welcomed;
    this._ws = null;
    this._welcomed = false;
    clearTimeout(this._authTimer);
    clearInterval(this._heartbeat);
    this._heartbeat = null;
    for (const st of this._rooms.values()) this._unfollow(st);
    const lost = new ConnectionLost(`connection closed (${code})`);
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) p.reject(lost);
    if (this._closed) return;
    const authError = ws._authError;
    const effective = authError ? authError.code : code;
    const why = authError ? authError.reason : reason;
    if (effective === Code.UNAUTHORIZED) {
      // A token that expired mid-connection, or a bad one: a token function gets one more chance.
      this._authFailures += 1;
      if (typeof this._token !== "function" || this._authFailures > 2) {
        this._fail("unauthorized", effective, why);
        return;
      }
    } else if (!welcomed && effective === Code.FORBIDDEN) {
      this._fail("forbidden", effective, why);
      return;
    }
    this.reconnects += 1;
    this._scheduleReconnect(effective, why);
  }

  _fail(state, code, reason) {
    this._fatal = new RequestFailed(reason || state, code);
    for (const waiter of this._connectWaiters.splice(0)) waiter.reject(this._fatal);
    this._setState(state, { code, reason });
  }

  _scheduleReconnect(code, reason) {
    clearTimeout(this._timer);
    const delay = this._delays.next().value;
    this.nextAttemptAt = Date.now() + delay;
    const offline = typeof navigator !== "undefined" && navigator.onLine === false;
    this._setState(offline ? "offline" : "reconnecting", { code, reason });
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _whenConnected() {
    if (this._welcomed) return Promise.resolve();
    if (this._closed) return Promise.reject(new ClientClosed());
    if (this._fatal) return Promise.reject(this._fatal);
    return new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
  }

  _onData(ws, data) {
    if (ws !== this._ws) return;
    const codec = this._codec;
    let parts;
    try {
      parts = codec.parts(data);
    } catch (e) {
      console.debug("roost: ignored a server message:", e.message);
      return;
    }
    for (const part of parts) {
      let frame;
      try {
        frame = codec.decode(part);
      } catch (e) {
        // Unknown frame types are how the protocol grows: ignore them (and anything undecodable).
        console.debug("roost: ignored a server frame:", e.message);
        continue;
      }
      if (!this._welcomed) {
        if (frame.type === "welcome") this._onWelcome(ws, frame);
        else if (frame.type === "error") ws._authError = frame;
        continue;
      }
      this._onFrame(frame);
      if (ws !== this._ws) return; // a handler closed the connection
    }
  }

  _onWelcome(ws, frame) {
    clearTimeout(this._authTimer);
    this._welcomed = true;
    this._authFailures = 0;
    this.welcome = frame;
    this.user = frame.user;
    this.maxBodyBytes = frame.max_body_bytes;
    this.inbox = frame.inbox ?? null;
    if (this.inbox && this.options.inbox && !this._rooms.has(this.inbox)) {
      // Followed like any room: from its saved cursor, else from now.
      this._rooms.set(this.inbox, this._newRoom(this.inbox, this.cursor(this.inbox)));
    }
    this._delays = this._newDelays();
    this._awaitingPong = 0;
    this._heartbeat = setInterval(() => this._beat(ws), this.options.pingIntervalMs);
    // Subscriptions first, then the outbox in its original order: the server handles a
    // connection's frames in order, so the resent messages keep their order.
    for (const st of this._rooms.values()) this._sendSubscribe(st);
    for (const entry of this._outbox.values()) this._transmit(entry);
    this._setState("connected");
    this._emit("welcome", frame);
    for (const waiter of this._connectWaiters.splice(0)) waiter.resolve();
  }

  _beat(ws) {
    if (ws !== this._ws || !this._welcomed) return;
    if (this._awaitingPong && Date.now() - this._awaitingPong > this.options.pongTimeoutMs) {
      this._drop(ws, 1006, "no pong in time");
      return;
    }
    if (!this._awaitingPong) {
      this._awaitingPong = Date.now();
      this._write({ type: "ping", id: `hb:${++this._ids}` });
    }
  }

  _write(frame) {
    const ws = this._ws;
    if (!ws || !this._welcomed || ws.readyState !== 1) return false;
    ws.send(this._codec.encode(frame));
    return true;
  }

  async _request(frame) {
    if (this._closed) throw new ClientClosed();
    await this._whenConnected();
    const id = `r${++this._ids}`;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      if (!this._write({ ...frame, id })) {
        this._pending.delete(id);
        reject(new ConnectionLost("not connected"));
      }
    });
  }

  /** The room's subscription on this connection ended: its RoomSync and any read it asked for go with it. */
  _unfollow(st) {
    st.confirmed = false;
    st.sync = null;
    st.fetching = false;
    clearTimeout(st.fetchTimer);
  }

  _sendSubscribe(st) {
    this._unfollow(st);
    st.subId = `sub:${st.room}:${++this._ids}`;
    const c = st.cursor;
    this._write({ type: "subscribe", room: st.room, after: c ? c.seq : null, epoch: c ? c.epoch : null, id: st.subId });
  }

  _transmit(entry, force = false) {
    if (!this._welcomed || !this._outbox.has(entry.cmid)) return;
    if (entry.sentOn === this._conn && !force) return;
    const frame = { type: "send", room: entry.room, cmid: entry.cmid, body: entry.body, id: `send:${entry.cmid}` };
    if (entry.reply_to !== null) frame.reply_to = entry.reply_to;
    if (entry.thread !== null) frame.thread = entry.thread;
    if (entry.attachments.length) frame.attachments = entry.attachments;
    if (this._write(frame)) entry.sentOn = this._conn;
  }

  // ---- incoming frames ------------------------------------------------------------------------

  _onFrame(frame) {
    switch (frame.type) {
      case "msg":
        this._onMessage(frame);
        break;
      case "ack":
        this._onAck(frame);
        break;
      case "subscribed":
        this._onSubscribed(frame);
        break;
      case "live":
        if (this._rooms.has(frame.room)) this._emit("live", { room: frame.room, seq: frame.seq });
        break;
      case "error":
        this._onError(frame);
        break;
      case "typing":
        this._emit("typing", { room: frame.room, user: frame.user });
        break;
      case "receipt":
        this._emit("receipt", { room: frame.room, user: frame.user, seq: frame.seq });
        break;
      case "presence":
        this._emit("presence", { room: frame.room, user: frame.user, status: frame.status });
        break;
      case "pong":
        if (frame.ref && frame.ref.startsWith("hb:")) {
          this._awaitingPong = 0;
          break;
        }
      // fall through: a reply to ping()
      default: {
        const waiter = frame.ref ? this._pending.get(frame.ref) : undefined;
        if (waiter) {
          this._pending.delete(frame.ref);
          waiter.resolve(frame);
        }
      }
    }
  }

  _onSubscribed(frame) {
    const st = this._rooms.get(frame.room);
    if (!st || (frame.ref !== null && frame.ref !== st.subId)) return; // stale or not ours
    // The backlog starts right after `after`: that is the cursor from now on (ours if we had one,
    // the server's choice of "now" if we had none).
    st.cursor = { epoch: frame.epoch, seq: frame.after };
    st.head = frame.head;
    st.confirmed = true;
    // The server has done the catch-up: from here on the machine checks each message against the cursor.
    st.sync = RoomSync.resumed(frame.after, frame.epoch, { page_limit: this.options.historyPage });
    st.fetchFailures = 0;
    this._saveCursor(st);
    this._emit("subscribed", { room: st.room, cursor: { ...st.cursor }, head: frame.head });
    for (const w of st.waiters.splice(0)) w.resolve({ ...st.cursor });
  }

  _onMessage(m) {
    if (m.sender === this.user) {
      // Our own message came back: it is stored, whatever happened to its ack.
      const entry = this._outbox.get(m.cmid);
      if (entry && entry.room === m.room && entry.body === text_of(m)) {
        this._complete(entry, { room: m.room, cmid: m.cmid, seq: m.seq, ts: m.ts, dup: false });
      }
    }
    const st = this._rooms.get(m.room);
    if (!st || !st.sync) return;
    if (st.sync.live(m)) this._deliver(st, m);
    else this._runSync(st);
  }

  _deliver(st, m) {
    st.cursor = { epoch: st.cursor.epoch, seq: m.seq };
    if (m.room === this.inbox) this._onInboxEvent(inboxEvent(m));
    else this._emit("message", m);
    this._saveCursor(st); // after the app has handled it: a crash in between redelivers, never skips
  }

  _onInboxEvent(event) {
    const added = event.kind === "added" ? event.content : null;
    if (added && added.by !== this.user && !this._rooms.has(added.room)) {
      // Someone else made the user a member (a direct conversation opened with them): follow it from the join.
      this.subscribe(added.room, { after: Math.max(0, added.seq - 1) }).catch(() => {});
    }
    this._emit("inbox", event);
  }

  /** Carry out what the room's RoomSync asks for: deliver, read history (one read at a time), resync. */
  _runSync(st) {
    const sync = st.sync;
    for (const action of sync.take_actions()) {
      if (st.sync !== sync) return; // the app's handler resubscribed or left the room
      if (action instanceof Deliver) {
        for (const m of action.items) this._deliver(st, m);
      } else if (action instanceof Fetch && !st.fetching) {
        st.fetching = true;
        // A read that failed is asked for again, after a backoff (a store in trouble is not hammered), and
        // not before a 4429's retry_after_s (sooner only earns strikes against the frame budget).
        const delay = st.fetchFailures ? retryDelay(st.retryAfter, st.fetchFailures, this._retryOptions()) : 0;
        st.fetchTimer = setTimeout(() => this._fill(st, sync, action), delay);
      } else if (action instanceof Resync) {
        this._resync(st, action.reason, action.position);
      }
    }
  }

  /** Execute a Fetch: a `history` read whose page (or failure) goes back to the machine that asked. */
  async _fill(st, sync, fetch) {
    let page;
    try {
      page = await this.history(st.room, { after: fetch.after, limit: fetch.limit });
    } catch (error) {
      if (st.sync !== sync || this._rooms.get(st.room) !== st) return; // resubscribed, or no longer followed
      st.fetching = false;
      st.fetchFailures += 1;
      st.retryAfter = error instanceof RequestFailed ? (error.frame?.retry_after_s ?? null) : null;
      sync.fetch_failed();
      this._runSync(st);
      return;
    }
    if (st.sync !== sync || this._rooms.get(st.room) !== st) return;
    st.fetching = false;
    st.fetchFailures = 0;
    sync.page(page.messages, { epoch: page.epoch, head: page.head, first: page.first });
    this._runSync(st);
  }

  _onAck(frame) {
    const waiter = frame.ref ? this._pending.get(frame.ref) : undefined;
    if (waiter) { // an edit, delete or react (sends are matched by cmid)
      this._pending.delete(frame.ref);
      waiter.resolve(frame);
      return;
    }
    const entry = this._outbox.get(frame.cmid);
    if (!entry || entry.room !== frame.room) return;
    this._complete(entry, { room: frame.room, cmid: frame.cmid, seq: frame.seq, ts: frame.ts, dup: frame.dup });
  }

  _complete(entry, sent) {
    this._outbox.delete(entry.cmid);
    this.storage.remove(this._key("out:", entry.cmid));
    entry.resolve(sent);
    this._emit("ack", { entry: publicEntry(entry), sent });
  }

  _onError(frame) {
    const { code, room, ref } = frame;
    const st = room ? this._rooms.get(room) : undefined;
    if (code === Code.RESYNC_REQUIRED && st) {
      const position = frame.epoch != null && frame.head != null
        ? { epoch: frame.epoch, head: frame.head, first: frame.first ?? 1 }
        : null;
      this._resync(st, frame.reason, position);
      return;
    }
    const waiter = ref ? this._pending.get(ref) : undefined;
    if (waiter) {
      this._pending.delete(ref);
      waiter.reject(new RequestFailed(frame.reason, code, frame));
      return;
    }
    if (ref && ref.startsWith("send:")) {
      this._onSendError(ref.slice(5), frame);
      return;
    }
    if (st && (ref === null || ref === undefined || ref === st.subId)) {
      if (code === Code.FORBIDDEN || code === Code.UNKNOWN_ROOM) {
        // Left on another connection or device (or never a member), or the room is gone.
        this._forget(room);
        this._emit("left", { room, code, reason: frame.reason });
        return;
      }
      if (ref === st.subId) {
        this._rooms.delete(room);
        this._unfollow(st);
        for (const w of st.waiters.splice(0)) w.reject(new RequestFailed(frame.reason, code, frame));
      }
    }
    if (ref && ref.startsWith("hb:")) return;
    if (room && !st && (ref === null || ref === undefined) && code === Code.FORBIDDEN) return; // after our leave
    console.warn(`roost: server error ${code}: ${frame.reason}`);
    this._emit("error", frame);
  }

  _onSendError(cmid, frame) {
    const entry = this._outbox.get(cmid);
    if (!entry) return;
    if (isRetryable(frame.code)) {
      entry.refusals += 1;
      const delay = retryDelay(frame.retry_after_s, entry.refusals, this._retryOptions());
      const conn = this._conn;
      setTimeout(() => { if (conn === this._conn) this._transmit(entry, true); }, delay);
      return;
    }
    this._outbox.delete(cmid);
    this.storage.remove(this._key("out:", cmid));
    const failed = { ...publicEntry(entry), code: frame.code, reason: frame.reason };
    this._failed.set(cmid, failed);
    this.storage.set(this._key("failed:", cmid), JSON.stringify(failed));
    entry.reject(new RequestFailed(frame.reason, frame.code, frame));
    this._emit("sendfailed", { entry: publicEntry(entry), code: frame.code, reason: frame.reason });
  }

  _resync(st, reason, position) {
    // Continuity is broken: tell the app, then follow the room again from what the server keeps.
    this._emit("resync", { room: st.room, reason, ...(position ?? {}) });
    st.cursor = position ? { epoch: position.epoch, seq: Math.max(0, position.first - 1) } : null;
    this._saveCursor(st);
    this._unfollow(st);
    if (this._welcomed && this._rooms.get(st.room) === st) this._sendSubscribe(st);
  }
}

function publicEntry(e) {
  const out = { room: e.room, cmid: e.cmid, body: e.body, t: e.t, n: e.n, reply_to: e.reply_to, thread: e.thread };
  if (e.attachments?.length) out.attachments = e.attachments;
  return out;
}

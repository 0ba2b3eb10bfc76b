// Runs vector inputs through the browser client's modules (src/roost/web/*.js) under Node and prints
// what they did, as JSON, in the same encoding as the Python side (tests/vectors/js.py). It only
// observes: the pytest files compare both observations with the expectations in the vector files.
//
//   node tests/vectors/run_js.mjs < request.json   where request = {"sync": [...], "codes": null, ...}

import { readFileSync } from "node:fs";

const web = new URL("../../src/roost/web/", import.meta.url);
const protocol = await import(new URL("protocol.js", web));
const sync = await import(new URL("sync.js", web));
const relations = await import(new URL("relations.js", web));
const backoff = await import(new URL("backoff.js", web));
const roost = await import(new URL("roost.js", web));
const markdown = await import(new URL("markdown.js", web));
const encoding = await import(new URL("encoding.js", web));

const position = (p) => (p === null ? null : { epoch: p[0], head: p[1], first: p[2] });
const unposition = (p) => (p === null ? null : [p.epoch, p.head, p.first]);

function encodeAction(a) {
  if (a instanceof sync.Accepted) return ["accepted", unposition(a.position)];
  if (a instanceof sync.Deliver) return ["deliver", a.items.map((item) => item.seq)];
  if (a instanceof sync.Fetch) return ["fetch", a.after, a.limit];
  if (a instanceof sync.CaughtUp) return ["caught_up", a.seq];
  if (a instanceof sync.Resync) return ["resync", a.code, a.reason, unposition(a.position)];
  throw new Error(`not an action: ${JSON.stringify(a)}`);
}

/** Call `fn`; a UsageError is an observation ("raises"), anything else a bug in the runner or module. */
function attempt(fn) {
  try {
    return { value: fn(), raises: null };
  } catch (e) {
    if (e instanceof protocol.UsageError) return { value: undefined, raises: "UsageError" };
    throw e;
  }
}

function runSyncCase(c) {
  const m = c.machine;
  const options = { page_limit: m.page_limit ?? 500, max_buffer: m.max_buffer ?? 10000 };
  const made = attempt(() => (m.resumed
    ? sync.RoomSync.resumed(m.cursor, m.epoch ?? null, options)
    : new sync.RoomSync(m.cursor, m.epoch ?? null, options)));
  if (made.raises) return { raises: made.raises, steps: [] };
  const machine = made.value;
  const steps = c.steps.map((step) => {
    const inputs = {
      start: () => machine.start(),
      live: () => machine.live({ seq: step.seq }),
      page: () => machine.page(step.seqs.map((seq) => ({ seq })), position(step.position)),
      fetch_failed: () => machine.fetch_failed(),
      dropped: () => machine.dropped(step.count),
      head_seen: () => machine.head_seen(position(step.position)),
      close: () => machine.close(),
    };
    const done = attempt(inputs[step.do]);
    return {
      returns: step.do === "live" && !done.raises ? done.value : null,
      raises: done.raises,
      actions: machine.take_actions().map(encodeAction),
      state: machine.state,
      last: machine.last,
      buffered: machine.buffered,
      buffer_overflows: machine.buffer_overflows,
    };
  });
  return { raises: null, steps };
}

function runCodes() {
  return Object.entries(protocol.Code).map(([name, code]) => ({ name, code, retryable: protocol.isRetryable(code) }));
}

function runRelationsCase(c) {
  const messages = c.messages.map(([seq, sender, kind, body]) => ({ room: "r", seq, cmid: `c${seq}`, sender, body, ts: 1000 + seq, kind }));
  const timeline = new relations.Timeline().extend(messages);
  const view = timeline.view().map((f) => ({
    seq: f.seq, kind: f.kind, body: f.body, edited: f.edited, deleted: f.deleted, reactions: f.reactions,
    reply_to: f.reply_to, thread: f.thread, replies: f.replies, last_reply: f.last_reply, last_reply_ts: f.last_reply_ts,
    mentions: f.mentions, mentions_room: f.mentions_room,
  }));
  const reaction = (c.reaction ?? []).map(([target, user, emoji]) => timeline.relations.reaction(target, user, emoji));
  const unread = (c.unread ?? []).map(([read, user]) => timeline.unread(read, user));
  const thread = (c.thread ?? []).map((root) => timeline.thread(root).map((f) => f.seq));
  const mentioned = (c.mentioned ?? []).map(([read, user]) => timeline.mentioned(read, user));
  // The page folds with Relations.add and .state (app.js): the same answers as the Timeline's.
  const rel = new relations.Relations();
  const added = new Set(); // the page adds each seq once (its view is keyed by seq)
  for (const m of messages) {
    if (!relations.RELATION_KINDS.has(m.kind) || added.has(m.seq)) continue;
    added.add(m.seq);
    rel.add(m);
  }
  const shown = timeline.view().map((f) => rel.state(timeline.messages.get(f.seq)));
  return { view, reaction, shown, unread, thread, mentioned };
}

function runBackoff(v) {
  const draws = (list) => { let i = 0; return () => list[i++]; };
  const rule = (name) => (name === "reconnect" ? backoff.RECONNECT : backoff.SEND_RETRY);
  const defaults = new roost.RoostClient({ url: "ws://x/ws", token: "t", namespace: "n", storage: roost.memoryStorage() }).options;
  const generator = backoff.backoff({ random: draws(v.backoff.u) });
  return {
    reconnect: backoff.RECONNECT,
    send_retry: backoff.SEND_RETRY,
    client: {
      initialBackoffMs: defaults.initialBackoffMs, maxBackoffMs: defaults.maxBackoffMs,
      retryInitialMs: defaults.retryInitialMs, retryMaxMs: defaults.retryMaxMs,
    },
    nth_delay: v.nth_delay.map((c) => backoff.nthDelay(c.n, rule(c.rule), () => c.u) / 1000),
    backoff: v.backoff.u.map(() => generator.next().value / 1000),
    retry_delay: v.retry_delay.map((c) => backoff.retryDelay(c.retry_after_s, c.failures, { random: () => c.u }) / 1000),
  };
}

function runFrames(v) {
  const typeOf = (text) => {
    const r = protocol.checkServerFrame(text);
    return r.ok ? r.frame.type : `REFUSED: ${r.reason}`;
  };
  let sourceText = false; // can JSON.parse tell 1 from 1.0 here (see decodeServerFrame)?
  JSON.parse("1.0", (key, value, context) => { sourceText = typeof context?.source === "string"; return value; });
  return {
    specs: protocol.SERVER_FRAMES,
    sourceText,
    valid: v.valid.map((c) => typeOf(c.frame)),
    invalid: v.invalid.map((c) => protocol.checkServerFrame(c.frame).ok),
    batches: v.batches.map((b) => protocol.splitFrames(b.data).map(typeOf)),
  };
}

function syncNames() {
  const own = (o) => Object.getOwnPropertyNames(o).filter((n) => !["constructor", "length", "name", "prototype"].includes(n));
  return {
    exports: Object.keys(sync).sort(),
    methods: [...own(sync.RoomSync.prototype), ...own(sync.RoomSync)].sort(),
    states: Object.entries(sync.State),
  };
}

/** A stand-in for `document` that records what toDom builds, as the vector trees write it (with every attribute). */
const recordingDocument = {
  createDocumentFragment: () => ({ children: [], append(...nodes) { this.children.push(...nodes); } }),
  createTextNode: (text) => ({ text }),
  createElement: (tag) => ({
    tag, attrs: {}, children: [],
    setAttribute(name, value) { this.attrs[name] = String(value); },
    append(...nodes) { this.children.push(...nodes); },
  }),
};
const asTree = (node) => (node.tag === undefined ? node.text
  : [node.tag, ...(Object.keys(node.attrs).length ? [node.attrs] : []), ...node.children.map(asTree)]);

function runMarkdown(v) {
  return {
    allowed: markdown.ALLOWED,
    rel: markdown.LINK_REL,
    parsed: v.cases.map((c) => markdown.parse(c.text)),
    built: v.cases.map((c) => markdown.render(c.text, recordingDocument).children.map(asTree)),
    hrefs: v.hrefs.map(([url]) => markdown.safeHref(url)),
    refused: (v.refused ?? []).map((c) => {
      try { markdown.toDom(c.tree, recordingDocument); return false; } catch { return true; }
    }),
  };
}

const request = JSON.parse(readFileSync(0, "utf-8"));
/** The fields of the event an inbox message carries (`inboxEvent`), or null for one it does not know. */
function runInboxCase(c) {
  const event = protocol.inboxEvent({ room: "~u:bob", seq: 1, cmid: "k", sender: "system", body: c.body, ts: 0, kind: c.kind });
  return event.content;
}

/** MessagePack through encoding.js: server messages (base64) split and checked, client frames (JSON) encoded. */
async function runMsgpack(v) {
  const codec = await encoding.loadCodec("msgpack");
  const verdict = (b64) => {
    try {
      return codec.parts(Buffer.from(b64, "base64")).map((part) => {
        try { return codec.decode(part).type; } catch (e) { return `REFUSED: ${e.message}`; }
      });
    } catch (e) {
      return `REFUSED: ${e.message}`;
    }
  };
  return {
    subprotocol: codec.subprotocol,
    server: v.server.map(verdict),
    decoded: v.server.map((b64) => { try { return codec.parts(Buffer.from(b64, "base64")).map(codec.decode); } catch { return null; } }),
    client: v.client.map((text) => Buffer.from(codec.encode(JSON.parse(text))).toString("base64")),
  };
}

const out = {};
if (request.sync) out.sync = request.sync.map(runSyncCase);
if (request.sync_names) out.sync_names = syncNames();
if (request.codes) out.codes = runCodes();
if (request.frames) out.frames = runFrames(request.frames);
if (request.relations) out.relations = request.relations.map(runRelationsCase);
if (request.markdown) out.markdown = runMarkdown(request.markdown);
if (request.backoff) out.backoff = runBackoff(request.backoff);
if (request.inbox) out.inbox = request.inbox.map(runInboxCase);
if (request.msgpack) out.msgpack = await runMsgpack(request.msgpack);
process.stdout.write(JSON.stringify(out));

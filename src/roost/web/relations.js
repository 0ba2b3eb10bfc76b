// relations.js: edits, deletions and reactions, replies and threads, folded the way roost.protocol.relations
// folds them (the same classes and names: Relations, Timeline, fold). A relation event is a message of kind
// edit, delete, react or unreact whose JSON body names its target (docs/protocol.md section 18). The final
// state: the latest edit by the target's own sender wins (an empty text does not count), a deletion is
// final, and per (user, emoji) the latest react/unreact wins. A reply or a reply in a thread is a message of
// kind rich whose JSON body holds its text and what it relates to (roost.protocol.rich, protocol section 22):
// it folds to a text with `reply_to` and `thread`, and each thread's root counts its replies.
// tests/vectors/relations.json holds both folds to the same results.
//
// Sans-I/O: no sockets, no clock.

export const KIND_TEXT = "text";
/** A text with structure: a reply, a reply in a thread (roost.protocol.rich). */
export const KIND_RICH = "rich";
/** What a user sends and reads: the targets of edits, reactions, replies and threads. */
export const TEXT_KINDS = Object.freeze(new Set([KIND_TEXT, KIND_RICH]));
export const KIND_EDIT = "edit";
export const KIND_DELETE = "delete";
export const KIND_REACT = "react";
export const KIND_UNREACT = "unreact";
/** Never stored: what a deleted `text` message looks like when the server serves it again. */
export const KIND_DELETED = "deleted";

export const RELATION_KINDS = Object.freeze(new Set([KIND_EDIT, KIND_DELETE, KIND_REACT, KIND_UNREACT]));

/** The string fields each kind's content must have besides an integer `target` (the Python structs). */
const _CONTENT_OF = Object.freeze({
  [KIND_EDIT]: ["body"],
  [KIND_DELETE]: [],
  [KIND_REACT]: ["emoji"],
  [KIND_UNREACT]: ["emoji"],
});

const isNames = (v) => v === undefined || (Array.isArray(v) && v.every((x) => typeof x === "string"));
const isFlag = (v) => v === undefined || typeof v === "boolean";

/**
 * The content `{target, body?, emoji?}` of a relation event (an edit's with `mentions` and `room`, defaulted), or
 * null for other kinds and for a body that does not parse.
 */
export function decode_content(m) {
  if (!Object.prototype.hasOwnProperty.call(_CONTENT_OF, m.kind)) return null;
  let content;
  try { content = JSON.parse(m.body); } catch { return null; }
  if (content === null || typeof content !== "object" || Array.isArray(content)) return null;
  if (!Number.isSafeInteger(content.target)) return null;
  for (const key of _CONTENT_OF[m.kind]) if (typeof content[key] !== "string") return null;
  if (m.kind === KIND_EDIT) {
    if (!isNames(content.mentions) || !isFlag(content.room)) return null;
    return { ...content, mentions: content.mentions ?? [], room: content.room ?? false };
  }
  return content;
}

const isSeq = (v) => v === undefined || v === null || Number.isSafeInteger(v);

/**
 * The content `{body, reply_to, thread, mentions, room}` of a rich message (null, [] and false where absent), or
 * null for another kind or a bad body. `mentions` (user names) and `room` (@room/@here) were parsed by the server.
 */
export function decode_rich(m) {
  if (m.kind !== KIND_RICH) return null;
  let content;
  try { content = JSON.parse(m.body); } catch { return null; }
  if (content === null || typeof content !== "object" || Array.isArray(content)) return null;
  if (typeof content.body !== "string" || !isSeq(content.reply_to) || !isSeq(content.thread)) return null;
  if (!isNames(content.mentions) || !isFlag(content.room)) return null;
  return {
    body: content.body, reply_to: content.reply_to ?? null, thread: content.thread ?? null,
    mentions: content.mentions ?? [], room: content.room ?? false,
  };
}

/** Does stored message `m` (as sent: an edit tells nobody) mention `user`, by name or with @room? Never one's own. */
export function mentions_user(m, user) {
  const content = decode_rich(m);
  if (content === null || m.sender === user) return false;
  return content.room || content.mentions.includes(user);
}

/** The text of a text or rich message as stored (before edits); null for other kinds. */
export function text_of(m) {
  if (m.kind === KIND_TEXT) return m.body;
  return decode_rich(m)?.body ?? null;
}

/** The thread (its root's seq) a message is a reply in: a rich one's, or a tombstone's `{"thread": N}`; else null. */
export function thread_of(m) {
  if (m.kind === KIND_RICH) return decode_rich(m)?.thread ?? null;
  if (m.kind === KIND_DELETED && m.body.startsWith("{")) {
    let content;
    try { content = JSON.parse(m.body); } catch { return null; }
    return content !== null && typeof content === "object" && Number.isSafeInteger(content.thread) ? content.thread : null;
  }
  return null;
}

/**
 * Is stored message `m` something `user` has to read (as served: a deleted one is a tombstone by then)? A text
 * (text or rich) by someone else; not a membership change, a relation event, a tombstone or one of the user's own messages
 * (R-CLIENT-72; roost.protocol.relations.counts_as_unread).
 */
export function counts_as_unread(m, user) {
  return TEXT_KINDS.has(m.kind) && m.sender !== user;
}

/** Python's `sorted` order for strings: by code point (JavaScript's `<` compares UTF-16 units). */
function byCodePoint(a, b) {
  const x = a[Symbol.iterator]();
  const y = b[Symbol.iterator]();
  for (;;) {
    const p = x.next();
    const q = y.next();
    if (p.done || q.done) return (p.done ? 0 : 1) - (q.done ? 0 : 1);
    const d = p.value.codePointAt(0) - q.value.codePointAt(0);
    if (d) return d;
  }
}

/** Relation events indexed by target. Feed each seq at most once, in any order (merged by seq). */
export class Relations {
  constructor() {
    this.deletes = new Map(); // target -> the first (lowest seq) delete event of it
    this.edits = new Map(); // target -> Map(sender -> that sender's latest edit event of it)
    this.reactions = new Map(); // target -> Map(user + "\u0000" + emoji -> {last, on, unreacts, user, emoji})
  }

  /** Fold one event; returns its target seq, or null when it is not a relation event (or its body is bad). */
  add(m) {
    const content = decode_content(m);
    if (content === null) return null;
    const target = content.target;
    if (m.kind === KIND_DELETE) {
      const known = this.deletes.get(target);
      if (known === undefined || m.seq < known.seq) this.deletes.set(target, m);
    } else if (m.kind === KIND_EDIT) {
      if (!this.edits.has(target)) this.edits.set(target, new Map());
      const bySender = this.edits.get(target);
      const known = bySender.get(m.sender);
      if (known === undefined || m.seq > known.seq) bySender.set(m.sender, m);
    } else {
      const key = `${m.sender}\u0000${content.emoji}`;
      if (!this.reactions.has(target)) this.reactions.set(target, new Map());
      const perTarget = this.reactions.get(target);
      const state = perTarget.get(key);
      const on = m.kind === KIND_REACT;
      const unreact = on ? 0 : 1;
      if (state === undefined) {
        perTarget.set(key, { last: m.seq, on, unreacts: unreact, user: m.sender, emoji: content.emoji });
      } else {
        state.unreacts += unreact;
        if (m.seq > state.last) {
          state.last = m.seq;
          state.on = on;
        }
      }
    }
    return target;
  }

  deleted(target) {
    return this.deletes.get(target) ?? null;
  }

  /** `[reacted now, how many unreacts so far]` for `user`'s `emoji` on `target`. */
  reaction(target, user, emoji) {
    const state = this.reactions.get(target)?.get(`${user}\u0000${emoji}`);
    return state === undefined ? [false, 0] : [state.on, state.unreacts];
  }

  /** `[[emoji, [users]]]`: the users whose reaction stands, both sorted; emojis nobody holds are left out. */
  counts(target) {
    const users = new Map();
    for (const state of this.reactions.get(target)?.values() ?? []) {
      if (!state.on) continue;
      if (!users.has(state.emoji)) users.set(state.emoji, []);
      users.get(state.emoji).push(state.user);
    }
    return [...users.entries()].sort(([a], [b]) => byCodePoint(a, b)).map(([emoji, names]) => [emoji, names.sort(byCodePoint)]);
  }

  /** What to show for stored message `m`: `{body, edited, deleted, reactions: [[emoji, [users]]]}` (see `_fold`). */
  state(m) {
    const { body, edited, deleted, reactions } = _fold(this, m);
    return { body, edited, deleted, reactions };
  }
}

/**
 * One message as an app shows it (roost.protocol.relations.Folded); `reactions` is `[[emoji, [users]]]`;
 * `reply_to` and `thread` as the rich message says (a tombstone keeps its thread); a thread's root has
 * `replies` (not deleted), `last_reply` and `last_reply_ts`.
 */
function folded(m, kind, body, extra = {}) {
  return {
    seq: m.seq, sender: m.sender, ts: m.ts, kind, body, edited: false, deleted: false, reactions: [],
    reply_to: null, thread: null, replies: 0, last_reply: null, last_reply_ts: null, mentions: [],
    mentions_room: false, ...extra,
  };
}

function isDeleted(rel, m) {
  return m.kind === KIND_DELETED || (TEXT_KINDS.has(m.kind) && rel.deleted(m.seq) !== null);
}

/** The fold of `m` with relations `rel`; `replies`: the thread's reply messages held (a root's), or none. */
function _fold(rel, m, replies = []) {
  if (isDeleted(rel, m)) return folded(m, KIND_DELETED, "", { deleted: true, thread: thread_of(m) });
  if (!TEXT_KINDS.has(m.kind)) return folded(m, m.kind, m.body);
  let body = m.body;
  let reply_to = null;
  let thread = null;
  let mentions = [];
  let mentions_room = false;
  const content = decode_rich(m);
  if (content !== null) ({ body, reply_to, thread, mentions, room: mentions_room } = content);
  let edited = false;
  const edit = rel.edits.get(m.seq)?.get(m.sender);
  if (edit !== undefined) {
    const change = decode_content(edit);
    if (change !== null && change.body) {
      body = change.body;
      edited = true;
      mentions = change.mentions;
      mentions_room = change.room;
    }
  }
  const shown = replies.filter((r) => !isDeleted(rel, r));
  const last = shown.length ? shown[shown.length - 1] : null;
  return folded(m, KIND_TEXT, body, {
    edited, reactions: rel.counts(m.seq), reply_to, thread, replies: shown.length,
    last_reply: last === null ? null : last.seq, last_reply_ts: last === null ? null : last.ts,
    mentions: [...mentions], mentions_room,
  });
}

/**
 * Incremental fold of one room: `add` messages in any order (each seq once), `view` the result. An edit
 * counts only when its sender is the target's sender; relations whose target is not in the timeline are
 * kept and apply once it arrives, so pages may be added newest first. Replies in a thread are in `view`
 * with their `thread` (shown in the thread, `thread(root)`), and each root counts the replies held.
 */
export class Timeline {
  constructor() {
    this.relations = new Relations();
    this.messages = new Map();
    this.threads = new Map(); // root -> Set of the seqs of the replies in its thread held (deleted ones too)
    this._seen = new Set();
  }

  add(m) {
    if (RELATION_KINDS.has(m.kind)) {
      if (!this._seen.has(m.seq)) { // a page read twice must not count an unreact twice
        this._seen.add(m.seq);
        this.relations.add(m);
      }
    } else {
      this.messages.set(m.seq, m);
      const root = thread_of(m);
      if (root !== null) {
        if (!this.threads.has(root)) this.threads.set(root, new Set());
        this.threads.get(root).add(m.seq);
      }
    }
  }

  extend(messages) {
    for (const m of messages) this.add(m);
    return this;
  }

  get(seq) {
    const m = this.messages.get(seq);
    return m === undefined ? null : this._fold(m);
  }

  /** Every non-relation message, ascending by seq, with the relations applied. */
  view() {
    return [...this.messages.keys()].sort((a, b) => a - b).map((seq) => this._fold(this.messages.get(seq)));
  }

  /** The thread of `root` as the timeline holds it: the root (when held), then its replies by seq. */
  thread(root) {
    const seqs = [...(this.threads.get(root) ?? [])].sort((a, b) => a - b);
    if (this.messages.has(root)) seqs.unshift(root);
    return seqs.map((seq) => this._fold(this.messages.get(seq)));
  }

  /** How many messages after the read position `read` `user` has to read: texts by others, not deleted. */
  unread(read, user) {
    let count = 0;
    for (const [seq, m] of this.messages) {
      if (seq > read && counts_as_unread(m, user) && this.relations.deleted(seq) === null) count += 1;
    }
    return count;
  }

  /** How many of those unread messages mention `user` (by name or @room, as sent), for a "2 mentions" badge. */
  mentioned(read, user) {
    let count = 0;
    for (const [seq, m] of this.messages) {
      if (seq > read && mentions_user(m, user) && this.relations.deleted(seq) === null) count += 1;
    }
    return count;
  }

  _fold(m) {
    const seqs = [...(this.threads.get(m.seq) ?? [])].filter((s) => this.messages.has(s)).sort((a, b) => a - b);
    return _fold(this.relations, m, seqs.map((s) => this.messages.get(s)));
  }
}

/** The final state of a list of messages (a room's history, in any order): see `Timeline`. */
export function fold(messages) {
  return new Timeline().extend(messages).view();
}

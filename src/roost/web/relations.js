// relations.js: edits, deletions and reactions, folded the way roost.protocol.relations folds them (the
// same classes and names: Relations, Timeline, fold). A relation event is a message of kind edit,
// delete, react or unreact whose JSON body names its target (docs/protocol.md section 18). The final
// state: the latest edit by the target's own sender wins (an empty text does not count), a deletion is
// final, and per (user, emoji) the latest react/unreact wins. tests/vectors/relations.json holds both
// folds to the same results.
//
// Sans-I/O: no sockets, no clock.

export const KIND_TEXT = "text";
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

/** The content `{target, body?, emoji?}` of a relation event, or null for other kinds and for a body that does not parse. */
export function decode_content(m) {
  if (!Object.prototype.hasOwnProperty.call(_CONTENT_OF, m.kind)) return null;
  let content;
  try { content = JSON.parse(m.body); } catch { return null; }
  if (content === null || typeof content !== "object" || Array.isArray(content)) return null;
  if (!Number.isSafeInteger(content.target)) return null;
  for (const key of _CONTENT_OF[m.kind]) if (typeof content[key] !== "string") return null;
  return content;
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

/** One message as an app shows it (roost.protocol.relations.Folded); `reactions` is `[[emoji, [users]]]`. */
function folded(m, kind, body, { edited = false, deleted = false, reactions = [] } = {}) {
  return { seq: m.seq, sender: m.sender, ts: m.ts, kind, body, edited, deleted, reactions };
}

function _fold(rel, m) {
  if (m.kind === KIND_DELETED || (m.kind === KIND_TEXT && rel.deleted(m.seq) !== null)) {
    return folded(m, KIND_DELETED, "", { deleted: true });
  }
  if (m.kind !== KIND_TEXT) return folded(m, m.kind, m.body);
  let body = m.body;
  let edited = false;
  const edit = rel.edits.get(m.seq)?.get(m.sender);
  if (edit !== undefined) {
    const content = decode_content(edit);
    if (content !== null && content.body) {
      body = content.body;
      edited = true;
    }
  }
  return folded(m, KIND_TEXT, body, { edited, reactions: rel.counts(m.seq) });
}

/**
 * Incremental fold of one room: `add` messages in any order (each seq once), `view` the result. An edit
 * counts only when its sender is the target's sender; relations whose target is not in the timeline are
 * kept and apply once it arrives, so pages may be added newest first.
 */
export class Timeline {
  constructor() {
    this.relations = new Relations();
    this.messages = new Map();
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
    }
  }

  extend(messages) {
    for (const m of messages) this.add(m);
    return this;
  }

  get(seq) {
    const m = this.messages.get(seq);
    return m === undefined ? null : _fold(this.relations, m);
  }

  /** Every non-relation message, ascending by seq, with the relations applied. */
  view() {
    return [...this.messages.keys()].sort((a, b) => a - b).map((seq) => _fold(this.relations, this.messages.get(seq)));
  }
}

/** The final state of a list of messages (a room's history, in any order): see `Timeline`. */
export function fold(messages) {
  return new Timeline().extend(messages).view();
}

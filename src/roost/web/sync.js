// sync.js: RoomSync, turn "a live stream plus store reads" into "each message once, in seq order, or a
// resync". The line-for-line counterpart of roost.protocol.sync (read its docstring for the contract
// with the caller and the six rules): the same states, inputs, actions and names, so that a change to
// one is a change to the other. tests/vectors/sync.json drives both machines with the same inputs and
// expects the same actions (tests/vectors/test_sync_vectors.py runs the Python one and, through Node,
// this one).
//
// Sans-I/O: no awaits, no sockets, no clock. The caller feeds inputs and drains take_actions().
// An item is any object with an integer `seq` (a `msg` frame); a position is `{epoch, head, first}`.

import { Code, UsageError } from "./protocol.js";

export const State = Object.freeze({
  IDLE: "idle",
  CATCHING_UP: "catching_up",
  LIVE: "live",
  FILLING: "filling",
  RESYNC: "resync",
  CLOSED: "closed",
});

/** The first page proved the cursor continuable; the caller may confirm the subscription. */
export class Accepted {
  constructor(position) {
    this.position = position;
    Object.freeze(this);
  }
}

/** Contiguous, ascending messages starting at the previous `last + 1`. */
export class Deliver {
  constructor(items) {
    this.items = Object.freeze([...items]);
    Object.freeze(this);
  }
}

export class Fetch {
  constructor(after, limit) {
    this.after = after;
    this.limit = limit;
    Object.freeze(this);
  }
}

/** Everything up to `seq` was delivered; from here on the live stream passes through. */
export class CaughtUp {
  constructor(seq) {
    this.seq = seq;
    Object.freeze(this);
  }
}

/** Continuity from the cursor cannot be proven. Nothing more is delivered by this machine. */
export class Resync {
  constructor(code, reason, position) {
    this.code = code;
    this.reason = reason;
    this.position = position;
    Object.freeze(this);
  }
}

/** The only allowed transitions (docs/protocol.md, sections 8 and 9, describes them in prose). */
const _TRANSITIONS = Object.freeze({
  [State.IDLE]: new Set([State.CATCHING_UP, State.CLOSED]),
  [State.CATCHING_UP]: new Set([State.LIVE, State.RESYNC, State.CLOSED]),
  [State.LIVE]: new Set([State.FILLING, State.RESYNC, State.CLOSED]),
  [State.FILLING]: new Set([State.LIVE, State.RESYNC, State.CLOSED]),
  [State.RESYNC]: new Set([State.CLOSED]),
  [State.CLOSED]: new Set(),
});

/** Per-room, per-subscriber delivery state. `last` is the newest seq delivered (the cursor). */
export class RoomSync {
  constructor(cursor, epoch = null, { page_limit = 500, max_buffer = 10_000 } = {}) {
    if (!Number.isSafeInteger(cursor) || cursor < 0 || !(page_limit >= 1) || !(max_buffer >= 1)) {
      throw new UsageError("cursor must be >= 0, page_limit and max_buffer >= 1");
    }
    this.last = cursor;
    this.epoch = epoch;
    this.state = State.IDLE;
    this.page_limit = page_limit;
    this.max_buffer = max_buffer;
    this.buffer_overflows = 0;
    this._buffer = new Map();
    this._seen_max = cursor;
    this._recheck = false;
    this._accepted = false;
    this._actions = [];
  }

  /** A machine already LIVE at `cursor`: for a client whose server has done the catch-up. */
  static resumed(cursor, epoch = null, options = {}) {
    const machine = new RoomSync(cursor, epoch, options);
    machine.state = State.LIVE;
    machine._accepted = true;
    return machine;
  }

  // ---- inputs ---------------------------------------------------------------------------------

  start() {
    if (this.state !== State.IDLE) throw new UsageError(`start() in state ${this.state}`);
    this._to(State.CATCHING_UP);
    this._fetch();
  }

  /** A live message arrived. True means: deliver `item` now (the hot path, rule 2). */
  live(item) {
    const seq = item.seq;
    const state = this.state;
    if (state === State.LIVE) {
      if (seq === this.last + 1) {
        this.last = seq;
        return true;
      }
      if (seq <= this.last) return false;
      this._buffer_item(item);
      this._to(State.FILLING);
      this._fetch();
      return false;
    }
    if ((state === State.CATCHING_UP || state === State.FILLING) && seq > this.last) this._buffer_item(item);
    return false;
  }

  /** A store read for the last queued `Fetch` returned `messages` and `position`. */
  page(messages, position) {
    if (this.state !== State.CATCHING_UP && this.state !== State.FILLING) {
      if (this.state === State.RESYNC || this.state === State.CLOSED) return;
      throw new UsageError(`page() in state ${this.state}`);
    }
    if (this.epoch !== null && position.epoch !== this.epoch) {
      this._resync("the room's history was recreated (epoch changed)", position);
      return;
    }
    this.epoch = position.epoch;
    if (this.last > position.head) {
      this._resync(`the cursor ${this.last} is ahead of the room's head ${position.head}`, position);
      return;
    }
    if (this.last + 1 < position.first) {
      this._resync(`history before seq ${position.first} is no longer kept`, position);
      return;
    }
    // Validate the whole page before acting on it: a broken page is a Resync only, without an
    // Accepted before it and without moving `last` over messages that are never delivered.
    let last = this.last;
    const out = [];
    for (const item of messages) {
      const seq = item.seq;
      if (seq === last + 1) {
        out.push(item);
        last = seq;
      } else if (seq > last + 1) {
        this._resync(`store page has a hole before seq ${seq}`, position);
        return;
      }
    }
    if (messages.length === 0 && position.head > last) {
      this._resync("store page is empty below its head", position);
      return;
    }
    if (!this._accepted) {
      this._accepted = true;
      this._actions.push(new Accepted(position));
    }
    this.last = last;
    this._drain_buffer(out);
    if (out.length) this._actions.push(new Deliver(out));
    if (this.last < Math.max(position.head, this._seen_max) || this._recheck) {
      this._recheck = false;
      this._fetch();
      return;
    }
    this._buffer.clear();
    this._to(State.LIVE);
    this._actions.push(new CaughtUp(this.last));
  }

  /** The last `Fetch` could not be executed; it is queued again (the caller backs off). */
  fetch_failed() {
    if (this.state === State.CATCHING_UP || this.state === State.FILLING) this._fetch();
  }

  /** The live stream lost `count` messages (overflow, reconnect): treated as a gap. */
  dropped(count) {
    if (count <= 0) return;
    if (this.state === State.LIVE) {
      this._to(State.FILLING);
      this._fetch();
    } else if (this.state === State.CATCHING_UP || this.state === State.FILLING) {
      this._recheck = true;
    }
  }

  /** A periodic read of the room's head: catches a lost tail that no later message reveals. */
  head_seen(position) {
    if (this.state !== State.LIVE) return;
    if (this.epoch !== null && position.epoch !== this.epoch) {
      this._resync("the room's history was recreated (epoch changed)", position);
    } else if (position.head > this.last) {
      this._seen_max = Math.max(this._seen_max, position.head);
      this._to(State.FILLING);
      this._fetch();
    }
  }

  close() {
    this._buffer.clear();
    this._to(State.CLOSED);
  }

  // ---- outputs --------------------------------------------------------------------------------

  take_actions() {
    const actions = this._actions;
    this._actions = [];
    return actions;
  }

  get buffered() {
    return this._buffer.size;
  }

  // ---- internals ------------------------------------------------------------------------------

  _to(state) {
    if (state === this.state) return;
    if (!_TRANSITIONS[this.state].has(state)) throw new UsageError(`transition ${this.state} -> ${state}`);
    this.state = state;
  }

  _fetch() {
    this._actions.push(new Fetch(this.last, this.page_limit));
  }

  _buffer_item(item) {
    const seq = item.seq;
    if (seq > this._seen_max) this._seen_max = seq;
    if (this._buffer.size >= this.max_buffer) {
      this._buffer.clear();
      this.buffer_overflows += 1;
      return;
    }
    this._buffer.set(seq, item);
  }

  _drain_buffer(out) {
    const buffer = this._buffer;
    if (buffer.size === 0) return;
    for (const seq of [...buffer.keys()].filter((s) => s <= this.last)) buffer.delete(seq);
    let item;
    while ((item = buffer.get(this.last + 1)) !== undefined) {
      buffer.delete(item.seq);
      out.push(item);
      this.last = item.seq;
    }
  }

  _resync(reason, position) {
    this._buffer.clear();
    this._to(State.RESYNC);
    this._actions.push(new Resync(Code.RESYNC_REQUIRED, reason, position));
  }
}

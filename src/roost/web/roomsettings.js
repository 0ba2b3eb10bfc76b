// A room's roles and settings on the page: who may delete (and erase) whose messages, and the room's retention
// (docs/protocol.md, "Retention", R-RET-1; section 18 and R-SEC-64 for deletions). The roles come from
// GET /api/rooms/{room}/members, read when a room opens and again after a membership or role event of it; the
// retention from GET /api/rooms/{room}/retention, set with PUT by the room's owner and admins only (the server
// refuses anyone else with 4403: the page does not offer them the form). Everything reaches the DOM as text.

const $ = (id) => document.getElementById(id);

const RANK = { owner: 3, admin: 2, member: 1 };
const MODERATOR = RANK.admin;
/** Events after which a room's roles are read again. */
const ROLE_EVENTS = new Set(["join", "leave", "kick", "ban", "role"]);
const DAY = 86400;
const MAX_MESSAGES = 1_000_000_000;
const MAX_AGE_S = 3_162_240_000;

/** A duration in seconds as people say it: "30 days", "12 hours", "90 seconds". */
export function ageText(seconds) {
  const unit = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (seconds % DAY === 0) return unit(seconds / DAY, "day");
  if (seconds % 3600 === 0) return unit(seconds / 3600, "hour");
  if (seconds % 60 === 0) return unit(seconds / 60, "minute");
  return unit(seconds, "second");
}

/** What a policy keeps, in words: each value 0 (no limit) or a number; `own*`: the room's own (else the default). */
export function policyText({ max_messages: count, max_age_s: age, room_max_messages: ownCount, room_max_age_s: ownAge }) {
  const whose = (own) => (own === null || own === undefined ? " (the server's default)" : " (this room's setting)");
  const counted = count ? `the newest ${count} message${count === 1 ? "" : "s"}` : "any number of messages";
  const aged = age ? `up to ${ageText(age)} old` : "of any age";
  return `Kept: ${counted}${whose(ownCount)}; ${aged}${whose(ownAge)}.`;
}

/** The text of a `retention` event after its sender's name (its body: {by, max_messages, max_age_s}). */
export function retentionEventText(info) {
  const value = (v, some, none) => (v === null || v === undefined ? "the server's default" : v === 0 ? none : some(v));
  const count = value(info.max_messages, (n) => `the newest ${n}`, "no limit");
  const age = value(info.max_age_s, ageText, "no limit");
  return `changed what the room keeps: messages ${count}; age ${age}`;
}

/**
 * Wire the room settings panel. ``api`` is the page's authenticated fetch, ``me()`` the signed-in user,
 * ``openRoom()`` the room shown (or null), ``onRoles(room)`` is called when a room's roles were read (the page
 * draws its messages' tools again). Returns the functions the page calls.
 */
export function setupRoomSettings({ api, me, openRoom, onRoles }) {
  const button = $("roomSettingsButton"), panel = $("roomSettings"), now = $("retentionNow");
  const form = $("retentionForm"), count = $("retentionCount"), days = $("retentionDays"), error = $("retentionError");
  const roles = new Map(); // room -> Map(user -> role), as last read
  const loading = new Map(); // room -> the read under way
  const stale = new Set(); // rooms whose roles changed while a read was under way: read again after it
  let gen = 0, session = 0;

  const rankOf = (room, user) => RANK[roles.get(room)?.get(user)] ?? (roles.has(room) ? RANK.member : 0);

  function loadRoles(room) {
    if (loading.has(room)) { stale.add(room); return loading.get(room); }
    const started = session;
    const read = api("GET", `/api/rooms/${encodeURIComponent(room)}/members`).then((data) => {
      if (started !== session) return; // signed out meanwhile
      const before = roleKey(room);
      roles.set(room, new Map((data.members ?? []).map((m) => [m.user, m.role])));
      if (roleKey(room) !== before) onRoles(room);
      if (room === openRoom() && !panel.hidden) renderPanel(room);
    }, () => { /* offline, or no longer a member: the tools stay as they were */ }).finally(() => {
      loading.delete(room);
      if (stale.delete(room)) loadRoles(room);
    });
    loading.set(room, read);
    return read;
  }

  /** What decides who may delete whose messages: my role and who is more than a member (null: not read). */
  function roleKey(room) {
    const known = roles.get(room);
    if (!known) return null;
    const above = [...known].filter(([, role]) => role !== "member").sort();
    return JSON.stringify([known.get(me()) ?? null, above]);
  }

  /** Am I the owner or an admin of `room` (as last read)? */
  const moderates = (room) => rankOf(room, me()) >= MODERATOR;

  async function renderPanel(room) {
    const mine = ++gen;
    error.textContent = "";
    now.textContent = "Reading…";
    form.hidden = true;
    let policy;
    try {
      policy = await api("GET", `/api/rooms/${encodeURIComponent(room)}/retention`);
    } catch (e) {
      if (mine === gen) now.textContent = `Could not read the room's retention: ${e.message}`;
      return;
    }
    if (mine !== gen || room !== openRoom()) return;
    now.textContent = policyText(policy);
    form.hidden = !moderates(room);
    if (!form.hidden && document.activeElement !== count && document.activeElement !== days) {
      count.value = policy.room_max_messages ?? "";
      days.value = policy.room_max_age_s === null || policy.room_max_age_s === undefined ? "" : String(policy.room_max_age_s / DAY);
    }
  }

  /** The form's values as the PUT body: empty is null (the server's default), else whole numbers in range. */
  function formPolicy() {
    const messages = count.value.trim() === "" ? null : Number(count.value);
    const ageDays = days.value.trim() === "" ? null : Number(days.value);
    if (messages !== null && !(Number.isSafeInteger(messages) && messages >= 0 && messages <= MAX_MESSAGES)) {
      throw new Error(`messages: a whole number from 0 to ${MAX_MESSAGES}, or empty`);
    }
    const age = ageDays === null ? null : Math.round(ageDays * DAY);
    if (age !== null && !(Number.isFinite(ageDays) && age >= 0 && age <= MAX_AGE_S)) {
      throw new Error(`days: a number from 0 to ${MAX_AGE_S / DAY}, or empty`);
    }
    return { max_messages: messages, max_age_s: age };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const room = openRoom();
    if (!room) return;
    error.textContent = "";
    try {
      const policy = await api("PUT", `/api/rooms/${encodeURIComponent(room)}/retention`, formPolicy());
      if (room === openRoom()) now.textContent = policyText(policy);
    } catch (e) {
      error.textContent = `Not saved: ${e.message}`;
    }
  });

  function close() {
    panel.hidden = true;
    button.setAttribute("aria-expanded", "false");
  }

  button.addEventListener("click", () => {
    const room = openRoom();
    if (!room) return;
    if (!panel.hidden) { close(); return; }
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    renderPanel(room);
    loadRoles(room);
  });
  $("closeSettings").addEventListener("click", close);
  panel.addEventListener("keydown", (event) => { if (event.key === "Escape") { close(); button.focus(); } });

  return {
    /** May I delete (and erase) `sender`'s messages in `room`? Mine always; others' as a moderator of a higher role. */
    mayDelete(room, sender) {
      const user = me();
      return sender === user || (moderates(room) && rankOf(room, user) > rankOf(room, sender));
    },
    /** A room was opened: read its roles once (again after an event that changes them). */
    opened(room) {
      close();
      button.hidden = !room;
      if (room && !roles.has(room)) loadRoles(room);
    },
    /** A message of a room arrived live: roles and retention may have changed. */
    onMessage(m) {
      if (ROLE_EVENTS.has(m.kind) && roles.has(m.room)) loadRoles(m.room);
      if (m.kind === "retention" && m.room === openRoom() && !panel.hidden) renderPanel(m.room);
    },
    reset() {
      gen += 1;
      session += 1;
      roles.clear();
      stale.clear();
      close();
      button.hidden = true;
    },
  };
}

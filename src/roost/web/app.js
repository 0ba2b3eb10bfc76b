// The Roost chat page (index.html). All names, rooms and messages reach the DOM through textContent
// (or append() of plain strings), never as markup; message bodies go through /markdown.js, which builds
// its small subset with createElement and text nodes only. The page's Content-Security-Policy allows no
// inline script or style. Protocol logic lives in /roost.js (and the modules it imports: protocol, sync,
// relations, backoff).
import {
  RELATION_KINDS, RoostClient, TEXT_KINDS, Timeline, counts_as_unread, decode_content, mentions_user, text_of,
  thread_of, tokenSubject,
} from "/roost.js";
import { render as renderMarkdown } from "/markdown.js";
import { setupSearch } from "/search.js";
import { setupPush } from "/push.js";
import { retentionEventText, setupRoomSettings } from "/roomsettings.js";
import { setupAttachments } from "/attach.js";
import { h } from "/dom.js";

const WS_PATH = document.querySelector('meta[name="roost-websocket"]')?.content || "/ws";
const PAGE = 50;
const TYPING_SHOWN_MS = 5000;
const NARROW = window.matchMedia("(max-width: 720px)");
const ROOM_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;
const USER_RE = /^[A-Za-z0-9_.@-]{1,64}$/;

const $ = (id) => document.getElementById(id);
const log = $("log"), messagesEl = $("messages"), pendingEl = $("pending");
const threadMessagesEl = $("threadMessages"), threadPendingEl = $("threadPending");

// ---- page state ----------------------------------------------------------------------------

const S = {
  session: null,      // {user, token, dev}
  client: null,
  mine: [],           // rooms I am a member of
  public: [],         // every room
  open: null,         // the room shown
  views: new Map(),   // room -> {msgs: Map(seq -> msg), lo, hi, fresh, hasOlder, loading, early, gen}
  reads: {},          // room -> seq I have read up to (this page's own bookkeeping)
  serverReads: false, // the server keeps read positions (GET /api/rooms has "unread")
  serverUnread: {},
  sentReads: {},
  receipts: new Map(), // room -> Map(user -> seq)
  typers: new Map(),   // room -> Map(user -> last event ms)
  online: new Map(),   // room -> Set(user) from presence events (servers that send them)
  invites: new Map(),  // room -> who invited me, pending (GET /api/invites, then the event stream)
  notify: {},          // room -> how it notifies me ("all", "mentions", "none"), as I chose (GET /api/rooms, my stream)
  quiet: new Set(),    // rooms followed when the page started, until their first catch-up ends: old news, no notifications
  kinds: new Map(),    // room -> Map(seq -> counts as unread), for the unread seqs seen or looked up
  kindsLoading: new Set(), // rooms whose unread kinds are being read from history
  kindsFailed: new Set(),  // rooms where that read failed: unknown seqs count until the next connection
  markerSeq: null,
  timers: [],
  replyTo: null,       // {room, seq, sender, text}: the message the room's composer replies to
  threadReplyTo: null, // the same for the thread panel's composer
  thread: null,        // the open thread: {room, root, marker} (marker: the newest reply seen when it opened)
  threadSeen: {},      // "root@room" -> the newest reply of that thread I have seen (localStorage)
  readAtOpen: {},      // room -> my read position when the room was last opened
  quoted: new Map(),   // "seq@room" -> the folded message a reply quotes, read once when not in the view
};

const store = {
  get(key, fallback = null) {
    try { const v = localStorage.getItem(key); return v === null ? fallback : JSON.parse(v); } catch { return fallback; }
  },
  set(key, value) { try { localStorage.setItem(key, JSON.stringify(value)); } catch { /* full or disabled */ } },
  remove(key) { try { localStorage.removeItem(key); } catch { /* disabled */ } },
};
const pageKey = (what) => `roost-page:${location.host}:${S.session.user}:${what}`;

// ---- HTTP ----------------------------------------------------------------------------------

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${S.session.token}` } };
  if (body !== undefined) init.body = JSON.stringify(body);
  let response = await fetch(path, init);
  if (response.status === 401 && S.session.dev) {
    await relogin();
    init.headers.Authorization = `Bearer ${S.session.token}`;
    response = await fetch(path, init);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error?.reason ?? `HTTP ${response.status}`);
    error.code = data.error?.code ?? response.status;
    throw error;
  }
  return data;
}

/** Upload a file's bytes to a room (POST .../attachments, the body as is): the server's record of it. */
async function uploadFile(room, file) {
  const path = `/api/rooms/${encodeURIComponent(room)}/attachments?name=${encodeURIComponent(file.name || "file")}`;
  const send = () => fetch(path, { method: "POST", body: file, headers: { Authorization: `Bearer ${S.session.token}` } });
  let response = await send();
  if (response.status === 401 && S.session.dev) {
    await relogin();
    response = await send();
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error?.reason ?? `HTTP ${response.status}`);
    error.code = data.error?.code ?? response.status;
    throw error;
  }
  return data;
}

async function login(name) {
  const response = await fetch("/api/login", { method: "POST", body: JSON.stringify({ name }) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error?.reason ?? `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return { user: data.user, token: data.token, dev: true };
}

async function relogin() {
  const fresh = await login(S.session.user);
  S.session.token = fresh.token;
  store.set("roost-page:session", S.session);
}

/** The client's token function: the saved token, or a fresh development login when it went stale. */
async function tokenFor({ stale }) {
  if (!stale) return S.session.token;
  if (!S.session.dev) return null; // a pasted token that stopped working: sign in again
  try {
    await relogin();
  } catch (error) {
    if (error.status) return null; // the server refused (development login switched off)
    throw error; // unreachable: the client tries again later
  }
  return S.session.token;
}

// ---- sign in / out -------------------------------------------------------------------------

function showLogin(message = "") {
  $("login").hidden = false;
  $("main").hidden = true;
  $("signOut").hidden = true;
  $("menu").hidden = true;
  $("searchForm").hidden = true;
  $("me").textContent = "";
  $("loginError").textContent = message;
  $("loginName").focus();
}

$("loginForm").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("loginName").value.trim();
  $("loginError").textContent = "";
  try {
    startSession(await login(name));
  } catch (error) {
    if (error.status === 403) {
      $("loginHint").textContent = "This server has development sign-in switched off: paste a token from your identity provider or `roost token NAME`.";
      $("loginForm").hidden = true;
      $("tokenForm").hidden = false;
      $("loginToken").focus();
    } else {
      $("loginError").textContent = `Could not sign in: ${error.message}`;
    }
  }
});

$("tokenForm").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("loginToken").value.trim();
  const user = tokenSubject(token);
  if (!user) { $("loginError").textContent = "That does not look like a token."; return; }
  startSession({ user, token, dev: false });
});

$("signOut").addEventListener("click", () => {
  // The conversations saved for offline display go; the outbox and cursors stay for the next sign-in.
  const prefix = pageKey("view:");
  for (const key of Object.keys(localStorage)) if (key.startsWith(prefix)) store.remove(key);
  push.signOut(); // this device stops getting the user's pushes
  stopSession();
  store.remove("roost-page:session");
  showLogin();
});

function stopSession() {
  if (S.client) S.client.close();
  S.client = null;
  for (const t of S.timers) clearInterval(t);
  S.timers = [];
  S.views.clear();
  for (const map of [S.online, S.typers, S.receipts, S.kinds, S.invites]) map.clear();
  S.quiet.clear();
  S.quoted.clear();
  S.replyTo = S.threadReplyTo = null;
  if (S.thread) closeThread();
  S.kindsLoading.clear();
  S.kindsFailed.clear();
  S.sentReads = {};
  S.open = null;
  search.reset();
  push.stop();
  roomSettings.reset();
}

function startSession(session) {
  stopSession();
  S.session = session;
  store.set("roost-page:session", session);
  $("login").hidden = true;
  $("main").hidden = false;
  $("signOut").hidden = false;
  $("menu").hidden = false;
  $("searchForm").hidden = false;
  $("me").textContent = session.user;
  renderNotifyButton();
  push.start();
  S.reads = store.get(pageKey("reads"), {});
  S.threadSeen = store.get(pageKey("threads"), {});
  const cached = store.get(pageKey("rooms"), { mine: [], public: [] });
  S.mine = cached.mine;
  S.public = cached.public;

  const client = new RoostClient({
    url: wsUrl(),
    user: session.user,
    token: tokenFor,
    initialBackoffMs: 200,
    maxBackoffMs: 5000,
  });
  S.client = client;
  window.roostClient = client; // for debugging from the console
  client.on("state", renderState);
  client.on("welcome", () => {
    S.kindsFailed.clear();
    // Once per connection: what changed while it was down may be older than the stream's cursor reaches (a
    // first visit, a trimmed stream). From then on the user's event stream says what changes: no polling.
    refreshRooms();
    refreshInvites();
    const v = S.open && S.views.get(S.open);
    if (v && !v.fresh && !v.loading) openRoom(S.open); // its first page was lost with the last connection
  });
  client.on("subscribed", onSubscribed);
  client.on("live", ({ room }) => S.quiet.delete(room));
  client.on("message", onMessage);
  client.on("queued", ({ entry }) => { if (entry.room === S.open) addPending(entry, true); renderState(); });
  client.on("ack", onAck);
  client.on("sendfailed", onSendFailed);
  client.on("typing", onTyping);
  client.on("receipt", onReceipt);
  client.on("presence", onPresence);
  client.on("resync", onResync);
  client.on("inbox", onInboxEvent);
  client.on("left", ({ room, reason }) => {
    if (S.mine.includes(room)) removeRoom(room, `You are no longer in ${displayName(room)}: ${reason}`);
  });
  S.quiet = new Set(S.mine); // what they catch up on was there before the page: it notifies nothing
  for (const room of S.mine) follow(room);
  client.start().catch(() => {});
  renderRooms();
  const last = store.get(pageKey("last"));
  if (last && S.mine.includes(last)) openRoom(last);
  else if (S.mine.length) openRoom(S.mine[0]);
  else renderEmptyChat();
  refreshRooms(); // once: the list shows before the connection is up; the event stream keeps it current
  S.timers.push(setInterval(tick, 500));
}

function wsUrl() {
  const url = new URL(WS_PATH, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

// ---- rooms ---------------------------------------------------------------------------------

const isDm = (room) => /^dm:[^:]+:[^:]+$/.test(room);
const dmPeer = (room) => room.split(":").slice(1).find((u) => u !== S.session.user) ?? S.session.user;
const dmRoom = (a, b) => `dm:${[a, b].sort().join(":")}`;
const displayName = (room) => (isDm(room) ? `@${dmPeer(room)}` : `#${room}`);

function follow(room) {
  S.client.subscribe(room).catch((error) => {
    if (error?.name === "RequestFailed" && S.mine.includes(room)) {
      removeRoom(room, `Could not follow ${displayName(room)}: ${error.message}`);
    }
  });
}

async function refreshRooms() {
  if (!S.client) return;
  let data;
  try {
    data = await api("GET", "/api/rooms");
  } catch {
    return; // offline: keep the cached list
  }
  S.mine = data.rooms;
  S.public = data.public;
  S.serverReads = data.unread !== undefined && data.unread !== null;
  S.serverUnread = data.unread ?? {};
  S.notify = data.notify ?? S.notify;
  // A direct conversation someone opened with me is in my rooms already: the server adds both users.
  for (const [room, info] of Object.entries(S.serverUnread)) {
    if (typeof info?.read === "number" && info.read > (S.reads[room] ?? -1)) setRead(room, info.read, false);
  }
  store.set(pageKey("rooms"), { mine: S.mine, public: S.public });
  const followed = new Set(S.client.rooms);
  for (const room of S.mine) if (!followed.has(room)) follow(room);
  if (!S.open && S.mine.length) openRoom(S.mine[0]);
  renderRooms();
  if (S.open && S.serverReads) loadReceipts(S.open);
}

async function refreshInvites() {
  if (!S.client) return;
  let data;
  try {
    data = await api("GET", "/api/invites");
  } catch {
    return; // offline, or a server without invitations to list
  }
  S.invites = new Map((data.invites ?? []).map((i) => [i.room, i.by]));
  renderInvites();
}

/** An event of my own stream (protocol section 19): the page changes as it happens, without polling. */
function onInboxEvent({ kind, content: e }) {
  if (!e) return; // a kind this page does not know
  switch (kind) {
    case "added":
      S.invites.delete(e.room);
      renderInvites();
      if (!S.mine.includes(e.room)) {
        S.mine.push(e.room);
        follow(e.room); // roost.js follows a room someone else added me to already: this joins that
        if (!S.open) openRoom(e.room);
        renderRooms();
      }
      break;
    case "removed":
      if (S.mine.includes(e.room)) {
        S.client.unsubscribe(e.room);
        const how = e.how === "leave" ? "You left" : `${e.by} removed you from`;
        removeRoom(e.room, `${how} ${displayName(e.room)}.`);
      }
      break;
    case "invited":
      if (!S.mine.includes(e.room)) S.invites.set(e.room, e.by);
      renderInvites();
      break;
    case "uninvited":
      S.invites.delete(e.room);
      renderInvites();
      break;
    case "read":
      if (e.seq > (S.reads[e.room] ?? -1)) { setRead(e.room, e.seq, false); renderRoomsSoon(); }
      break;
    case "mention": // the room's message says it too (counted from it): this only redraws sooner
      renderRoomsSoon();
      break;
    case "notify":
      if (LEVELS.includes(e.level)) {
        S.notify[e.room] = e.level;
        if (e.room === S.open) renderNotifyLevel();
        renderRoomsSoon();
      }
      break;
    default:
  }
}

function renderInvites() {
  const rooms = [...S.invites.keys()].filter((room) => !S.mine.includes(room)).sort();
  $("invitesTitle").hidden = rooms.length === 0;
  $("invites").replaceChildren(...rooms.map((room) => h("li", { class: "invite", dataset: { invite: room } },
    h("span", { class: "name", text: displayName(room) }),
    h("span", { class: "by", text: `from ${S.invites.get(room)}` }),
    h("button", { type: "button", class: "link accept", "aria-label": `Join ${room}`, text: "Join",
      onclick: () => acceptInvite(room) }),
    h("button", { type: "button", class: "link decline", "aria-label": `Decline the invitation to ${room}`, text: "Decline",
      onclick: () => declineInvite(room) }))));
}

async function acceptInvite(room) {
  if (await enterRoom(room, false)) {
    S.invites.delete(room);
    renderInvites();
  }
}

async function declineInvite(room) {
  try {
    await api("POST", `/api/rooms/${encodeURIComponent(room)}/decline`);
  } catch (error) {
    if (error.code !== 4404) { $("roomError").textContent = `${displayName(room)}: ${error.message}`; return; }
  }
  S.invites.delete(room); // also when it had ended already (4404): nothing to decline
  renderInvites();
}

function latestSeq(room) {
  return Math.max(S.client?.cursor(room)?.seq ?? 0, S.views.get(room)?.hi ?? 0);
}

/** The open room, shown to me now: nothing in it is unread (in the background, it counts like any room). */
const seeing = (room) => room === S.open && document.visibilityState === "visible";

function unreadCount(room) {
  const read = S.reads[room];
  if (read === undefined || seeing(room)) return 0;
  return countUnread(room, read, latestSeq(room));
}

/** The unread messages of `room` that mention me (by name or @room), counted apart: the "@2" badge (R-CLIENT-75). */
function mentionCount(room) {
  const read = S.reads[room];
  if (read === undefined || seeing(room)) return 0;
  return countUnread(room, read, latestSeq(room), MENTION);
}

// Unread counts count what there is to read (relations.js counts_as_unread, R-CLIENT-72): texts of others that
// are not deleted. A join, leave, invite, kick, ban, role change, edit or reaction has a seq of its own but is
// not something to read (a new direct conversation with one message is "1", not "3" with both joins), nor is
// my own message sent from another device. The kinds come from the messages the client delivers; seqs the
// page has not seen (after a reload, or a room followed late) are read once from history.
const UNREAD_SCAN = 500;

const UNREAD = 1, MENTION = 2; // what a seq counts as, as bits (mentions_user: as sent, an edit tells nobody)

function noteKind(room, m) {
  if (m.seq <= (S.reads[room] ?? -1)) return;
  if (!S.kinds.has(room)) S.kinds.set(room, new Map());
  const kinds = S.kinds.get(room);
  const me = S.session.user;
  kinds.set(m.seq, (counts_as_unread(m, me) ? UNREAD : 0) | (mentions_user(m, me) ? MENTION : 0));
  if (m.kind === "delete") {
    const target = decode_content(m)?.target;
    if (target > (S.reads[room] ?? -1)) kinds.set(target, 0); // a deleted message is nothing to read
  }
}

function countUnread(room, read, latest, bit = UNREAD) {
  if (latest <= read) return 0;
  const kinds = S.kinds.get(room);
  const from = Math.max(read + 1, latest - UNREAD_SCAN + 1);
  let count = bit === UNREAD ? from - read - 1 : 0; // beyond the scan (a badge of 99+ anyway): taken as text
  let unknown = 0, firstUnknown = 0;
  for (let seq = from; seq <= latest; seq += 1) {
    const counts = kinds?.get(seq);
    if (counts === undefined) { unknown += 1; firstUnknown ||= seq; }
    else if (counts & bit) count += 1;
  }
  if (!unknown) return count;
  if (S.kindsFailed.has(room)) return bit === UNREAD ? count + unknown : count; // history unreadable: as before
  learnKinds(room, firstUnknown - 1, latest);
  return count; // for a moment: the badge shows the known ones, never membership events
}

function learnKinds(room, after, latest) {
  if (S.kindsLoading.has(room) || !S.client) return;
  S.kindsLoading.add(room);
  S.client.history(room, { after, limit: Math.min(UNREAD_SCAN, latest - after) }).then((page) => {
    for (const m of page.messages) noteKind(room, m);
    const last = page.messages.length ? page.messages[page.messages.length - 1].seq : after;
    const upTo = page.has_more ? last : latest; // seqs the server no longer has are nothing to read
    for (let seq = after + 1; seq <= upTo; seq += 1) if (!S.kinds.get(room)?.has(seq)) noteKind(room, { seq, kind: "none" });
  }, () => { S.kindsFailed.add(room); }).finally(() => {
    S.kindsLoading.delete(room);
    renderRoomsSoon();
  });
}

function setRead(room, seq, tellServer = true) {
  if (seq <= (S.reads[room] ?? -1)) return;
  S.reads[room] = seq;
  const kinds = S.kinds.get(room);
  if (kinds) for (const known of kinds.keys()) if (known <= seq) kinds.delete(known);
  store.set(pageKey("reads"), S.reads);
  if (tellServer && S.serverReads) reportReadSoon(room);
}

// The server hears about reading at most once a second per room (each report is a receipt for everyone).
const readTimers = new Map();
function reportReadSoon(room) {
  if (readTimers.has(room)) return;
  readTimers.set(room, setTimeout(() => {
    readTimers.delete(room);
    const seq = S.reads[room];
    if (!S.client?.connected || !(seq > (S.sentReads[room] ?? 0))) return;
    S.sentReads[room] = seq;
    S.client.markRead(room, seq).catch(() => { S.sentReads[room] = 0; });
  }, S.sentReads[room] ? 1000 : 0));
}

function markOpenRoomRead() {
  if (!S.open || document.visibilityState !== "visible" || S.views.get(S.open)?.detached) return;
  const latest = latestSeq(S.open);
  if (latest > 0) setRead(S.open, latest);
}

let roomsFrame = 0;
function renderRoomsSoon() {
  if (!roomsFrame) roomsFrame = requestAnimationFrame(() => { roomsFrame = 0; renderRooms(); });
}

function roomButton(room) {
  const unread = unreadCount(room);
  const button = h("button", {
    class: "room", type: "button", dataset: { room },
    "aria-current": room === S.open ? "true" : "false",
    onclick: () => openRoom(room),
  });
  if (isDm(room)) {
    const on = S.online.get(room)?.has(dmPeer(room)) ?? false;
    button.append(h("span", { class: on ? "presence on" : "presence", title: on ? "online" : "offline" }),
      h("span", { class: "name", text: `@${dmPeer(room)}` }));
  }
  else button.append(h("span", { class: "hash", text: "#" }), h("span", { class: "name", text: room }));
  const mentioned = mentionCount(room);
  const level = notifyLevel(room);
  button.dataset.notify = level;
  if (level === "none") button.append(h("span", { class: "muted", text: "muted", title: "No notifications" }));
  if (mentioned > 0) {
    const label = `${mentioned} mention${mentioned === 1 ? "" : "s"}`;
    button.append(h("span", { class: "mentions", text: `@${mentioned > 99 ? "99+" : mentioned}`, title: label, "aria-label": label }));
  }
  if (unread > 0) {
    button.append(h("span", { class: "badge", text: unread > 99 ? "99+" : String(unread), "aria-label": `${unread} unread` }));
  }
  return h("li", {}, button);
}

function renderRooms() {
  const mine = [...S.mine].sort();
  const groups = [mine.filter((r) => !isDm(r)), mine.filter(isDm)];
  $("myRooms").replaceChildren(...groups[0].map(roomButton));
  $("dmRooms").replaceChildren(...groups[1].map(roomButton));
  if (!groups[0].length) $("myRooms").append(h("li", { class: "empty", text: "No rooms yet: create or join one." }));
  if (!groups[1].length) $("dmRooms").append(h("li", { class: "empty", text: "None yet." }));
  const others = S.public.filter((r) => !S.mine.includes(r) && !isDm(r)).sort();
  $("publicRooms").replaceChildren(...others.map((room) => h("li", { class: "public-room" },
    h("span", { class: "name", text: `#${room}` }),
    h("button", { type: "button", class: "link", dataset: { join: room }, "aria-label": `Join ${room}`, text: "Join",
      onclick: () => joinRoom(room) }))));
  if (!others.length) $("publicRooms").append(h("li", { class: "empty", text: "Nothing else to join." }));
  renderTitle();
}

async function enterRoom(room, create, kind = "public") {
  $("roomError").textContent = "";
  try {
    if (create) {
      try {
        await api("POST", "/api/rooms", { room, kind });
      } catch (error) {
        if (error.code !== 4409) throw error;
        try {
          await api("POST", `/api/rooms/${encodeURIComponent(room)}/join`);
        } catch (joinError) {
          // The name is taken (4409) and the join says there is no such room (4404): a private room or a
          // direct conversation, hidden from non-members (docs/security.md, R-SEC-63).
          if (joinError.code === 4404) joinError.message = "the name is taken by a private room: ask its owner for an invitation";
          throw joinError;
        }
      }
    } else {
      await api("POST", `/api/rooms/${encodeURIComponent(room)}/join`);
    }
  } catch (error) {
    $("roomError").textContent = `${displayName(room)}: ${error.message}`;
    return false;
  }
  if (!S.mine.includes(room)) S.mine.push(room);
  follow(room);
  openRoom(room);
  refreshRooms();
  return true;
}

const joinRoom = (room) => enterRoom(room, false);

$("createForm").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = event.target.room;
  const room = input.value.trim();
  if (!ROOM_RE.test(room)) { $("roomError").textContent = "Room names are 1-128 of A-Z a-z 0-9 _ . : @ -"; return; }
  const kind = event.target.private.checked ? "private" : "public";
  if (await enterRoom(room, true, kind)) { input.value = ""; event.target.private.checked = false; }
});

$("dmForm").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = event.target.peer;
  const peer = input.value.trim();
  if (!USER_RE.test(peer) || peer === S.session.user) { $("roomError").textContent = "Enter another user's name."; return; }
  if (dmRoom(S.session.user, peer).length > 128) { $("roomError").textContent = "These two names are too long for a direct room."; return; }
  $("roomError").textContent = "";
  let room;
  try {
    ({ room } = await api("POST", "/api/dm", { user: peer })); // created with both of us as members
  } catch (error) {
    $("roomError").textContent = `@${peer}: ${error.message}`;
    return;
  }
  input.value = "";
  if (!S.mine.includes(room)) S.mine.push(room);
  follow(room);
  openRoom(room);
  refreshRooms();
});

$("refreshRooms").addEventListener("click", () => refreshRooms());

$("leaveRoom").addEventListener("click", async () => {
  const room = S.open;
  if (!room) return;
  try {
    await api("POST", `/api/rooms/${encodeURIComponent(room)}/leave`);
  } catch (error) {
    showBanner(`Could not leave: ${error.message}`);
    return;
  }
  S.mine = S.mine.filter((r) => r !== room); // before the server's 4403 for the ended subscription arrives
  S.client.unsubscribe(room);
  removeRoom(room, `You left ${displayName(room)}.`);
});

function removeRoom(room, message) {
  S.mine = S.mine.filter((r) => r !== room);
  S.views.delete(room);
  if (S.open === room) {
    S.open = null;
    if (S.mine.length) openRoom(S.mine[0]);
    else renderEmptyChat();
  }
  renderRooms();
  if (message) showBanner(message);
  refreshRooms();
}

// ---- the open room -------------------------------------------------------------------------

// A view is what the page shows of a room: a contiguous run of messages by seq. It is "fresh" once the
// newest page has been read from the server in this page's life; before that it may show the copy saved
// in localStorage (so that a reload while the server is down still shows the conversation).
function view(room) {
  let v = S.views.get(room);
  if (!v) {
    v = {
      room, msgs: new Map(), lo: null, hi: null, fresh: false, hasOlder: false, loading: null, loadingOlder: false,
      early: [], gen: 0, saveTimer: 0, tl: new Timeline(), detached: false, found: null,
    };
    S.views.set(room, v);
  }
  return v;
}

function clearView(v) {
  v.msgs.clear();
  v.tl = new Timeline();
  v.lo = v.hi = null;
  if (v.room === S.open) for (const li of messagesEl.querySelectorAll("li[data-seq]")) li.remove();
}

function resetView(v) {
  v.gen += 1;
  clearView(v);
  v.fresh = false;
  v.loading = null;
  v.early = [];
  v.hasOlder = false;
  v.detached = false;
  v.found = null;
  store.remove(pageKey(`view:${v.room}`));
  if (v.room === S.open) openRoom(v.room);
}

const SAVED_MESSAGES = 50;
const SAVED_BYTES = 200_000;

function saveView(v) {
  clearTimeout(v.saveTimer);
  v.saveTimer = 0;
  if (!v.fresh || v.detached || S.views.get(v.room) !== v) return;
  const msgs = [...v.msgs.values()].sort((a, b) => a.seq - b.seq).slice(-SAVED_MESSAGES);
  while (msgs.length > 1 && JSON.stringify(msgs).length > SAVED_BYTES) msgs.shift();
  store.set(pageKey(`view:${v.room}`), { epoch: v.epoch, msgs });
}

function saveViewSoon(v) {
  if (v.fresh && !v.saveTimer) v.saveTimer = setTimeout(() => saveView(v), 1000);
}

// Leaving the page (a reload, a closed tab): save what is still waiting.
window.addEventListener("pagehide", () => { for (const v of S.views.values()) if (v.saveTimer) saveView(v); });

function restoreView(v) {
  const saved = store.get(pageKey(`view:${v.room}`));
  if (!saved || !Array.isArray(saved.msgs)) return;
  let start = saved.msgs.length - 1; // the newest contiguous run only
  while (start > 0 && saved.msgs[start - 1].seq === saved.msgs[start].seq - 1) start -= 1;
  v.epoch = saved.epoch;
  addMessages(v, saved.msgs.slice(Math.max(start, 0)));
}

function renderEmptyChat() {
  $("roomTitle").textContent = "No room open";
  $("leaveRoom").hidden = true;
  roomSettings.opened(null);
  renderNotifyLevel();
  messagesEl.replaceChildren();
  pendingEl.replaceChildren();
  $("seen").textContent = "";
  $("online").textContent = "";
  $("loadOlder").hidden = true;
  $("body").disabled = $("sendButton").disabled = true;
  if (NARROW.matches) setRoomsShown(true);
}

function openRoom(room) {
  const previous = S.open;
  S.open = room;
  attachments.refresh();
  renderNotifyLevel();
  store.set(pageKey("last"), room);
  $("roomTitle").textContent = displayName(room);
  $("leaveRoom").hidden = false;
  $("body").disabled = $("sendButton").disabled = false;
  if (previous !== room) roomSettings.opened(room);
  if (previous !== room) {
    $("body").value = "";
    hideBanner();
    S.replyTo = null;
    renderReplyBars();
    if (S.thread && S.thread.room !== room) closeThread();
  }
  messagesEl.replaceChildren();
  pendingEl.replaceChildren();
  const v = view(room);
  const read = S.reads[room];
  if (previous !== room) S.readAtOpen[room] = read ?? 0;
  const latest = latestSeq(room);
  S.markerSeq = read !== undefined && countUnread(room, read, latest) > 0 ? read : null;
  const sorted = [...v.msgs.values()].filter((m) => !RELATION_KINDS.has(m.kind) && thread_of(m) === null)
    .sort((a, b) => a.seq - b.seq);
  messagesEl.append(...sorted.map((m) => renderMessage(m)));
  if (S.markerSeq !== null) insertByKey(h("li", { class: "unread-marker", role: "separator", dataset: { key: S.markerSeq + 0.5 }, text: "New messages" }));
  for (const entry of S.client.outbox) if (entry.room === room) addPending(entry, false);
  for (const entry of S.client.failed) if (entry.room === room) addPending(entry, false, entry);
  renderTyping();
  renderSeen();
  renderOnline();
  renderOlderButton(v);
  renderNewerButton(v);
  renderRooms();
  if (NARROW.matches) setRoomsShown(false);
  if (v.found !== null) {
    (v.loading ?? Promise.resolve()).then(() => { if (S.open === room) showFound(v); });
  } else if (!v.fresh) {
    if (v.hi === null) restoreView(v);
    scrollToStart();
    loadNewest(v).then(() => { if (S.open === room && v.fresh) { scrollToStart(); markOpenRoomRead(); fillScreen(v); } });
  } else {
    scrollToStart();
    markOpenRoomRead();
  }
  if (S.serverReads) loadReceipts(room);
  if (!NARROW.matches) $("body").focus({ preventScroll: true });
}

function scrollToStart() {
  const marker = messagesEl.querySelector(".unread-marker");
  if (marker) marker.scrollIntoView({ block: "start" });
  else log.scrollTop = log.scrollHeight;
}

function loadNewest(v) {
  if (v.loading) return v.loading;
  const gen = v.gen;
  v.early = [];
  v.loading = S.client.history(v.room, { limit: PAGE }).then((page) => {
    if (gen !== v.gen) return;
    // The saved copy must join the page without a hole, in the same epoch; otherwise it goes.
    const first = page.messages.length ? page.messages[0].seq : page.head + 1;
    if (v.hi !== null && (v.epoch !== page.epoch || first > v.hi + 1 || v.hi > page.head)) clearView(v);
    v.epoch = page.epoch;
    v.fresh = true;
    if (page.messages.length === 0 && v.hi === null) { v.hi = page.head; v.lo = page.head + 1; }
    addMessages(v, page.messages);
    v.hasOlder = v.lo !== null && v.lo > page.first;
    const early = v.early;
    v.early = [];
    for (const m of early) mergeLive(v, m);
    renderOlderButton(v);
  }).catch((error) => {
    // A lost connection is retried when the next one is up (the welcome handler); anything else is shown.
    if (gen === v.gen && v.room === S.open && error.name !== "ConnectionLost") {
      showBanner(`Could not load messages: ${error.message}`);
    }
  }).finally(() => {
    if (gen === v.gen) v.loading = null;
  });
  return v.loading;
}

async function loadOlder(v) {
  if (!v.fresh || !v.hasOlder || v.loadingOlder || v.lo === null) return;
  v.loadingOlder = true;
  const gen = v.gen;
  try {
    const page = await S.client.history(v.room, { before: v.lo, limit: PAGE });
    if (gen !== v.gen) return;
    const fromBottom = log.scrollHeight - log.scrollTop;
    addMessages(v, page.messages);
    v.hasOlder = page.has_more;
    if (v.room === S.open) log.scrollTop = log.scrollHeight - fromBottom;
  } catch (error) {
    if (v.room === S.open && error.name !== "ConnectionLost") showBanner(`Could not load older messages: ${error.message}`);
  } finally {
    v.loadingOlder = false;
    renderOlderButton(v);
  }
  fillScreen(v);
}

/** Load older pages until the log can scroll (a short room on a tall screen). */
function fillScreen(v) {
  if (v.room === S.open && v.hasOlder && log.scrollHeight <= log.clientHeight + 10) loadOlder(v);
}

function renderOlderButton(v) {
  if (v.room === S.open) $("loadOlder").hidden = !v.hasOlder;
}

$("loadOlder").addEventListener("click", () => { if (S.open) loadOlder(view(S.open)); });
log.addEventListener("scroll", () => {
  if (S.open && log.scrollTop < 80) loadOlder(view(S.open));
  if (S.open && log.scrollHeight - log.scrollTop - log.clientHeight < 80) loadNewer(view(S.open));
}, { passive: true });

// ---- opening a room at a message (a search result) ---------------------------------------------
// The view is cleared and read around the message: a page before it and a page from it. Until the view reaches
// the room's newest message again it is "detached": live messages wait in v.early (they are newer than anything a
// page read later brings), the room is not marked read, and scrolling down (or "Load newer messages") reads on.

const AROUND = PAGE / 2;

function openAt(room, seq) {
  if (!S.mine.includes(room)) return;
  const v = view(room);
  if (v.fresh && !v.detached && v.msgs.has(seq)) { // already shown with everything after it
    v.found = seq;
    openRoom(room);
    return;
  }
  v.gen += 1;
  clearView(v);
  const gen = v.gen;
  Object.assign(v, { fresh: false, detached: true, early: [], hasOlder: false, found: seq, loadingNewer: false });
  v.loading = Promise.all([
    S.client.history(room, { before: seq + 1, limit: AROUND }),
    S.client.history(room, { after: seq, limit: AROUND }),
  ]).then(([older, newer]) => {
    if (gen !== v.gen) return;
    v.epoch = older.epoch;
    addMessages(v, [...older.messages, ...newer.messages]);
    if (v.lo === null) { v.lo = seq; v.hi = seq - 1; }
    v.hasOlder = v.lo > older.first;
    v.fresh = true;
    if (!newer.has_more) attachLive(v);
    renderOlderButton(v);
    renderNewerButton(v);
  }).catch((error) => {
    if (gen === v.gen && v.room === S.open && error.name !== "ConnectionLost") showBanner(`Could not load messages: ${error.message}`);
  }).finally(() => {
    if (gen === v.gen) v.loading = null;
  });
  openRoom(room);
}

/** The view holds everything up to the newest message again: live messages flow into it as before. */
function attachLive(v) {
  v.detached = false;
  const early = v.early;
  v.early = [];
  for (const m of early) mergeLive(v, m);
  renderNewerButton(v);
  if (S.thread?.room === v.room) renderThread(); // its "Load newer messages" goes
  if (v.room === S.open) markOpenRoomRead();
}

async function loadNewer(v) {
  if (!v.fresh || !v.detached || v.loadingNewer || v.hi === null) return;
  v.loadingNewer = true;
  const gen = v.gen;
  try {
    const page = await S.client.history(v.room, { after: v.hi, limit: PAGE });
    if (gen !== v.gen) return;
    addMessages(v, page.messages);
    if (!page.has_more) attachLive(v);
  } catch (error) {
    if (v.room === S.open && error.name !== "ConnectionLost") showBanner(`Could not load newer messages: ${error.message}`);
  } finally {
    v.loadingNewer = false;
    renderNewerButton(v);
  }
}

function renderNewerButton(v) {
  if (v.room === S.open) $("loadNewer").hidden = !(v.fresh && v.detached);
}

$("loadNewer").addEventListener("click", () => { if (S.open) loadNewer(view(S.open)); });

/** Scroll to the message a search result named and mark it (until another is chosen). */
function showFound(v) {
  for (const list of [messagesEl, threadMessagesEl]) for (const li of list.querySelectorAll("li.found")) li.classList.remove("found");
  const seq = v.found;
  v.found = null;
  const root = v.msgs.has(seq) ? thread_of(v.msgs.get(seq)) : null;
  if (root !== null) { showFoundReply(v, seq, root); return; }
  const li = messagesEl.querySelector(`li[data-seq="${seq}"]`);
  if (!li) { showBanner("That message is no longer kept."); return; }
  li.classList.add("found");
  li.scrollIntoView({ block: "center" });
}

/** A result that is a reply in a thread: the room is shown around the thread's root (older pages are read until it
 * is in the view, at most 20), marked, and the thread's panel opens at the reply, marked. */
async function showFoundReply(v, seq, root) {
  const room = v.room;
  await loadUntil(v, root);
  if (S.open !== room) return;
  await openThread(room, root);
  if (S.open !== room || S.thread?.room !== room || S.thread.root !== root) return;
  S.thread.found = seq;
  const rootLine = messagesEl.querySelector(`li[data-seq="${root}"]`); // drawn again by the panel: marked after it
  if (rootLine) {
    rootLine.classList.add("found");
    rootLine.scrollIntoView({ block: "center" });
  }
  const li = threadMessagesEl.querySelector(`li[data-seq="${seq}"]`);
  if (!li) { showBanner("That message is no longer kept."); return; }
  li.classList.add("found");
  li.scrollIntoView({ block: "center" });
}

/** A message delivered by the client: into its room's view, if that view is loaded. */
function mergeLive(v, m) {
  if (v.detached) {
    if (v.early.length < 5000) v.early.push(m); // merged when the view reaches the newest messages again
    else v.early = [];
    return;
  }
  if (!v.fresh) {
    if (v.loading) v.early.push(m);
    return; // not loaded: the newest page read when the room opens will have it
  }
  if (m.seq > v.hi + 1) { resetView(v); return; } // a discontinuity (resync): reload the view
  addMessages(v, [m]);
}

function addMessages(v, list) {
  const open = v.room === S.open;
  const stick = open && log.scrollHeight - log.scrollTop - log.clientHeight < 60;
  for (const m of list) {
    if (v.msgs.has(m.seq)) continue;
    v.msgs.set(m.seq, m);
    noteKind(v.room, m);
    v.lo = v.lo === null ? m.seq : Math.min(v.lo, m.seq);
    v.hi = v.hi === null ? m.seq : Math.max(v.hi, m.seq);
    v.tl.add(m);
    if (RELATION_KINDS.has(m.kind)) {
      // An edit, delete or reaction is not a line of its own: it changes the line of its target (and, for a
      // reply in a thread, its root's count of replies).
      const target = decode_content(m)?.target ?? null;
      if (m.kind === "delete" && target !== null) forgetDeleted(v, target);
      if (open && target !== null && v.msgs.has(target)) rerender(v.msgs.get(target));
      continue;
    }
    if (m.sender === S.session.user) {
      for (const list of [pendingEl, threadPendingEl]) list.querySelector(`li[data-cmid="${CSS.escape(m.cmid)}"]`)?.remove();
    }
    if (!open) continue;
    const root = thread_of(m);
    if (root !== null) {
      // A reply in a thread: shown in the thread's panel, counted on its root's line.
      if (v.msgs.has(root)) rerender(v.msgs.get(root));
      if (S.thread?.room === v.room && S.thread.root === root) renderThread();
      continue;
    }
    insertByKey(renderMessage(m));
  }
  if (open) {
    renderSeen();
    if (stick) log.scrollTop = log.scrollHeight;
  }
  saveViewSoon(v);
}

/** Insert an element of the message list in order of data-key (seq; the unread marker is seq + 0.5). */
function insertByKey(li) {
  const key = Number(li.dataset.key);
  const first = messagesEl.firstElementChild;
  if (!first || key < Number(first.dataset.key)) { messagesEl.prepend(li); return; }
  let node = messagesEl.lastElementChild;
  while (node && Number(node.dataset.key) > key) node = node.previousElementSibling;
  node.after(li);
}

function timeOf(ts) {
  const d = new Date(ts);
  return { short: d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }), full: d.toLocaleString() };
}

/** What a membership event says after the member's name: "joined", "was removed by alice", ... */
function eventText(m) {
  let info = {};
  try { info = JSON.parse(m.body || "{}") ?? {}; } catch { /* an unknown body: no details */ }
  const by = typeof info.by === "string" ? info.by : "someone";
  switch (m.kind) {
    case "join": return "joined";
    case "leave": return "left";
    case "invite": return `was invited by ${by}`;
    case "kick": return `was removed by ${by}`;
    case "ban": return `was banned by ${by}`;
    case "unban": return `was unbanned by ${by}`;
    case "role": return info.role === "admin" ? `was made an admin by ${by}` : `is no longer an admin (${by})`;
    case "retention": return retentionEventText(info);
    default: return `(${m.kind})`;
  }
}

/** The folded state of stored message `m` (its edits, deletion, reactions, reply and thread applied). */
function foldedOf(m) {
  return S.views.get(m.room)?.tl.get(m.seq) ?? new Timeline().extend([m]).get(m.seq);
}

/** A line of the room (or, `inThread`, of the thread panel): its quote, text, reactions, thread summary, tools. */
function renderMessage(m, inThread = false) {
  if (!TEXT_KINDS.has(m.kind) && m.kind !== "deleted") {
    const what = eventText(m);
    return h("li", { class: "event", dataset: { seq: m.seq, key: m.seq, kind: m.kind, sender: m.sender } },
      h("span", { class: "who", text: m.sender }), ` ${what}`);
  }
  const t = timeOf(m.ts);
  const mine = m.sender === S.session.user;
  const state = foldedOf(m);
  const li = h("li", {
    class: `${mine ? "msg mine" : "msg"}${state.deleted ? " deleted" : ""}`,
    dataset: {
      seq: m.seq, key: m.seq, cmid: m.cmid, sender: m.sender, state: "sent", edited: state.edited, deleted: state.deleted,
      replyTo: state.reply_to ?? undefined, thread: state.thread ?? undefined,
    },
  },
  h("span", { class: "who", text: m.sender }),
  h("time", { class: "time", datetime: new Date(m.ts).toISOString(), title: t.full, text: t.short }),
  h("span", { class: "status", text: state.edited ? "(edited)" : "" }));
  if (state.reply_to !== null && !state.deleted) li.append(renderQuote(m.room, state.reply_to));
  li.append(state.deleted ? h("div", { class: "body", text: "message deleted" })
    : h("div", { class: "body" }, highlightMentions(renderMarkdown(state.body), state)));
  const files = state.deleted ? null : attachments.render(m);
  if (files) li.append(files);
  if (!inThread && state.replies > 0) li.append(threadSummary(m, state));
  if (state.deleted) return li;
  if (state.reactions.length) {
    li.append(h("div", { class: "reactions" }, ...state.reactions.map(([emoji, users]) => {
      const minePressed = users.includes(S.session.user);
      return h("button", {
        type: "button", class: "reaction", "aria-pressed": String(minePressed), title: users.join(", "),
        dataset: { emoji }, text: `${emoji} ${users.length}`,
        onclick: () => react(m, emoji, minePressed),
      });
    })));
  }
  const tools = h("div", { class: "tools" });
  if (!state.reactions.some(([emoji, users]) => emoji === QUICK_REACTION && users.includes(S.session.user))) {
    tools.append(h("button", { type: "button", class: "react", "aria-label": `React ${QUICK_REACTION}`, text: `+${QUICK_REACTION}`,
      onclick: () => react(m, QUICK_REACTION, false) }));
  }
  tools.append(h("button", {
    type: "button", class: "react-more", text: "☺+", title: "Add a reaction",
    "aria-label": "Choose a reaction", "aria-haspopup": "true", "aria-expanded": "false",
    onclick: (event) => togglePicker(li, event.currentTarget, m, state),
  }));
  tools.append(h("button", { type: "button", class: "reply", text: "Reply", title: "Reply, quoting this message",
    onclick: () => startReply(m, state, inThread) }));
  if (!inThread && state.thread === null) {
    tools.append(h("button", { type: "button", class: "open-thread", text: "Thread", title: "Reply in a thread",
      onclick: () => openThread(m.room, m.seq) }));
  }
  if (mine) tools.append(h("button", { type: "button", class: "edit", text: "Edit", onclick: () => startEdit(li, m, state.body) }));
  tools.append(...deleteTools(li, m));
  li.append(tools);
  return li;
}

const QUICK_REACTION = "👍";
/** The picker's choices: these, then the emoji already used in the room (any text of 1-32 bytes the server took). */
const COMMON_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀", "🚀", "✅", "🔥", "👎"];
const MAX_USED_REACTIONS = 12;

/** Emoji used in reactions of the room's loaded messages, beyond the common ones, most recent first. */
function usedReactions(room) {
  const seen = new Map(); // emoji -> latest seq of a react with it
  for (const m of view(room).msgs.values()) {
    if (m.kind !== "react") continue;
    let emoji;
    try { emoji = JSON.parse(m.body).emoji; } catch { continue; }
    if (typeof emoji === "string" && emoji && !COMMON_REACTIONS.includes(emoji)) seen.set(emoji, Math.max(m.seq, seen.get(emoji) ?? 0));
  }
  return [...seen].sort((a, b) => b[1] - a[1]).slice(0, MAX_USED_REACTIONS).map(([emoji]) => emoji);
}

function closePickers(except = null) {
  for (const picker of document.querySelectorAll(".picker")) {
    if (picker === except) continue;
    picker.closest("li")?.querySelector(".react-more")?.setAttribute("aria-expanded", "false");
    picker.remove();
  }
}

/** The emoji picker under a message: a row of buttons; choosing one reacts (or takes mine back). */
function togglePicker(li, toggle, m, state) {
  const open = li.querySelector(".picker");
  closePickers();
  if (open) { toggle.focus(); return; }
  const mine = new Set(state.reactions.filter(([, users]) => users.includes(S.session.user)).map(([emoji]) => emoji));
  const choices = [...COMMON_REACTIONS, ...usedReactions(m.room)];
  const picker = h("div", { class: "picker", role: "group", "aria-label": "Reactions" }, ...choices.map((emoji) => h("button", {
    type: "button", class: "pick", dataset: { emoji }, title: emoji, text: emoji, "aria-pressed": String(mine.has(emoji)),
    onclick: () => { closePickers(); react(m, emoji, mine.has(emoji)); },
  })));
  picker.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.stopPropagation(); closePickers(); toggle.focus(); }
  });
  li.append(picker);
  toggle.setAttribute("aria-expanded", "true");
  picker.querySelector("button").focus();
}

document.addEventListener("click", (event) => {
  if (!event.target.closest?.(".picker, .react-more")) closePickers();
});

/** Draw the line of stored message `m` again (an edit, deletion or reaction of it arrived), wherever it is. */
function rerender(m) {
  if (m.room !== S.open) return;
  for (const list of [messagesEl, threadMessagesEl]) {
    const old = list.querySelector(`li[data-seq="${m.seq}"]`);
    if (old && !old.querySelector(".editor")) old.replaceWith(renderMessage(m, list === threadMessagesEl));
  }
  const root = thread_of(m);
  const v = S.views.get(m.room);
  if (root !== null && v?.msgs.has(root)) rerender(v.msgs.get(root)); // its count of replies may change
  renderSeen();
}

function react(m, emoji, remove) {
  S.client.react(m.room, m.seq, emoji, { remove }).catch((error) => showBanner(`Could not react: ${error.message}`));
}

/** Delete and Erase under a message I may delete: mine, or, as the room's owner or admin, one of a lower role. */
function deleteTools(li, m) {
  if (!roomSettings.mayDelete(m.room, m.sender)) return [];
  return [
    h("button", { type: "button", class: "delete", text: "Delete", onclick: (event) => confirmDelete(event.currentTarget, m) }),
    h("button", { type: "button", class: "erase", text: "Erase", title: "Delete it and have the server remove its text from its store",
      onclick: () => confirmErase(li, m) }),
  ];
}

/** Erase (R-ERASE-1) asks first, under the message: a delete whose text also leaves the server's store. */
function confirmErase(li, m) {
  const open = li.querySelector(".confirm-erase");
  if (open) { open.querySelector(".really").focus(); return; }
  const box = h("div", { class: "confirm-erase", role: "group", "aria-label": "Erase this message" },
    h("span", { text: "Erase this message? It is deleted for everyone and the server removes its text from its store." }),
    h("button", { type: "button", class: "really", text: "Erase", onclick: () => {
      box.remove();
      S.client.delete(m.room, m.seq, { erase: true }).catch((error) => showBanner(`Could not erase: ${error.message}`));
    } }),
    h("button", { type: "button", class: "cancel", text: "Cancel", onclick: () => box.remove() }));
  box.addEventListener("keydown", (event) => { if (event.key === "Escape") box.remove(); });
  li.append(box);
  box.querySelector(".really").focus();
}

function confirmDelete(button, m) {
  if (button.dataset.armed) {
    S.client.delete(m.room, m.seq).catch((error) => showBanner(`Could not delete: ${error.message}`));
    return;
  }
  button.dataset.armed = "1";
  button.textContent = "Delete?";
  setTimeout(() => { delete button.dataset.armed; button.textContent = "Delete"; }, 4000);
}

/** Edit in place: the body becomes a text box; Enter (or Save) stores an edit, Escape cancels. */
function startEdit(li, m, text) {
  const input = h("textarea", { class: "editor", rows: 2, "aria-label": "Edit message" });
  input.value = text;
  const done = () => rerenderLine(li, m);
  const save = () => {
    const body = input.value;
    if (!body.trim() || body === text) { done(); return; }
    S.client.edit(m.room, m.seq, body).then(done, (error) => { showBanner(`Could not edit: ${error.message}`); done(); });
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); save(); }
    if (event.key === "Escape") done();
  });
  li.querySelector(".body").replaceChildren(input);
  li.querySelector(".tools").replaceChildren(
    h("button", { type: "button", class: "save", text: "Save", onclick: save }),
    h("button", { type: "button", class: "cancel", text: "Cancel", onclick: done }));
  input.focus();
}

function rerenderLine(li, m) {
  if (li.isConnected) li.replaceWith(renderMessage(m, li.parentElement === threadMessagesEl));
}

/** The list a pending send shows in: the room's, or the open thread's panel for a reply in it (else none). */
function pendingListOf(entry) {
  if (entry.thread === null || entry.thread === undefined) return pendingEl;
  return S.thread?.room === entry.room && S.thread.root === entry.thread ? threadPendingEl : null;
}

/** The shown pending line of a send, in whichever list it is. */
function pendingLine(cmid) {
  const selector = `li[data-cmid="${CSS.escape(cmid)}"]`;
  return pendingEl.querySelector(selector) ?? threadPendingEl.querySelector(selector);
}

function addPending(entry, scroll, failed = null) {
  const list = pendingListOf(entry);
  if (!list || pendingLine(entry.cmid)) return;
  if (view(entry.room).msgs.size && [...view(entry.room).msgs.values()].some((m) => m.cmid === entry.cmid && m.sender === S.session.user)) return;
  const li = h("li", { class: "msg mine", dataset: { cmid: entry.cmid, sender: S.session.user, state: "pending" } },
    h("span", { class: "who", text: S.session.user }),
    h("time", { class: "time", text: timeOf(entry.t).short }),
    h("span", { class: "status", text: "" }),
    h("div", { class: "body" }, renderMarkdown(entry.body)));
  list.append(li);
  if (failed) markFailed(li, failed);
  else setPendingStatus(li);
  if (scroll && list === pendingEl) log.scrollTop = log.scrollHeight;
  if (scroll && list === threadPendingEl) threadLog.scrollTop = threadLog.scrollHeight;
}

function setPendingStatus(li) {
  if (li.dataset.state !== "pending") return;
  li.querySelector(".status").textContent = S.client?.connected ? "Sending…" : "Waiting for connection";
}

function onAck({ entry, sent }) {
  renderState();
  const li = pendingLine(entry.cmid);
  if (!li) return;
  li.dataset.state = "sent";
  li.dataset.seq = sent.seq; // the seq is for tests and tools, not shown: the order on screen says it
  li.querySelector(".status").textContent = "";
}

function onSendFailed({ entry, code, reason }) {
  renderState();
  const li = pendingLine(entry.cmid);
  if (li) markFailed(li, { ...entry, code, reason });
}

function markFailed(li, failed) {
  li.dataset.state = "failed";
  li.querySelector(".status").textContent = `Not sent (${failed.code})`;
  li.querySelector(".actions")?.remove();
  li.append(h("div", { class: "actions" },
    h("span", { class: "hint", text: failed.reason }),
    h("button", { type: "button", class: "retry", text: "Retry", onclick: () => {
      li.remove();
      S.client.retry(failed.cmid).catch(() => {});
    } }),
    h("button", { type: "button", class: "discard", text: "Discard", onclick: () => {
      li.remove();
      S.client.discard(failed.cmid);
    } })));
}

// ---- deleted and erased messages ----------------------------------------------------------
// A deleted message's text leaves the page, not only the screen: the view keeps the tombstone the server serves
// for it from then on (kind "deleted"; its edits lose their text), the copy saved for offline display is written
// from that, and the quotes and search results showing it go. For an erasure (R-ERASE-1) this is what the protocol
// asks of a client that holds the text; for a plain deletion the page does the same, as it has no use for the text.

/** Replace message `target` of `msgs` (seq -> message) and its edits by their tombstones. True if any changed. */
function tombstone(msgs, target) {
  let changed = false;
  const m = msgs.get(target);
  if (m && TEXT_KINDS.has(m.kind)) {
    const root = thread_of(m);
    msgs.set(target, { ...m, kind: "deleted", body: root === null ? "" : JSON.stringify({ thread: root }) });
    changed = true;
  }
  for (const [seq, e] of msgs) {
    if (e.kind !== "edit") continue;
    const change = decode_content(e);
    if (change?.target === target && change.body !== "") {
      msgs.set(seq, { ...e, body: JSON.stringify({ target, body: "" }) });
      changed = true;
    }
  }
  return changed;
}

/** Message `target` of view `v` was deleted: fold the view again from tombstones and draw what showed the text. */
function forgetDeleted(v, target) {
  if (tombstone(v.msgs, target)) {
    v.tl = new Timeline().extend([...v.msgs.values()]);
    if (v.room === S.open && v.msgs.has(target)) rerender(v.msgs.get(target));
    saveViewSoon(v);
  }
  const key = threadKey(v.room, target);
  const quoted = S.quoted.get(key);
  if (quoted) S.quoted.set(key, { ...quoted, deleted: true, body: "" });
  if (v.room !== S.open) return;
  for (const list of [messagesEl, threadMessagesEl]) {
    for (const li of list.querySelectorAll(`li[data-reply-to="${target}"]`)) {
      const reply = v.msgs.get(Number(li.dataset.seq));
      if (reply) rerenderLine(li, reply);
    }
  }
}

/** A delete arrived: the loaded view, the saved copy (also of a room not loaded) and the search results forget it. */
function forgetDeletedEverywhere(room, v, target) {
  if (target === null) return;
  if (v) forgetDeleted(v, target);
  search.forget(room, target);
  const key = pageKey(`view:${room}`);
  const saved = store.get(key);
  if (!saved || !Array.isArray(saved.msgs)) return;
  const msgs = new Map(saved.msgs.map((m) => [m.seq, m]));
  if (tombstone(msgs, target)) store.set(key, { ...saved, msgs: [...msgs.values()] });
}

// ---- live events ---------------------------------------------------------------------------

function onSubscribed({ room, cursor }) {
  if (room === S.client?.inbox) return; // my event stream: not a room of the list
  if (S.reads[room] === undefined) setRead(room, cursor.seq, false);
  renderRoomsSoon();
}

function onMessage(m) {
  noteKind(m.room, m);
  if (!S.quiet.has(m.room)) notifyOf(m);
  roomSettings.onMessage(m);
  const v = S.views.get(m.room);
  if (m.kind === "delete") forgetDeletedEverywhere(m.room, v, decode_content(m)?.target ?? null);
  if (v) mergeLive(v, m);
  if (m.room === S.open) {
    S.typers.get(m.room)?.delete(m.sender);
    renderTyping();
    markOpenRoomRead();
  }
  renderRoomsSoon();
}

function onResync({ room }) {
  if (room === S.client?.inbox) {
    // Events of my stream were trimmed before this page saw them: the lists say where things stand now.
    refreshRooms();
    refreshInvites();
    return;
  }
  showBanner(`Some messages of ${displayName(room)} are no longer kept by the server; showing what it still has.`);
  const v = S.views.get(room);
  if (v) resetView(v);
}

function onTyping({ room, user }) {
  if (user === S.session.user) return;
  if (!S.typers.has(room)) S.typers.set(room, new Map());
  S.typers.get(room).set(user, Date.now());
  if (room === S.open) renderTyping();
}

function renderTyping() {
  const el = $("typing");
  const now = Date.now();
  const typers = S.typers.get(S.open);
  const names = [];
  if (typers) {
    for (const [user, at] of typers) {
      if (now - at > TYPING_SHOWN_MS) typers.delete(user);
      else names.push(user);
    }
  }
  if (names.length) {
    el.textContent = names.length === 1 ? `${names[0]} is typing…`
      : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : "Several people are typing…";
    el.classList.add("on");
  } else {
    el.classList.remove("on"); // fades out; the text stays until it is invisible
  }
}

function onPresence({ room, user, status }) {
  if (!S.online.has(room)) S.online.set(room, new Set());
  if (status === "online") S.online.get(room).add(user);
  else S.online.get(room).delete(user);
  if (room === S.open) renderOnline();
  if (isDm(room)) renderRoomsSoon();
}

function renderOnline() {
  const users = [...(S.online.get(S.open) ?? [])].filter((u) => u !== S.session.user);
  let text = "";
  if (S.open && isDm(S.open)) text = users.includes(dmPeer(S.open)) ? "online" : "";
  else if (users.length) text = users.length <= 3 ? `${users.sort().join(", ")} online` : `${users.length} online`;
  $("online").textContent = text;
}

function onReceipt({ room, user, seq }) {
  if (!S.receipts.has(room)) S.receipts.set(room, new Map());
  const readers = S.receipts.get(room);
  readers.set(user, Math.max(seq, readers.get(user) ?? 0));
  if (user === S.session.user && seq > (S.reads[room] ?? -1)) { setRead(room, seq, false); renderRoomsSoon(); }
  if (room === S.open) renderSeen();
}

async function loadReceipts(room) {
  try {
    const data = await api("GET", `/api/rooms/${encodeURIComponent(room)}/receipts`);
    const readers = S.receipts.get(room) ?? new Map();
    for (const [user, seq] of Object.entries(data.readers ?? {})) readers.set(user, Math.max(seq, readers.get(user) ?? 0));
    S.receipts.set(room, readers);
    if (room === S.open) renderSeen();
  } catch { /* an older server, or offline: no receipts */ }
}

/** "Seen by ..." under my newest message, from read receipts (only servers that keep read positions). */
function renderSeen() {
  const el = $("seen");
  const readers = S.receipts.get(S.open);
  const v = S.views.get(S.open);
  let mineSeq = 0;
  if (v) for (const m of v.msgs.values()) if (m.sender === S.session.user && m.kind === "text") mineSeq = Math.max(mineSeq, m.seq);
  const names = [];
  if (readers && mineSeq) for (const [user, seq] of readers) if (user !== S.session.user && seq >= mineSeq) names.push(user);
  el.textContent = names.length ? `Seen by ${names.sort().join(", ")}` : "";
}

// ---- connection state ----------------------------------------------------------------------

function renderState() {
  const client = S.client;
  if (!client) return;
  if (client.state !== "connected" && S.online.size) {
    S.online.clear(); // presence is only known while connected; it is sent again after subscribing
    renderOnline();
    renderRoomsSoon();
  }
  const conn = $("conn");
  conn.dataset.state = client.state;
  let text;
  switch (client.state) {
    case "connected": text = "Connected"; break;
    case "connecting": text = "Connecting…"; break;
    case "reconnecting": {
      const s = Math.max(0, Math.ceil(((client.nextAttemptAt ?? Date.now()) - Date.now()) / 1000));
      text = s > 0 ? `Reconnecting in ${s}s` : "Reconnecting…";
      break;
    }
    case "offline": text = "Offline"; break;
    case "unauthorized": text = "Signed out"; break;
    case "forbidden": text = "Not allowed"; break;
    case "closed": text = "Closed"; break;
    default: text = "Not connected";
  }
  const unsent = client.outbox.length;
  if (unsent) text += ` · ${unsent} unsent`;
  $("connText").textContent = text;
  $("retryNow").hidden = !(client.state === "reconnecting" || client.state === "offline");
  for (const li of [...pendingEl.querySelectorAll('li[data-state="pending"]'), ...threadPendingEl.querySelectorAll('li[data-state="pending"]')]) {
    setPendingStatus(li);
  }
  if (client.state === "unauthorized") {
    stopSession();
    showLogin("Your session has ended: sign in again.");
  }
}

$("retryNow").addEventListener("click", () => S.client?.retryNow());

function tick() {
  if (S.client?.state === "reconnecting") renderState();
  if (S.typers.get(S.open)?.size) renderTyping();
}

function showBanner(text) {
  const el = $("banner");
  el.textContent = text;
  el.hidden = false;
}
function hideBanner() { $("banner").hidden = true; }
$("banner").addEventListener("click", hideBanner);

// ---- composing -----------------------------------------------------------------------------

const bodyInput = $("body");
const attachments = setupAttachments({
  api, upload: uploadFile, room: () => S.open, dropZone: $("chat"), composer: bodyInput,
  button: $("attachButton"), input: $("attachInput"), list: $("pendingFiles"), onError: showBanner,
});

function autosize() {
  bodyInput.style.height = "auto";
  bodyInput.style.height = `${Math.min(bodyInput.scrollHeight + 2, 160)}px`;
}

let typingTimer = 0, lastInputAt = 0;
/** Send "typing" while the user types: the client sends at most one every 3 s, so a keystroke
 * inside that window is signalled when it ends (unless the user stopped or sent meanwhile). */
function signalTyping() {
  clearTimeout(typingTimer);
  if (!S.open || !S.client || !bodyInput.value.trim() || Date.now() - lastInputAt > TYPING_SHOWN_MS) return;
  if (!S.client.typing(S.open)) typingTimer = setTimeout(signalTyping, 500);
}

bodyInput.addEventListener("input", () => {
  autosize();
  lastInputAt = Date.now();
  signalTyping();
});

bodyInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("sendForm").requestSubmit();
  }
});

/** Moderation from the composer: "/invite bob", "/kick bob", "/ban bob", "/unban bob", "/admin bob", "/member bob". */
const COMMAND_RE = /^\/(invite|kick|ban|unban|admin|member)\s+([A-Za-z0-9_.@-]{1,64})\s*$/;

async function runCommand(room, verb, user) {
  const path = `/api/rooms/${encodeURIComponent(room)}`;
  try {
    if (verb === "admin" || verb === "member") await api("POST", `${path}/role`, { user, role: verb });
    else await api("POST", `${path}/${verb}`, { user });
  } catch (error) {
    showBanner(`/${verb} ${user}: ${error.message}`);
  }
}

$("sendForm").addEventListener("submit", (event) => {
  event.preventDefault();
  const body = bodyInput.value;
  const files = S.open ? attachments.pending(S.open) : [];
  if (!S.open || (!body.trim() && !files.length)) return;
  const command = files.length ? null : COMMAND_RE.exec(body.trim());
  if (command) {
    bodyInput.value = "";
    autosize();
    runCommand(S.open, command[1], command[2]); // the room shows the resulting event
    return;
  }
  bodyInput.value = "";
  autosize();
  clearTimeout(typingTimer);
  const replyTo = S.replyTo?.room === S.open ? S.replyTo.seq : null;
  cancelReply();
  attachments.clear(S.open);
  S.client.send(S.open, body.trim() ? body : "", { replyTo, attachments: files }).catch(() => {}); // followed through events
});

// ---- replies and threads -------------------------------------------------------------------
// A reply quotes another message (sender and a short excerpt, as text; a click shows it); a reply in a
// thread is shown in the thread's side panel, and the thread's root shows how many replies it has, when the
// last came, and "new" while replies came after I last opened it (S.threadSeen, kept in localStorage).
// Both are `rich` messages (protocol section 22) folded by the view's Timeline (relations.js).

const threadLog = $("threadLog"), threadInput = $("threadBody");
const EXCERPT = 90;

/** One line of plain text from a message's text: never markup, whatever it holds. */
function excerpt(text) {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > EXCERPT ? `${line.slice(0, EXCERPT - 1)}…` : line;
}

const threadKey = (room, root) => `${root}@${room}`;

/** The newest reply of the thread I have seen; for a thread first met, the room's read position when the room
 * was opened (what was new to me then still is, though the open room counts as read since). */
function threadSeenOf(room, root) {
  const key = threadKey(room, root);
  if (!(key in S.threadSeen)) {
    S.threadSeen[key] = S.readAtOpen[room] ?? S.reads[room] ?? 0;
    store.set(pageKey("threads"), S.threadSeen);
  }
  return S.threadSeen[key];
}

function setThreadSeen(room, root, seq) {
  if (seq <= threadSeenOf(room, root)) return;
  S.threadSeen[threadKey(room, root)] = seq;
  store.set(pageKey("threads"), S.threadSeen);
}

/** The quote above a reply: who wrote the message it replies to and the start of its text; a click shows it. */
function renderQuote(room, seq) {
  const m = S.views.get(room)?.msgs.get(seq);
  const target = m ? foldedOf(m) : S.quoted.get(threadKey(room, seq)) ?? null;
  if (!target) fetchQuoted(room, seq);
  const text = !target ? "…" : target.deleted ? "message deleted" : excerpt(target.body);
  return h("button", {
    type: "button", class: "quote", dataset: { target: seq }, title: "Show the message this replies to",
    onclick: () => jumpTo(room, seq),
  }, h("span", { class: "quote-who", text: target?.sender ?? "" }), h("span", { class: "quote-text", text }));
}

/** A quoted message older than the loaded view: read it once, then draw the replies that quote it again. */
function fetchQuoted(room, seq) {
  const key = threadKey(room, seq);
  if (S.quoted.has(key) || !S.client) return;
  S.quoted.set(key, null);
  S.client.history(room, { after: seq - 1, limit: 1 }).then((page) => {
    const m = page.messages.find((x) => x.seq === seq);
    S.quoted.set(key, m ? new Timeline().extend([m]).get(seq) : { sender: "", deleted: true, body: "" });
    const v = S.views.get(room);
    if (!v || room !== S.open) return;
    for (const list of [messagesEl, threadMessagesEl]) {
      for (const li of list.querySelectorAll(`li[data-reply-to="${seq}"]`)) {
        const reply = v.msgs.get(Number(li.dataset.seq));
        if (reply) li.replaceWith(renderMessage(reply, list === threadMessagesEl));
      }
    }
  }, () => S.quoted.delete(key));
}

/** Under a thread's root: "2 replies · last 12:04", marked new while replies came after I last looked. */
function threadSummary(m, state) {
  const fresh = state.last_reply > threadSeenOf(m.room, m.seq);
  return h("button", {
    type: "button", class: fresh ? "thread-summary new" : "thread-summary", dataset: { replies: state.replies },
    onclick: () => openThread(m.room, m.seq), "aria-label": `Open the thread: ${state.replies} replies${fresh ? ", new" : ""}`,
  },
  h("span", { class: "count", text: `${state.replies} ${state.replies === 1 ? "reply" : "replies"}` }),
  h("span", { class: "last", text: ` · last ${timeOf(state.last_reply_ts).short}` }),
  fresh ? h("span", { class: "new-mark", text: "new" }) : "");
}

/** "Reply" on a line: the next message of that composer (the room's, or the thread's) quotes it. */
function startReply(m, state, inThread) {
  const target = { room: m.room, seq: m.seq, sender: m.sender, text: excerpt(state.body) };
  if (inThread) S.threadReplyTo = target;
  else S.replyTo = target;
  renderReplyBars();
  (inThread ? threadInput : bodyInput).focus();
}

function cancelReply(inThread = false) {
  if (inThread) S.threadReplyTo = null;
  else S.replyTo = null;
  renderReplyBars();
}

function renderReplyBars() {
  for (const [bar, target] of [[$("replyBar"), S.replyTo], [$("threadReplyBar"), S.threadReplyTo]]) {
    bar.hidden = !target;
    bar.querySelector(".reply-who").textContent = target ? `Replying to ${target.sender}` : "";
    bar.querySelector(".reply-text").textContent = target ? target.text : "";
  }
}

$("cancelReply").addEventListener("click", () => { cancelReply(); bodyInput.focus(); });
$("cancelThreadReply").addEventListener("click", () => { cancelReply(true); threadInput.focus(); });

/** Open the side panel of the thread of `root` (loading older pages of the room until it holds the root). */
async function openThread(room, root) {
  if (room !== S.open) openRoom(room);
  const seen = threadSeenOf(room, root);
  S.thread = { room, root, marker: seen };
  S.threadReplyTo = null;
  renderReplyBars();
  document.body.classList.add("show-thread");
  $("threadPanel").hidden = false;
  threadMessagesEl.replaceChildren();
  threadPendingEl.replaceChildren();
  const v = view(room);
  await loadUntil(v, root);
  if (S.thread?.root !== root || S.thread.room !== room) return;
  renderThread();
  for (const entry of S.client.outbox) if (entry.room === room && entry.thread === root) addPending(entry, false);
  for (const entry of S.client.failed) if (entry.room === room && entry.thread === root) addPending(entry, false, entry);
  const marker = threadMessagesEl.querySelector(".unread-marker");
  if (marker) marker.scrollIntoView({ block: "start" });
  else threadLog.scrollTop = threadLog.scrollHeight;
  if (!NARROW.matches) threadInput.focus({ preventScroll: true });
}

/** Draw the open thread: the root, then its replies (a "New replies" line before the ones I had not seen). */
function renderThread() {
  if (!S.thread) return;
  const { room, root, marker } = S.thread;
  const v = view(room);
  const folded = v.tl.thread(root);
  const stick = threadLog.scrollHeight - threadLog.scrollTop - threadLog.clientHeight < 60;
  const lines = folded.map((f) => renderMessage(v.msgs.get(f.seq), true));
  const found = folded.findIndex((f) => f.seq === S.thread.found);
  if (found >= 0) lines[found].classList.add("found"); // a search result (showFoundReply), until another is chosen
  const firstNew = folded.find((f) => f.seq !== root && f.seq > marker);
  if (firstNew) {
    const at = folded.indexOf(firstNew);
    lines.splice(at, 0, h("li", { class: "unread-marker", role: "separator", text: "New replies" }));
  }
  const rootLine = v.msgs.get(root);
  $("threadTitle").textContent = rootLine ? `Thread: ${rootLine.sender}` : "Thread";
  if (v.detached && v.fresh) { // read around an older message: the replies after the view come as it reads on
    lines.push(h("li", { class: "thread-more" }, h("button", {
      type: "button", class: "load-newer-replies", text: "Load newer messages",
      onclick: () => loadNewer(v).then(() => renderThread()),
    })));
  }
  threadMessagesEl.replaceChildren(...lines);
  if (stick) threadLog.scrollTop = threadLog.scrollHeight;
  const last = folded.length ? folded[folded.length - 1].seq : root;
  if (document.visibilityState === "visible") {
    setThreadSeen(room, root, last);
    if (rootLine && room === S.open) {
      const old = messagesEl.querySelector(`li[data-seq="${root}"]`);
      if (old && !old.querySelector(".editor")) old.replaceWith(renderMessage(rootLine));
    }
  }
}

function closeThread() {
  S.thread = null;
  S.threadReplyTo = null;
  renderReplyBars();
  document.body.classList.remove("show-thread");
  $("threadPanel").hidden = true;
  threadMessagesEl.replaceChildren();
  threadPendingEl.replaceChildren();
}

$("closeThread").addEventListener("click", () => { closeThread(); bodyInput.focus(); });

$("threadForm").addEventListener("submit", (event) => {
  event.preventDefault();
  const body = threadInput.value;
  if (!S.thread || !body.trim()) return;
  const { room, root } = S.thread;
  const replyTo = S.threadReplyTo?.room === room ? S.threadReplyTo.seq : null;
  threadInput.value = "";
  cancelReply(true);
  S.client.send(room, body, { thread: root, replyTo }).catch(() => {});
});

threadInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("threadForm").requestSubmit();
  }
  if (event.key === "Escape") closeThread();
});

/** Load older pages of the view until it holds `seq` (at most 20 pages), or it cannot. */
async function loadUntil(v, seq) {
  if (!v.fresh) await loadNewest(v);
  for (let i = 0; i < 20 && v.fresh && v.hasOlder && (v.lo === null || seq < v.lo); i += 1) await loadOlder(v);
}

/** Show message `seq` of `room`: scrolled to and flashed, in its thread's panel if it is a reply in one. */
async function jumpTo(room, seq) {
  if (room !== S.open) openRoom(room);
  const v = view(room);
  await loadUntil(v, seq);
  const m = v.msgs.get(seq);
  if (!m) { showBanner("That message is no longer kept."); return; }
  const root = thread_of(m);
  if (root !== null && (S.thread?.root !== root || S.thread.room !== room)) await openThread(room, root);
  const list = root !== null ? threadMessagesEl : messagesEl;
  const li = list.querySelector(`li[data-seq="${seq}"]`);
  if (!li) return;
  li.scrollIntoView({ block: "center" });
  li.classList.add("flash");
  setTimeout(() => li.classList.remove("flash"), 2000);
}

// ---- mentions and notifications ------------------------------------------------------------
// The server parsed each text's mentions once into its stored content (protocol section 23): the page only
// highlights the names it lists and counts the unread messages that mention me apart ("@2"). A room notifies me
// by the level I chose for it (kept on the server, told to my other devices by my event stream): every message,
// mentions only, or nothing; by default every message of a direct conversation and mentions elsewhere. While the
// page is in the background, what notifies me raises a desktop notification (once I allowed them with the
// *Enable notifications* button: never asked on load) and counts in the tab's title. Messages that arrive while
// the page runs notify, also those a catch-up brings after a reconnect or in a room just added (a new direct
// conversation's first message); the first catch-up of the rooms the page starts with does not (old news).

const LEVELS = ["all", "mentions", "none"];
const NAME_RUN = /(?<![A-Za-z0-9_.@-])@([A-Za-z0-9_.@-]+)/g;

function notifyLevel(room) {
  return S.notify[room] ?? (isDm(room) ? "all" : "mentions");
}

/** What of `room` counts in the title and notifies: every unread message (all), the mentions, or nothing. */
function notableCount(room) {
  const level = notifyLevel(room);
  return level === "none" ? 0 : level === "all" ? unreadCount(room) : mentionCount(room);
}

function renderTitle() {
  const total = S.mine.reduce((sum, room) => sum + notableCount(room), 0);
  document.title = total ? `(${total}) Roost` : "Roost";
}

/** Wrap each `@name` the server listed (and @room/@here when it says so) in a span: text nodes only, never markup. */
function highlightMentions(fragment, state) {
  const names = new Set(state.mentions);
  if (!names.size && !state.mentions_room) return fragment;
  const texts = [];
  const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement?.closest("code, pre, a")) texts.push(node);
  }
  for (const node of texts) {
    const text = node.data;
    const parts = [];
    let at = 0;
    for (const match of text.matchAll(NAME_RUN)) {
      const name = match[1].replace(/\.+$/, "");
      const everyone = name === "room" || name === "here";
      if (!(everyone ? state.mentions_room : names.has(name))) continue;
      parts.push(text.slice(at, match.index));
      const me = everyone || name === S.session.user;
      parts.push(h("span", { class: me ? "mention me" : "mention", dataset: { user: name }, text: `@${name}` }));
      at = match.index + 1 + name.length;
    }
    if (!parts.length) continue;
    parts.push(text.slice(at));
    node.replaceWith(...parts.filter((p) => p !== ""));
  }
  return fragment;
}

function renderNotifyLevel() {
  const select = $("notifyLevel");
  select.hidden = !S.open;
  if (S.open) select.value = notifyLevel(S.open);
}

$("notifyLevel").addEventListener("change", async (event) => {
  const room = S.open;
  const level = event.target.value;
  if (!room || !LEVELS.includes(level)) return;
  const before = S.notify[room];
  S.notify[room] = level;
  renderRooms();
  try {
    await api("PUT", `/api/rooms/${encodeURIComponent(room)}/notify`, { level });
  } catch (error) {
    if (before === undefined) delete S.notify[room];
    else S.notify[room] = before;
    renderNotifyLevel();
    renderRooms();
    showBanner(`Could not change the notifications of ${displayName(room)}: ${error.message}`);
  }
});

const canNotify = () => typeof Notification === "function";

function renderNotifyButton() {
  $("enableNotifications").hidden = !S.session || !canNotify() || Notification.permission !== "default";
}

$("enableNotifications").addEventListener("click", async () => {
  if (!canNotify()) return;
  try { await Notification.requestPermission(); } catch { /* refused or unsupported */ }
  renderNotifyButton();
});

const inBackground = () => document.visibilityState !== "visible" || !document.hasFocus();

/** A desktop notification for a new message, when the page is in the background and the room's level says so. */
function notifyOf(m) {
  if (!canNotify() || Notification.permission !== "granted" || !inBackground()) return;
  const me = S.session.user;
  if (m.room === S.client?.inbox || !counts_as_unread(m, me)) return;
  const level = notifyLevel(m.room);
  const mentioned = mentions_user(m, me);
  if (level === "none" || (level === "mentions" && !mentioned)) return;
  const where = isDm(m.room) ? "" : ` in #${m.room}`;
  const title = mentioned && !isDm(m.room) ? `${m.sender} mentioned you${where}` : `${m.sender}${where}`;
  try {
    const note = new Notification(title, { body: excerpt(text_of(m) ?? ""), tag: `${m.room}:${m.seq}` });
    note.onclick = () => {
      window.focus();
      note.close();
      jumpTo(m.room, m.seq);
    };
  } catch { /* a browser that only notifies from a service worker */ }
}

// ---- layout and keyboard -------------------------------------------------------------------

function setRoomsShown(shown) {
  document.body.classList.toggle("show-rooms", shown);
  $("menu").setAttribute("aria-expanded", String(shown));
}

$("menu").addEventListener("click", () => {
  const shown = !document.body.classList.contains("show-rooms");
  setRoomsShown(shown);
  if (shown) document.querySelector("#sidebar .room")?.focus();
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && NARROW.matches && document.body.classList.contains("show-rooms") && S.open) {
    setRoomsShown(false);
    bodyInput.focus();
  }
  if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown") && S.mine.length) {
    event.preventDefault();
    const order = [...document.querySelectorAll("#sidebar .room")].map((b) => b.dataset.room);
    const i = order.indexOf(S.open);
    const next = order[(i + (event.key === "ArrowDown" ? 1 : order.length - 1)) % order.length];
    if (next) openRoom(next);
  }
});

document.addEventListener("visibilitychange", () => { markOpenRoomRead(); renderRoomsSoon(); });
window.addEventListener("focus", () => { markOpenRoomRead(); refreshRooms(); });

// ---- search --------------------------------------------------------------------------------

const search = setupSearch({ api, openAt, roomName: displayName });

// ---- Web Push and room settings (push.js, roomsettings.js) -----------------------------------

const push = setupPush({
  api,
  storeKey: () => pageKey("push"),
  openMessage: (room, seq) => {
    if (!S.mine.includes(room)) return;
    window.focus();
    if (seq === null) openRoom(room);
    else openAt(room, seq);
  },
});

const roomSettings = setupRoomSettings({
  api,
  me: () => S.session?.user,
  openRoom: () => S.open,
  onRoles: (room) => { // who may delete what changed: draw the tools of the open room's messages again
    if (room !== S.open) return;
    for (const list of [messagesEl, threadMessagesEl]) {
      for (const li of list.querySelectorAll("li.msg[data-seq]")) {
        const m = S.views.get(room)?.msgs.get(Number(li.dataset.seq));
        if (m && !li.querySelector(".editor, .picker, .confirm-erase")) rerenderLine(li, m);
      }
    }
  },
});

// ---- start -------------------------------------------------------------------------------

if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});

const saved = store.get("roost-page:session");
if (saved && saved.user && saved.token) startSession(saved);
else showLogin();

// The Roost chat page (index.html). All names, rooms and messages reach the DOM through textContent
// (or append() of plain strings), never as markup; message bodies go through /markdown.js, which builds
// its small subset with createElement and text nodes only. The page's Content-Security-Policy allows no
// inline script or style. Protocol logic lives in /roost.js (and the modules it imports: protocol, sync,
// relations, backoff).
import { RELATION_KINDS, Relations, RoostClient, tokenSubject } from "/roost.js";
import { render as renderMarkdown } from "/markdown.js";

const WS_PATH = document.querySelector('meta[name="roost-websocket"]')?.content || "/ws";
const PAGE = 50;
const TYPING_SHOWN_MS = 5000;
const NARROW = window.matchMedia("(max-width: 720px)");
const ROOM_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;
const USER_RE = /^[A-Za-z0-9_.@-]{1,64}$/;

const $ = (id) => document.getElementById(id);
const log = $("log"), messagesEl = $("messages"), pendingEl = $("pending");

/** A DOM element; children are nodes or plain strings (text nodes). */
function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") e.className = value;
    else if (key === "text") e.textContent = value;
    else if (key === "dataset") Object.assign(e.dataset, value);
    else if (key.startsWith("on")) e.addEventListener(key.slice(2), value);
    else e.setAttribute(key, value === true ? "" : value);
  }
  e.append(...children);
  return e;
}

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
  kinds: new Map(),    // room -> Map(seq -> counts as unread), for the unread seqs seen or looked up
  kindsLoading: new Set(), // rooms whose unread kinds are being read from history
  kindsFailed: new Set(),  // rooms where that read failed: unknown seqs count until the next connection
  markerSeq: null,
  timers: [],
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
  for (const map of [S.online, S.typers, S.receipts, S.kinds]) map.clear();
  S.kindsLoading.clear();
  S.kindsFailed.clear();
  S.sentReads = {};
  S.open = null;
}

function startSession(session) {
  stopSession();
  S.session = session;
  store.set("roost-page:session", session);
  $("login").hidden = true;
  $("main").hidden = false;
  $("signOut").hidden = false;
  $("menu").hidden = false;
  $("me").textContent = session.user;
  S.reads = store.get(pageKey("reads"), {});
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
    refreshRooms();
    const v = S.open && S.views.get(S.open);
    if (v && !v.fresh && !v.loading) openRoom(S.open); // its first page was lost with the last connection
  });
  client.on("subscribed", onSubscribed);
  client.on("message", onMessage);
  client.on("queued", ({ entry }) => { if (entry.room === S.open) addPending(entry, true); renderState(); });
  client.on("ack", onAck);
  client.on("sendfailed", onSendFailed);
  client.on("typing", onTyping);
  client.on("receipt", onReceipt);
  client.on("presence", onPresence);
  client.on("resync", onResync);
  client.on("left", ({ room, reason }) => {
    if (S.mine.includes(room)) removeRoom(room, `You are no longer in ${displayName(room)}: ${reason}`);
  });
  for (const room of S.mine) follow(room);
  client.start().catch(() => {});
  renderRooms();
  const last = store.get(pageKey("last"));
  if (last && S.mine.includes(last)) openRoom(last);
  else if (S.mine.length) openRoom(S.mine[0]);
  else renderEmptyChat();
  refreshRooms();
  S.timers.push(setInterval(refreshRooms, 15000));
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

function latestSeq(room) {
  return Math.max(S.client?.cursor(room)?.seq ?? 0, S.views.get(room)?.hi ?? 0);
}

function unreadCount(room) {
  const read = S.reads[room];
  if (read === undefined || room === S.open) return 0;
  return countUnread(room, read, latestSeq(room));
}

// Unread counts count text messages only: a join, leave, invite, kick, ban, role change, edit or reaction
// has a seq of its own but is not something to read (a new direct conversation with one message is "1",
// not "3" with both joins). The kinds come from the messages the client delivers; seqs the page has not
// seen (after a reload, or a room followed late) are read once from history.
const UNREAD_SCAN = 500;

function noteKind(room, seq, kind) {
  if (seq <= (S.reads[room] ?? -1)) return;
  if (!S.kinds.has(room)) S.kinds.set(room, new Map());
  S.kinds.get(room).set(seq, kind === "text");
}

function countUnread(room, read, latest) {
  if (latest <= read) return 0;
  const kinds = S.kinds.get(room);
  const from = Math.max(read + 1, latest - UNREAD_SCAN + 1);
  let count = from - read - 1; // beyond the scan (a badge of 99+ anyway): taken as text
  let unknown = 0, firstUnknown = 0;
  for (let seq = from; seq <= latest; seq += 1) {
    const counts = kinds?.get(seq);
    if (counts === undefined) { unknown += 1; firstUnknown ||= seq; }
    else if (counts) count += 1;
  }
  if (!unknown) return count;
  if (S.kindsFailed.has(room)) return count + unknown; // history unreadable now: count them, as before
  learnKinds(room, firstUnknown - 1, latest);
  return count; // for a moment: the badge shows the known ones, never membership events
}

function learnKinds(room, after, latest) {
  if (S.kindsLoading.has(room) || !S.client) return;
  S.kindsLoading.add(room);
  S.client.history(room, { after, limit: Math.min(UNREAD_SCAN, latest - after) }).then((page) => {
    for (const m of page.messages) noteKind(room, m.seq, m.kind);
    const last = page.messages.length ? page.messages[page.messages.length - 1].seq : after;
    const upTo = page.has_more ? last : latest; // seqs the server no longer has are nothing to read
    for (let seq = after + 1; seq <= upTo; seq += 1) if (!S.kinds.get(room)?.has(seq)) noteKind(room, seq, "none");
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
  if (!S.open || document.visibilityState !== "visible") return;
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
  const total = S.mine.reduce((sum, room) => sum + unreadCount(room), 0);
  document.title = total ? `(${total}) Roost` : "Roost";
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
      early: [], gen: 0, saveTimer: 0, rel: new Relations(),
    };
    S.views.set(room, v);
  }
  return v;
}

function clearView(v) {
  v.msgs.clear();
  v.rel = new Relations();
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
  store.remove(pageKey(`view:${v.room}`));
  if (v.room === S.open) openRoom(v.room);
}

const SAVED_MESSAGES = 50;
const SAVED_BYTES = 200_000;

function saveView(v) {
  clearTimeout(v.saveTimer);
  v.saveTimer = 0;
  if (!v.fresh || S.views.get(v.room) !== v) return;
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
  store.set(pageKey("last"), room);
  $("roomTitle").textContent = displayName(room);
  $("leaveRoom").hidden = false;
  $("body").disabled = $("sendButton").disabled = false;
  if (previous !== room) {
    $("body").value = "";
    hideBanner();
  }
  messagesEl.replaceChildren();
  pendingEl.replaceChildren();
  const v = view(room);
  const read = S.reads[room];
  const latest = latestSeq(room);
  S.markerSeq = read !== undefined && countUnread(room, read, latest) > 0 ? read : null;
  const sorted = [...v.msgs.values()].filter((m) => !RELATION_KINDS.has(m.kind)).sort((a, b) => a.seq - b.seq);
  messagesEl.append(...sorted.map(renderMessage));
  if (S.markerSeq !== null) insertByKey(h("li", { class: "unread-marker", role: "separator", dataset: { key: S.markerSeq + 0.5 }, text: "New messages" }));
  for (const entry of S.client.outbox) if (entry.room === room) addPending(entry, false);
  for (const entry of S.client.failed) if (entry.room === room) addPending(entry, false, entry);
  renderTyping();
  renderSeen();
  renderOnline();
  renderOlderButton(v);
  renderRooms();
  if (NARROW.matches) setRoomsShown(false);
  if (!v.fresh) {
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
}, { passive: true });

/** A message delivered by the client: into its room's view, if that view is loaded. */
function mergeLive(v, m) {
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
    noteKind(v.room, m.seq, m.kind);
    v.lo = v.lo === null ? m.seq : Math.min(v.lo, m.seq);
    v.hi = v.hi === null ? m.seq : Math.max(v.hi, m.seq);
    if (RELATION_KINDS.has(m.kind)) {
      // An edit, delete or reaction is not a line of its own: it changes the line of its target.
      const target = v.rel.add(m);
      if (open && target !== null && v.msgs.has(target)) rerender(v.msgs.get(target));
      continue;
    }
    if (!open) continue;
    insertByKey(renderMessage(m));
    if (m.sender === S.session.user) pendingEl.querySelector(`li[data-cmid="${CSS.escape(m.cmid)}"]`)?.remove();
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
    default: return `(${m.kind})`;
  }
}

function renderMessage(m) {
  if (m.kind !== "text" && m.kind !== "deleted") {
    const what = eventText(m);
    return h("li", { class: "event", dataset: { seq: m.seq, key: m.seq, kind: m.kind, sender: m.sender } },
      h("span", { class: "who", text: m.sender }), ` ${what}`);
  }
  const t = timeOf(m.ts);
  const mine = m.sender === S.session.user;
  const state = S.views.get(m.room)?.rel.state(m) ?? new Relations().state(m);
  const li = h("li", {
    class: `${mine ? "msg mine" : "msg"}${state.deleted ? " deleted" : ""}`,
    dataset: { seq: m.seq, key: m.seq, cmid: m.cmid, sender: m.sender, state: "sent", edited: state.edited, deleted: state.deleted },
  },
  h("span", { class: "who", text: m.sender }),
  h("time", { class: "time", datetime: new Date(m.ts).toISOString(), title: t.full, text: t.short }),
  h("span", { class: "status", text: state.edited ? "(edited)" : "" }),
  state.deleted ? h("div", { class: "body", text: "message deleted" }) : h("div", { class: "body" }, renderMarkdown(state.body)));
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
  if (mine) {
    tools.append(
      h("button", { type: "button", class: "edit", text: "Edit", onclick: () => startEdit(li, m, state.body) }),
      h("button", { type: "button", class: "delete", text: "Delete", onclick: (event) => confirmDelete(event.currentTarget, m) }));
  }
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

/** Draw the line of stored message `m` again (an edit, deletion or reaction of it arrived). */
function rerender(m) {
  if (m.room !== S.open) return;
  const old = messagesEl.querySelector(`li[data-seq="${m.seq}"]`);
  if (old && !old.querySelector(".editor")) old.replaceWith(renderMessage(m));
  renderSeen();
}

function react(m, emoji, remove) {
  S.client.react(m.room, m.seq, emoji, { remove }).catch((error) => showBanner(`Could not react: ${error.message}`));
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
  if (li.isConnected) li.replaceWith(renderMessage(m));
}

function addPending(entry, scroll, failed = null) {
  if (pendingEl.querySelector(`li[data-cmid="${CSS.escape(entry.cmid)}"]`)) return;
  if (view(entry.room).msgs.size && [...view(entry.room).msgs.values()].some((m) => m.cmid === entry.cmid && m.sender === S.session.user)) return;
  const li = h("li", { class: "msg mine", dataset: { cmid: entry.cmid, sender: S.session.user, state: "pending" } },
    h("span", { class: "who", text: S.session.user }),
    h("time", { class: "time", text: timeOf(entry.t).short }),
    h("span", { class: "status", text: "" }),
    h("div", { class: "body" }, renderMarkdown(entry.body)));
  pendingEl.append(li);
  if (failed) markFailed(li, failed);
  else setPendingStatus(li);
  if (scroll) log.scrollTop = log.scrollHeight;
}

function setPendingStatus(li) {
  if (li.dataset.state !== "pending") return;
  li.querySelector(".status").textContent = S.client?.connected ? "Sending…" : "Waiting for connection";
}

function onAck({ entry, sent }) {
  renderState();
  const li = pendingEl.querySelector(`li[data-cmid="${CSS.escape(entry.cmid)}"]`);
  if (!li) return;
  li.dataset.state = "sent";
  li.dataset.seq = sent.seq; // the seq is for tests and tools, not shown: the order on screen says it
  li.querySelector(".status").textContent = "";
}

function onSendFailed({ entry, code, reason }) {
  renderState();
  const li = pendingEl.querySelector(`li[data-cmid="${CSS.escape(entry.cmid)}"]`);
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

// ---- live events ---------------------------------------------------------------------------

function onSubscribed({ room, cursor }) {
  if (S.reads[room] === undefined) setRead(room, cursor.seq, false);
  renderRoomsSoon();
}

function onMessage(m) {
  noteKind(m.room, m.seq, m.kind);
  const v = S.views.get(m.room);
  if (v) mergeLive(v, m);
  if (m.room === S.open) {
    S.typers.get(m.room)?.delete(m.sender);
    renderTyping();
    markOpenRoomRead();
  }
  renderRoomsSoon();
}

function onResync({ room }) {
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
  for (const li of pendingEl.querySelectorAll('li[data-state="pending"]')) setPendingStatus(li);
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
  if (!S.open || !body.trim()) return;
  const command = COMMAND_RE.exec(body.trim());
  if (command) {
    bodyInput.value = "";
    autosize();
    runCommand(S.open, command[1], command[2]); // the room shows the resulting event
    return;
  }
  bodyInput.value = "";
  autosize();
  clearTimeout(typingTimer);
  S.client.send(S.open, body).catch(() => {}); // the page follows the send through events
});

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

document.addEventListener("visibilitychange", markOpenRoomRead);
window.addEventListener("focus", () => { markOpenRoomRead(); refreshRooms(); });

// ---- start -------------------------------------------------------------------------------

if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});

const saved = store.get("roost-page:session");
if (saved && saved.user && saved.token) startSession(saved);
else showLogin();

// The chat page's service worker: it keeps the page itself loadable while the server is down, so a
// reload does not lose the messages waiting in the outbox (they live in localStorage; the page must
// load to send them). Network first, the cache only as a fallback; /api and /ws are never touched.
const CACHE = "roost-page-v8"; // v8: encoding.js (the shell lists every module the page loads)
// Not the vendored MessagePack codec (vendor/msgpack): roost.js imports it for a MessagePack client only, and the
// page speaks JSON.
const SHELL = ["/", "/app.js", "/roost.js", "/protocol.js", "/encoding.js", "/sync.js", "/relations.js", "/backoff.js", "/markdown.js", "/search.js", "/push.js", "/roomsettings.js", "/attach.js", "/dom.js", "/roost.css"];
const NETWORK_TIMEOUT_MS = 4000;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("roost-page-") && n !== CACHE)
        .map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) return;
  event.respondWith(fromNetworkElseCache(request, url.pathname));
});

async function fromNetworkElseCache(request, path) {
  const cache = await caches.open(CACHE);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), NETWORK_TIMEOUT_MS);
  try {
    const response = await fetch(request, { signal: controller.signal });
    if (response.ok) await cache.put(path, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(path);
    if (cached) return cached;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

// Web Push (docs/protocol.md, section 21): the payload is {room, seq, kind, sender[, text]}. The server pushes
// at least once, so the same (room, seq) may come twice: each is shown once, remembered in the Cache API (the
// last SEEN_KEEP of them; a service worker has no localStorage).
const SEEN = "roost-push-seen";
const SEEN_KEEP = 200;

// One check at a time, in the order the pushes came: two deliveries of one (room, seq) close together would
// otherwise both read the list before either wrote it, and both show.
let seenQueue = Promise.resolve();
function firstTime(key) {
  const check = seenQueue.then(() => checkAndNote(key));
  seenQueue = check.catch(() => {});
  return check;
}

async function checkAndNote(key) {
  const cache = await caches.open(SEEN);
  const stored = await cache.match("/seen");
  const seen = stored ? await stored.json() : [];
  if (seen.includes(key)) return false;
  seen.push(key);
  await cache.put("/seen", new Response(JSON.stringify(seen.slice(-SEEN_KEEP))));
  return true;
}

async function showPush(data) {
  if (typeof data.room !== "string" || typeof data.seq !== "number") return;
  if (!(await firstTime(`${data.room}\n${data.seq}`))) return;
  const sender = String(data.sender || "someone");
  const title = data.kind === "mention" ? `${sender} mentioned you in ${data.room}` : `${sender} sent you a message`;
  await self.registration.showNotification(title, {
    body: typeof data.text === "string" ? data.text : "",
    tag: `${data.room}:${data.seq}`,
    data: { room: data.room, seq: data.seq },
  });
}

self.addEventListener("push", (event) => {
  let data = null;
  try {
    data = event.data ? event.data.json() : null;
  } catch (_error) {
    data = null;
  }
  if (data) event.waitUntil(showPush(data));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const room = event.notification.data && event.notification.data.room;
  const seq = event.notification.data && event.notification.data.seq;
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const page = open.find((c) => new URL(c.url).origin === self.location.origin);
    if (page) {
      page.postMessage({ type: "roost-open-room", room, seq }); // the page opens the room at the message (push.js)
      return page.focus();
    }
    return self.clients.openWindow("/");
  })());
});

// The chat page's service worker: it keeps the page itself loadable while the server is down, so a
// reload does not lose the messages waiting in the outbox (they live in localStorage; the page must
// load to send them). Network first, the cache only as a fallback; /api and /ws are never touched.
const CACHE = "roost-page-v3"; // v3: markdown.js (the shell lists every module)
const SHELL = ["/", "/app.js", "/roost.js", "/protocol.js", "/sync.js", "/relations.js", "/backoff.js", "/markdown.js", "/roost.css"];
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

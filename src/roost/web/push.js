// The page's Web Push toggle, "Notify this device when I'm away" (index.html #pushToggle; docs/protocol.md section 21,
// docs/web.md "Notifications when offline"). On: the browser subscribes through the page's service worker (sw.js) with
// the server's VAPID key (GET /api/push/vapid) and the page registers that subscription for the signed-in user
// (POST /api/push/subscriptions). Off: the page deletes it on the server (DELETE /api/push/subscriptions/{id}) and
// unsubscribes the browser. What this device registered is remembered per user and host in localStorage, so the
// toggle shows the same after a reload; the server's registry is the truth for what gets pushed.

const $ = (id) => document.getElementById(id);

/** base64url text (no padding) to bytes: the applicationServerKey PushManager.subscribe takes. */
export function keyBytes(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/** Bytes (an ArrayBuffer or a view) to base64url text without padding. */
export function base64url(bytes) {
  const view = bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let text = "";
  for (const b of view) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Can this browser do Web Push here (a secure context with service workers, PushManager and notifications)? */
export const pushSupported = () =>
  "serviceWorker" in navigator && typeof PushManager === "function" && typeof Notification === "function";

/**
 * Wire the toggle. ``api(method, path, body)`` is the page's authenticated fetch; ``storeKey()`` the localStorage
 * key of this user's record (``{id, endpoint}``); ``openMessage(room, seq)`` opens a message (a notification of the
 * service worker was clicked). Returns ``{start, stop, signOut}``.
 */
export function setupPush({ api, storeKey, openMessage }) {
  const toggle = $("pushToggle"), box = $("pushEnabled"), hint = $("pushHint");
  let busy = false, gen = 0;

  // The key is taken once per operation: a sign-out may end the session while one is under way.
  const saved = (key) => {
    try { return JSON.parse(localStorage.getItem(key) ?? "null"); } catch { return null; }
  };
  const save = (key, record) => {
    try {
      if (record) localStorage.setItem(key, JSON.stringify(record));
      else localStorage.removeItem(key);
    } catch { /* storage full or disabled: the toggle shows off after a reload */ }
  };
  const say = (text) => { hint.textContent = text; hint.hidden = !text; };

  /** The browser's subscription of this page's service worker, or null. */
  async function browserSubscription() {
    const registration = await navigator.serviceWorker.ready;
    return { registration, subscription: await registration.pushManager.getSubscription() };
  }

  async function turnOn() {
    const key = storeKey();
    if (Notification.permission === "default") {
      try { await Notification.requestPermission(); } catch { /* refused or unsupported */ }
    }
    if (Notification.permission !== "granted") {
      throw new Error("notifications are blocked for this site: allow them in the browser's site settings");
    }
    const { public_key: vapid } = await api("GET", "/api/push/vapid");
    let { registration, subscription } = await browserSubscription();
    const made = subscription?.options?.applicationServerKey;
    if (subscription && (!made || base64url(made) !== vapid)) { // made with another server's key: of no use here
      await subscription.unsubscribe().catch(() => {});
      subscription = null;
    }
    subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(vapid) });
    const created = await api("POST", "/api/push/subscriptions", subscription.toJSON());
    save(key, { id: created.id, endpoint: created.endpoint });
  }

  async function turnOff(key = storeKey()) {
    const record = saved(key);
    if (record) {
      try {
        await api("DELETE", `/api/push/subscriptions/${encodeURIComponent(record.id)}`);
      } catch (error) {
        if (error.code !== 4404) throw error; // gone already (the server dropped a dead device): off all the same
      }
    }
    save(key, null);
    const { subscription } = await browserSubscription();
    if (subscription) await subscription.unsubscribe().catch(() => {});
  }

  box.addEventListener("change", async () => {
    if (busy) return;
    busy = true;
    box.disabled = true;
    const want = box.checked;
    say("");
    try {
      await (want ? turnOn() : turnOff());
    } catch (error) {
      box.checked = !want;
      say(`Could not turn ${want ? "on" : "off"} notifications for this device: ${error.message}`);
    } finally {
      busy = false;
      box.disabled = false;
    }
  });

  // A click on one of the service worker's notifications while a page is open (sw.js, notificationclick).
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.addEventListener("message", (event) => {
      const data = event.data;
      if (data?.type === "roost-open-room" && typeof data.room === "string") {
        openMessage(data.room, Number.isSafeInteger(data.seq) ? data.seq : null);
      }
    });
  }

  return {
    /** Show the toggle for the signed-in user, on when this device's registration is still in place. */
    async start() {
      const mine = ++gen;
      say("");
      toggle.hidden = !pushSupported();
      if (toggle.hidden) return;
      box.checked = false;
      const key = storeKey();
      const record = saved(key);
      if (!record) return;
      let subscription = null;
      try { ({ subscription } = await browserSubscription()); } catch { /* no service worker: off */ }
      if (mine !== gen) return;
      if (subscription?.endpoint === record.endpoint) { box.checked = true; return; }
      // The browser dropped the subscription (or the user cleared it): the server's entry can only fail now.
      save(key, null);
      api("DELETE", `/api/push/subscriptions/${encodeURIComponent(record.id)}`).catch(() => {});
    },
    stop() {
      gen += 1;
      toggle.hidden = true;
      say("");
    },
    /** Signing out: this device stops getting the user's pushes (the next person at it is not notified of them). */
    signOut() {
      const key = storeKey();
      if (saved(key)) turnOff(key).catch(() => {});
    },
  };
}

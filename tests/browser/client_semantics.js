// Run by test_client_js.py with page.evaluate: roost.js (and the modules it imports) against a scripted
// fake server (no network).
// Returns a list of [name, ok, detail] checks; the Python side asserts every one.
async () => {
  const R = await import("/roost.js");
  const checks = (window.__roostChecks = []);
  const check = (name, ok, detail = "") =>
    checks.push([name, Boolean(ok), (typeof detail === "string" ? detail : JSON.stringify(detail)).slice(0, 300)]);
  const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

  class FakeWS {
    static all = [];
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      FakeWS.all.push(this);
      setTimeout(() => { this.readyState = 1; this.onopen?.(); }, 0);
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close() { this.readyState = 3; }
    deliver(...frames) { this.onmessage?.({ data: frames.map((f) => JSON.stringify(f)).join("\n") }); }
    drop(code = 1006) { this.readyState = 3; this.onclose?.({ code, reason: "" }); }
    last(type) { return [...this.sent].reverse().find((f) => f.type === type); }
    all(type) { return this.sent.filter((f) => f.type === type); }
  }
  const latest = () => FakeWS.all[FakeWS.all.length - 1];
  const welcome = { type: "welcome", user: "alice", session: "s1", max_body_bytes: 16384, max_frame_bytes: 65536 };
  const msg = (seq, extra = {}) => ({
    type: "msg", room: "r", seq, cmid: `c${seq}`, sender: "bob", body: `b${seq}`, ts: 1000 + seq, kind: "text", ...extra,
  });

  const storage = R.memoryStorage();
  const options = { url: "ws://fake/ws", token: "t", user: "alice", storage, WebSocket: FakeWS, initialBackoffMs: 1, maxBackoffMs: 4,
    retryInitialMs: 1, retryMaxMs: 4 };
  const client = new R.RoostClient(options);
  const got = [];
  const events = [];
  client.on("message", (m) => got.push(m.seq));
  for (const type of ["resync", "left", "sendfailed", "ack", "queued"]) client.on(type, (d) => events.push([type, d]));
  const states = [];
  client.on("state", (d) => states.push(d.state));

  client.start();
  await tick(5);
  let ws = latest();
  check("auth frame first", ws.sent[0]?.type === "auth" && ws.sent[0].token === "t", ws.sent);
  ws.deliver(welcome);
  check("connected after welcome", client.state === "connected", client.state);

  // Subscribe without a cursor: after null; the cursor comes from subscribed.after.
  const subscribed = client.subscribe("r");
  await tick();
  let sub = ws.last("subscribe");
  check("no cursor: subscribe from now", sub.after === null && sub.epoch === null, sub);
  ws.deliver({ type: "subscribed", ref: sub.id, room: "r", epoch: "E", head: 5, after: 5 }, msg(6), msg(7),
    { type: "live", room: "r", seq: 7 });
  const start = await subscribed;
  check("subscribe resolves with subscribed.after", start.seq === 5 && start.epoch === "E", start);
  check("batched frames split and delivered in order", got.join() === "6,7", got);
  check("cursor from each message", client.cursor("r").seq === 7, client.cursor("r"));
  check("cursor persisted", JSON.parse(storage.get(`${client.namespace}cursor:r`)).seq === 7);

  // Duplicates are dropped by seq; a gap is filled from history.
  ws.deliver(msg(7), msg(6));
  check("duplicates dropped", got.join() === "6,7", got);
  ws.deliver(msg(10));
  await tick();
  const fill = ws.last("history");
  check("a gap asks history after the cursor", fill && fill.after === 7 && fill.room === "r", fill);
  ws.deliver({ type: "history", ref: fill.id, room: "r", messages: [msg(8), msg(9), msg(10)], has_more: false, epoch: "E", head: 10, first: 1 });
  await tick();
  check("gap filled, each once, in order", got.join() === "6,7,8,9,10", got);

  // The outbox: a send is retransmitted with the same cmid after a reconnect, in order.
  const first = client.send("r", "hello", { cmid: "k1" });
  const second = client.send("r", "world", { cmid: "k2" });
  check("send transmitted at once", ws.all("send").map((f) => f.cmid).join() === "k1,k2", ws.all("send"));
  check("outbox persisted", storage.keys(`${client.namespace}out:`).length === 2);
  ws.drop(1006);
  check("reconnecting after a drop", client.state === "reconnecting" && client.nextAttemptAt !== null, client.state);
  await tick(20);
  ws = latest();
  check("a new connection", FakeWS.all.length === 2 && ws.sent[0]?.type === "auth", FakeWS.all.length);
  ws.deliver(welcome);
  sub = ws.last("subscribe");
  check("resubscribe from the cursor", sub.after === 10 && sub.epoch === "E", sub);
  const order = ws.sent.map((f) => f.type + (f.cmid ? `:${f.cmid}` : "")).join();
  check("subscriptions first, then the outbox in order, same cmids", order === "auth,subscribe,send:k1,send:k2", order);
  ws.deliver({ type: "subscribed", ref: sub.id, room: "r", epoch: "E", head: 10, after: 10 },
    { type: "ack", ref: "send:k1", room: "r", cmid: "k1", seq: 11, ts: 1, dup: true },
    { type: "ack", ref: "send:k2", room: "r", cmid: "k2", seq: 12, ts: 2, dup: false });
  const sent = await Promise.all([first, second]);
  check("acks resolve sends", sent[0].seq === 11 && sent[0].dup === true && sent[1].seq === 12, sent);
  check("acked sends leave the outbox", client.outbox.length === 0 && storage.keys(`${client.namespace}out:`).length === 0);

  // 4429: sent again (same cmid) after retry_after_s; 4413: fails for good and is kept in `failed`.
  client.send("r", "again", { cmid: "k3" });
  ws.deliver({ type: "error", code: 4429, reason: "slow down", ref: "send:k3", room: "r", retry_after_s: 0.01 });
  await tick(40);
  check("4429 resent after retry_after_s", ws.all("send").filter((f) => f.cmid === "k3").length === 2);
  ws.deliver({ type: "ack", ref: "send:k3", room: "r", cmid: "k3", seq: 13, ts: 3, dup: false });
  const big = client.send("r", "x".repeat(20000), { cmid: "k4" });
  ws.deliver({ type: "error", code: 4413, reason: "too large", ref: "send:k4", room: "r" });
  let failure = null;
  await big.catch((e) => { failure = e; });
  check("4413 rejects the send", failure?.name === "RequestFailed" && failure.code === 4413, String(failure));
  check("4413 reported and kept", events.some(([t, d]) => t === "sendfailed" && d.code === 4413) && client.failed[0]?.cmid === "k4");
  const retried = client.retry("k4");
  retried.catch(() => {});
  const resend = ws.last("send");
  check("retry sends again under a new cmid", resend.cmid !== "k4" && resend.body.length === 20000 && client.failed.length === 0, resend.cmid);
  ws.deliver({ type: "error", code: 4413, reason: "too large", ref: `send:${resend.cmid}`, room: "r" });
  check("failed again", client.failed.length === 1 && client.outbox.length === 0, client.failed.length);

  // Our own message coming back completes its outbox entry even if the ack was lost.
  const own = client.send("r", "mine", { cmid: "k5" });
  ws.deliver(msg(11, { sender: "alice", cmid: "k1", body: "hello" }), msg(12, { sender: "alice", cmid: "k2", body: "world" }),
    msg(13, { sender: "alice", cmid: "k3", body: "again" }), msg(14, { sender: "alice", cmid: "k5", body: "mine" }));
  check("own message completes the send", (await own).seq === 14);

  // A reply: its relations go with the send, and its own message (kind rich) completes it too.
  const reply = client.send("r", "re", { cmid: "k7", replyTo: 12, thread: 11 });
  const sentReply = ws.last("send");
  check("a reply carries reply_to and thread", sentReply.reply_to === 12 && sentReply.thread === 11, sentReply);
  ws.deliver(msg(15, { sender: "alice", cmid: "k7", kind: "rich", body: '{"body":"re","reply_to":12,"thread":11}' }));
  check("own rich message completes the send", (await reply).seq === 15);

  // A reload: a new client over the same storage has the outbox and the cursors.
  const pending = client.send("r", "typed offline", { cmid: "k6", replyTo: 13 });
  ws.drop(1006);
  client.close();
  let closedError = null;
  await pending.catch((e) => { closedError = e; });
  check("close ends the send's promise", closedError?.name === "ClientClosed", String(closedError));
  check("close leaves the outbox in storage", storage.keys(`${client.namespace}out:`).some((k) => k.endsWith("k6")));
  const reloaded = new R.RoostClient(options);
  check("outbox restored", reloaded.outbox.map((e) => e.cmid).join() === "k6", reloaded.outbox);
  check("a reply's relations restored", reloaded.outbox[0].reply_to === 13 && reloaded.outbox[0].thread === null, reloaded.outbox);
  check("failed sends restored", reloaded.failed.length === 1 && reloaded.failed[0].code === 4413, reloaded.failed.length);
  check("cursor restored", reloaded.cursor("r").seq === 15 && reloaded.cursor("r").epoch === "E", reloaded.cursor("r"));
  reloaded.start();
  reloaded.subscribe("r");
  await tick(5);
  ws = latest();
  ws.deliver(welcome);
  sub = ws.last("subscribe");
  check("reloaded client resumes at the cursor and resends", sub.after === 15 && ws.last("send")?.cmid === "k6", ws.sent);
  check("the resent reply still replies", ws.last("send")?.reply_to === 13, ws.last("send"));
  const got2 = [];
  const ev2 = [];
  reloaded.on("message", (m) => got2.push(m.seq));
  for (const type of ["resync", "left"]) reloaded.on(type, (d) => ev2.push([type, d]));
  ws.deliver({ type: "subscribed", ref: sub.id, room: "r", epoch: "E", head: 16, after: 15 }, msg(16));
  check("delivery continues after the reload", got2.join() === "16", got2);

  // 4410: resync event, cursor moves to first - 1 in the new epoch, resubscribe.
  ws.deliver({ type: "error", code: 4410, reason: "recreated", ref: sub.id, room: "r", epoch: "E2", head: 50, first: 40 });
  const resub = ws.last("subscribe");
  check("4410 reported", ev2.some(([t, d]) => t === "resync" && d.epoch === "E2" && d.first === 40), ev2);
  check("4410 resubscribes from first - 1 in the new epoch", resub.after === 39 && resub.epoch === "E2" && resub.id !== sub.id, resub);
  ws.deliver({ type: "subscribed", ref: resub.id, room: "r", epoch: "E2", head: 50, after: 39 }, msg(40));
  check("new epoch delivered from first", got2.join() === "16,40", got2);

  // 4403 on a followed room (left on another device): the room is no longer followed, its cursor forgotten.
  ws.deliver({ type: "error", code: 4403, reason: "no longer a member of 'r'", room: "r" });
  check("4403 on a room means left", ev2.some(([t]) => t === "left") && reloaded.rooms.length === 0, ev2);
  check("left room's cursor forgotten", storage.get(`${reloaded.namespace}cursor:r`) === null);
  ws.deliver(msg(41));
  check("no delivery after leaving", got2.join() === "16,40", got2);

  // Unknown frame types are ignored; a malformed part does not stop the rest of the batch.
  ws.onmessage({ data: '{"type":"future-thing","x":1}\nnot json\n{"type":"pong","ref":"zzz"}' });
  check("unknown frames ignored", reloaded.state === "connected");
  reloaded.close();

  // 4401 with a fixed token: the client stops and says so.
  const denied = new R.RoostClient({ ...options, storage: R.memoryStorage() });
  const startResult = denied.start().then(() => "connected", (e) => e.code);
  await tick(5);
  ws = latest();
  ws.deliver({ type: "error", code: 4401, reason: "invalid token" });
  ws.drop(4401);
  check("4401 is fatal with a fixed token", (await startResult) === 4401 && denied.state === "unauthorized", denied.state);
  denied.close();

  // Store reads that break the store's contract (issue 15): the client resyncs, as the Python one does,
  // instead of polling every 500 ms (a hole) or re-reading with no pause (an empty page below the head).
  const drift = new R.RoostClient({ ...options, storage: R.memoryStorage(), retryInitialMs: 20, retryMaxMs: 40 });
  const dgot = [];
  const dresyncs = [];
  drift.on("message", (m) => dgot.push(m.seq));
  drift.on("resync", (d) => dresyncs.push(d));
  drift.start();
  await tick(5);
  ws = latest();
  ws.deliver(welcome);
  drift.subscribe("r", { after: 7, epoch: "E" });
  sub = ws.last("subscribe");
  ws.deliver({ type: "subscribed", ref: sub.id, room: "r", epoch: "E", head: 7, after: 7 }, msg(10));
  await tick(5);
  let reads = ws.all("history");
  check("a gap is one history read", reads.length === 1 && reads[0].after === 7, reads);
  ws.deliver({ type: "history", ref: reads[0].id, room: "r", messages: [msg(8), msg(10)], has_more: false, epoch: "E", head: 10, first: 1 });
  await tick();
  check("a page with a hole is a resync", dresyncs.length === 1 && dresyncs[0].reason === "store page has a hole before seq 10", dresyncs);
  check("nothing of a broken page is delivered", dgot.length === 0, dgot);
  let again = ws.last("subscribe");
  check("the resync resubscribes from first - 1", again.id !== sub.id && again.after === 0 && again.epoch === "E", again);
  await tick(700);
  check("no polling after a page with a hole", ws.all("history").length === 1, ws.all("history").length);

  ws.deliver({ type: "subscribed", ref: again.id, room: "r", epoch: "E", head: 0, after: 0 }, msg(3));
  await tick(5);
  reads = ws.all("history");
  ws.deliver({ type: "history", ref: reads[1].id, room: "r", messages: [], has_more: false, epoch: "E", head: 3, first: 1 });
  await tick();
  check("an empty page below the head is a resync", dresyncs[1]?.reason === "store page is empty below its head", dresyncs);
  await tick(300);
  check("no re-reads after an empty page below the head", ws.all("history").length === 2, ws.all("history").length);

  // A failed read is made again after a backoff (retryInitialMs 20: the first wait is 10-20 ms), not at once.
  again = ws.last("subscribe");
  ws.deliver({ type: "subscribed", ref: again.id, room: "r", epoch: "E", head: 0, after: 0 }, msg(2));
  await tick(5);
  reads = ws.all("history");
  // (No retry_after_s here: the backoff alone is what this checks; a refusal's retry_after_s is a floor.)
  ws.deliver({ type: "error", code: 4503, reason: "store down", ref: reads[2].id, room: "r" });
  await tick(2);
  check("a failed read is not repeated at once", ws.all("history").length === 3, ws.all("history").length);
  await tick(60);
  reads = ws.all("history");
  check("a failed read is repeated after the backoff", reads.length === 4 && reads[3].after === 0, reads.length);
  ws.deliver({ type: "history", ref: reads[3].id, room: "r", messages: [msg(1), msg(2)], has_more: false, epoch: "E", head: 2, first: 1 });
  await tick();
  check("the repeated read fills the gap", dgot.join() === "1,2", dgot);
  // A room that is left while its read is failing is not read again.
  ws.deliver(msg(5));
  await tick(5);
  reads = ws.all("history");
  ws.deliver({ type: "error", code: 4503, reason: "store down", ref: reads[4].id, room: "r", retry_after_s: 1 },
    { type: "error", code: 4403, reason: "no longer a member of 'r'", room: "r" });
  await tick(100);
  check("no reads for a room that was left", ws.all("history").length === 5 && drift.rooms.length === 0, ws.all("history").length);
  drift.close();

  // Backoff: exponential, each delay in [d/2, d], capped (tests/vectors/backoff.json holds the rule itself).
  const ceilings = [];
  const delays = R.backoff({ initialMs: 100, maxMs: 1000, random: () => 1 });
  for (let i = 0; i < 6; i++) ceilings.push(delays.next().value);
  check("backoff doubles to the cap", ceilings.join() === "100,200,400,800,1000,1000", ceilings);
  const half = R.backoff({ initialMs: 100, random: () => 0 }).next().value;
  check("a delay is never below half its ceiling", half === 50, half);

  check("states seen", states.includes("connecting") && states.includes("reconnecting") && states.includes("closed"), states);
  return checks;
}

// backoff.js: how long to wait before reconnecting or sending a refused request again, the counterpart
// of roost.client.backoff (docs/protocol.md section 11, sending 4 and receiving 6). One rule for every
// wait: exponential, each delay drawn uniformly from [d/2, d], so a fleet of clients does not come back
// in step and no client waits less than half the nominal delay. tests/vectors/backoff.json holds both
// clients to the same parameters and the same delays for the same random draws.

/** Reconnects: 100 ms doubling to 5 s. */
export const RECONNECT = Object.freeze({ initialMs: 100, factor: 2, maxMs: 5000 });
/** A send refused with 4429/4500/4503 (per send), and a failed gap-filling read (per room): 250 ms doubling to 5 s. */
export const SEND_RETRY = Object.freeze({ initialMs: 250, factor: 2, maxMs: 5000 });

/** The one rule for every wait: uniform in [d/2, d] where d = min(maxMs, initialMs * factor**n). */
export function nthDelay(n, { initialMs, factor, maxMs }, random = Math.random) {
  const d = Math.min(maxMs, initialMs * factor ** Math.min(n, 64));
  return d / 2 + (d - d / 2) * random();
}

/** Reconnect delays in ms: `nthDelay` for n = 0, 1, 2, ... */
export function* backoff({ initialMs = RECONNECT.initialMs, factor = RECONNECT.factor, maxMs = RECONNECT.maxMs,
  random = Math.random } = {}) {
  for (let n = 0; ; n++) yield nthDelay(n, { initialMs, factor, maxMs }, random);
}

/**
 * How long (ms) to wait before sending a refused request again, the `failures`-th refusal in a row
 * (from 1). The server's `retry_after_s` (4429) is a floor; without one the wait grows as SEND_RETRY.
 */
export function retryDelay(retryAfterS, failures, { initialMs = SEND_RETRY.initialMs, maxMs = SEND_RETRY.maxMs,
  random = Math.random } = {}) {
  const floor = retryAfterS ? retryAfterS * 1000 : 0;
  return Math.max(floor, nthDelay(Math.max(0, failures - 1), { initialMs, factor: 2, maxMs }, random));
}

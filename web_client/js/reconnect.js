// Reconnection policy of the signalling client (no DOM here): when to come back
// after the connection drops, and how long to wait before each attempt.
//
// The server keeps a member's seat across connections (role, raised hand, proxy,
// votes are in the sitting's state): a new `hello` with the same invitation token
// takes the same seat. So a dropped connection is simply reopened, with an
// exponential back-off (0.5 s, 1 s, 2 s, 4 s… capped at 15 s, with jitter so that
// a whole council cut off at once does not come back in lockstep), until the
// member has been away too long (10 minutes): then the page offers its rejoin button.

export const RECONNECT_DEFAULTS = Object.freeze({
  initialMs: 500,
  factor: 2,
  maxMs: 15000,
  jitter: 0.25, // each delay is drawn in [d·(1 − jitter), d·(1 + jitter)], then capped
  giveUpAfterMs: 10 * 60 * 1000,
  connectTimeoutMs: 15000, // from opening the WebSocket to `welcome` (or `waiting_room`)
  stallMs: 12000, // nothing from the server and no packet on either peer connection
});

// Fatal errors after which coming back cannot help, or must not happen:
// removed by the chair (`forbidden`), another window took the seat (`replaced`,
// reconnecting would steal it back: ping-pong), the invitation is bad, expired,
// for another sitting, or the page is out of date.
const FINAL_CODES = new Set(["replaced", "forbidden", "bad_token", "expired_token", "wrong_sitting", "bad_version"]);
// Fatal errors that end this connection only (the seat is fine): come back.
const TRANSIENT_FATAL_CODES = new Set(["server_error", "rate_limited", "too_large", "not_ready", "bad_json", "bad_message"]);

/** May the client reconnect after the connection ended with `error` ({code, fatal}) or none? */
export function mayReconnectAfter(error) {
  if (!error || !error.fatal) return true;
  if (FINAL_CODES.has(error.code)) return false;
  return TRANSIENT_FATAL_CODES.has(error.code); // an unknown fatal code: do not insist
}

/** Exponential back-off with jitter, and a deadline after which it gives up. */
export class Backoff {
  constructor(options = {}, { random = Math.random, now = Date.now } = {}) {
    this.options = { ...RECONNECT_DEFAULTS, ...options };
    this.random = random;
    this.now = now;
    this.reset();
  }

  /** The connection is good again: the next loss starts from the first delay. */
  reset() {
    this.attempt = 0;
    this.since = null;
  }

  /** Has the current outage lasted past the deadline? */
  expired() {
    return this.since != null && this.now() - this.since >= this.options.giveUpAfterMs;
  }

  /** The delay before the next attempt (ms), or null: give up. */
  next() {
    if (this.since == null) this.since = this.now();
    if (this.expired()) return null;
    const { initialMs, factor, maxMs, jitter } = this.options;
    const base = Math.min(maxMs, initialMs * factor ** this.attempt);
    this.attempt += 1;
    const spread = base * jitter * (2 * this.random() - 1);
    const delay = Math.round(Math.min(maxMs, Math.max(0, base + spread)));
    const left = this.options.giveUpAfterMs - (this.now() - this.since);
    return Math.max(0, Math.min(delay, left));
  }
}

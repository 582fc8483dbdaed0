// The life of HemicycleConnection's (protocol.js) transport after `welcome`: the
// watchdog that notices a silent server, the teardown of a dropped connection, the
// attempts to come back (when and how often: reconnect.js), and the end (`closed`).
// Methods mixed into the class by protocol.js: `this` is the connection. No DOM access here.

import { SerialQueue } from "./peer-helpers.js";
import { mayReconnectAfter } from "./reconnect.js";

const WATCHDOG_INTERVAL_MS = 2000;

export const connectionLifecycleMethods = {
  _mayReconnect() {
    if (!this.reconnectOptions || this._leaving) return false;
    if (!this._welcomed && !this.waiting) return false; // the first join failed: the page offers to rejoin
    return mayReconnectAfter(this.lastError?.fatal ? this.lastError : null);
  },

  _onSocketClose(event) {
    if (this.closed) return;
    if (this._mayReconnect()) this._lost(`socket_closed_${event?.code ?? ""}`);
    else this._finish(event?.code ?? null);
  },

  /** Nothing from the server (messages, or packets on either peer connection) for too long. */
  _startWatchdog() {
    this._stopWatchdog();
    if (!this.reconnectOptions) return;
    const gen = this._gen;
    this._lastActivity = Date.now();
    this._rxBytes = 0;
    this._watchdog = setInterval(async () => {
      const bytes = await this._receivedBytes();
      if (gen !== this._gen || this.closed || this.reconnecting) return;
      if (bytes == null || bytes > this._rxBytes) {
        // No peer connection to judge by (nothing published yet): do not guess.
        this._rxBytes = bytes ?? this._rxBytes;
        this._lastActivity = Date.now();
      }
      if (Date.now() - this._lastActivity > this.reconnectOptions.stallMs) this._lost("stalled");
    }, WATCHDOG_INTERVAL_MS);
  },

  _stopWatchdog() {
    clearInterval(this._watchdog);
    this._watchdog = null;
  },

  /** Bytes received on the transports of both peer connections (STUN, RTCP, media), or null. */
  async _receivedBytes() {
    const pcs = [this.publishPc, this.subscribePc].filter((pc) => pc && pc.connectionState !== "new");
    if (!pcs.length) return null;
    let total = 0;
    for (const pc of pcs) {
      try {
        (await pc.getStats()).forEach((stat) => {
          if (stat.type === "transport") total += stat.bytesReceived || 0;
        });
      } catch {
        /* closed meanwhile */
      }
    }
    return total;
  },

  /** Drop the current WebSocket and both peer connections; local tracks stay. */
  _teardownTransport() {
    this._gen += 1;
    clearTimeout(this._connectTimer);
    clearTimeout(this._muteRecheck);
    clearTimeout(this._stableTimer);
    this._stopWatchdog();
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      try {
        ws.close(4000, "reconnecting");
      } catch {
        /* already closing */
      }
    }
    this.joined = false;
    this._pendingAnswer?.reject(new Error("connection lost"));
    this._pendingAnswer = null;
    this._slots.releaseAll();
    this.publishPc?.close();
    this.subscribePc?.close();
    this.publishPc = null;
    this.subscribePc = null;
    this._transceivers = {};
    this._publishQueue = new SerialQueue();
    this._subscribeQueue = new SerialQueue();
    this.activeSpeakerId = null;
  },

  /** The connection dropped: tear it down and schedule the next attempt, or give up. */
  _lost(reason) {
    if (this.closed || this._leaving || !this.reconnectOptions) return; // without reconnection: the server decides
    this._teardownTransport();
    clearTimeout(this._reconnectTimer);
    const delay = this._backoff.next();
    if (delay == null) {
      this._finish(null, true);
      return;
    }
    this.reconnecting = true;
    this.retryAt = Date.now() + delay;
    this._reconnectTimer = setTimeout(() => this._attemptReconnect(), delay);
    this._emit("reconnecting", { attempt: this._backoff.attempt, retryAt: this.retryAt, reason });
  },

  _attemptReconnect() {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (this.closed || !this.reconnecting) return;
    this.retryAt = null;
    this._emit("reconnecting", { attempt: this._backoff.attempt, retryAt: null, reason: "connecting" });
    const ws = this._openSocket();
    this._connectTimer = setTimeout(() => {
      if (this.ws === ws && this.reconnecting) this._lost("timeout");
    }, this.reconnectOptions.connectTimeoutMs);
  },

  /** The end: left, refused for good, or away too long. Emits `closed`. */
  _finish(wsCode = null, gaveUp = false) {
    if (this.closed) return;
    this.closed = true;
    this.joined = false;
    this.reconnecting = false;
    this.retryAt = null;
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._connectTimer);
    clearTimeout(this._stableTimer);
    clearTimeout(this._muteRecheck);
    this._stopWatchdog();
    globalThis.removeEventListener?.("online", this._onOnline);
    this._pendingAnswer?.reject(new Error("connection closed"));
    this._slots.releaseAll();
    this.publishPc?.close();
    this.subscribePc?.close();
    const fatal = this.lastError?.fatal ? this.lastError : null;
    const reason = this._leaving ? "left" : fatal ? "error" : "network";
    this._ready?.reject(new Error(fatal ? fatal.message : "connection closed"));
    this._ready?.promise.catch(() => {});
    this._emit("closed", { reason, error: fatal, wsCode, gaveUp });
  },
};

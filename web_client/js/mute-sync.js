// Keeping the mute states of HemicycleConnection (protocol.js) and the server in
// step: the member's own choices are told to the server, the server's mutes (the
// chair's) are obeyed, never the reverse, and the echo of a set_muted we just sent
// is not taken for a mute by the chair. Methods mixed into the class by protocol.js:
// `this` is the connection. No DOM access here.

// A server update contradicting a set_muted we sent less than this long ago
// is taken as the echo of an older state, not as a mute by the chair.
const MUTE_ECHO_GRACE_MS = 2000;

export const muteSyncMethods = {
  _serverSource(source) {
    return this.me?.sources?.find((entry) => entry.source === source) || null;
  },

  _sendMuted(source, muted) {
    this._lastMuteSent[source] = { muted, at: Date.now() };
    this._send({ type: "set_muted", source, muted });
  },

  _recentlySent(source) {
    const sent = this._lastMuteSent[source];
    return !!sent && Date.now() - sent.at < MUTE_ECHO_GRACE_MS;
  },

  /** Tell the server about sources we muted locally (e.g. muted before joining). */
  _syncMutesToServer() {
    for (const source of ["mic", "camera"]) {
      const state = this._serverSource(source);
      if (state && this.localMuted[source] && !state.muted && !this._recentlySent(source)) {
        this._sendMuted(source, true);
      }
    }
  },

  /** The server says we are muted (the chair may mute us): obey it, never the reverse. */
  _applyServerMutes() {
    for (const state of this.me?.sources || []) {
      const { source } = state;
      if (!state.muted || this.localMuted[source] || !this.localTracks[source]) continue;
      if (this._recentlySent(source)) {
        // Maybe the echo of an older set_muted: look again once the echo has had time to come.
        clearTimeout(this._muteRecheck);
        this._muteRecheck = setTimeout(() => this._applyServerMutes(), MUTE_ECHO_GRACE_MS);
        continue;
      }
      this.localTracks[source].enabled = false;
      this.localMuted[source] = true;
      this._emit("localmute", { source, muted: true, byServer: true });
    }
  },

  /** The server refused our unmute (the chair forbids it): stay muted, as the server says. */
  _revokeRefusedUnmute({ code }) {
    const sent = this._lastMuteSent.mic;
    if (code !== "forbidden" || !sent || sent.muted || !this._recentlySent("mic")) return;
    this._lastMuteSent.mic = null;
    if (this.localTracks.mic) this.localTracks.mic.enabled = false;
    this.localMuted.mic = true;
    this._emit("localmute", { source: "mic", muted: true, byServer: true, refused: true });
  },

  /** After a reconnection: tell the server the mute choices made while away (once per source). */
  _resyncMutes() {
    if (!this._resync || !this.me) return;
    const forced = new Set(this.sittingState?.forced_muted || []);
    for (const { source, muted } of this.me.sources || []) {
      if (!this._resync.delete(source) || !this.localTracks[source]) continue;
      const local = !!this.localMuted[source];
      // Never lift the chair's mute on the member's behalf: only their own earlier choice.
      if (muted !== local && (local || !forced.has(`${this.me.id}:${source}`))) this._sendMuted(source, local);
    }
  },
};

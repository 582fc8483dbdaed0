// The Hemicycle signalling client: owns the WebSocket and both peer
// connections (publish: the browser offers; subscribe: the server offers).
// UI-free: it never touches the DOM, it only dispatches events (below). This file
// holds the public API; the rest of the class is mixed in from one module a concern:
// server-messages.js (what each server message does), peer-negotiation.js (the two
// peer connections), mute-sync.js (mute states with the server), connection-lifecycle.js
// (watchdog, teardown, reconnection attempts, the end). Events:
//   welcome        {me, sitting, participants}
//   participants   {me, participants}          (any change, self included)
//   participantjoined / participantleft {participant}
//   track          {participantId, source, kind, mid, stream, track}
//   trackremoved   {participantId, source, kind, mid}
//   activespeaker  {participantId}
//   localmute      {source, muted, byServer}
//   error          {code, message, fatal}
//   closed         {reason: "left"|"error"|"network", error, wsCode, gaveUp}   (final)
//   reconnecting   {attempt, retryAt, reason}  the connection dropped: retryAt (ms since
//                  the epoch) is when the next attempt starts, null while it is under way
//   reconnected    {me, sitting, participants} back in the same seat (after `welcome`)
//   sittingstate   {state}   (the `sitting_state` snapshot, also kept in `this.sittingState`)
//   waitingroom    {}        (the sitting is locked: wait for the chair to admit us)
//   notice         {message} (quorum lost, a vote blocked...)
// Sitting commands (muteParticipant ... closeVote) send one message each; the
// server answers a refusal with `error` and everyone with a new `sitting_state`.
//
// Reconnection (policy in reconnect.js, mechanics in connection-lifecycle.js): when
// the WebSocket closes without a fatal error that forbids coming back, when a peer
// connection fails, or when nothing at all has come from the server for too long,
// both peer connections are torn down and a new WebSocket says `hello` with the same
// token, after a back-off; the server gives back the same seat. The local tracks and
// the mute choices are kept and published again, exactly as on the first join.

import { SlotTable } from "./subscribe-slots.js";
import { SerialQueue, deferred } from "./peer-helpers.js";
import { Backoff, RECONNECT_DEFAULTS } from "./reconnect.js";
import { serverMessageMethods } from "./server-messages.js";
import { peerNegotiationMethods } from "./peer-negotiation.js";
import { muteSyncMethods } from "./mute-sync.js";
import { connectionLifecycleMethods } from "./connection-lifecycle.js";

export const PROTOCOL_VERSION = 1;

export function defaultSignalingUrl(loc = globalThis.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/ws`;
}

const MAX_VIDEOS_ASKED = 100; // "as many as the server sends": the server caps it at media.max_videos

export class HemicycleConnection extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.token invitation token (from the URL fragment)
   * @param {string} [options.url] WebSocket URL, default same host `/ws`
   * @param {{mic?: MediaStreamTrack, camera?: MediaStreamTrack}} [options.tracks]
   * @param {{mic?: boolean, camera?: boolean}} [options.muted] initial mute states
   * @param {object|false} [options.reconnect] back-off options (see reconnect.js), false: never
   */
  constructor({ token, url = defaultSignalingUrl(), tracks = {}, muted = {}, reconnect = {} }) {
    super();
    this.token = token;
    this.url = url;
    this.localTracks = { mic: tracks.mic || null, camera: tracks.camera || null, screen: null };
    this.localMuted = { mic: !!muted.mic, camera: !!muted.camera, screen: false };
    for (const source of ["mic", "camera"]) {
      if (this.localTracks[source]) this.localTracks[source].enabled = !this.localMuted[source];
    }
    this.ws = null;
    this.me = null;
    this.sitting = null;
    this.iceServers = [];
    this.participants = new Map(); // other participants: id -> ParticipantInfo
    this.activeSpeakerId = null;
    this.publishPc = null;
    this.subscribePc = null;
    this.joined = false;
    this.closed = false;
    this.lastError = null;
    this._publishQueue = new SerialQueue();
    this._subscribeQueue = new SerialQueue();
    this._transceivers = {}; // source -> publishing RTCRtpTransceiver
    this._pendingAnswer = null;
    this._slots = new SlotTable((type, detail) => this._emit(type, detail));
    this._lastMuteSent = {}; // source -> {muted, at}
    this._leaving = false;
    this.sittingState = null;
    this.waiting = false;
    this.reconnectOptions = reconnect === false ? null : { ...RECONNECT_DEFAULTS, ...reconnect };
    this._backoff = new Backoff(this.reconnectOptions || {});
    this.reconnecting = false; // the connection dropped; coming back
    this.retryAt = null; // when the next attempt starts (ms since the epoch), null while one runs
    this.reconnections = 0; // how many times we came back
    this._welcomed = false; // the server accepted the token at least once
    this._gen = 0; // bumped when a connection is torn down: late work of the old one is dropped
    this._resync = null; // sources whose mute state is told again after a reconnection
    this._onOnline = () => this.retryNow();
    if (this.reconnectOptions) globalThis.addEventListener?.("online", this._onOnline);
  }

  get canPublish() {
    return !!this.me && this.me.role !== "public";
  }

  /** Open the WebSocket and say hello. Resolves on `welcome`, rejects if closed first. */
  connect() {
    const ready = deferred();
    this._ready = ready;
    this._openSocket();
    return ready.promise;
  }

  /** Say goodbye and close everything (also stops reconnecting). */
  leave() {
    this._leaving = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this._send({ type: "leave" });
      this.ws.close(1000, "leave");
    }
    // Do not wait for the closing handshake: the member has left.
    this._finish(1000);
  }

  /** While waiting to reconnect: try now rather than at the end of the back-off. */
  retryNow() {
    if (this.reconnecting && this._reconnectTimer != null) this._attemptReconnect();
  }

  _openSocket() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.lastError = null;
    // Events of a socket we gave up on (a dead connection) are ignored.
    const mine = (handler) => (event) => {
      if (this.ws === ws) handler(event);
    };
    ws.addEventListener("open", mine(() => {
      this._send({ type: "hello", version: PROTOCOL_VERSION, token: this.token });
    }));
    ws.addEventListener("message", mine((event) => {
      this._lastActivity = Date.now();
      this._onFrame(event.data);
    }));
    ws.addEventListener("close", mine((event) => this._onSocketClose(event)));
    return ws;
  }

  /** Receive at most `max` videos (null: as many as the server sends, `media.max_videos`). */
  setVideoLimit(max) {
    this.videoLimit = max;
    if (this.joined) this._send({ type: "receive_videos", max: max ?? MAX_VIDEOS_ASKED });
  }

  /** Mute/unmute the microphone or turn the camera off/on (the track stays published). */
  setMuted(source, muted) {
    const track = this.localTracks[source];
    if (track) track.enabled = !muted;
    this.localMuted[source] = muted;
    if (this._serverSource(source)) this._sendMuted(source, muted);
    this._emit("localmute", { source, muted, byServer: false });
  }

  /** Publish (or re-publish) `track` as `source`: first time adds a transceiver, later replaceTrack. */
  publishTrack(source, track) {
    this.localTracks[source] = track;
    this.localMuted[source] = false;
    const gen = this._gen;
    if (!this.joined) return Promise.resolve(); // published once (re)connected
    return this._publishQueue.run(async () => {
      if (gen !== this._gen) return; // the connection dropped: published again on reconnection
      this._ensurePublishPc();
      const existing = this._transceivers[source];
      if (existing) {
        await existing.sender.replaceTrack(track);
      } else {
        this._addTransceiver(source, track);
      }
      await this._negotiatePublish();
    });
  }

  /** Stop forwarding `source` (the m-line and transceiver stay, for later reuse). */
  unpublishTrack(source) {
    this.localTracks[source] = null;
    const gen = this._gen;
    return this._publishQueue.run(async () => {
      const transceiver = this._transceivers[source];
      if (gen !== this._gen || !transceiver) return;
      await transceiver.sender.replaceTrack(null);
      this._send({ type: "unpublish", source });
    });
  }

  /** Current remote media, as [{participantId, source, kind, mid, stream}]. */
  remoteTracks() {
    return this._slots.list();
  }

  // ------------------------------------------------------------ running the sitting

  muteParticipant(participantId, muted = true, source = "mic") { this._command({ type: "mute", participant_id: participantId, source, muted }); }
  muteAll() { this._command({ type: "mute_all" }); }
  setSelfUnmute(allowed) { this._command({ type: "set_self_unmute", allowed }); }
  remove(participantId) { this._command({ type: "remove", participant_id: participantId }); }
  lock(locked) { this._command({ type: "lock", locked }); }
  admit(participantId) { this._command({ type: "admit", participant_id: participantId }); }
  raiseHand(pointOfOrder = false) { this._command({ type: "raise_hand", point_of_order: pointOfOrder }); }
  lowerHand(participantId = null) { this._command({ type: "lower_hand", participant_id: participantId }); }
  giveFloor(participantId, muteOthers = false) { this._command({ type: "give_floor", participant_id: participantId, mute_others: muteOthers }); }
  takeFloor() { this._command({ type: "take_floor" }); }
  setItem(itemId) { this._command({ type: "set_item", item_id: itemId }); }
  suspend(suspended) { this._command({ type: "suspend", suspended }); }
  closedSession(closed) { this._command({ type: "closed_session", closed }); }
  programmeSound(cut) { this._command({ type: "programme_sound", cut }); }
  recordPresence(memberId, present) { this._command({ type: "record_presence", member_id: memberId, present }); }
  giveProxy(holderId, giverId = null) { this._command({ type: "give_proxy", holder_id: holderId, giver_id: giverId }); }
  revokeProxy(giverId = null) { this._command({ type: "revoke_proxy", giver_id: giverId }); }
  withdraw(memberId = null) { this._command({ type: "withdraw", member_id: memberId }); }
  requestSecretBallot() { this._command({ type: "request_secret_ballot" }); }
  openVote(question, method = "electronic") { this._command({ type: "open_vote", question, method }); }
  castVote(choice, onBehalfOf = null) { this._command({ type: "cast_vote", choice, on_behalf_of: onBehalfOf }); }
  recordVote(memberId, choice) { this._command({ type: "record_vote", member_id: memberId, choice }); }
  closeVote() { this._command({ type: "close_vote" }); }

  // ------------------------------------------------------------ signalling

  _send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /** A sitting command: while the connection is down, say that it was not sent. */
  _command(message) {
    if (!this._send(message) && !this.closed) this._emit("error", { code: "not_connected", message: message.type, fatal: false });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _emitParticipants() {
    this._emit("participants", { me: this.me, participants: [...this.participants.values()] });
  }

  _localError(code, error, gen = this._gen) {
    if (this.closed || this.reconnecting || gen !== this._gen) return; // an error of a dropped connection
    const detail = { code, message: String(error?.message || error), fatal: false };
    this._emit("error", detail);
  }
}

// The rest of the class, one concern a module (see their headers), becomes methods
// of its prototype as if written in the body above: non-enumerable, `this` the connection.
for (const methods of [serverMessageMethods, peerNegotiationMethods, muteSyncMethods, connectionLifecycleMethods]) {
  for (const [name, descriptor] of Object.entries(Object.getOwnPropertyDescriptors(methods))) {
    if (name in HemicycleConnection.prototype) throw new Error(`HemicycleConnection.${name} defined twice`);
    Object.defineProperty(HemicycleConnection.prototype, name, { ...descriptor, enumerable: false });
  }
}

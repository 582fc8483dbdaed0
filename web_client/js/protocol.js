// The Hemicycle signalling client: owns the WebSocket and both peer
// connections (publish: the browser offers; subscribe: the server offers).
// UI-free: it never touches the DOM, it only dispatches events:
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
// Reconnection (policy in reconnect.js): when the WebSocket closes without a
// fatal error that forbids coming back, when a peer connection fails, or when
// nothing at all has come from the server for too long, both peer connections
// are torn down and a new WebSocket says `hello` with the same token, after a
// back-off; the server gives back the same seat. The local tracks and the mute
// choices are kept and published again, exactly as on the first join.

import { SlotTable } from "./subscribe-slots.js";
import { SerialQueue, deferred, peerConfig, preferResolution, waitForIceGathering } from "./peer-helpers.js";
import { Backoff, RECONNECT_DEFAULTS, mayReconnectAfter } from "./reconnect.js";

export const PROTOCOL_VERSION = 1;
const PUBLISH_ANSWER_TIMEOUT_MS = 20000;
// A server update contradicting a set_muted we sent less than this long ago
// is taken as the echo of an older state, not as a mute by the chair.
const MUTE_ECHO_GRACE_MS = 2000;
const PUBLISH_ERROR_CODES = new Set(["bad_sdp", "no_codec", "forbidden", "too_large", "bad_message"]);
const PUBLISH_ORDER = ["mic", "camera", "screen"];
const WATCHDOG_INTERVAL_MS = 2000;
// Connected this long without a drop: the next drop starts the back-off afresh.
const STABLE_MS = 30000;

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

  // ------------------------------------------------------------ publishing

  _ensurePublishPc() {
    if (!this.publishPc) {
      this.publishPc = this._newPeerConnection("publishPc");
    }
    return this.publishPc;
  }

  /** A peer connection whose failure starts a reconnection (while it is still ours). */
  _newPeerConnection(name) {
    const pc = new RTCPeerConnection(peerConfig(this.iceServers));
    pc.addEventListener("connectionstatechange", () => {
      if (this[name] === pc && pc.connectionState === "failed") this._lost(`${name}_failed`);
    });
    return pc;
  }

  _addTransceiver(source, track) {
    const transceiver = this.publishPc.addTransceiver(track, { direction: "sendonly" });
    this._transceivers[source] = transceiver;
    if (track.kind === "video") {
      if (source === "screen" && "contentHint" in track) track.contentHint = "detail";
      preferResolution(transceiver.sender);
    }
    return transceiver;
  }

  _startPublishing() {
    const gen = this._gen;
    return this._publishQueue.run(async () => {
      if (gen !== this._gen) return;
      const sources = PUBLISH_ORDER.filter((source) => this.localTracks[source]?.readyState === "live");
      if (!sources.length) return;
      this._ensurePublishPc();
      for (const source of sources) this._addTransceiver(source, this.localTracks[source]);
      await this._negotiatePublish();
    });
  }

  _publishedTracks() {
    return PUBLISH_ORDER.filter((source) => {
      const transceiver = this._transceivers[source];
      return transceiver && transceiver.mid != null && transceiver.sender.track;
    }).map((source) => ({ mid: this._transceivers[source].mid, source }));
  }

  async _negotiatePublish() {
    const pc = this.publishPc;
    const gen = this._gen;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await waitForIceGathering(pc);
    if (this.closed || gen !== this._gen) return;
    const answer = deferred(PUBLISH_ANSWER_TIMEOUT_MS, "publish_answer timeout");
    this._pendingAnswer = answer;
    this._send({ type: "publish", sdp: pc.localDescription.sdp, tracks: this._publishedTracks() });
    let sdp;
    try {
      sdp = await answer.promise;
    } catch (error) {
      if (pc.signalingState === "have-local-offer") {
        await pc.setLocalDescription({ type: "rollback" }).catch(() => {});
      }
      throw error;
    } finally {
      this._pendingAnswer = null;
    }
    if (this.closed || gen !== this._gen) return;
    await pc.setRemoteDescription({ type: "answer", sdp });
    for (const transceiver of Object.values(this._transceivers)) {
      if (transceiver.sender.track?.kind === "video") await preferResolution(transceiver.sender);
    }
    this._syncMutesToServer();
  }

  _serverSource(source) {
    return this.me?.sources?.find((entry) => entry.source === source) || null;
  }

  _sendMuted(source, muted) {
    this._lastMuteSent[source] = { muted, at: Date.now() };
    this._send({ type: "set_muted", source, muted });
  }

  _recentlySent(source) {
    const sent = this._lastMuteSent[source];
    return !!sent && Date.now() - sent.at < MUTE_ECHO_GRACE_MS;
  }

  /** Tell the server about sources we muted locally (e.g. muted before joining). */
  _syncMutesToServer() {
    for (const source of ["mic", "camera"]) {
      const state = this._serverSource(source);
      if (state && this.localMuted[source] && !state.muted && !this._recentlySent(source)) {
        this._sendMuted(source, true);
      }
    }
  }

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
  }

  // ------------------------------------------------------------ subscribing

  _ensureSubscribePc() {
    if (!this.subscribePc) {
      this.subscribePc = this._newPeerConnection("subscribePc");
    }
    return this.subscribePc;
  }

  async _answerSubscribe({ revision, sdp, slots }, gen) {
    if (this.closed || gen !== this._gen) return;
    const pc = this._ensureSubscribePc();
    await pc.setRemoteDescription({ type: "offer", sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await waitForIceGathering(pc);
    if (this.closed || gen !== this._gen) return;
    this._send({ type: "subscribe_answer", revision, sdp: pc.localDescription.sdp });
    this._answeredRevision = revision;
    this._slots.apply(pc, slots || []);
  }

  /** Slots re-pointed without a new offer (a member arrived or left): the table alone. */
  _applySlots({ revision, slots }, gen) {
    if (this.closed || gen !== this._gen || !this.subscribePc) return;
    if (revision !== this._answeredRevision) return; // a newer offer brings its own table
    this._slots.apply(this.subscribePc, slots || []);
  }

  /** Current remote media, as [{participantId, source, kind, mid, stream}]. */
  remoteTracks() {
    return this._slots.list();
  }

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

  _onFrame(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    const handler = this._handlers[message?.type];
    if (handler) handler.call(this, message);
  }

  _handlers = {
    welcome(message) {
      const again = this._welcomed;
      this._welcomed = true;
      clearTimeout(this._connectTimer);
      if (this.reconnecting) {
        this.reconnecting = false;
        this.retryAt = null;
        this._resync = new Set(PUBLISH_ORDER);
      }
      clearTimeout(this._stableTimer);
      this._stableTimer = setTimeout(() => this._backoff.reset(), STABLE_MS);
      this.me = message.you;
      this.sitting = message.sitting;
      this.iceServers = message.ice_servers || [];
      this.participants = new Map(
        (message.participants || []).filter((p) => p.id !== this.me.id).map((p) => [p.id, p]),
      );
      this.joined = true;
      this.waiting = false;
      const detail = { me: this.me, sitting: this.sitting, participants: [...this.participants.values()], again };
      this._emit("welcome", detail);
      if (this.videoLimit != null) this._send({ type: "receive_videos", max: this.videoLimit });
      this._applyServerMutes();
      this._emitParticipants();
      this._ready?.resolve(detail);
      const gen = this._gen;
      if (this.canPublish) {
        this._startPublishing().catch((error) => this._localError("publish_failed", error, gen));
      } else {
        this.localTracks.mic = null;
        this.localTracks.camera = null;
      }
      this._startWatchdog();
      if (again) {
        this.reconnections += 1;
        this._emit("reconnected", detail);
      }
    },
    participant_joined(message) {
      this._upsert(message.participant, true);
    },
    participant_updated(message) {
      this._upsert(message.participant, false);
    },
    participant_left(message) {
      const participant = this.participants.get(message.participant_id);
      this.participants.delete(message.participant_id);
      if (this.activeSpeakerId === message.participant_id) this.activeSpeakerId = null;
      if (participant) this._emit("participantleft", { participant });
      this._emitParticipants();
    },
    publish_answer(message) {
      this._pendingAnswer?.resolve(message.sdp);
    },
    subscribe_offer(message) {
      const gen = this._gen;
      this._subscribeQueue
        .run(() => this._answerSubscribe(message, gen))
        .catch((error) => this._localError("subscribe_failed", error, gen));
    },
    subscribe_slots(message) {
      const gen = this._gen;
      this._subscribeQueue
        .run(async () => this._applySlots(message, gen))
        .catch((error) => this._localError("subscribe_failed", error, gen));
    },
    video_selection(message) {
      this.videoSelection = {
        limit: message.limit,
        videos: new Set((message.videos || []).map((v) => `${v.participant_id}|${v.source}`)),
      };
      this._emit("videoselection", { selection: this.videoSelection });
    },
    active_speaker(message) {
      this.activeSpeakerId = message.participant_id ?? null;
      this._emit("activespeaker", { participantId: this.activeSpeakerId });
    },
    sitting_state(message) {
      this.sittingState = message;
      this._emit("sittingstate", { state: message });
    },
    waiting_room() {
      clearTimeout(this._connectTimer);
      this.reconnecting = false;
      this.retryAt = null;
      this.waiting = true;
      this._emit("waitingroom", {});
    },
    notice(message) {
      this._emit("notice", { message: message.message || "" });
    },
    error(message) {
      const detail = { code: message.code, message: message.message || "", fatal: !!message.fatal };
      this.lastError = detail;
      this._revokeRefusedUnmute(detail);
      if (this._pendingAnswer && PUBLISH_ERROR_CODES.has(detail.code)) {
        this._pendingAnswer.reject(new Error(`${detail.code}: ${detail.message}`));
      }
      this._emit("error", detail);
    },
  };

  _upsert(participant, joined) {
    if (this.me && participant.id === this.me.id) {
      this.me = participant;
      this._resyncMutes();
      this._applyServerMutes();
      this._syncMutesToServer();
    } else {
      const isNew = !this.participants.has(participant.id);
      this.participants.set(participant.id, participant);
      if (joined || isNew) this._emit("participantjoined", { participant });
    }
    this._emitParticipants();
  }

  /** The server refused our unmute (the chair forbids it): stay muted, as the server says. */
  _revokeRefusedUnmute({ code }) {
    const sent = this._lastMuteSent.mic;
    if (code !== "forbidden" || !sent || sent.muted || !this._recentlySent("mic")) return;
    this._lastMuteSent.mic = null;
    if (this.localTracks.mic) this.localTracks.mic.enabled = false;
    this.localMuted.mic = true;
    this._emit("localmute", { source: "mic", muted: true, byServer: true, refused: true });
  }

  _localError(code, error, gen = this._gen) {
    if (this.closed || this.reconnecting || gen !== this._gen) return; // an error of a dropped connection
    const detail = { code, message: String(error?.message || error), fatal: false };
    this._emit("error", detail);
  }

  // ------------------------------------------------------------ reconnection

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
  }

  _mayReconnect() {
    if (!this.reconnectOptions || this._leaving) return false;
    if (!this._welcomed && !this.waiting) return false; // the first join failed: the page offers to rejoin
    return mayReconnectAfter(this.lastError?.fatal ? this.lastError : null);
  }

  _onSocketClose(event) {
    if (this.closed) return;
    if (this._mayReconnect()) this._lost(`socket_closed_${event?.code ?? ""}`);
    else this._finish(event?.code ?? null);
  }

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
  }

  _stopWatchdog() {
    clearInterval(this._watchdog);
    this._watchdog = null;
  }

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
  }

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
  }

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
  }

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
  }

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
  }
}

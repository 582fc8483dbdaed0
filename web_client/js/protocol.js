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
//   closed         {reason: "left"|"error"|"network", error, wsCode}
//   sittingstate   {state}   (the `sitting_state` snapshot, also kept in `this.sittingState`)
//   waitingroom    {}        (the sitting is locked: wait for the chair to admit us)
//   notice         {message} (quorum lost, a vote blocked...)
// Sitting commands (muteParticipant ... closeVote) send one message each; the
// server answers a refusal with `error` and everyone with a new `sitting_state`.

import { SlotTable } from "./subscribe-slots.js";
import { SerialQueue, deferred, peerConfig, preferResolution, waitForIceGathering } from "./peer-helpers.js";

export const PROTOCOL_VERSION = 1;
const PUBLISH_ANSWER_TIMEOUT_MS = 20000;
// A server update contradicting a set_muted we sent less than this long ago
// is taken as the echo of an older state, not as a mute by the chair.
const MUTE_ECHO_GRACE_MS = 2000;
const PUBLISH_ERROR_CODES = new Set(["bad_sdp", "no_codec", "forbidden", "too_large", "bad_message"]);
const PUBLISH_ORDER = ["mic", "camera", "screen"];

export function defaultSignalingUrl(loc = globalThis.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/ws`;
}

export class HemicycleConnection extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.token invitation token (from the URL fragment)
   * @param {string} [options.url] WebSocket URL, default same host `/ws`
   * @param {{mic?: MediaStreamTrack, camera?: MediaStreamTrack}} [options.tracks]
   * @param {{mic?: boolean, camera?: boolean}} [options.muted] initial mute states
   */
  constructor({ token, url = defaultSignalingUrl(), tracks = {}, muted = {} }) {
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
  }

  get canPublish() {
    return !!this.me && this.me.role !== "public";
  }

  /** Open the WebSocket and say hello. Resolves on `welcome`, rejects if closed first. */
  connect() {
    const ready = deferred();
    this._ready = ready;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this._send({ type: "hello", version: PROTOCOL_VERSION, token: this.token });
    });
    ws.addEventListener("message", (event) => this._onFrame(event.data));
    ws.addEventListener("close", (event) => this._onClose(event));
    return ready.promise;
  }

  /** Say goodbye and close everything. */
  leave() {
    this._leaving = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this._send({ type: "leave" });
      this.ws.close(1000, "leave");
    }
    // Do not wait for the closing handshake: the member has left.
    this._onClose({ code: 1000 });
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
    return this._publishQueue.run(async () => {
      this._ensurePublishPc();
      this.localTracks[source] = track;
      this.localMuted[source] = false;
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
    return this._publishQueue.run(async () => {
      const transceiver = this._transceivers[source];
      this.localTracks[source] = null;
      if (!transceiver) return;
      await transceiver.sender.replaceTrack(null);
      this._send({ type: "unpublish", source });
    });
  }

  // ------------------------------------------------------------ running the sitting

  muteParticipant(participantId, muted = true, source = "mic") { this._send({ type: "mute", participant_id: participantId, source, muted }); }
  muteAll() { this._send({ type: "mute_all" }); }
  setSelfUnmute(allowed) { this._send({ type: "set_self_unmute", allowed }); }
  remove(participantId) { this._send({ type: "remove", participant_id: participantId }); }
  lock(locked) { this._send({ type: "lock", locked }); }
  admit(participantId) { this._send({ type: "admit", participant_id: participantId }); }
  raiseHand(pointOfOrder = false) { this._send({ type: "raise_hand", point_of_order: pointOfOrder }); }
  lowerHand(participantId = null) { this._send({ type: "lower_hand", participant_id: participantId }); }
  giveFloor(participantId, muteOthers = false) { this._send({ type: "give_floor", participant_id: participantId, mute_others: muteOthers }); }
  takeFloor() { this._send({ type: "take_floor" }); }
  setItem(itemId) { this._send({ type: "set_item", item_id: itemId }); }
  suspend(suspended) { this._send({ type: "suspend", suspended }); }
  closedSession(closed) { this._send({ type: "closed_session", closed }); }
  recordPresence(memberId, present) { this._send({ type: "record_presence", member_id: memberId, present }); }
  giveProxy(holderId, giverId = null) { this._send({ type: "give_proxy", holder_id: holderId, giver_id: giverId }); }
  revokeProxy(giverId = null) { this._send({ type: "revoke_proxy", giver_id: giverId }); }
  withdraw(memberId = null) { this._send({ type: "withdraw", member_id: memberId }); }
  requestSecretBallot() { this._send({ type: "request_secret_ballot" }); }
  openVote(question, method = "electronic") { this._send({ type: "open_vote", question, method }); }
  castVote(choice, onBehalfOf = null) { this._send({ type: "cast_vote", choice, on_behalf_of: onBehalfOf }); }
  recordVote(memberId, choice) { this._send({ type: "record_vote", member_id: memberId, choice }); }
  closeVote() { this._send({ type: "close_vote" }); }

  // ------------------------------------------------------------ publishing

  _ensurePublishPc() {
    if (!this.publishPc) {
      this.publishPc = new RTCPeerConnection(peerConfig(this.iceServers));
    }
    return this.publishPc;
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
    return this._publishQueue.run(async () => {
      const sources = ["mic", "camera"].filter((source) => this.localTracks[source]);
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
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await waitForIceGathering(pc);
    if (this.closed) return;
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
    if (this.closed) return;
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
      this.subscribePc = new RTCPeerConnection(peerConfig(this.iceServers));
    }
    return this.subscribePc;
  }

  async _answerSubscribe({ revision, sdp, slots }) {
    if (this.closed) return;
    const pc = this._ensureSubscribePc();
    await pc.setRemoteDescription({ type: "offer", sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await waitForIceGathering(pc);
    if (this.closed) return;
    this._send({ type: "subscribe_answer", revision, sdp: pc.localDescription.sdp });
    this._slots.apply(pc, slots || []);
  }

  /** Current remote media, as [{participantId, source, kind, mid, stream}]. */
  remoteTracks() {
    return this._slots.list();
  }

  // ------------------------------------------------------------ signalling

  _send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
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
      this.me = message.you;
      this.sitting = message.sitting;
      this.iceServers = message.ice_servers || [];
      this.participants = new Map(
        (message.participants || []).filter((p) => p.id !== this.me.id).map((p) => [p.id, p]),
      );
      this.joined = true;
      this.waiting = false;
      const detail = { me: this.me, sitting: this.sitting, participants: [...this.participants.values()] };
      this._emit("welcome", detail);
      this._applyServerMutes();
      this._emitParticipants();
      this._ready?.resolve(detail);
      if (this.canPublish) {
        this._startPublishing().catch((error) => this._localError("publish_failed", error));
      } else {
        this.localTracks.mic = null;
        this.localTracks.camera = null;
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
      this._subscribeQueue.run(() => this._answerSubscribe(message)).catch((error) => this._localError("subscribe_failed", error));
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

  _localError(code, error) {
    if (this.closed) return;
    const detail = { code, message: String(error?.message || error), fatal: false };
    this._emit("error", detail);
  }

  _onClose(event) {
    if (this.closed) return;
    this.closed = true;
    this.joined = false;
    clearTimeout(this._muteRecheck);
    this._pendingAnswer?.reject(new Error("connection closed"));
    this._slots.releaseAll();
    this.publishPc?.close();
    this.subscribePc?.close();
    const fatal = this.lastError?.fatal ? this.lastError : null;
    const reason = this._leaving ? "left" : fatal ? "error" : "network";
    this._ready?.reject(new Error(fatal ? fatal.message : "connection closed"));
    this._ready?.promise.catch(() => {});
    this._emit("closed", { reason, error: fatal, wsCode: event?.code ?? null });
  }
}

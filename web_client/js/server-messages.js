// What HemicycleConnection (protocol.js) does with each message of the server:
// one handler a message type, run with `this` the connection. Methods mixed into
// the class by protocol.js. No DOM access here.

import { PUBLISH_ORDER } from "./peer-negotiation.js";

const PUBLISH_ERROR_CODES = new Set(["bad_sdp", "no_codec", "forbidden", "too_large", "bad_message"]);
// Connected this long without a drop: the next drop starts the back-off afresh.
const STABLE_MS = 30000;

const HANDLERS = {
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

export const serverMessageMethods = {
  _onFrame(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    const handler = HANDLERS[message?.type];
    if (handler) handler.call(this, message);
  },

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
  },
};

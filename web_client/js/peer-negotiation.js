// The two peer connections of HemicycleConnection (protocol.js): publishing (the
// browser offers its tracks, the server answers) and subscribing (the server offers
// the others' media in slots, the browser answers). Methods mixed into the class by
// protocol.js: `this` is the connection. No DOM access here.

import { deferred, peerConfig, preferResolution, waitForIceGathering } from "./peer-helpers.js";

const PUBLISH_ANSWER_TIMEOUT_MS = 20000;
export const PUBLISH_ORDER = ["mic", "camera", "screen"];

export const peerNegotiationMethods = {
  // ------------------------------------------------------------ publishing

  _ensurePublishPc() {
    if (!this.publishPc) {
      this.publishPc = this._newPeerConnection("publishPc");
    }
    return this.publishPc;
  },

  /** A peer connection whose failure starts a reconnection (while it is still ours). */
  _newPeerConnection(name) {
    const pc = new RTCPeerConnection(peerConfig(this.iceServers));
    pc.addEventListener("connectionstatechange", () => {
      if (this[name] === pc && pc.connectionState === "failed") this._lost(`${name}_failed`);
    });
    return pc;
  },

  _addTransceiver(source, track) {
    const transceiver = this.publishPc.addTransceiver(track, { direction: "sendonly" });
    this._transceivers[source] = transceiver;
    if (track.kind === "video") {
      if (source === "screen" && "contentHint" in track) track.contentHint = "detail";
      preferResolution(transceiver.sender);
    }
    return transceiver;
  },

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
  },

  _publishedTracks() {
    return PUBLISH_ORDER.filter((source) => {
      const transceiver = this._transceivers[source];
      return transceiver && transceiver.mid != null && transceiver.sender.track;
    }).map((source) => ({ mid: this._transceivers[source].mid, source }));
  },

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
  },

  // ------------------------------------------------------------ subscribing

  _ensureSubscribePc() {
    if (!this.subscribePc) {
      this.subscribePc = this._newPeerConnection("subscribePc");
    }
    return this.subscribePc;
  },

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
  },

  /** Slots re-pointed without a new offer (a member arrived or left): the table alone. */
  _applySlots({ revision, slots }, gen) {
    if (this.closed || gen !== this._gen || !this.subscribePc) return;
    if (revision !== this._answeredRevision) return; // a newer offer brings its own table
    this._slots.apply(this.subscribePc, slots || []);
  },
};

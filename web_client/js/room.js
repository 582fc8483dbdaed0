// The room view: wires a HemicycleConnection to the tiles, the participants
// panel and the controls bar (mute, camera, screen share, leave).

import { t } from "./i18n.js";
import { REFUSALS } from "./i18n-refusals.js";
import { getCameraTrack, getScreenTrack, stopTracks, supportsScreenShare } from "./media.js";
import { ParticipantList } from "./participant-list.js";
import { TileGrid } from "./tiles.js";

/** The server's reason for a refusal, in the page's language when it is a known one. */
export function refusalText(message) {
  for (const [pattern, key] of REFUSALS) {
    const match = pattern.exec(message);
    if (match) return t(key, match.groups || {});
  }
  return message;
}

/** A translated, human sentence for a protocol error {code, message}. */
export function errorText(error) {
  if (!error.fatal && (error.code === "forbidden" || error.code === "bad_message" || error.code === "not_ready") && error.message) {
    return t("error.refused", { message: refusalText(error.message) });
  }
  if (error.fatal && error.code === "forbidden" && error.message) return t("error.excluded", { message: refusalText(error.message) });
  const key = `error.${error.code}`;
  const text = t(key);
  return text !== key ? text : t("error.generic", { message: error.message || error.code });
}

const VIDEO_LIMIT_KEY = "hemicycle.videoLimit";

function savedVideoLimit() {
  try {
    const value = localStorage.getItem(VIDEO_LIMIT_KEY);
    return value === null || ["", "0", "1", "4"].includes(value) ? value : null;
  } catch {
    return null;
  }
}

export class RoomView {
  constructor(doc, { announce, mayUnmute = () => true }) {
    const $ = (id) => doc.getElementById(id);
    this.el = {
      sittingTitle: $("sitting-title"),
      mute: $("mute-button"),
      camera: $("camera-button"),
      screen: $("screen-button"),
      leave: $("leave-button"),
      videoLimit: $("video-limit"),
    };
    this.announce = announce;
    this.mayUnmute = mayUnmute; // false while the chair's mute holds (self-unmute forbidden)
    this.tiles = new TileGrid($("tile-grid"), $("remote-audio"));
    this.list = new ParticipantList($("participant-list"), $("participant-count"));
    this.connection = null;
    this.local = { mic: null, camera: null, screen: null };
    this.listeners = null;
    this.busy = false;
    this.el.mute.addEventListener("click", () => this._toggleMic());
    this.el.camera.addEventListener("click", () => this._toggleCamera());
    this.el.screen.addEventListener("click", () => this._toggleScreen());
    this.el.leave.addEventListener("click", () => this.connection?.leave());
    this.el.videoLimit?.addEventListener("change", () => {
      const value = this.el.videoLimit.value;
      this.connection?.setVideoLimit(value === "" ? null : Number(value));
      try {
        localStorage.setItem(VIDEO_LIMIT_KEY, value); // this device's choice, on the town's own site only
      } catch {
        // storage refused (private mode): the choice lasts for this page
      }
    });
    doc.addEventListener("hemicycle:langchange", () => {
      this.tiles.relabel();
      this._renderList();
    });
  }

  /** Start showing `connection`; `media` = {mic, camera, muted, options} from the pre-join screen. */
  attach(connection, media) {
    this.detach();
    this.connection = connection;
    const savedLimit = savedVideoLimit();
    if (savedLimit !== null && this.el.videoLimit) {
      this.el.videoLimit.value = savedLimit;
      connection.setVideoLimit(savedLimit === "" ? null : Number(savedLimit));
    }
    this.media = media;
    this.local = { mic: media.mic, camera: media.camera, screen: null };
    this.listeners = new AbortController();
    const on = (type, handler) => connection.addEventListener(type, (event) => handler(event.detail), { signal: this.listeners.signal });
    on("welcome", ({ sitting, me }) => {
      this.el.sittingTitle.textContent = sitting?.title ?? "";
      if (me.role === "public") {
        stopTracks(this.local.mic, this.local.camera);
        this.local.mic = null;
        this.local.camera = null;
      }
      this._renderControls();
    });
    on("participants", () => {
      this.tiles.setParticipants([...connection.participants.values()]);
      this._renderSelf();
      this._renderList();
    });
    on("participantjoined", ({ participant }) => {
      if (participant.role !== "public" && this.connection.joined) this.announce(t("room.joinedBy", { name: participant.name }));
    });
    on("participantleft", ({ participant }) => {
      if (participant.role !== "public") this.announce(t("room.leftBy", { name: participant.name }));
    });
    on("track", (detail) => {
      if (detail.participantId !== connection.me?.id) this.tiles.addTrack(detail);
    });
    on("trackremoved", (detail) => this.tiles.removeTrack(detail));
    on("videoselection", ({ selection }) => this.tiles.setVideoSelection(selection));
    on("activespeaker", ({ participantId }) => {
      this.tiles.setActiveSpeaker(participantId);
      this._renderList();
    });
    on("localmute", ({ source, byServer, refused }) => {
      this._renderControls();
      this._renderSelf();
      if (byServer && source === "mic") {
        const askFloor = refused || !connection.sittingState?.self_unmute_allowed;
        this.announce(t(askFloor ? "room.mutedAskFloor" : "room.mutedRemotely"));
      }
    });
    on("error", (error) => {
      if (!error.fatal) this.announce(errorText(error));
    });
    this._renderControls();
  }

  /** Stop showing the connection; stops local media. */
  detach() {
    this.listeners?.abort();
    this.listeners = null;
    stopTracks(this.local.mic, this.local.camera, this.local.screen);
    this.local = { mic: null, camera: null, screen: null };
    this.tiles.clear();
    this.list.clear();
    this.connection = null;
  }

  /** What to restore on rejoin: devices, audio-only, mute states. */
  rejoinMedia() {
    const connection = this.connection;
    return {
      options: { ...this.media?.options, audioOnly: this.media?.options?.audioOnly || !this.local.camera },
      muted: { mic: !!connection?.localMuted.mic, camera: !!connection?.localMuted.camera },
    };
  }

  // -------------------------------------------------------------- rendering

  _isPublic() {
    return this.connection?.me?.role === "public";
  }

  _renderControls() {
    const connection = this.connection;
    const watchOnly = this._isPublic() || !!this.media?.options?.watchOnly;
    this.el.mute.hidden = watchOnly;
    this.el.camera.hidden = watchOnly;
    this.el.screen.hidden = watchOnly || !supportsScreenShare();
    const micMuted = !this.local.mic || !!connection?.localMuted.mic;
    this.el.mute.setAttribute("aria-pressed", String(micMuted));
    this.el.mute.disabled = !this.local.mic;
    this.el.camera.setAttribute("aria-pressed", String(this._cameraOff()));
    this.el.camera.disabled = this.busy;
    this.el.screen.setAttribute("aria-pressed", String(!!this.local.screen));
    this.el.screen.disabled = this.busy;
  }

  _cameraOff() {
    return !this.local.camera || !!this.connection?.localMuted.camera;
  }

  _renderSelf() {
    const connection = this.connection;
    if (!connection?.me) return;
    this.tiles.setSelf(connection.me, {
      camera: this.local.camera,
      screen: this.local.screen,
      cameraOff: this._cameraOff(),
      micMuted: !this.local.mic || !!connection.localMuted.mic,
    });
  }

  _renderList() {
    const connection = this.connection;
    if (!connection) return;
    this.list.render(connection.me, [...connection.participants.values()], connection.activeSpeakerId);
  }

  // -------------------------------------------------------------- controls

  _toggleMic() {
    if (!this.connection || !this.local.mic) return;
    const unmuting = this.connection.localMuted.mic;
    if (unmuting && !this.mayUnmute()) {
      this.announce(t("room.mutedAskFloor"));
      return;
    }
    this.connection.setMuted("mic", !unmuting);
  }

  async _toggleCamera() {
    const connection = this.connection;
    if (!connection || this.busy) return;
    if (this.local.camera) {
      connection.setMuted("camera", !connection.localMuted.camera);
      return;
    }
    // Joined audio-only: acquire the camera now and publish it.
    this.busy = true;
    this._renderControls();
    try {
      const track = await getCameraTrack(this.media?.options?.cameraId);
      if (this.connection !== connection) {
        track.stop();
        return;
      }
      this.local.camera = track;
      this._renderSelf();
      await connection.publishTrack("camera", track);
    } catch {
      this.announce(t("room.cameraFailed"));
    } finally {
      this.busy = false;
      this._renderControls();
      this._renderSelf();
    }
  }

  async _toggleScreen() {
    const connection = this.connection;
    if (!connection || this.busy) return;
    if (this.local.screen) {
      await this._stopScreen(this.local.screen);
      return;
    }
    let track;
    try {
      track = await getScreenTrack();
    } catch (error) {
      if (error?.name !== "NotAllowedError" && error?.name !== "AbortError") this.announce(t("room.screenFailed"));
      return;
    }
    if (this.connection !== connection) {
      track.stop();
      return;
    }
    this.local.screen = track;
    track.addEventListener("ended", () => this._stopScreen(track));
    this._renderControls();
    this._renderSelf();
    try {
      await connection.publishTrack("screen", track);
      this.announce(t("room.screenStarted"));
    } catch {
      this.announce(t("room.publishFailed"));
      await this._stopScreen(track, true);
    }
  }

  async _stopScreen(track, quiet = false) {
    if (!track || this.local.screen !== track) return;
    this.local.screen = null;
    track.stop();
    this._renderControls();
    this._renderSelf();
    await this.connection?.unpublishTrack("screen").catch(() => {});
    if (!quiet) this.announce(t("room.screenStopped"));
  }
}

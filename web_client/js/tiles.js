// The grid of video tiles and the hidden remote audio elements.
//   <figure class="tile" data-participant-id="ID" data-source="camera|screen" [data-self="true"]>
//     <div class="tile-media"><video autoplay playsinline muted aria-label="…"> <div class="tile-avatar"></div></div>
//     <figcaption><span class="tile-name">Name</span><span class="tile-badges">…</span></figcaption>
//   </figure>
//   <audio autoplay data-participant-id="ID" data-source="mic">

import { t } from "./i18n.js";

const ROLE_ORDER = ["chair", "secretary", "councillor", "chamber", "technician", "public"];

export function initials(name) {
  const words = String(name || "").trim().split(/[\s'-]+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  return letters.map((word) => word[0].toUpperCase()).join("").slice(0, 2) || "?";
}

export function sourceState(info, source) {
  return info?.sources?.find((entry) => entry.source === source) || null;
}

function key(participantId, source) {
  return `${participantId}|${source}`;
}

export class TileGrid {
  constructor(grid, audioBox) {
    this.grid = grid;
    this.audioBox = audioBox;
    this.people = new Map(); // remote id -> ParticipantInfo
    this.videoStreams = new Map(); // "id|source" -> MediaStream
    this.activeSpeakerId = null;
    this.forwarded = null; // Set of "id|source" the server sends (video_selection); null: all
    this.me = null;
    this.self = { camera: null, screen: null, cameraOff: false, micMuted: false };
    this.blockedAudio = new Set();
    this._retryAudio = () => {
      for (const audio of this.blockedAudio) audio.play().then(() => this.blockedAudio.delete(audio), () => {});
    };
    document.addEventListener("pointerdown", this._retryAudio);
    document.addEventListener("keydown", this._retryAudio);
  }

  /** Remote participants (self excluded). Tiles exist for connected, non-public people. */
  setParticipants(list) {
    this.people = new Map(list.map((info) => [info.id, info]));
    for (const fig of this._remoteTiles()) {
      const info = this.people.get(fig.dataset.participantId);
      const keep = info && this._hasTile(info) && (fig.dataset.source === "camera" || this.videoStreams.has(key(info.id, "screen")));
      if (!keep) fig.remove();
    }
    for (const audio of this.audioBox.querySelectorAll("audio")) {
      if (!this.people.has(audio.dataset.participantId)) this._removeAudio(audio);
    }
    for (const info of this.people.values()) {
      if (!this._hasTile(info)) continue;
      this._renderTile(info, "camera");
      if (this.videoStreams.has(key(info.id, "screen"))) this._renderTile(info, "screen");
    }
    this._renderAudioLabels();
    this._sort();
  }

  /** A remote track arrived (or a slot now carries this participant/source). */
  addTrack({ participantId, source, kind, stream }) {
    if (kind === "audio") {
      this._addAudio(participantId, source, stream);
      return;
    }
    this.videoStreams.set(key(participantId, source), stream);
    const info = this.people.get(participantId);
    if (info && this._hasTile(info)) {
      this._renderTile(info, source);
      this._sort();
    }
  }

  removeTrack({ participantId, source, kind }) {
    if (kind === "audio") {
      const audio = this.audioBox.querySelector(`audio[data-participant-id="${CSS.escape(participantId)}"][data-source="${source}"]`);
      if (audio) this._removeAudio(audio);
      return;
    }
    this.videoStreams.delete(key(participantId, source));
    const fig = this._find(participantId, source, false);
    if (!fig) return;
    if (source === "screen") fig.remove();
    else this._renderTile(this.people.get(participantId), source);
  }

  /** The videos the server forwards now: the others show the member's initials, not a frozen picture. */
  setVideoSelection(selection) {
    this.forwarded = selection ? selection.videos : null;
    for (const info of this.people.values()) {
      if (!this._hasTile(info)) continue;
      for (const source of ["camera", "screen"]) if (this._find(info.id, source, false)) this._renderTile(info, source);
    }
  }

  setActiveSpeaker(participantId) {
    this.activeSpeakerId = participantId;
    for (const fig of this.grid.querySelectorAll("figure.tile")) {
      const speaking = !!participantId && fig.dataset.participantId === participantId && fig.dataset.source === "camera";
      fig.classList.toggle("is-speaking", speaking);
      fig.querySelector(".badge-speaking").hidden = !speaking;
    }
  }

  /** Own preview tiles: camera (or initials) and, while sharing, the screen. */
  setSelf(me, { camera, screen, cameraOff, micMuted }) {
    this.me = me;
    this.self = { camera, screen, cameraOff, micMuted };
    this._renderSelf();
  }

  /** Re-apply every translated label (language switch). */
  relabel() {
    for (const info of this.people.values()) {
      for (const source of ["camera", "screen"]) if (this._find(info.id, source, false)) this._renderTile(info, source);
    }
    this._renderSelf();
    this._renderAudioLabels();
    this.setActiveSpeaker(this.activeSpeakerId);
  }

  clear() {
    this.grid.replaceChildren();
    for (const audio of this.audioBox.querySelectorAll("audio")) this._removeAudio(audio);
    this.videoStreams.clear();
    this.people.clear();
    this.me = null;
  }

  /** Remote tiles, for window.hemicycle.state(). */
  describe() {
    return this._remoteTiles().map((fig) => ({
      participant_id: fig.dataset.participantId,
      name: this.people.get(fig.dataset.participantId)?.name ?? "",
      source: fig.dataset.source,
      video: fig.dataset.video === "on",
      held: fig.dataset.held === "true",
    }));
  }

  // -------------------------------------------------------------- internals

  _hasTile(info) {
    return info.connected !== false && info.role !== "public";
  }

  _remoteTiles() {
    return [...this.grid.querySelectorAll("figure.tile:not([data-self])")];
  }

  _find(participantId, source, self) {
    const selfPart = self ? '[data-self="true"]' : ":not([data-self])";
    return this.grid.querySelector(
      `figure.tile[data-participant-id="${CSS.escape(participantId)}"][data-source="${source}"]${selfPart}`,
    );
  }

  _ensureTile(participantId, source, self) {
    let fig = this._find(participantId, source, self);
    if (fig) return fig;
    fig = document.createElement("figure");
    fig.className = "tile";
    fig.dataset.participantId = participantId;
    fig.dataset.source = source;
    if (self) fig.dataset.self = "true";
    const media = document.createElement("div");
    media.className = "tile-media";
    const avatar = document.createElement("div");
    avatar.className = "tile-avatar";
    avatar.setAttribute("aria-hidden", "true");
    media.append(avatar);
    const caption = document.createElement("figcaption");
    caption.innerHTML =
      '<span class="tile-name"></span><span class="tile-badges">' +
      '<span class="badge badge-muted" hidden><span class="badge-icon icon-mic-off" aria-hidden="true"></span><span class="badge-text"></span></span>' +
      '<span class="badge badge-speaking" hidden></span><span class="badge badge-held" hidden></span></span>';
    fig.append(media, caption);
    this.grid.append(fig);
    return fig;
  }

  _setVideo(fig, stream, visible, label) {
    let video = fig.querySelector("video");
    if (!stream) {
      if (video) {
        video.srcObject = null;
        video.remove();
      }
    } else {
      if (!video) {
        video = document.createElement("video");
        video.autoplay = true;
        video.playsInline = true;
        video.muted = true;
        video.setAttribute("autoplay", "");
        video.setAttribute("playsinline", "");
        video.setAttribute("muted", "");
        fig.querySelector(".tile-media").prepend(video);
      }
      if (video.srcObject !== stream) video.srcObject = stream;
      video.setAttribute("aria-label", label);
      video.hidden = !visible;
    }
    const showing = !!stream && visible;
    fig.dataset.video = showing ? "on" : "off";
    fig.querySelector(".tile-avatar").hidden = showing;
  }

  _fillCaption(fig, name, micMuted, avatarText) {
    fig.querySelector(".tile-name").textContent = name;
    fig.querySelector(".tile-avatar").textContent = avatarText;
    const muted = fig.querySelector(".badge-muted");
    muted.hidden = !micMuted;
    muted.querySelector(".badge-text").textContent = t("room.micMuted");
    fig.querySelector(".badge-speaking").textContent = t("room.speaking");
  }

  _renderTile(info, source) {
    if (!info) return;
    const fig = this._ensureTile(info.id, source, false);
    const stream = this.videoStreams.get(key(info.id, source)) || null;
    const published = sourceState(info, source);
    const on = source === "screen" || (!!published && !published.muted);
    const held = on && !!this.forwarded && !this.forwarded.has(key(info.id, source));
    const visible = on && !held;
    fig.dataset.held = held ? "true" : "false";
    const heldBadge = fig.querySelector(".badge-held");
    heldBadge.hidden = !held;
    heldBadge.textContent = t("room.videoHeld");
    const sourceName = t(`source.${source}`);
    const label = t("room.videoOf", { name: info.name, source: sourceName });
    this._setVideo(fig, stream, visible, label);
    const name = source === "screen" ? `${info.name} (${sourceName})` : info.name;
    const mic = sourceState(info, "mic");
    this._fillCaption(fig, name, source === "camera" && !!mic?.muted, initials(info.name));
    const speaking = source === "camera" && this.activeSpeakerId === info.id;
    fig.classList.toggle("is-speaking", speaking);
    fig.querySelector(".badge-speaking").hidden = !speaking;
  }

  _renderSelf() {
    const me = this.me;
    for (const fig of this.grid.querySelectorAll('figure.tile[data-self="true"]')) {
      if (!me || fig.dataset.participantId !== me.id) fig.remove();
    }
    if (!me || me.role === "public") return;
    const you = `${me.name} (${t("room.you")})`;
    const camFig = this._ensureTile(me.id, "camera", true);
    const camStream = this.self.camera ? this._selfStream("camera", this.self.camera) : null;
    this._setVideo(camFig, camStream, !this.self.cameraOff, t("room.yourCamera"));
    this._fillCaption(camFig, you, this.self.micMuted, initials(me.name));
    const screenFig = this._find(me.id, "screen", true);
    if (this.self.screen) {
      const fig = screenFig || this._ensureTile(me.id, "screen", true);
      this._setVideo(fig, this._selfStream("screen", this.self.screen), true, t("room.yourScreen"));
      this._fillCaption(fig, `${you} (${t("source.screen")})`, false, initials(me.name));
    } else if (screenFig) {
      screenFig.remove();
    }
    this._sort();
  }

  _selfStream(source, track) {
    this._selfStreams = this._selfStreams || {};
    const current = this._selfStreams[source];
    if (current && current.getTracks()[0] === track) return current;
    this._selfStreams[source] = new MediaStream([track]);
    return this._selfStreams[source];
  }

  _sortKey(fig) {
    const self = fig.dataset.self === "true";
    const info = self ? this.me : this.people.get(fig.dataset.participantId);
    const group = fig.dataset.source === "screen" ? 0 : self ? 1 : 2;
    const role = ROLE_ORDER.indexOf(info?.role ?? "public");
    return [group, role, (info?.name ?? "").toLocaleLowerCase(), fig.dataset.participantId];
  }

  _sort() {
    const figs = [...this.grid.children];
    const keyed = figs.map((fig) => [this._sortKey(fig), fig]);
    keyed.sort(([a], [b]) => {
      for (let i = 0; i < a.length; i += 1) {
        if (a[i] < b[i]) return -1;
        if (a[i] > b[i]) return 1;
      }
      return 0;
    });
    const sorted = keyed.map(([, fig]) => fig);
    if (sorted.every((fig, i) => fig === figs[i])) return;
    this.grid.append(...sorted);
  }

  _addAudio(participantId, source, stream) {
    let audio = this.audioBox.querySelector(`audio[data-participant-id="${CSS.escape(participantId)}"][data-source="${source}"]`);
    if (!audio) {
      audio = document.createElement("audio");
      audio.autoplay = true;
      audio.setAttribute("autoplay", "");
      audio.dataset.participantId = participantId;
      audio.dataset.source = source;
      this.audioBox.append(audio);
    }
    if (audio.srcObject !== stream) audio.srcObject = stream;
    this._renderAudioLabels();
    audio.play().catch(() => this.blockedAudio.add(audio));
  }

  _removeAudio(audio) {
    audio.srcObject = null;
    this.blockedAudio.delete(audio);
    audio.remove();
  }

  _renderAudioLabels() {
    for (const audio of this.audioBox.querySelectorAll("audio")) {
      const name = this.people.get(audio.dataset.participantId)?.name ?? "";
      audio.setAttribute("aria-label", t("room.audioOf", { name }));
    }
  }
}

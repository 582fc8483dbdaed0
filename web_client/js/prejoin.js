// The pre-join screen: camera preview, mic level, device choice, join options.

import { t } from "./i18n.js";
import {
  MicLevelMeter, acquireMedia, getCameraTrack, getMicTrack, listDevices, stopTracks, supportsMedia,
} from "./media.js";

const DEVICE_KEY = "hemicycle.devices";

function loadDeviceChoice() {
  try {
    return JSON.parse(localStorage.getItem(DEVICE_KEY)) || {};
  } catch {
    return {};
  }
}

function saveDeviceChoice(choice) {
  try {
    localStorage.setItem(DEVICE_KEY, JSON.stringify(choice));
  } catch {
    /* not remembered */
  }
}

export class PreJoin {
  constructor(root = document) {
    const $ = (id) => root.getElementById(id);
    this.el = {
      video: $("preview-video"),
      placeholder: $("preview-placeholder"),
      notice: $("prejoin-notice"),
      settings: $("media-settings"),
      cameraSelect: $("camera-select"),
      micSelect: $("mic-select"),
      cameraField: $("camera-field"),
      cameraOnField: $("camera-on-field"),
      level: $("mic-level"),
      micOn: $("prejoin-mic-on"),
      cameraOn: $("prejoin-camera-on"),
      audioOnly: $("audio-only"),
      form: $("prejoin-form"),
      joinButton: $("join-button"),
      preview: $("preview"),
    };
    this.mic = null;
    this.camera = null;
    this.noticeKeys = [];
    this.watchOnly = false;
    this.blocked = false;
    this.choice = loadDeviceChoice();
    this.meter = new MicLevelMeter((level) => {
      this.el.level.value = level;
    });
    this._wire();
  }

  _wire() {
    const { el } = this;
    el.cameraSelect.addEventListener("change", () => this._switchCamera(el.cameraSelect.value));
    el.micSelect.addEventListener("change", () => this._switchMic(el.micSelect.value));
    el.micOn.addEventListener("change", () => {
      if (this.mic) this.mic.enabled = el.micOn.checked;
    });
    el.cameraOn.addEventListener("change", () => {
      if (this.camera) this.camera.enabled = el.cameraOn.checked;
      this._renderPreview();
    });
    el.audioOnly.addEventListener("change", () => this._setAudioOnly(el.audioOnly.checked));
    document.addEventListener("hemicycle:langchange", () => {
      this._renderNotice();
      this._fillDevices();
    });
  }

  /** Start the camera/mic check. */
  async start() {
    this.el.joinButton.disabled = true;
    try {
      await this._acquire();
    } finally {
      this.el.joinButton.disabled = this.blocked;
    }
  }

  async _acquire() {
    if (!supportsMedia()) {
      this.watchOnly = true;
      this._showNotice(["prejoin.mediaUnsupported"]);
      this.el.settings.hidden = true;
      this._renderPreview();
      return;
    }
    const media = await acquireMedia({ micId: this.choice.micId, cameraId: this.choice.cameraId });
    this.mic = media.mic;
    this.camera = media.camera;
    const keys = [];
    if (media.cameraFailed) {
      keys.push("prejoin.cameraFailed");
      this.el.audioOnly.checked = true;
      this._applyAudioOnlyState(true);
    }
    if (media.micFailed) keys.push("prejoin.micFailed");
    this._showNotice(keys);
    this._renderPreview();
    this.meter.start(this.mic);
    await this._fillDevices();
  }

  /** Known member of the public: no camera check at all. */
  showWatchOnly() {
    this.watchOnly = true;
    this.el.settings.hidden = true;
    this.el.preview.hidden = true;
    this._showNotice(["prejoin.public"]);
  }

  /** Disable joining (e.g. no invitation token), with an explanation. */
  disable(noticeKey) {
    this.blocked = true;
    this.el.joinButton.disabled = true;
    this._showNotice([noticeKey]);
  }

  /** Call `handler()` when the user asks to join. */
  onJoin(handler) {
    this.el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!this.el.joinButton.disabled) handler();
    });
  }

  /** Hand the tracks over to the room (the pre-join screen stops using them). */
  takeMedia() {
    this.meter.stop();
    this.el.video.srcObject = null;
    const media = {
      mic: this.mic,
      camera: this.el.audioOnly.checked ? null : this.camera,
      muted: { mic: !this.el.micOn.checked, camera: !this.el.cameraOn.checked },
      options: this.options(),
    };
    this.mic = null;
    this.camera = null;
    return media;
  }

  /** The choices needed to acquire the same media again (rejoin). */
  options() {
    return {
      micId: this.choice.micId || "",
      cameraId: this.choice.cameraId || "",
      audioOnly: this.el.audioOnly.checked,
      watchOnly: this.watchOnly,
    };
  }

  // -------------------------------------------------------------- internals

  _showNotice(keys) {
    this.noticeKeys = keys;
    this._renderNotice();
  }

  _renderNotice() {
    const text = this.noticeKeys.map((key) => t(key)).join(" ");
    this.el.notice.textContent = text;
    this.el.notice.hidden = !text;
  }

  _renderPreview() {
    const showing = !!this.camera && !this.el.audioOnly.checked && this.el.cameraOn.checked;
    this.el.video.srcObject = showing ? new MediaStream([this.camera]) : null;
    this.el.video.hidden = !showing;
    this.el.placeholder.hidden = showing;
  }

  async _fillDevices() {
    const { cameras, mics } = await listDevices();
    this._fillSelect(this.el.cameraSelect, cameras, this.camera);
    this._fillSelect(this.el.micSelect, mics, this.mic);
  }

  _fillSelect(select, devices, track) {
    const current = track?.getSettings?.().deviceId || "";
    select.replaceChildren();
    if (!devices.length) {
      select.append(new Option(t("prejoin.defaultDevice"), ""));
      return;
    }
    devices.forEach((device, index) => {
      const label = device.label || t("prejoin.deviceN", { n: index + 1 });
      select.append(new Option(label, device.deviceId, false, device.deviceId === current));
    });
  }

  async _switchCamera(deviceId) {
    this.choice.cameraId = deviceId;
    saveDeviceChoice(this.choice);
    if (this.el.audioOnly.checked) return;
    stopTracks(this.camera);
    this.camera = null;
    try {
      this.camera = await getCameraTrack(deviceId);
      this.camera.enabled = this.el.cameraOn.checked;
    } catch {
      this._showNotice(["prejoin.cameraFailed"]);
    }
    this._renderPreview();
  }

  async _switchMic(deviceId) {
    this.choice.micId = deviceId;
    saveDeviceChoice(this.choice);
    stopTracks(this.mic);
    this.mic = null;
    try {
      this.mic = await getMicTrack(deviceId);
      this.mic.enabled = this.el.micOn.checked;
    } catch {
      this._showNotice(["prejoin.micFailed"]);
    }
    this.meter.start(this.mic);
  }

  _applyAudioOnlyState(audioOnly) {
    this.el.cameraSelect.disabled = audioOnly;
    this.el.cameraOn.disabled = audioOnly;
  }

  async _setAudioOnly(audioOnly) {
    this._applyAudioOnlyState(audioOnly);
    if (audioOnly) {
      stopTracks(this.camera);
      this.camera = null;
    } else if (!this.camera) {
      try {
        this.camera = await getCameraTrack(this.choice.cameraId);
        this.camera.enabled = this.el.cameraOn.checked;
        this._showNotice([]);
        await this._fillDevices();
      } catch {
        this.el.audioOnly.checked = true;
        this._applyAudioOnlyState(true);
        this._showNotice(["prejoin.cameraFailed"]);
      }
    }
    this._renderPreview();
  }
}

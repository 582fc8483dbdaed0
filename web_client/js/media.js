// Local media: acquiring camera/microphone/screen and measuring the mic level.
// No DOM access except what callers pass in.

export function supportsMedia() {
  return !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
}

export function supportsScreenShare() {
  return !!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
}

export function micConstraints(deviceId) {
  const constraints = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (deviceId) constraints.deviceId = { exact: deviceId };
  return constraints;
}

export function cameraConstraints(deviceId) {
  const constraints = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 25, max: 30 } };
  if (deviceId) constraints.deviceId = { exact: deviceId };
  return constraints;
}

async function getTrack(kind, deviceId) {
  const constraints = kind === "audio" ? { audio: micConstraints(deviceId) } : { video: cameraConstraints(deviceId) };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    return stream.getTracks()[0] || null;
  } catch (error) {
    if (!deviceId) throw error;
    // The remembered device may have gone: fall back to the default one.
    const stream = await navigator.mediaDevices.getUserMedia(kind === "audio" ? { audio: micConstraints() } : { video: cameraConstraints() });
    return stream.getTracks()[0] || null;
  }
}

export function getMicTrack(deviceId) {
  return getTrack("audio", deviceId);
}

export function getCameraTrack(deviceId) {
  return getTrack("video", deviceId);
}

/**
 * Acquire microphone and (unless audioOnly) camera.
 * Never throws: returns {mic, camera, micFailed, cameraFailed}.
 */
export async function acquireMedia({ micId = "", cameraId = "", audioOnly = false } = {}) {
  const result = { mic: null, camera: null, micFailed: false, cameraFailed: false };
  if (!supportsMedia()) {
    result.micFailed = true;
    result.cameraFailed = !audioOnly;
    return result;
  }
  if (!audioOnly) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: micConstraints(micId),
        video: cameraConstraints(cameraId),
      });
      result.mic = stream.getAudioTracks()[0] || null;
      result.camera = stream.getVideoTracks()[0] || null;
      if (result.mic && result.camera) return result;
    } catch {
      /* try each device on its own below */
    }
  }
  if (!result.mic) {
    try {
      result.mic = await getMicTrack(micId);
    } catch {
      result.micFailed = true;
    }
  }
  if (!audioOnly && !result.camera) {
    try {
      result.camera = await getCameraTrack(cameraId);
    } catch {
      result.cameraFailed = true;
    }
  }
  return result;
}

export async function getScreenTrack() {
  const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
  return stream.getVideoTracks()[0];
}

/** {cameras:[{deviceId,label}], mics:[...]} (labels are empty before permission). */
export async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return { cameras: [], mics: [] };
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    cameras: devices.filter((d) => d.kind === "videoinput"),
    mics: devices.filter((d) => d.kind === "audioinput"),
  };
}

export function stopTracks(...tracks) {
  for (const track of tracks) if (track) track.stop();
}

/** Measures a microphone track's level (0..1), calling onLevel ~10 times a second. */
export class MicLevelMeter {
  constructor(onLevel) {
    this.onLevel = onLevel;
    this.context = null;
    this.timer = null;
    this.resume = () => this.context?.resume().catch(() => {});
  }

  start(track) {
    this.stop();
    if (!track || !(window.AudioContext || window.webkitAudioContext)) return;
    const Context = window.AudioContext || window.webkitAudioContext;
    this.context = new Context();
    const source = this.context.createMediaStreamSource(new MediaStream([track]));
    const analyser = this.context.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    // Browsers start an AudioContext suspended until a user gesture.
    document.addEventListener("pointerdown", this.resume);
    document.addEventListener("keydown", this.resume);
    this.resume();
    this.timer = setInterval(() => {
      if (!track.enabled || track.readyState !== "live") {
        this.onLevel(0);
        return;
      }
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const sample of samples) sum += sample * sample;
      const rms = Math.sqrt(sum / samples.length);
      this.onLevel(Math.min(1, rms * 4));
    }, 100);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    document.removeEventListener("pointerdown", this.resume);
    document.removeEventListener("keydown", this.resume);
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
  }
}

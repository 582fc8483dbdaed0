// A small WHEP client (WebRTC-HTTP Egress Protocol, RFC 9725), without any UI.
//
//   const session = await whepConnect("/whep/demo");
//   video.srcObject = session.stream;
//   …
//   session.close();
//
// Receive-only audio and video. Non-trickle: the offer is sent once ICE gathering is
// complete (or after 2 s), with every candidate in it; the server answers 201 Created with
// its SDP answer and a Location, the session's resource, which DELETE ends. The DELETE is
// also sent when the page goes away (pagehide), with keepalive so that it gets through.

export const ICE_GATHERING_TIMEOUT_MS = 2000;

export class WhepError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "WhepError";
    this.status = status; // the HTTP status, 0 when no answer came back
  }
}

/** Resolve when ICE gathering is complete, or after `timeoutMs` with what was found. */
function iceGathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", onChange);
  });
}

/** H.264 first, then Opus: what the programme sends (the browser keeps its other codecs after). */
function preferCodecs(transceiver, kind, mimeType) {
  const codecs = globalThis.RTCRtpReceiver?.getCapabilities?.(kind)?.codecs;
  if (!codecs || typeof transceiver.setCodecPreferences !== "function") return;
  const preferred = codecs.filter((c) => c.mimeType.toLowerCase() === mimeType);
  try {
    transceiver.setCodecPreferences([...preferred, ...codecs.filter((c) => !preferred.includes(c))]);
  } catch {
    /* an old browser: its default order will do */
  }
}

/**
 * Open a WHEP session on `endpoint` (e.g. "/whep/demo"). Resolves with
 * {pc, stream, resource, close()} once the answer is applied (media may take a moment to
 * flow: watch the video element); rejects with a WhepError.
 */
export async function whepConnect(endpoint, { iceServers = [], iceGatheringTimeoutMs = ICE_GATHERING_TIMEOUT_MS } = {}) {
  if (typeof RTCPeerConnection === "undefined") throw new WhepError("WebRTC is not available in this browser");
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
  const stream = new MediaStream();
  pc.addEventListener("track", (event) => stream.addTrack(event.track));
  preferCodecs(pc.addTransceiver("audio", { direction: "recvonly" }), "audio", "audio/opus");
  preferCodecs(pc.addTransceiver("video", { direction: "recvonly" }), "video", "video/h264");
  let response;
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, iceGatheringTimeoutMs);
    response = await fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Accept: "application/sdp" },
      body: pc.localDescription.sdp,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    pc.close();
    throw new WhepError(`WHEP request failed: ${error.message || error}`);
  }
  if (response.status !== 201) {
    pc.close();
    throw new WhepError(`WHEP endpoint answered ${response.status}`, response.status);
  }
  const location = response.headers.get("Location");
  const resource = location ? new URL(location, new URL(endpoint, document.baseURI)).href : null;
  const remove = () => {
    if (resource) fetch(resource, { method: "DELETE", keepalive: true, credentials: "omit" }).catch(() => {});
  };
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  } catch (error) {
    pc.close();
    remove();
    throw new WhepError(`unusable SDP answer: ${error.message || error}`, response.status);
  }
  let closed = false;
  const onPageHide = () => close();
  function close() {
    if (closed) return;
    closed = true;
    window.removeEventListener("pagehide", onPageHide);
    pc.close();
    remove();
  }
  window.addEventListener("pagehide", onPageHide);
  return { pc, stream, resource, close };
}

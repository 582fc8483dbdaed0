// Small WebRTC helpers used by protocol.js. No DOM access here.

export const ICE_GATHERING_CAP_MS = 3000;

/**
 * Resolve once ICE gathering is complete (non-trickle signalling), or after
 * `capMs` whatever the state: the SDP then holds the candidates found so far.
 */
export function waitForIceGathering(pc, capMs = ICE_GATHERING_CAP_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onState);
      pc.removeEventListener("icecandidate", onCandidate);
      resolve();
    };
    const onState = () => {
      if (pc.iceGatheringState === "complete") finish();
    };
    const onCandidate = (event) => {
      if (!event.candidate) finish();
    };
    const timer = setTimeout(finish, capMs);
    pc.addEventListener("icegatheringstatechange", onState);
    pc.addEventListener("icecandidate", onCandidate);
  });
}

/** Prefer keeping the resolution (council documents, faces) over the frame rate. */
export async function preferResolution(sender) {
  if (!sender || typeof sender.getParameters !== "function") return;
  try {
    const params = sender.getParameters();
    if (params.degradationPreference === "maintain-resolution") return;
    params.degradationPreference = "maintain-resolution";
    await sender.setParameters(params);
  } catch {
    // Not supported by this browser: the default (balanced) is acceptable.
  }
}

/** Runs async jobs one after another, in submission order. */
export class SerialQueue {
  constructor() {
    this._tail = Promise.resolve();
  }

  /** Queue `job` (an async function); returns a promise of its result. */
  run(job) {
    const result = this._tail.then(job);
    this._tail = result.catch(() => {});
    return result;
  }
}

/** A promise with its resolve/reject exposed, plus an optional timeout. */
export function deferred(timeoutMs, timeoutMessage = "timeout") {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  let timer = null;
  if (timeoutMs) timer = setTimeout(() => reject(new Error(timeoutMessage)), timeoutMs);
  const settle = (fn) => (value) => {
    clearTimeout(timer);
    fn(value);
  };
  return { promise, resolve: settle(resolve), reject: settle(reject) };
}

/** Build the RTCPeerConnection configuration from welcome.ice_servers. */
export function peerConfig(iceServers) {
  const servers = (iceServers || []).map((server) => {
    const entry = { urls: server.urls };
    if (server.username != null) entry.username = server.username;
    if (server.credential != null) entry.credential = server.credential;
    return entry;
  });
  return { iceServers: servers, bundlePolicy: "max-bundle" };
}

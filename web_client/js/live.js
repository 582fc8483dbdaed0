// The public live page, /live/<sitting>: the programme (mixed sound, the speaker's picture
// with captions) behind a real play button (browsers block autoplay with sound), and what is
// happening now, polled from state.json every 3 s. WebRTC (WHEP) first, for a few seconds
// of delay; HLS when WebRTC fails (HTTP error, or no picture within 8 s).

import { pageTexts, playHls } from "./public-common.js";
import { whepConnect } from "./whep.js";

const POLL_MS = 3000;
const FIRST_FRAME_MS = 8000;
const RETRY_MS = 10000;

const texts = pageTexts({
  fr: {
    "skip.main": "Aller au contenu principal",
    "public.footer": "Retransmission publique par Hemicycle, hébergée par la collectivité : aucun cookie, aucun service tiers.",
    "live.brand": "Conseil en direct",
    "live.loading": "Séance en direct",
    "live.video": "Retransmission de la séance",
    "live.play": "Regarder le direct",
    "live.hint": "Le son démarre avec l'image.",
    "live.now": "En ce moment",
    "live.replays": "Séances enregistrées",
    "live.status.suspended": "Séance suspendue",
    "live.status.closed_session": "La séance se poursuit à huis clos",
    "live.status.not_started": "La retransmission n'est pas en cours. Cette page se met à jour d'elle-même.",
    "live.item": "Point {number} — {title}",
    "live.speaker": "Parole : {name}",
    "live.mode.webrtc": "Direct (WebRTC)",
    "live.mode.hls": "Direct (HLS)",
    "live.connecting": "Connexion au direct…",
    "live.waiting": "La retransmission va commencer : l'image apparaîtra ici.",
    "live.stopped": "La retransmission est interrompue ; elle reprendra ici.",
    "live.unsupported": "Ce navigateur ne peut pas lire le direct. Essayez un navigateur récent.",
    "live.failed": "Le direct n'a pas pu être lu ; nouvel essai dans quelques secondes.",
    "live.tapForSound": "Appuyez sur « Regarder le direct » pour lancer l'image et le son.",
    "live.notFound": "Cette séance n'existe pas sur ce serveur.",
    "live.offline": "Le serveur ne répond pas ; nouvel essai en cours…",
  },
  en: {
    "skip.main": "Skip to main content",
    "public.footer": "Public broadcast by Hemicycle, hosted by the council: no cookies, no third-party service.",
    "live.brand": "Council live",
    "live.loading": "Live sitting",
    "live.video": "Broadcast of the sitting",
    "live.play": "Watch live",
    "live.hint": "Sound starts with the picture.",
    "live.now": "Now",
    "live.replays": "Recorded sittings",
    "live.status.suspended": "Sitting suspended",
    "live.status.closed_session": "The sitting continues in closed session (huis clos)",
    "live.status.not_started": "The broadcast is not on. This page updates by itself.",
    "live.item": "Item {number} — {title}",
    "live.speaker": "Speaking: {name}",
    "live.mode.webrtc": "Live (WebRTC)",
    "live.mode.hls": "Live (HLS)",
    "live.connecting": "Connecting to the live broadcast…",
    "live.waiting": "The broadcast is about to start: the picture will appear here.",
    "live.stopped": "The broadcast is interrupted; it will resume here.",
    "live.unsupported": "This browser cannot play the live broadcast. Try a recent browser.",
    "live.failed": "The live broadcast could not be played; trying again in a few seconds.",
    "live.tapForSound": "Press “Watch live” to start the picture and sound.",
    "live.notFound": "This sitting does not exist on this server.",
    "live.offline": "The server does not answer; trying again…",
  },
});

const $ = (id) => document.getElementById(id);
const video = $("live-video");
const overlay = $("play-overlay");
const sittingId = decodeURIComponent(location.pathname.split("/")[2] || "");
const stateUrl = `/live/${encodeURIComponent(sittingId)}/state.json`;

let latest = null; // the last state.json
let wanted = false; // the viewer pressed play
let mode = null; // "webrtc" | "hls" while playing
let session = null; // the WHEP session
let hlsPlayer = null;
let starting = false;
let lastAttempt = 0;
let failures = 0;

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text; // unchanged text is not announced again
  el.hidden = !text;
}

function message(key) {
  setText($("player-message"), key ? texts.t(key) : "");
}

function render() {
  if (!latest) return;
  const t = texts.t;
  $("sitting-title").textContent = latest.title;
  document.title = `${latest.title} — ${t("live.brand")}`;
  setText($("status-banner"), latest.status === "live" ? "" : t(`live.status.${latest.status}`));
  $("status-banner").dataset.status = latest.status;
  setText($("item-line"), latest.item ? t("live.item", latest.item) : "");
  setText($("speaker-line"), latest.speaker ? t("live.speaker", { name: latest.speaker }) : "");
  setText($("mode-line"), mode ? t(`live.mode.${mode}`) : "");
}

async function poll() {
  try {
    const response = await fetch(stateUrl, { cache: "no-store", credentials: "omit" });
    if (response.status === 404) {
      message("live.notFound");
      return; // no more polling: the page names no sitting
    }
    if (!response.ok) throw new Error(String(response.status));
    latest = await response.json();
    failures = 0;
    if ($("player-message").textContent === texts.t("live.offline")) message(null);
    render();
    onState();
  } catch {
    failures += 1;
    if (failures >= 3) message("live.offline");
  }
  setTimeout(poll, POLL_MS);
}

/** Start when the viewer wants it and the programme runs; stop when it no longer does. */
function onState() {
  const running = latest.status !== "not_started";
  if (mode && !running) {
    stop();
    message("live.stopped");
  } else if (wanted && !mode && !starting && running && Date.now() - lastAttempt > RETRY_MS) {
    start();
  }
}

function stop() {
  session?.close();
  session = null;
  hlsPlayer?.destroy();
  hlsPlayer = null;
  video.srcObject = null;
  video.controls = false;
  mode = null;
  render();
}

/** True once a picture is shown, false if none came within `ms`. */
function firstFrame(ms) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      video.removeEventListener("resize", onResize);
      resolve(ok);
    };
    const onResize = () => { if (video.videoWidth > 0) finish(true); };
    const timer = setTimeout(() => finish(video.videoWidth > 0), ms);
    video.addEventListener("resize", onResize);
    video.requestVideoFrameCallback?.(() => finish(true));
  });
}

async function playVideo() {
  video.muted = false;
  try {
    await video.play();
    return true;
  } catch (error) {
    if (error.name !== "NotAllowedError") return true; // e.g. interrupted by a new source: not fatal
    overlay.hidden = false; // autoplay with sound refused: one more press
    wanted = false;
    message("live.tapForSound");
    return false;
  }
}

async function tryWebrtc() {
  try {
    session = await whepConnect(latest.whep);
  } catch {
    return false;
  }
  video.srcObject = session.stream;
  const framed = firstFrame(FIRST_FRAME_MS);
  if (!(await playVideo())) {
    stop();
    return true; // waiting for a press, not a failure
  }
  if (!(await framed)) {
    stop();
    return false;
  }
  const pc = session.pc;
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed" && mode === "webrtc") {
      stop();
      lastAttempt = 0;
      if (latest) onState();
    }
  });
  return true;
}

async function tryHls() {
  if (!latest.hls) return false;
  hlsPlayer = await playHls(video, latest.hls, {
    live: true,
    onFatal: () => {
      stop();
      message("live.failed");
    },
  });
  if (!hlsPlayer) {
    message("live.unsupported");
    wanted = false;
    return false;
  }
  const playing = await playVideo();
  if (!playing) stop();
  return playing;
}

async function start() {
  starting = true;
  lastAttempt = Date.now();
  message("live.connecting");
  try {
    if (await tryWebrtc()) {
      if (session) mode = "webrtc";
    } else if (await tryHls()) {
      mode = "hls";
    } else if (wanted && $("player-message").textContent === texts.t("live.connecting")) {
      message("live.failed");
    }
  } finally {
    starting = false;
  }
  if (mode) {
    video.controls = true;
    message(null);
  }
  render();
}

$("play-button").addEventListener("click", () => {
  wanted = true;
  overlay.hidden = true;
  video.muted = false;
  video.play().catch(() => {}); // in the click itself: lets this element play with sound later
  lastAttempt = 0;
  if (latest && latest.status !== "not_started") start();
  else message("live.waiting");
  video.focus();
});

window.addEventListener("pageshow", (event) => {
  if (event.persisted && mode) { // back from the page cache: the WHEP session was ended on pagehide
    stop();
    overlay.hidden = false;
    wanted = false;
  }
});

video.tabIndex = 0;
texts.apply();
texts.setupButton($("lang-button"), render);
poll();

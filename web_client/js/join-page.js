// Entry point of /join: pre-join screen -> room -> (left / disconnected) -> rejoin.
// The invitation token is read from the URL fragment: /join#token=XXXX.
// Test hook: window.hemicycle = {connection, state()}.
// A dropped connection is reopened by the connection itself (protocol.js, reconnect.js):
// this page only shows it (#reconnect-banner, body[data-connection="reconnecting"]).

import { setupLanguage, t } from "./i18n.js";
import { acquireMedia } from "./media.js";
import { PreJoin } from "./prejoin.js";
import { HemicycleConnection } from "./protocol.js";
import { RoomView, errorText } from "./room.js";
import { SittingView } from "./sitting-view.js";

const $ = (id) => document.getElementById(id);
const ROLE_KEY_PREFIX = "hemicycle.role.";

function readToken() {
  return new URLSearchParams(location.hash.slice(1)).get("token") || "";
}

/** Short non-reversible key so a known "public" invitation skips the camera check. */
function tokenKey(token) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < token.length; i += 1) {
    hash ^= token.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return ROLE_KEY_PREFIX + hash.toString(16);
}

function rememberedRole(token) {
  try {
    return localStorage.getItem(tokenKey(token));
  } catch {
    return null;
  }
}

function rememberRole(token, role) {
  try {
    localStorage.setItem(tokenKey(token), role);
  } catch {
    /* not remembered */
  }
}

const statusLine = $("status-line");
let statusMessage = null; // () => string, re-rendered on language change
function announce(message) {
  statusMessage = typeof message === "function" ? message : () => message;
  statusLine.textContent = statusMessage();
}

let token = readToken();
let connection = null;
let endedMessage = null; // () => string
let lastMedia = null;

setupLanguage($("lang-button"));
const sittingView = new SittingView(document, { announce });
const room = new RoomView(document, { announce, mayUnmute: () => sittingView.mayUnmute() });
const prejoin = new PreJoin(document);

function showSection(name) {
  for (const id of ["prejoin", "room", "ended", "waiting"]) $(id).hidden = id !== name;
  $("side-column").hidden = name !== "room";
  if (name !== "room") for (const id of ["chair-panel", "secretary-panel"]) $(id).hidden = true;
  document.body.dataset.view = name;
}

function focusFirst(...elements) {
  const target = elements.find((el) => el && !el.hidden && !el.disabled);
  target?.focus();
}

// ------------------------------------------------------------ reconnection status

const reconnectBanner = $("reconnect-banner");
let reconnectTicker = null;

function renderReconnect() {
  const current = connection;
  if (!current?.reconnecting) {
    hideReconnect();
    return;
  }
  reconnectBanner.hidden = false;
  document.body.dataset.connection = "reconnecting";
  const waitMs = current.retryAt == null ? null : current.retryAt - Date.now();
  $("reconnect-text").textContent =
    waitMs == null || waitMs <= 0 ? t("reconnect.trying") : t("reconnect.waiting", { s: Math.ceil(waitMs / 1000) });
  $("reconnect-now-button").disabled = current.retryAt == null;
  if (!reconnectTicker) reconnectTicker = setInterval(renderReconnect, 250);
}

function hideReconnect() {
  clearInterval(reconnectTicker);
  reconnectTicker = null;
  reconnectBanner.hidden = true;
  delete document.body.dataset.connection;
}

function enterRoom(media) {
  lastMedia = media;
  endedMessage = null;
  showSection("room");
  announce(() => t("room.connecting"));
  const current = new HemicycleConnection({
    token,
    tracks: { mic: media.mic, camera: media.camera },
    muted: media.muted,
  });
  connection = current;
  room.attach(current, media);
  sittingView.attach(current);
  current.addEventListener("waitingroom", () => {
    if (connection !== current) return;
    hideReconnect();
    showSection("waiting");
    announce(() => t("waiting.heading"));
    focusFirst($("waiting-heading"));
  });
  current.addEventListener("welcome", ({ detail }) => {
    if (connection !== current) return;
    const fromWaiting = document.body.dataset.view === "waiting";
    if (fromWaiting) showSection("room");
    rememberRole(token, detail.me.role);
    const title = detail.sitting?.title ?? "";
    document.title = title ? `${title} – Hemicycle` : "Hemicycle";
    if (detail.again && !fromWaiting) return; // a reconnection: "reconnected" says so, focus stays put
    announce(() => t("room.joined", { title }));
    focusFirst($("mute-button"), $("leave-button"));
  });
  current.addEventListener("reconnecting", ({ detail }) => {
    if (connection !== current) return;
    const shown = !reconnectBanner.hidden;
    renderReconnect();
    if (!shown && detail.retryAt != null) announce(() => t("reconnect.lost")); // once per outage
  });
  current.addEventListener("reconnected", () => {
    if (connection !== current) return;
    hideReconnect();
    announce(() => t("reconnect.back"));
  });
  current.addEventListener("closed", ({ detail }) => {
    if (connection !== current) return;
    leaveRoom(detail);
  });
  current.connect().catch(() => {
    /* reported through the "closed" event */
  });
  focusFirst($("mute-button"), $("leave-button"));
}

function leaveRoom(detail) {
  hideReconnect();
  lastMedia = { ...lastMedia, ...room.rejoinMedia() };
  room.detach();
  sittingView.detach();
  if (detail.reason === "left") endedMessage = () => t("room.left");
  else if (detail.error) endedMessage = () => errorText(detail.error);
  else if (detail.gaveUp) endedMessage = () => t("reconnect.gaveUp");
  else endedMessage = () => t("room.closed");
  $("ended-message").textContent = endedMessage();
  $("sitting-title").textContent = "";
  showSection("ended");
  announce(endedMessage);
  focusFirst($("rejoin-button"));
}

async function rejoin() {
  const button = $("rejoin-button");
  button.disabled = true;
  try {
    const options = lastMedia?.options || prejoin.options();
    const watchOnly = options.watchOnly || rememberedRole(token) === "public";
    let media = { mic: null, camera: null, muted: lastMedia?.muted || {}, options };
    if (!watchOnly) {
      const acquired = await acquireMedia(options);
      media = { ...media, mic: acquired.mic, camera: acquired.camera };
    }
    enterRoom(media);
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("hemicycle:langchange", () => {
  if (statusMessage) statusLine.textContent = statusMessage();
  if (endedMessage) $("ended-message").textContent = endedMessage();
  if (!reconnectBanner.hidden) renderReconnect();
});

window.addEventListener("hashchange", () => {
  token = readToken() || token;
});

window.addEventListener("pagehide", () => connection?.leave());

$("rejoin-button").addEventListener("click", rejoin);
$("reconnect-now-button").addEventListener("click", () => connection?.retryNow());
$("waiting-leave-button").addEventListener("click", () => connection?.leave());
prejoin.onJoin(() => enterRoom(prejoin.takeMedia()));
showSection("prejoin");

// Opening a convocation's link is its acknowledgement (journalled by the server).
// The token goes in the body, never in the URL; links that are no convocation get a 403.
function acknowledgeConvocation(value) {
  fetch("/api/acknowledge", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: value }),
  }).catch(() => {});
}

if (token) acknowledgeConvocation(token);

if (!token) {
  prejoin.disable("prejoin.noToken");
  announce(() => t("prejoin.noToken"));
} else if (rememberedRole(token) === "public") {
  prejoin.showWatchOnly();
} else {
  prejoin.start();
}

function copyParticipant(info) {
  return {
    id: info.id,
    name: info.name,
    role: info.role,
    connected: info.connected,
    sources: (info.sources || []).map((s) => ({ source: s.source, muted: s.muted })),
  };
}

window.hemicycle = {
  get connection() {
    return connection;
  },
  state() {
    return {
      joined: !!connection?.joined,
      reconnecting: !!connection?.reconnecting,
      reconnections: connection?.reconnections ?? 0,
      me: connection?.me ? copyParticipant(connection.me) : null,
      participants: connection ? [...connection.participants.values()].map(copyParticipant) : [],
      tiles: room.tiles.describe(),
      active_speaker: connection?.activeSpeakerId ?? null,
      view: document.body.dataset.view,
      sitting: connection?.sittingState ? JSON.parse(JSON.stringify(connection.sittingState)) : null,
    };
  },
};

// Translations (French first, English second) and helpers to apply them.
// Elements opt in with data-i18n="key" (text content) and
// data-i18n-attr="aria-label:key;title:key" (attributes).

import { refusalsEn, refusalsFr } from "./i18n-refusals.js";
import { sittingEn, sittingFr } from "./i18n-sitting.js";

const STORAGE_KEY = "hemicycle.lang";
export const LANGUAGES = ["fr", "en"];

const fr = {
  "app.name": "Hemicycle",
  "app.tagline": "Visioconférence des séances du conseil municipal",
  "lang.switch": "English",
  "landmark.main": "Contenu principal",
  "skip.main": "Aller au contenu principal",

  "prejoin.heading": "Avant d'entrer dans la séance",
  "prejoin.intro": "Vérifiez votre caméra et votre micro, puis rejoignez la séance.",
  "prejoin.preview": "Aperçu de votre caméra",
  "prejoin.noPreview": "Pas d'image",
  "prejoin.camera": "Caméra",
  "prejoin.mic": "Microphone",
  "prejoin.micLevel": "Niveau du microphone",
  "prejoin.micOn": "Entrer avec le micro activé",
  "prejoin.cameraOn": "Entrer avec la caméra activée",
  "prejoin.audioOnly": "Audio seulement (sans caméra)",
  "prejoin.join": "Rejoindre la séance",
  "prejoin.noToken": "Ce lien d'invitation est incomplet : il manque le jeton. Utilisez le lien complet reçu par courriel.",
  "prejoin.cameraFailed": "La caméra n'est pas disponible : vous rejoindrez la séance en audio seulement.",
  "prejoin.micFailed": "Le microphone n'est pas disponible : vous pourrez suivre la séance sans parler.",
  "prejoin.mediaUnsupported": "Ce navigateur ne donne pas accès à la caméra ni au micro (une connexion sécurisée HTTPS est nécessaire).",
  "prejoin.public": "Vous suivez la séance en tant que public : ni caméra ni micro ne sont utilisés.",
  "prejoin.defaultDevice": "Appareil par défaut",
  "prejoin.deviceN": "Appareil {n}",

  "room.heading": "Séance en cours",
  "room.videos": "Vidéos des participants",
  "room.controls": "Commandes de la séance",
  "room.mute": "Couper le micro",
  "room.camera": "Couper la caméra",
  "room.screen": "Partager l'écran",
  "room.leave": "Quitter la séance",
  "room.connecting": "Connexion à la séance…",
  "room.joined": "Vous avez rejoint la séance « {title} ».",
  "room.left": "Vous avez quitté la séance.",
  "room.closed": "La connexion à la séance a été interrompue.",
  "room.rejoin": "Rejoindre",
  "room.ended": "Hors séance",
  "room.you": "vous",
  "room.yourCamera": "Votre caméra (aperçu)",
  "room.yourScreen": "Votre partage d'écran (aperçu)",
  "room.videoOf": "Vidéo de {name} : {source}",
  "room.audioOf": "Son de {name}",
  "room.micMuted": "Micro coupé",
  "room.cameraOff": "Caméra coupée",
  "room.videoHeld": "Vidéo non reçue",
  "room.videoLimit": "Vidéos reçues",
  "room.videoLimitAuto": "Selon la séance",
  "room.videoLimitNone": "Aucune (son seul)",
  "room.speaking": "Parle",
  "room.mutedRemotely": "Votre micro a été coupé à distance.",
  "room.screenFailed": "Le partage d'écran n'a pas pu démarrer.",
  "room.cameraFailed": "La caméra n'a pas pu démarrer.",
  "room.publishFailed": "Votre image ou votre son n'a pas pu être envoyé.",
  "room.screenStarted": "Votre écran est partagé.",
  "room.screenStopped": "Le partage d'écran est arrêté.",
  "room.joinedBy": "{name} a rejoint la séance.",
  "room.leftBy": "{name} a quitté la séance.",
  "reconnect.waiting": "Connexion perdue — reconnexion dans {s} s…",
  "reconnect.trying": "Connexion perdue — reconnexion en cours…",
  "reconnect.now": "Réessayer maintenant",
  "reconnect.lost": "Connexion perdue : reconnexion automatique en cours. Votre place dans la séance est conservée.",
  "reconnect.back": "Connexion rétablie : vous avez retrouvé votre place dans la séance.",
  "reconnect.gaveUp": "La connexion n'a pas pu être rétablie. Vérifiez votre réseau, puis rejoignez la séance.",

  "source.camera": "caméra",
  "source.screen": "partage d'écran",
  "source.mic": "micro",

  "participants.heading": "Participants",
  "participants.count": "{n} connecté(s)",
  "participants.connected": "connecté",
  "participants.disconnected": "non connecté",
  "participants.micOn": "micro ouvert",
  "participants.micOff": "micro coupé",
  "participants.camOn": "caméra allumée",
  "participants.camOff": "caméra coupée",
  "participants.noMedia": "écoute seulement",
  "participants.sharing": "partage son écran",

  "role.chair": "Présidence de séance",
  "role.secretary": "Secrétaire de séance",
  "role.councillor": "Conseiller municipal",
  "role.public": "Public",
  "role.technician": "Technicien",
  "role.chamber": "Salle du conseil",

  "error.generic": "Une erreur est survenue : {message}",
  "error.bad_token": "Cette invitation n'est pas valable.",
  "error.expired_token": "Cette invitation a expiré.",
  "error.wrong_sitting": "Cette invitation concerne une autre séance.",
  "error.replaced": "Vous avez rejoint la séance depuis un autre appareil ou onglet.",
  "error.bad_version": "Cette page est périmée : rechargez-la.",
  "error.rate_limited": "Trop de demandes : patientez un instant.",
  "error.forbidden": "Cette action ne vous est pas permise.",
  "error.server_error": "Le serveur a rencontré un problème.",
  "error.publish_failed": "Votre image ou votre son n'a pas pu être envoyé.",
  "error.subscribe_failed": "Les images et le son des autres participants n'ont pas pu être reçus.",
  "error.not_connected": "Connexion perdue : votre demande n'a pas été transmise. Recommencez une fois la connexion rétablie.",

  "landing.title": "Hemicycle : visioconférence du conseil municipal",
  "landing.what": "Hemicycle permet aux élus de participer aux séances du conseil municipal à distance, et au public de les suivre en direct. Le service est hébergé par la commune : aucune donnée ne quitte ses serveurs.",
  "landing.how": "Pour participer, ouvrez le lien d'invitation personnel que vous avez reçu. Il ne faut rien installer : un navigateur récent suffit.",
  "landing.demo": "Liens de démonstration",
  "landing.footer": "Hemicycle, logiciel libre auto-hébergé.",
};

const en = {
  "app.name": "Hemicycle",
  "app.tagline": "Video conferencing for town council sittings",
  "lang.switch": "Français",
  "landmark.main": "Main content",
  "skip.main": "Skip to main content",

  "prejoin.heading": "Before joining the sitting",
  "prejoin.intro": "Check your camera and microphone, then join the sitting.",
  "prejoin.preview": "Your camera preview",
  "prejoin.noPreview": "No picture",
  "prejoin.camera": "Camera",
  "prejoin.mic": "Microphone",
  "prejoin.micLevel": "Microphone level",
  "prejoin.micOn": "Join with microphone on",
  "prejoin.cameraOn": "Join with camera on",
  "prejoin.audioOnly": "Audio only (no camera)",
  "prejoin.join": "Join the sitting",
  "prejoin.noToken": "This invitation link is incomplete: the token is missing. Please use the full link you received by email.",
  "prejoin.cameraFailed": "The camera is not available: you will join the sitting with audio only.",
  "prejoin.micFailed": "The microphone is not available: you can follow the sitting without speaking.",
  "prejoin.mediaUnsupported": "This browser gives no access to camera or microphone (a secure HTTPS connection is required).",
  "prejoin.public": "You are following the sitting as a member of the public: no camera or microphone is used.",
  "prejoin.defaultDevice": "Default device",
  "prejoin.deviceN": "Device {n}",

  "room.heading": "Sitting in progress",
  "room.videos": "Participants' videos",
  "room.controls": "Sitting controls",
  "room.mute": "Mute microphone",
  "room.camera": "Turn camera off",
  "room.screen": "Share screen",
  "room.leave": "Leave the sitting",
  "room.connecting": "Connecting to the sitting…",
  "room.joined": "You have joined the sitting “{title}”.",
  "room.left": "You have left the sitting.",
  "room.closed": "The connection to the sitting was interrupted.",
  "room.rejoin": "Rejoin",
  "room.ended": "Not in the sitting",
  "room.you": "you",
  "room.yourCamera": "Your camera (preview)",
  "room.yourScreen": "Your screen share (preview)",
  "room.videoOf": "Video of {name}: {source}",
  "room.audioOf": "Sound of {name}",
  "room.micMuted": "Microphone muted",
  "room.cameraOff": "Camera off",
  "room.videoHeld": "Video not received",
  "room.videoLimit": "Videos received",
  "room.videoLimitAuto": "As the sitting sets",
  "room.videoLimitNone": "None (sound only)",
  "room.speaking": "Speaking",
  "room.mutedRemotely": "Your microphone was muted remotely.",
  "room.screenFailed": "Screen sharing could not start.",
  "room.cameraFailed": "The camera could not start.",
  "room.publishFailed": "Your video or sound could not be sent.",
  "room.screenStarted": "Your screen is being shared.",
  "room.screenStopped": "Screen sharing has stopped.",
  "room.joinedBy": "{name} joined the sitting.",
  "room.leftBy": "{name} left the sitting.",
  "reconnect.waiting": "Connection lost — reconnecting in {s} s…",
  "reconnect.trying": "Connection lost — reconnecting…",
  "reconnect.now": "Try again now",
  "reconnect.lost": "Connection lost: reconnecting automatically. Your seat in the sitting is kept.",
  "reconnect.back": "Connection restored: you are back in your seat in the sitting.",
  "reconnect.gaveUp": "The connection could not be restored. Check your network, then rejoin the sitting.",

  "source.camera": "camera",
  "source.screen": "screen share",
  "source.mic": "microphone",

  "participants.heading": "Participants",
  "participants.count": "{n} connected",
  "participants.connected": "connected",
  "participants.disconnected": "not connected",
  "participants.micOn": "microphone on",
  "participants.micOff": "microphone muted",
  "participants.camOn": "camera on",
  "participants.camOff": "camera off",
  "participants.noMedia": "listening only",
  "participants.sharing": "sharing their screen",

  "role.chair": "Chair",
  "role.secretary": "Secretary",
  "role.councillor": "Councillor",
  "role.public": "Public",
  "role.technician": "Technician",
  "role.chamber": "Council chamber",

  "error.generic": "An error occurred: {message}",
  "error.bad_token": "This invitation is not valid.",
  "error.expired_token": "This invitation has expired.",
  "error.wrong_sitting": "This invitation is for another sitting.",
  "error.replaced": "You joined the sitting from another device or tab.",
  "error.bad_version": "This page is out of date: please reload it.",
  "error.rate_limited": "Too many requests: please wait a moment.",
  "error.forbidden": "You are not allowed to do this.",
  "error.server_error": "The server ran into a problem.",
  "error.publish_failed": "Your video or sound could not be sent.",
  "error.subscribe_failed": "The other participants' video and sound could not be received.",
  "error.not_connected": "Connection lost: your request was not sent. Try again once the connection is back.",

  "landing.title": "Hemicycle: town council video conferencing",
  "landing.what": "Hemicycle lets councillors take part in town council sittings remotely, and the public follow them live. The service is hosted by the town: no data leaves its servers.",
  "landing.how": "To take part, open the personal invitation link you received. Nothing to install: a recent browser is enough.",
  "landing.demo": "Demonstration links",
  "landing.footer": "Hemicycle, self-hosted free software.",
};

const DICTIONARIES = { fr: { ...fr, ...sittingFr, ...refusalsFr }, en: { ...en, ...sittingEn, ...refusalsEn } };

function storedLang() {
  try {
    const value = localStorage.getItem(STORAGE_KEY);
    return LANGUAGES.includes(value) ? value : null;
  } catch {
    return null;
  }
}

let currentLang = storedLang() || "fr";

export function getLang() {
  return currentLang;
}

/** Translate `key`, replacing `{name}` placeholders with `vars.name`. */
export function t(key, vars = {}) {
  const text = DICTIONARIES[currentLang][key] ?? DICTIONARIES.fr[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** Fill every [data-i18n] / [data-i18n-attr] element under `root`. */
export function applyTranslations(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      if (attr && key) el.setAttribute(attr, t(key));
    }
  }
}

/** Switch language, remember it, update the page and notify listeners. */
export function setLang(lang) {
  if (!LANGUAGES.includes(lang)) return;
  currentLang = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    /* private mode: the choice simply is not remembered */
  }
  document.documentElement.lang = lang;
  applyTranslations();
  document.dispatchEvent(new CustomEvent("hemicycle:langchange", { detail: { lang } }));
}

/**
 * Wire a language toggle button (shows the *other* language, in that language)
 * and apply the remembered language to the page.
 */
export function setupLanguage(button) {
  document.documentElement.lang = currentLang;
  applyTranslations();
  if (!button) return;
  const render = () => {
    const other = currentLang === "fr" ? "en" : "fr";
    button.textContent = t("lang.switch");
    button.setAttribute("lang", other);
  };
  render();
  button.addEventListener("click", () => {
    setLang(currentLang === "fr" ? "en" : "fr");
    render();
  });
}

// The replay page, /replay/<sitting>: the recording of a sitting (one or more runs of the
// programme, played one after the other), its chapters (a <track kind="chapters"> and a
// clickable list) and a link to the minutes once they are published.
// ?run=<id>&t=<seconds> opens a run at a given time.

import { formatClock, formatDate, formatDuration, pageTexts, playHls } from "./public-common.js";

const CHAPTERS_REFRESH_MS = 30000; // a run still being recorded gets new chapters

const texts = pageTexts({
  fr: {
    "skip.main": "Aller au contenu principal",
    "public.footer": "Retransmission publique par Hemicycle, hébergée par la collectivité : aucun cookie, aucun service tiers.",
    "replay.all": "Séances enregistrées",
    "replay.heading": "Enregistrement de la séance",
    "replay.video": "Enregistrement de la séance",
    "replay.part": "Partie de l'enregistrement",
    "replay.parts": "La retransmission a été interrompue puis reprise : les parties s'enchaînent.",
    "replay.partN": "Partie {n} — {date} ({duration})",
    "replay.recording": "enregistrement en cours",
    "replay.runLine": "Enregistré le {date} — durée {duration}",
    "replay.minutes": "Lire le procès-verbal de la séance",
    "replay.chapters": "Chapitres",
    "replay.noChapters": "Pas de chapitre pour cette partie.",
    "replay.chapterAt": "à {time}",
    "replay.unsupported": "Ce navigateur ne peut pas lire cet enregistrement. Essayez un navigateur récent.",
    "replay.failed": "La lecture de l'enregistrement a échoué.",
    "replay.notFound": "Aucun enregistrement pour cette séance.",
    "replay.offline": "Le serveur ne répond pas.",
  },
  en: {
    "skip.main": "Skip to main content",
    "public.footer": "Public broadcast by Hemicycle, hosted by the council: no cookies, no third-party service.",
    "replay.all": "Recorded sittings",
    "replay.heading": "Recording of the sitting",
    "replay.video": "Recording of the sitting",
    "replay.part": "Part of the recording",
    "replay.parts": "The broadcast was interrupted, then resumed: the parts play one after the other.",
    "replay.partN": "Part {n} — {date} ({duration})",
    "replay.recording": "still recording",
    "replay.runLine": "Recorded on {date} — length {duration}",
    "replay.minutes": "Read the minutes of the sitting",
    "replay.chapters": "Chapters",
    "replay.noChapters": "No chapters for this part.",
    "replay.chapterAt": "at {time}",
    "replay.unsupported": "This browser cannot play this recording. Try a recent browser.",
    "replay.failed": "The recording could not be played.",
    "replay.notFound": "No recording for this sitting.",
    "replay.offline": "The server does not answer.",
  },
});

const $ = (id) => document.getElementById(id);
const video = $("replay-video");
const select = $("run-select");
const sittingId = decodeURIComponent(location.pathname.split("/")[2] || "");
const query = new URLSearchParams(location.search);

let data = null; // runs.json
let current = -1; // index of the run being played
let player = null;
let chapters = [];
let pendingSeek = Number(query.get("t")) || 0;
let refreshTimer = null;

function message(key) {
  $("player-message").textContent = key ? texts.t(key) : "";
}

function runLabel(run, index) {
  const label = texts.t("replay.partN", {
    n: index + 1, date: formatDate(run.started_at, texts.lang), duration: formatDuration(run.duration),
  });
  return run.live ? `${label} — ${texts.t("replay.recording")}` : label;
}

function renderHeader() {
  if (!data) return;
  $("sitting-title").textContent = data.title;
  document.title = `${data.title} — ${texts.t("replay.heading")}`;
  const total = data.runs.reduce((sum, run) => sum + run.duration, 0);
  $("run-line").textContent = texts.t("replay.runLine", {
    date: formatDate(data.runs[0].started_at, texts.lang), duration: formatDuration(total),
  });
  select.replaceChildren(...data.runs.map((run, i) => new Option(runLabel(run, i), String(i))));
  select.value = String(current);
  $("run-picker").hidden = data.runs.length < 2;
  $("minutes-line").hidden = !data.minutes;
  if (data.minutes) $("minutes-link").href = data.minutes;
}

function withLang(url) {
  return texts.lang === "en" ? `${url}?lang=en` : url;
}

function setTrack(run) {
  for (const old of video.querySelectorAll("track")) old.remove();
  const track = document.createElement("track");
  Object.assign(track, { kind: "chapters", src: withLang(run.chapters), srclang: texts.lang, default: true });
  track.label = texts.t("replay.chapters");
  video.append(track);
}

async function loadChapters() {
  const run = data.runs[current];
  clearTimeout(refreshTimer);
  try {
    const response = await fetch(withLang(run.chapters_json), { cache: "no-store", credentials: "omit" });
    chapters = response.ok ? await response.json() : [];
  } catch {
    chapters = [];
  }
  renderChapters();
  if (run.live) refreshTimer = setTimeout(loadChapters, CHAPTERS_REFRESH_MS);
}

function renderChapters() {
  const items = chapters.map((chapter, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chapter-button";
    button.dataset.index = String(i);
    const time = document.createElement("span");
    time.className = "chapter-time";
    time.textContent = formatClock(chapter.start);
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = `, ${texts.t("replay.chapterAt", { time: formatClock(chapter.start) })}`;
    const title = document.createElement("span");
    title.className = "chapter-title";
    title.textContent = chapter.title;
    time.setAttribute("aria-hidden", "true");
    button.append(time, title, hidden);
    button.addEventListener("click", () => seek(chapter.start));
    const li = document.createElement("li");
    li.dataset.kind = chapter.kind;
    li.append(button);
    return li;
  });
  $("chapter-list").replaceChildren(...items);
  $("chapters-empty").hidden = items.length > 0;
  markCurrentChapter();
}

function markCurrentChapter() {
  const now = video.currentTime;
  for (const button of $("chapter-list").querySelectorAll("button")) {
    const chapter = chapters[Number(button.dataset.index)];
    const on = chapter && now >= chapter.start && now < chapter.end;
    if (on) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

function seek(seconds) {
  if (video.readyState >= HTMLMediaElement.HAVE_METADATA) {
    video.currentTime = seconds;
    video.play().catch(() => {});
  } else {
    pendingSeek = seconds;
  }
}

async function loadRun(index, { autoplay = false } = {}) {
  current = index;
  select.value = String(index);
  player?.destroy();
  message(null);
  const run = data.runs[index];
  setTrack(run);
  loadChapters();
  player = await playHls(video, run.playlist, { live: false, onFatal: () => message("replay.failed") });
  if (!player) {
    message("replay.unsupported");
    return;
  }
  if (autoplay) video.play().catch(() => {});
}

video.addEventListener("loadedmetadata", () => {
  if (pendingSeek > 0) {
    video.currentTime = pendingSeek;
    pendingSeek = 0;
  }
});
video.addEventListener("timeupdate", markCurrentChapter);
video.addEventListener("ended", () => {
  if (data && current + 1 < data.runs.length) loadRun(current + 1, { autoplay: true });
});
select.addEventListener("change", () => loadRun(Number(select.value), { autoplay: !video.paused }));

async function main() {
  texts.apply();
  texts.setupButton($("lang-button"), () => {
    renderHeader();
    if (current >= 0) {
      setTrack(data.runs[current]);
      loadChapters();
    }
  });
  try {
    const response = await fetch(`/replay/${encodeURIComponent(sittingId)}/runs.json`, { cache: "no-store", credentials: "omit" });
    if (!response.ok) {
      message("replay.notFound");
      return;
    }
    data = await response.json();
  } catch {
    message("replay.offline");
    return;
  }
  const asked = data.runs.findIndex((run) => run.id === query.get("run"));
  current = asked >= 0 ? asked : 0;
  renderHeader();
  loadRun(current);
}

main();

// The list of recorded sittings, /replay/: from /replay/index.json, newest first.

import { formatDate, formatDuration, pageTexts } from "./public-common.js";

const texts = pageTexts({
  fr: {
    "skip.main": "Aller au contenu principal",
    "public.footer": "Retransmission publique par Hemicycle, hébergée par la collectivité : aucun cookie, aucun service tiers.",
    "list.brand": "Conseil : séances publiques",
    "list.heading": "Séances enregistrées",
    "list.intro": "Revoir les séances publiques du conseil. Chaque enregistrement est découpé en chapitres : points de l'ordre du jour, prises de parole, votes.",
    "list.meta": "{date} — {duration}",
    "list.minutes": "procès-verbal publié",
    "list.empty": "Aucune séance n'est enregistrée pour le moment.",
    "list.offline": "La liste des séances n'a pas pu être chargée.",
  },
  en: {
    "skip.main": "Skip to main content",
    "public.footer": "Public broadcast by Hemicycle, hosted by the council: no cookies, no third-party service.",
    "list.brand": "Council: public sittings",
    "list.heading": "Recorded sittings",
    "list.intro": "Watch the council's public sittings again. Each recording has chapters: agenda items, speakers, votes.",
    "list.meta": "{date} — {duration}",
    "list.minutes": "minutes published",
    "list.empty": "No sitting has been recorded yet.",
    "list.offline": "The list of sittings could not be loaded.",
  },
});

const list = document.getElementById("sitting-list");
const note = document.getElementById("list-message");
let sittings = null;

/** Only this server's own /replay/ pages are linked. */
function safeHref(url) {
  return typeof url === "string" && url.startsWith("/replay/") ? url : null;
}

function render() {
  if (!sittings) return;
  const items = [];
  for (const sitting of sittings) {
    const href = safeHref(sitting.url);
    if (!href) continue;
    const link = document.createElement("a");
    link.href = texts.lang === "en" ? `${href}?lang=en` : href;
    link.className = "sitting-link";
    link.textContent = sitting.title;
    const meta = document.createElement("p");
    meta.className = "sitting-meta";
    meta.textContent = texts.t("list.meta", {
      date: formatDate(sitting.started_at, texts.lang), duration: formatDuration(sitting.duration),
    });
    if (sitting.minutes) meta.textContent += ` — ${texts.t("list.minutes")}`;
    const li = document.createElement("li");
    li.append(link, meta);
    items.push(li);
  }
  list.replaceChildren(...items);
  note.textContent = items.length ? "" : texts.t("list.empty");
}

async function main() {
  texts.apply();
  texts.setupButton(document.getElementById("lang-button"), render);
  try {
    const response = await fetch("/replay/index.json", { cache: "no-store", credentials: "omit" });
    if (!response.ok) throw new Error(String(response.status));
    sittings = (await response.json()).sittings || [];
    render();
  } catch {
    note.textContent = texts.t("list.offline");
  } finally {
    list.setAttribute("aria-busy", "false");
  }
}

main();

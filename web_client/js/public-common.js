// Shared by the public pages (/live/…, /replay/…): language, texts, durations, and the
// HLS player (hls.js, vendored, loaded only when needed; Safari plays HLS natively).
// Nothing is stored in the browser: the language comes from ?lang= or navigator.language.

const HLS_SCRIPT = "/static/vendor/hls/hls.light.min.js";

/** "en" with ?lang=en or an English browser, else "fr" (?lang=fr forces French). */
export function pickLanguage() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked === "fr" || asked === "en") return asked;
  return (navigator.language || "").toLowerCase().startsWith("en") ? "en" : "fr";
}

/**
 * Texts of one page: `texts.t(key, vars)`, `texts.apply()` fills [data-i18n] and
 * [data-i18n-attr="attr:key;…"], `texts.setupButton(button, onChange)` wires the
 * language button (it shows the other language, and keeps the choice in the URL).
 */
export function pageTexts(dictionaries) {
  let lang = pickLanguage();
  const t = (key, vars = {}) => {
    const text = dictionaries[lang][key] ?? dictionaries.fr[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  };
  const apply = (root = document) => {
    document.documentElement.lang = lang;
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of root.querySelectorAll("[data-i18n-attr]")) {
      for (const pair of el.dataset.i18nAttr.split(";")) {
        const [attr, key] = pair.split(":").map((s) => s.trim());
        if (attr && key) el.setAttribute(attr, t(key));
      }
    }
  };
  const setupButton = (button, onChange) => {
    const render = () => {
      button.textContent = lang === "fr" ? "English" : "Français";
      button.setAttribute("lang", lang === "fr" ? "en" : "fr");
    };
    render();
    button.addEventListener("click", () => {
      lang = lang === "fr" ? "en" : "fr";
      const url = new URL(location.href);
      url.searchParams.set("lang", lang);
      history.replaceState(null, "", url);
      apply();
      render();
      onChange?.(lang);
    });
  };
  return { t, apply, setupButton, get lang() { return lang; } };
}

/** "1 h 05 min", "12 min 30 s", "45 s". */
export function formatDuration(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
  return m ? `${m} min ${String(s).padStart(2, "0")} s` : `${s} s`;
}

/** "01:02:03" or "02:03" (a position in the video). */
export function formatClock(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const parts = [Math.floor(total / 3600), Math.floor((total % 3600) / 60), total % 60];
  const shown = parts[0] ? parts : parts.slice(1);
  return shown.map((n) => String(n).padStart(2, "0")).join(":");
}

/** A date and time in the page's language, e.g. « samedi 28 novembre 2026 à 21:15 ». */
export function formatDate(unixSeconds, lang) {
  return new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "fr-FR", { dateStyle: "full", timeStyle: "short" })
    .format(new Date(unixSeconds * 1000));
}

let hlsLoading = null;

/** The Hls class, the script being added to the page on first use; null if it cannot load. */
export function loadHls() {
  if (window.Hls) return Promise.resolve(window.Hls);
  hlsLoading ??= new Promise((resolve) => {
    const script = document.createElement("script");
    script.src = HLS_SCRIPT;
    script.addEventListener("load", () => resolve(window.Hls || null));
    script.addEventListener("error", () => resolve(null));
    document.head.append(script);
  });
  return hlsLoading;
}

/**
 * Play the HLS playlist `url` in `video`: with hls.js where Media Source Extensions exist,
 * else natively (Safari, iOS). `live`: start at the live edge (else at the beginning).
 * `onFatal(message)`: playback stopped for good. Returns {kind, destroy} or null when this
 * browser cannot play HLS at all.
 */
export async function playHls(video, url, { live = false, onFatal = () => {} } = {}) {
  const Hls = await loadHls();
  if (Hls && Hls.isSupported()) {
    // No worker: the CSP allows no blob: worker, and the programme is light to demux.
    const hls = new Hls({ enableWorker: false, startPosition: live ? -1 : 0, backBufferLength: 90 });
    let recoveries = 0;
    hls.on(Hls.Events.ERROR, (event, data) => {
      if (!data.fatal) return;
      const network = data.type === Hls.ErrorTypes.NETWORK_ERROR;
      if (recoveries < 3 && (network || data.type === Hls.ErrorTypes.MEDIA_ERROR)) {
        recoveries += 1;
        if (network) hls.startLoad();
        else hls.recoverMediaError();
        return;
      }
      hls.destroy();
      onFatal(data.details || data.type);
    });
    hls.on(Hls.Events.FRAG_LOADED, () => { recoveries = 0; });
    hls.loadSource(url);
    hls.attachMedia(video);
    return { kind: "hls.js", destroy: () => hls.destroy() };
  }
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
    const onError = () => onFatal(video.error?.message || "media error");
    video.addEventListener("error", onError);
    return {
      kind: "native",
      destroy: () => {
        video.removeEventListener("error", onError);
        video.removeAttribute("src");
        video.load();
      },
    };
  }
  return null;
}

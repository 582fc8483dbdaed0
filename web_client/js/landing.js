// The landing page (/): language switch and the optional demo links list,
// filled from GET /api/demo-links ({links:[{name, role, url}]}); nothing if it fails.

import { setupLanguage, t } from "./i18n.js";

const section = document.getElementById("demo-section");
const list = document.getElementById("demo-links");
let links = [];

/** Only same-site or http(s) links: never javascript: or data: URLs. */
function safeUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function render() {
  const items = [];
  for (const link of links) {
    const href = safeUrl(link?.url);
    if (!href) continue;
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = href;
    a.textContent = link.name || href;
    li.append(a);
    if (link.role) {
      const role = document.createElement("span");
      role.className = "demo-role";
      const key = `role.${link.role}`;
      role.textContent = `(${t(key) === key ? link.role : t(key)})`;
      li.append(role);
    }
    items.push(li);
  }
  list.replaceChildren(...items);
  section.hidden = items.length === 0;
}

async function loadDemoLinks() {
  try {
    const response = await fetch("/api/demo-links", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const data = await response.json();
    links = Array.isArray(data?.links) ? data.links : [];
    render();
  } catch {
    /* no demo links: render nothing */
  }
}

setupLanguage(document.getElementById("lang-button"));
document.addEventListener("hemicycle:langchange", render);
loadDemoLinks();

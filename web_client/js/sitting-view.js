// Wires a HemicycleConnection's sitting events to the panels: "Séance" (everyone),
// the member's own actions, "Présidence" (chair) and "Secrétariat" (secretary).
// Every `sitting_state` re-renders them all. Also: the floor given to this member
// opens their microphone (they asked to speak), and notices are shown as alerts.

import { ChairConsole } from "./chair-console.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";
import { MemberActions } from "./member-actions.js";
import { SecretaryPanel } from "./secretary-panel.js";
import { SittingPanel } from "./sitting-panel.js";

const MAX_NOTICES = 3;

export class SittingView {
  constructor(doc, { announce }) {
    this.announce = announce;
    this.notices = doc.getElementById("sitting-notices");
    this.panels = [new SittingPanel(doc), new MemberActions(doc), new ChairConsole(doc), new SecretaryPanel(doc)];
    this.connection = null;
    this.listeners = null;
    this.hadFloor = false;
    doc.addEventListener("hemicycle:langchange", () => this.render());
  }

  attach(connection) {
    this.detach();
    this.connection = connection;
    this.hadFloor = false;
    this.listeners = new AbortController();
    const on = (type, handler) =>
      connection.addEventListener(type, (event) => handler(event.detail), { signal: this.listeners.signal });
    on("sittingstate", ({ state }) => {
      this.render();
      this._floorChanged(state);
    });
    on("welcome", () => this.render());
    on("participants", () => this.render());
    on("notice", ({ message }) => this._notice(message));
  }

  detach() {
    this.listeners?.abort();
    this.listeners = null;
    this.connection = null;
    this.panels[0].clear();
    delete document.body.dataset.console;
    this.notices.replaceChildren();
  }

  render() {
    const connection = this.connection;
    const state = connection?.sittingState;
    if (!connection?.joined || !state) return;
    const role = connection.me?.role;
    if (role === "chair" || role === "secretary") document.body.dataset.console = role;
    else delete document.body.dataset.console;
    for (const panel of this.panels) panel.render(state, connection);
  }

  /** Can this member unmute themself now? (The server refuses it otherwise.) */
  mayUnmute() {
    const state = this.connection?.sittingState;
    const me = this.connection?.me;
    if (!state || !me) return true;
    const forced = state.forced_muted.includes(`${me.id}:mic`);
    return !forced || state.self_unmute_allowed || state.floor?.participant_id === me.id;
  }

  _floorChanged(state) {
    const connection = this.connection;
    const me = connection?.me;
    if (!me) return;
    const hasFloor = state.floor?.participant_id === me.id;
    if (hasFloor && !this.hadFloor) {
      if (connection.localTracks.mic && connection.localMuted.mic) {
        connection.setMuted("mic", false);
        this.announce(() => t("sitting.floorGivenUnmuted"));
      } else {
        this.announce(() => t("sitting.floorGiven"));
      }
    } else if (!hasFloor && this.hadFloor) {
      this.announce(() => t("sitting.floorTaken"));
    }
    this.hadFloor = hasFloor;
  }

  _notice(message) {
    const time = new Date().toLocaleTimeString(document.documentElement.lang, { hour: "2-digit", minute: "2-digit" });
    const item = h(
      "p",
      { class: "notice-item" },
      h("span", { class: "notice-text", text: `${time} — ${message}` }),
      h(
        "button",
        { type: "button", class: "button button-small", onclick: (event) => event.target.closest(".notice-item").remove() },
        t("sitting.dismiss"),
        h("span", { class: "visually-hidden", text: ` ${t("sitting.noticeLabel")}` }),
      ),
    );
    this.notices.prepend(item);
    while (this.notices.children.length > MAX_NOTICES) this.notices.lastElementChild.remove();
  }
}

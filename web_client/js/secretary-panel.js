// The "Secrétariat de séance" panel (role secretary): the roll with a "présent en salle"
// checkbox per member (record_presence) and, while a vote is open, the vote of each
// member in the chamber (record_vote). Rendered from each `sitting_state`.

import { h, labelled, replaceKeepingFocus } from "./dom.js";
import { t } from "./i18n.js";
import { CHOICES, choiceLabel, openVote } from "./sitting-format.js";

export class SecretaryPanel {
  constructor(doc) {
    this.el = { panel: doc.getElementById("secretary-panel"), roll: doc.getElementById("roll-list") };
    this.connection = null;
    this.state = null;
    this.choices = new Map(); // member id -> choice picked in the select, kept across renders
  }

  render(state, connection) {
    this.state = state;
    this.connection = connection;
    const isSecretary = connection?.me?.role === "secretary";
    this.el.panel.hidden = !isSecretary;
    if (!isSecretary || !state) return;
    const vote = openVote(state);
    if (!vote) this.choices.clear();
    replaceKeepingFocus(this.el.roll, state.members.map((m) => this._row(m, vote)));
  }

  _row(m, vote) {
    const boxId = `present-${m.member_id}`;
    const where = m.remote ? t("secretary.remote") : m.represented_by ? t("secretary.represented") : "";
    return h(
      "li",
      { class: "roll-row", dataset: { memberId: m.member_id } },
      h("span", { class: "roll-name" }, m.name, m.group ? h("span", { class: "roll-group", text: ` (${m.group})` }) : null),
      where ? h("span", { class: "roll-where", text: where }) : null,
      h(
        "span",
        { class: "field-check roll-present" },
        h("input", {
          type: "checkbox",
          id: boxId,
          checked: m.in_chamber,
          dataset: { focusKey: boxId, action: "present" },
          onchange: (event) => this.connection?.recordPresence(m.member_id, event.target.checked),
        }),
        h("label", { for: boxId }, labelled(t("secretary.present"), m.name)),
      ),
      vote && m.in_chamber ? this._voteControl(m, vote) : null,
    );
  }

  _voteControl(m, vote) {
    if (vote.voters.includes(m.member_id)) return h("span", { class: "roll-voted", text: t("secretary.voteRecorded") });
    if (m.withdrawn) return h("span", { class: "roll-voted", text: t("secretary.withdrawn") });
    const selectId = `record-vote-${m.member_id}`;
    const select = h(
      "select",
      {
        id: selectId,
        dataset: { focusKey: selectId, action: "record-vote-choice" },
        onchange: (event) => this.choices.set(m.member_id, event.target.value),
      },
      h("option", { value: "" }, t("secretary.choose")),
      CHOICES.map((choice) => h("option", { value: choice }, choiceLabel(choice))),
    );
    select.value = this.choices.get(m.member_id) || "";
    return h(
      "span",
      { class: "roll-vote" },
      h("label", { for: selectId, class: "visually-hidden" }, t("secretary.voteOf", { name: m.name })),
      select,
      h(
        "button",
        {
          type: "button",
          class: "button button-small",
          dataset: { focusKey: `record-${m.member_id}`, action: "record-vote" },
          onclick: () => {
            if (select.value) this.connection?.recordVote(m.member_id, select.value);
            else select.focus();
          },
        },
        labelled(t("secretary.record"), m.name),
      ),
    );
  }
}

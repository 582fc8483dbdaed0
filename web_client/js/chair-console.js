// The "Présidence" panel (role chair): participants with mute / camera / floor / remove
// (remove asks for confirmation), the queue, mute-all and self-unmute, the agenda
// (current item, suspension, huis clos), votes, lock and the waiting room.
// Rendered from each `sitting_state`; the buttons only send commands.

import { fillSelect, h, labelled, replaceKeepingFocus } from "./dom.js";
import { t } from "./i18n.js";
import { itemLabel, methodLabel, nameOf, openVote, VOTE_METHODS } from "./sitting-format.js";
import { sourceState } from "./tiles.js";

export class ChairConsole {
  constructor(doc) {
    const $ = (id) => doc.getElementById(id);
    this.el = {
      panel: $("chair-panel"),
      participants: $("chair-participants"),
      queue: $("chair-queue"),
      queueEmpty: $("chair-queue-empty"),
      muteOthers: $("mute-others-checkbox"),
      takeFloor: $("take-floor-button"),
      muteAll: $("mute-all-button"),
      selfUnmute: $("self-unmute-toggle"),
      lock: $("lock-toggle"),
      waiting: $("waiting-list"),
      waitingEmpty: $("waiting-empty"),
      itemSelect: $("item-select"),
      itemSet: $("item-set-button"),
      suspend: $("suspend-toggle"),
      closedSession: $("closed-session-toggle"),
      programmeSound: $("programme-sound-toggle"),
      question: $("vote-question"),
      method: $("vote-method"),
      openVote: $("open-vote-button"),
      closeVote: $("close-vote-button"),
      secretBallot: $("secret-ballot-button"),
      voteStatus: $("chair-vote-status"),
    };
    this.connection = null;
    this.state = null;
    this.confirmRemove = null; // participant id awaiting confirmation
    const send = (fn) => () => this.connection && this.state && fn(this.connection, this.state);
    const pressed = (el) => el.getAttribute("aria-pressed") === "true";
    this.el.takeFloor.addEventListener("click", send((c) => c.takeFloor()));
    this.el.muteAll.addEventListener("click", send((c) => c.muteAll()));
    this.el.selfUnmute.addEventListener("click", send((c) => c.setSelfUnmute(!pressed(this.el.selfUnmute))));
    this.el.lock.addEventListener("click", send((c) => c.lock(!pressed(this.el.lock))));
    this.el.suspend.addEventListener("click", send((c) => c.suspend(!pressed(this.el.suspend))));
    this.el.closedSession.addEventListener("click", send((c) => c.closedSession(!pressed(this.el.closedSession))));
    this.el.programmeSound.addEventListener("click", send((c) => c.programmeSound(!pressed(this.el.programmeSound))));
    this.el.itemSet.addEventListener("click", send((c) => this.el.itemSelect.value && c.setItem(this.el.itemSelect.value)));
    this.el.secretBallot.addEventListener("click", send((c) => c.requestSecretBallot()));
    this.el.closeVote.addEventListener("click", send((c) => c.closeVote()));
    this.el.openVote.addEventListener("click", send((c) => {
      const question = this.el.question.value.trim();
      if (!question) {
        this.el.question.setAttribute("aria-invalid", "true");
        this.el.question.focus();
        return;
      }
      this.el.question.removeAttribute("aria-invalid");
      c.openVote(question, this.el.method.value);
    }));
    fillSelect(this.el.method, VOTE_METHODS.map((m) => ({ value: m, label: methodLabel(m) })));
  }

  render(state, connection) {
    this.state = state;
    this.connection = connection;
    const isChair = connection?.me?.role === "chair";
    this.el.panel.hidden = !isChair;
    if (!isChair || !state) return;
    fillSelect(this.el.method, VOTE_METHODS.map((m) => ({ value: m, label: methodLabel(m) })));
    this._renderParticipants(state, connection);
    this._renderQueue(state);
    this.el.selfUnmute.setAttribute("aria-pressed", String(state.self_unmute_allowed));
    this.el.lock.setAttribute("aria-pressed", String(state.locked));
    this.el.suspend.setAttribute("aria-pressed", String(state.suspended));
    this.el.closedSession.setAttribute("aria-pressed", String(state.closed_session));
    this.el.programmeSound.setAttribute("aria-pressed", String(state.programme_sound_cut));
    this._renderWaiting(state);
    this._renderAgenda(state);
    this._renderVote(state);
  }

  _name(id) {
    return nameOf(id, this.state, this.connection);
  }

  _button(text, hiddenText, action, id, onclick, extra = {}) {
    return h(
      "button",
      { type: "button", class: `button button-small ${extra.class || ""}`, dataset: { action, participantId: id, focusKey: `${action}-${id}` }, onclick, ...extra.attrs },
      labelled(text, hiddenText),
    );
  }

  _renderParticipants(state, connection) {
    const forced = new Set(state.forced_muted);
    const people = [...connection.participants.values()].filter((p) => p.connected !== false && p.role !== "public");
    people.sort((a, b) => a.name.localeCompare(b.name, "fr"));
    const rows = people.map((p) => {
      const name = p.name;
      const micForced = forced.has(`${p.id}:mic`);
      const camForced = forced.has(`${p.id}:camera`);
      const mic = sourceState(p, "mic");
      const status = [
        t(mic ? (mic.muted ? "participants.micOff" : "participants.micOn") : "participants.noMedia"),
        micForced ? t("chair.mutedByChair") : null,
        state.floor?.participant_id === p.id ? t("chair.hasFloor") : null,
        state.queue.some((hand) => hand.participant_id === p.id) ? t("chair.handRaised") : null,
      ].filter(Boolean);
      const buttons =
        this.confirmRemove === p.id
          ? [
              this._button(t("chair.confirmRemove"), name, "confirm-remove", p.id, () => this._remove(p.id), { class: "button-danger" }),
              this._button(t("chair.cancel"), null, "cancel-remove", p.id, () => this._askRemove(null, p.id)),
            ]
          : [
              this._button(t(micForced ? "chair.unmuteMic" : "chair.muteMic"), name, micForced ? "unmute-mic" : "mute-mic", p.id, () =>
                connection.muteParticipant(p.id, !micForced, "mic"),
              ),
              this._button(t(camForced ? "chair.allowCamera" : "chair.cameraOff"), name, camForced ? "allow-camera" : "camera-off", p.id, () =>
                connection.muteParticipant(p.id, !camForced, "camera"),
              ),
              state.floor?.participant_id === p.id
                ? null
                : this._button(t("chair.giveFloor"), name, "give-floor", p.id, () => connection.giveFloor(p.id, this.el.muteOthers.checked)),
              this._button(t("chair.remove"), name, "remove", p.id, () => this._askRemove(p.id, p.id), { class: "button-danger-quiet" }),
            ];
      return h(
        "li",
        { class: "chair-row", dataset: { participantId: p.id } },
        h("span", { class: "chair-row-name", text: name }),
        h("span", { class: "chair-row-state", text: status.join(" · ") }),
        h("span", { class: "chair-row-actions" }, buttons),
      );
    });
    if (!rows.length) rows.push(h("li", { class: "empty-note", text: t("chair.nobody") }));
    replaceKeepingFocus(this.el.participants, rows);
  }

  _askRemove(id, focusId) {
    this.confirmRemove = id;
    this.render(this.state, this.connection);
    const action = id ? "confirm-remove" : "remove";
    this.el.participants.querySelector(`[data-focus-key="${CSS.escape(`${action}-${focusId}`)}"]`)?.focus();
  }

  _remove(id) {
    this.confirmRemove = null;
    this.connection?.remove(id);
  }

  _renderQueue(state) {
    const items = state.queue.map((hand) => {
      const name = this._name(hand.participant_id);
      return h(
        "li",
        { class: "chair-row", dataset: { participantId: hand.participant_id } },
        h("span", { class: "chair-row-name", text: name }),
        hand.point_of_order ? h("span", { class: "badge badge-order", text: t("sitting.pointOfOrder") }) : null,
        h(
          "span",
          { class: "chair-row-actions" },
          this._button(t("chair.giveFloor"), name, "queue-give-floor", hand.participant_id, () =>
            this.connection.giveFloor(hand.participant_id, this.el.muteOthers.checked),
          ),
          this._button(t("chair.lowerHand"), name, "lower-hand", hand.participant_id, () => this.connection.lowerHand(hand.participant_id)),
        ),
      );
    });
    replaceKeepingFocus(this.el.queue, items);
    this.el.queue.hidden = !items.length;
    this.el.queueEmpty.hidden = !!items.length;
    this.el.takeFloor.disabled = !state.floor;
  }

  _renderWaiting(state) {
    const items = state.waiting.map((person) => {
      const id = person.participant_id;
      const name = person.name || t("chair.waitingSeat", { id: id.slice(0, 8) });
      return h(
        "li",
        { class: "chair-row", dataset: { participantId: id } },
        h("span", { class: "chair-row-name", text: name }),
        h("span", { class: "chair-row-actions" }, this._button(t("chair.admit"), name, "admit", id, () => this.connection.admit(id))),
      );
    });
    replaceKeepingFocus(this.el.waiting, items);
    this.el.waiting.hidden = !items.length;
    this.el.waitingEmpty.hidden = !!items.length;
  }

  _renderAgenda(state) {
    const options = state.agenda.map((item) => ({
      value: item.id,
      label: item.postponed ? `${itemLabel(item)} — ${t("chair.postponedShort")}` : itemLabel(item),
    }));
    const focused = document.activeElement === this.el.itemSelect;
    fillSelect(this.el.itemSelect, options);
    if (!focused && state.current_item && this._lastItem !== state.current_item) this.el.itemSelect.value = state.current_item;
    this._lastItem = state.current_item;
  }

  _renderVote(state) {
    const vote = openVote(state);
    this.el.openVote.disabled = !!vote;
    this.el.closeVote.disabled = !vote;
    this.el.voteStatus.textContent = vote
      ? t("chair.voteOpen", { question: vote.question, n: vote.voters.length })
      : t("chair.noVote");
  }
}

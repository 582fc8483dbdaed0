// A member's own sitting actions in the "Séance" panel: raise/lower a hand (or a point
// of order), vote (and vote for the member whose proxy one holds), give/revoke a proxy,
// withdraw from the current item. The buttons only send commands: what they show comes
// from the next `sitting_state`, so a refused command leaves nothing out of step.

import { fillSelect, h, labelled, replaceKeepingFocus } from "./dom.js";
import { t } from "./i18n.js";
import { CHOICES, choiceLabel, currentItem, member, nameOf, openVote } from "./sitting-format.js";

const MEMBER_ROLES = new Set(["chair", "secretary", "councillor"]);
const HAND_ROLES = new Set(["secretary", "councillor"]);

export class MemberActions {
  constructor(doc) {
    const $ = (id) => doc.getElementById(id);
    this.el = {
      section: $("my-actions"),
      handGroup: $("hand-group"),
      hand: $("hand-button"),
      handLabel: $("hand-button-label"),
      pointOfOrder: $("point-of-order-button"),
      handNote: $("hand-note"),
      voteGroup: $("my-vote"),
      voteButtons: $("my-vote-buttons"),
      voteNote: $("my-vote-note"),
      proxyVotes: $("proxy-votes"),
      proxyGive: $("proxy-give"),
      proxySelect: $("proxy-select"),
      proxyGiveButton: $("proxy-give-button"),
      proxyGiven: $("proxy-given"),
      proxyGivenText: $("proxy-given-text"),
      proxyRevoke: $("proxy-revoke-button"),
      proxyNote: $("proxy-note"),
      withdraw: $("withdraw-button"),
      withdrawConfirm: $("withdraw-confirm"),
      withdrawCancel: $("withdraw-cancel"),
      withdrawNote: $("withdraw-note"),
    };
    this.connection = null;
    this.state = null;
    this.confirmWithdraw = false;
    const send = (fn) => () => this.connection && fn(this.connection);
    this.el.hand.addEventListener("click", send((c) => (this._handRaised() ? c.lowerHand() : c.raiseHand(false))));
    this.el.pointOfOrder.addEventListener("click", send((c) => c.raiseHand(true)));
    for (const choice of CHOICES) {
      this.el.voteButtons.querySelector(`[data-choice="${choice}"]`).addEventListener("click", send((c) => c.castVote(choice)));
    }
    this.el.proxyGiveButton.addEventListener("click", send((c) => {
      if (this.el.proxySelect.value) c.giveProxy(this.el.proxySelect.value);
      else this.el.proxySelect.focus();
    }));
    this.el.proxyRevoke.addEventListener("click", send((c) => c.revokeProxy()));
    this.el.withdraw.addEventListener("click", () => this._setConfirm(true));
    this.el.withdrawCancel.addEventListener("click", () => this._setConfirm(false));
    this.el.withdrawConfirm.addEventListener("click", send((c) => {
      this.confirmWithdraw = false;
      c.withdraw();
    }));
  }

  render(state, connection) {
    this.state = state;
    this.connection = connection;
    const me = connection?.me;
    const isMember = !!me && MEMBER_ROLES.has(me.role) && !!member(state, me.id);
    this.el.section.hidden = !isMember;
    if (!isMember) return;
    this._renderHand(state, me);
    this._renderVote(state, me);
    this._renderProxy(state, me);
    this._renderWithdraw(state, me);
  }

  _handRaised() {
    const me = this.connection?.me;
    return !!me && !!this.state?.queue.some((hand) => hand.participant_id === me.id);
  }

  _renderHand(state, me) {
    this.el.handGroup.hidden = !HAND_ROLES.has(me.role);
    const raised = this._handRaised();
    const hasFloor = state.floor?.participant_id === me.id;
    this.el.hand.setAttribute("aria-pressed", String(raised));
    this.el.handLabel.textContent = t(raised ? "actions.lowerHand" : "actions.raiseHand");
    this.el.hand.disabled = hasFloor;
    this.el.pointOfOrder.hidden = raised;
    this.el.pointOfOrder.disabled = hasFloor;
    const position = state.queue.findIndex((hand) => hand.participant_id === me.id);
    this.el.handNote.textContent = hasFloor
      ? t("actions.youHaveFloor")
      : position >= 0
        ? t("actions.queuePosition", { n: position + 1 })
        : "";
  }

  _renderVote(state, me) {
    const vote = openVote(state);
    const self = member(state, me.id);
    this.el.voteGroup.hidden = !vote;
    if (!vote) {
      this.el.proxyVotes.replaceChildren();
      return;
    }
    const voted = vote.voters.includes(me.id);
    this.el.voteButtons.hidden = voted || self.withdrawn || !!self.represented_by;
    this.el.voteNote.textContent = voted
      ? t("actions.voted")
      : self.withdrawn
        ? t("actions.withdrawnNoVote")
        : self.represented_by
          ? t("actions.votesByProxy", { name: nameOf(self.represented_by, state, this.connection) })
          : "";
    const givers = state.members.filter((m) => m.represented_by === me.id);
    replaceKeepingFocus(this.el.proxyVotes, givers.map((giver, index) => this._proxySet(giver, vote, index)));
  }

  _proxySet(giver, vote, index) {
    const suffix = index ? `-${index + 1}` : "";
    const labelId = `proxy-vote-label${suffix}`;
    const present = giver.remote || giver.in_chamber;
    const voted = vote.voters.includes(giver.member_id);
    const note = voted ? t("actions.proxyVoted") : giver.withdrawn ? t("actions.withdrawnNoVote") : present ? t("actions.proxyPresent") : "";
    const buttons = note
      ? h("p", { class: "action-note", text: note })
      : h(
          "div",
          { class: "vote-buttons" },
          CHOICES.map((choice) =>
            h(
              "button",
              {
                type: "button",
                id: `proxy-vote-${choice.replace("_", "-")}${suffix}`,
                class: `button vote-button vote-${choice}`,
                dataset: { choice, focusKey: `proxy-${giver.member_id}-${choice}` },
                onclick: () => this.connection?.castVote(choice, giver.member_id),
              },
              labelled(choiceLabel(choice), t("actions.onBehalfOf", { name: giver.name })),
            ),
          ),
        );
    return h(
      "div",
      { class: "proxy-vote", role: "group", "aria-labelledby": labelId, dataset: { memberId: giver.member_id } },
      h("p", { id: labelId, class: "group-label", text: t("actions.proxyVoteFor", { name: giver.name }) }),
      buttons,
    );
  }

  _renderProxy(state, me) {
    const self = member(state, me.id);
    const holds = state.members.filter((m) => m.represented_by === me.id);
    const given = self.represented_by;
    this.el.proxyGiven.hidden = !given;
    this.el.proxyGive.hidden = !!given || holds.length > 0;
    if (given) this.el.proxyGivenText.textContent = t("actions.proxyGivenTo", { name: nameOf(given, state, this.connection) });
    this.el.proxyNote.textContent = holds.length
      ? t("actions.proxiesHeld", { names: holds.map((m) => m.name).join(", ") })
      : "";
    const candidates = state.members
      .filter((m) => m.member_id !== me.id && !m.represented_by)
      .map((m) => ({ value: m.member_id, label: m.name }));
    fillSelect(this.el.proxySelect, candidates, t("actions.proxyChoose"));
  }

  _renderWithdraw(state, me) {
    const item = currentItem(state);
    const self = member(state, me.id);
    const canWithdraw = !!item && !self.withdrawn;
    if (!canWithdraw) this.confirmWithdraw = false;
    this.el.withdraw.hidden = !canWithdraw || this.confirmWithdraw;
    this.el.withdrawConfirm.hidden = !canWithdraw || !this.confirmWithdraw;
    this.el.withdrawCancel.hidden = !canWithdraw || !this.confirmWithdraw;
    this.el.withdrawNote.textContent = self.withdrawn ? t("actions.withdrawn") : "";
  }

  _setConfirm(on) {
    this.confirmWithdraw = on;
    if (this.state && this.connection) this._renderWithdraw(this.state, this.connection.me);
    (on ? this.el.withdrawConfirm : this.el.withdraw).focus();
  }
}

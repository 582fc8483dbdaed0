// The "Séance" panel everyone sees: banners, current item and agenda, who has the floor
// (speech timer against the item's limit), the queue of raised hands, the quorum, the
// open vote and the result of each closed vote (a table of names and choices).

import { h, replaceKeepingFocus } from "./dom.js";
import { t } from "./i18n.js";
import {
  CHOICES,
  choiceLabel,
  currentItem,
  formatDuration,
  itemLabel,
  methodLabel,
  nameOf,
  outcomeText,
  quorumText,
  speechSeconds,
} from "./sitting-format.js";

export class SittingPanel {
  constructor(doc) {
    const $ = (id) => doc.getElementById(id);
    this.el = {
      suspended: $("suspended-banner"),
      closedSession: $("closed-session-banner"),
      regime: $("regime-line"),
      currentItem: $("current-item"),
      agenda: $("agenda-list"),
      floor: $("floor-line"),
      timer: $("speech-timer"),
      timerText: $("speech-timer-text"),
      progress: $("speech-progress"),
      queue: $("queue-list"),
      queueEmpty: $("queue-empty"),
      quorum: $("quorum-line"),
      quorumRule: $("quorum-rule"),
      openVote: $("open-vote"),
      openVoteQuestion: $("open-vote-question"),
      openVoteCount: $("open-vote-count"),
      results: $("vote-results"),
      resultsSection: $("vote-results-section"),
    };
    this.state = null;
    this.connection = null;
    this.timer = null;
  }

  render(state, connection) {
    this.state = state;
    this.connection = connection;
    if (!state) return;
    this.el.suspended.hidden = !state.suspended;
    this.el.closedSession.hidden = !state.closed_session;
    this.el.regime.textContent = t("sitting.regimeLine", { regime: state.regime_title, mode: t(`sitting.mode.${state.mode}`) });
    this._renderAgenda(state);
    this._renderFloor(state);
    this._renderQueue(state);
    this._renderQuorum(state.quorum);
    this._renderOpenVote(state);
    this._renderResults(state);
  }

  clear() {
    clearInterval(this.timer);
    this.timer = null;
    this.state = null;
    for (const list of [this.el.agenda, this.el.queue, this.el.results]) list.replaceChildren();
  }

  _name(id) {
    return nameOf(id, this.state, this.connection);
  }

  _renderAgenda(state) {
    const item = currentItem(state);
    this.el.currentItem.textContent = item ? itemLabel(item) : t("sitting.noItem");
    const items = state.agenda.map((entry) => {
      const current = entry.id === state.current_item;
      return h(
        "li",
        { dataset: { itemId: entry.id }, class: current ? "agenda-item is-current" : "agenda-item", "aria-current": current ? "true" : null },
        h("span", { class: "agenda-title", text: itemLabel(entry) }),
        current ? h("span", { class: "badge badge-current", text: t("sitting.itemCurrent") }) : null,
        entry.postponed ? h("span", { class: "agenda-postponed", text: t("sitting.postponed", { reason: entry.postponed }) }) : null,
      );
    });
    this.el.agenda.replaceChildren(...items);
  }

  _renderFloor(state) {
    const floor = state.floor;
    this.el.floor.dataset.participantId = floor?.participant_id || "";
    this.el.floor.textContent = floor ? t("sitting.hasFloor", { name: this._name(floor.participant_id) }) : t("sitting.noFloor");
    this.el.timer.hidden = !floor;
    if (floor && !this.timer) this.timer = setInterval(() => this._tick(), 1000);
    if (!floor && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    this._tick();
  }

  _tick() {
    const floor = this.state?.floor;
    if (!floor) return;
    const elapsed = speechSeconds(floor);
    const limit = floor.limit_s;
    const overdue = !!limit && elapsed > limit;
    this.el.timer.classList.toggle("is-overdue", overdue);
    this.el.timer.dataset.overdue = String(overdue);
    this.el.timerText.textContent = limit
      ? t(overdue ? "sitting.timerOverdue" : "sitting.timerLimit", {
          elapsed: formatDuration(elapsed),
          limit: formatDuration(limit),
          over: formatDuration(elapsed - limit),
        })
      : t("sitting.timer", { elapsed: formatDuration(elapsed) });
    this.el.progress.hidden = !limit;
    if (limit) {
      this.el.progress.max = limit;
      this.el.progress.value = Math.min(elapsed, limit);
    }
  }

  _renderQueue(state) {
    const items = state.queue.map((hand, index) =>
      h(
        "li",
        { dataset: { participantId: hand.participant_id, pointOfOrder: String(hand.point_of_order) }, class: "queue-item" },
        h("span", { class: "queue-rank", "aria-hidden": "true", text: `${index + 1}.` }),
        h("span", { class: "queue-name", text: this._name(hand.participant_id) }),
        hand.point_of_order ? h("span", { class: "badge badge-order", text: t("sitting.pointOfOrder") }) : null,
      ),
    );
    this.el.queue.replaceChildren(...items);
    this.el.queue.hidden = !items.length;
    this.el.queueEmpty.hidden = !!items.length;
  }

  _renderQuorum(quorum) {
    this.el.quorum.textContent = quorumText(quorum);
    this.el.quorum.classList.toggle("is-lost", !quorum.reached);
    this.el.quorum.dataset.reached = String(quorum.reached);
    this.el.quorumRule.textContent = quorum.rule;
  }

  _renderOpenVote(state) {
    const vote = state.votes.find((v) => v.open);
    this.el.openVote.hidden = !vote;
    if (!vote) return;
    this.el.openVote.dataset.voteId = vote.id;
    this.el.openVoteQuestion.textContent = t("vote.openQuestion", { question: vote.question, method: methodLabel(vote.method) });
    this.el.openVoteCount.textContent = t("vote.votedCount", { n: vote.voters.length, total: state.members.length });
  }

  _renderResults(state) {
    const closed = state.votes.filter((v) => !v.open).reverse();
    this.el.resultsSection.hidden = !closed.length;
    replaceKeepingFocus(this.el.results, closed.map((vote) => this._result(vote, state)));
  }

  _result(vote, state) {
    const outcome = vote.void ? "void" : vote.adopted == null ? "none" : String(vote.adopted);
    const item = state.agenda.find((i) => i.id === vote.item_id);
    const counts = { for: vote.votes_for, against: vote.votes_against, abstain: vote.abstentions, not_voting: vote.not_voting };
    const captionId = `vote-caption-${vote.id}`;
    return h(
      "section",
      { class: `vote-result outcome-${outcome}`, dataset: { voteId: vote.id, adopted: outcome, castingVote: String(vote.casting_vote) }, "aria-labelledby": captionId },
      h("h4", { id: captionId, class: "vote-question", text: vote.question }),
      item ? h("p", { class: "vote-item", text: itemLabel(item) }) : null,
      h(
        "ul",
        { class: "vote-counts" },
        CHOICES.map((choice) => h("li", { dataset: { choice } }, h("span", { class: "vote-count", text: String(counts[choice]) }), ` ${choiceLabel(choice)}`)),
      ),
      h("p", { class: "vote-outcome", text: outcomeText(vote) }),
      this._ballotTable(vote, state),
    );
  }

  _ballotTable(vote, state) {
    if (!vote.ballots.length) return null;
    const rows = vote.ballots.map((ballot) =>
      h(
        "tr",
        { dataset: { memberId: ballot.member_id, choice: ballot.choice } },
        h("th", { scope: "row", text: this._name(ballot.member_id) }),
        h(
          "td",
          {},
          ballot.cast_by === ballot.member_id
            ? choiceLabel(ballot.choice)
            : t("vote.byProxy", { choice: choiceLabel(ballot.choice), name: this._name(ballot.cast_by) }),
        ),
      ),
    );
    return h(
      "table",
      { class: "ballot-table" },
      h("caption", { class: "visually-hidden", text: t("vote.tableCaption", { question: vote.question }) }),
      h("thead", {}, h("tr", {}, ["vote.member", "vote.choice"].map((key) => h("th", { scope: "col", text: t(key) })))),
      h("tbody", {}, rows),
    );
  }
}

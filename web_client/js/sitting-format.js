// What the sitting panels say: names, durations, agenda items, quorum, vote outcomes.
// Pure helpers over the `sitting_state` snapshot (docs/protocol.md, "Running the sitting").

import { t } from "./i18n.js";

export const CHOICES = ["for", "against", "abstain", "not_voting"];
export const VOTE_METHODS = ["electronic", "roll_call", "show_of_hands"];

/** The name of a member or participant id: the roll first, then the connected people. */
export function nameOf(id, state, connection) {
  if (!id) return "";
  const member = state?.members?.find((m) => m.member_id === id);
  if (member) return member.name;
  if (connection?.me?.id === id) return connection.me.name;
  return connection?.participants?.get(id)?.name || t("sitting.unknownPerson");
}

export function member(state, id) {
  return state?.members?.find((m) => m.member_id === id) || null;
}

/** "m:ss" (or "h:mm:ss"). */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

export function currentItem(state) {
  return state?.agenda?.find((item) => item.id === state.current_item) || null;
}

export function itemLabel(item) {
  return t("sitting.itemLabel", { number: item.number, title: item.title });
}

export function quorumText(quorum) {
  return t(quorum.reached ? "sitting.quorumReached" : "sitting.quorumLost", {
    counted: quorum.counted,
    required: quorum.required,
  });
}

export function openVote(state) {
  return state?.votes?.find((vote) => vote.open) || null;
}

export function choiceLabel(choice) {
  return t(`vote.choice.${choice}`);
}

export function methodLabel(method) {
  const key = `vote.method.${method}`;
  const text = t(key);
  return text === key ? method : text;
}

/** "Adopté", "Rejeté", "Adopté (voix prépondérante de la présidence)", "Vote nul : …". */
export function outcomeText(vote) {
  if (vote.void) return t("vote.void", { reason: vote.void });
  if (vote.adopted == null) return t("vote.noOutcome");
  const outcome = t(vote.adopted ? "vote.adopted" : "vote.rejected");
  return vote.casting_vote ? `${outcome} ${t("vote.castingVote")}` : outcome;
}

/** Seconds the current speaker has had the floor (server clock, epoch seconds). */
export function speechSeconds(floor, now = Date.now() / 1000) {
  return floor ? Math.max(0, now - floor.since) : 0;
}

"""What the public programme shows and plays: a pure function of the sitting.

Precedence: a closed session (huis clos) or a suspension shows a slate and plays
nothing; then a vote's result card for a few seconds; then the floor holder (or,
when nobody holds the floor, the loudest member, or else the chamber's camera)
with a caption of their name and the current item. The sound is the mix of every
member whose microphone is live, unless the chair cut it (a passage about a private
person): the cut is a journalled event, so the recording keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .sitting_state import SittingState, VoteRecord

CARD_SECONDS = 12.0
CHAMBER_NAME = "Salle du conseil"


@dataclass(frozen=True)
class Tap:
    """A member's track as the programme receives it."""

    owner: str
    source: str  # mic | camera | screen
    ssrc: int
    muted: bool


def item_caption(state: SittingState) -> str | None:
    item = state.item(state.current_item)
    return None if item is None else f"Point {item.number} — {item.title}"


def vote_card(vote: VoteRecord) -> dict[str, Any]:
    result = vote.result or {}
    if result.get("void"):
        verdict = "Vote nul"
    elif result.get("adopted") is True:
        verdict = "Adopté"
    elif result.get("adopted") is False:
        verdict = "Rejeté"
    else:
        verdict = "Résultat"
    counts = (
        f"Pour {result.get('votes_for', 0)} · Contre {result.get('votes_against', 0)}"
        f" · Abstention {result.get('abstain', 0)}"
    )
    lines = [verdict, counts]
    if result.get("casting_vote"):
        lines.append("Voix prépondérante du président")
    return {"title": f"Vote : {vote.question}", "lines": lines}


def compose_scene(
    state: SittingState,
    title: str,
    names: Mapping[str, str],
    taps: list[Tap],
    active_speaker: str | None,
    chamber: str | None = None,
    card: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``scene`` control message of sfu/programme for this moment of the sitting."""
    scene: dict[str, Any] = {
        "type": "scene", "title": title, "audio": [], "video": None, "caption": None, "slate": None, "card": None,
    }
    if state.closed_session:
        scene["slate"] = {"title": "Huis clos", "detail": "La séance se poursuit à huis clos. "
                          "La retransmission reprendra avec la séance publique."}
        return scene
    if state.suspended:
        scene["slate"] = {"title": "Séance suspendue", "detail": "La séance reprendra dans quelques instants."}
        return scene
    if not state.programme_sound_cut:
        scene["audio"] = sorted(t.ssrc for t in taps if t.source == "mic" and not t.muted)
    if card is not None:
        scene["card"] = card
        return scene
    for shown in (state.floor, active_speaker, chamber):
        if shown is None:
            continue
        pictures = {t.source: t for t in taps if t.owner == shown and t.source != "mic" and not t.muted}
        picture = pictures.get("screen") or pictures.get("camera")
        if picture is not None:
            scene["video"] = picture.ssrc
            name = CHAMBER_NAME if shown == chamber else names.get(shown, "")
            scene["caption"] = {"name": name, "detail": item_caption(state)}
            break
    return scene

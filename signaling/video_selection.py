"""Which videos each member receives: at most a limit, the most useful first.

A 45-member sitting cannot send every camera to everyone (45 x 44 video streams),
and nobody watches 44 tiles. Each member receives at most ``limit`` videos (the
server's ``media.max_videos``, lowered by the member's own ``receive_videos``),
chosen from one ranking per sitting:

1. screen shares (a document shown to the assembly),
2. the member who has the floor,
3. the chair (who runs the sitting),
4. the chamber's camera (a hybrid sitting),
5. the members who spoke last, the most recent first (once they spoke for a second),
6. everyone else, in the order they published.

A member never counts their own videos. Cameras that are off (paused by their
member or the chair) are not candidates: the limit goes to cameras that are on.
Pure functions: the sitting feeds them and tells the SFU (``Router.select_videos``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

RECENT_SPEAKERS = 16  # how many past speakers the ranking remembers
# A speaker counts as having spoken once still the active speaker after this long: a cough or two
# members talking over each other do not swap videos (and ask keyframes) twice a second.
SPEAKER_SETTLE_S = 1.0


@dataclass(frozen=True)
class Candidate:
    """A video producer that could be forwarded."""

    producer_id: str
    owner: str
    source: str  # "camera" | "screen"
    role: str  # the owner's role


def rank(candidates: Iterable[Candidate], *, floor: str | None, recent_speakers: Sequence[str]) -> list[Candidate]:
    """The sitting's order of importance (stable: ties keep the candidates' order)."""
    recency = {seat: index for index, seat in enumerate(recent_speakers)}
    last = len(recency)

    def key(candidate: Candidate) -> tuple[int, int]:
        if candidate.source == "screen":
            return (0, 0)
        if candidate.owner == floor:
            return (1, 0)
        if candidate.role == "chair":
            return (2, 0)
        if candidate.role == "chamber":
            return (3, 0)
        return (4, recency.get(candidate.owner, last))

    return sorted(candidates, key=key)


def select(ranked: Sequence[Candidate], member: str, limit: int) -> list[Candidate]:
    """The first ``limit`` videos of the ranking that are not ``member``'s own."""
    if limit <= 0:
        return []
    chosen = []
    for candidate in ranked:
        if candidate.owner != member:
            chosen.append(candidate)
            if len(chosen) == limit:
                break
    return chosen


def spoke(recent_speakers: list[str], seat: str) -> None:
    """Move ``seat`` to the front of the recent speakers (in place)."""
    if recent_speakers and recent_speakers[0] == seat:
        return
    if seat in recent_speakers:
        recent_speakers.remove(seat)
    recent_speakers.insert(0, seat)
    del recent_speakers[RECENT_SPEAKERS:]

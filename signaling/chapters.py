"""Chapters of a recording, from the sitting's journal: WebVTT for the ``<track>``, JSON for the page.

A chapter starts at each agenda item taken up, floor given, vote opened or closed,
suspension or resumption, closed session (huis clos) or return to public session; it
ends where the next one starts, the last one at the end of the run. The journal is
replayed into a :class:`~signaling.sitting_state.SittingState` (as the minutes do) to
know the items' titles, the members' names and the votes' questions. What happened
before the run started makes its first chapter (the state at the start); what happens
after its end is left out. During a closed session only « Huis clos » is shown: the
public is not told who speaks there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from config.settings import SittingSettings

from .journal import Entry
from .replay import replay, sitting_state_from

Lang = Literal["fr", "en"]
TEXTS: dict[Lang, dict[str, str]] = {
    "fr": {
        "item": "Point {number} — {title}", "item_unknown": "Point {id}", "start": "Début de la retransmission",
        "vote_opened": "Vote : {question}", "vote_closed": "Vote : {question} — {outcome}",
        "adopted": "adopté", "rejected": "rejeté", "void": "vote nul",
        "counts": "{votes_for} pour, {votes_against} contre, {abstain} abstention{s}",
        "suspended": "Suspension de séance", "resumed": "Reprise de la séance", "closed": "Huis clos",
        "public": "Reprise en séance publique", "public_item": "Reprise en séance publique — {item}",
        "speaker": "Prise de parole",
    },
    "en": {
        "item": "Item {number} — {title}", "item_unknown": "Item {id}", "start": "Start of the broadcast",
        "vote_opened": "Vote: {question}", "vote_closed": "Vote: {question} — {outcome}",
        "adopted": "adopted", "rejected": "rejected", "void": "void vote",
        "counts": "{votes_for} for, {votes_against} against, {abstain} abstention{s}",
        "suspended": "Sitting suspended", "resumed": "Sitting resumed", "closed": "Closed session (huis clos)",
        "public": "Back in public session", "public_item": "Back in public session — {item}",
        "speaker": "Speaker",
    },
}
CHAPTER_EVENTS = frozenset({"item_current", "floor_given", "vote_opened", "vote_closed", "suspended", "resumed",
                            "closed_session"})


@dataclass(frozen=True)
class Chapter:
    start: float  # seconds from the start of the run
    end: float
    title: str
    kind: str  # "start" or the journal event type

    def to_json(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "title": self.title, "kind": self.kind}


def build_chapters(spec: SittingSettings, entries: Iterable[Entry], started_at: float, duration: float,
                   lang: Lang = "fr", names: Mapping[str, str] | None = None) -> list[Chapter]:
    """The chapters of a run of ``spec``'s programme that started at ``started_at`` (POSIX
    seconds) and lasts ``duration`` seconds, from the sitting's journal ``entries``.
    ``names``: seat id -> name, for speakers neither in the roster nor in the journal."""
    if duration <= 0:
        return []
    walk = _Walk(spec, TEXTS[lang], names or {})
    start_title: str | None = None
    marks: list[tuple[float, str, str]] = []  # (seconds from the start, title, kind)
    for entry in entries:
        offset = entry.timestamp - started_at
        if entry.sitting != spec.id:
            continue
        if offset > duration:
            break
        if offset > 0 and start_title is None:
            start_title = walk.state_title()
        title = walk.step(entry)
        if title is not None and offset > 0:
            marks.append((offset, title, entry.type))
    return _cues([(0.0, start_title or walk.state_title(), "start"), *marks], duration)


class _Walk:
    """Replays the journal one entry at a time; names the chapter each entry starts, if any."""

    def __init__(self, spec: SittingSettings, texts: Mapping[str, str], names: Mapping[str, str]) -> None:
        self.state, self.texts, self.names = sitting_state_from(spec), texts, dict(names)
        self.item_when_closed: str | None = None

    def step(self, entry: Entry) -> str | None:
        data, state = entry.data, self.state
        person, name = data.get("member", data.get("seat")), data.get("name")
        if isinstance(person, str) and isinstance(name, str) and name:
            self.names[person] = name
        was_closed = state.closed_session
        title = self._title(entry) if entry.type in CHAPTER_EVENTS else None
        try:
            replay(state, [entry])
        except (ValueError, KeyError, TypeError, StopIteration):
            return None  # an event this version does not know, or out of order: no chapter from it
        if entry.type == "closed_session":
            if state.closed_session == was_closed:
                return None
            if state.closed_session:
                self.item_when_closed = state.current_item
                return self.texts["closed"]
            if state.current_item and state.current_item != self.item_when_closed:
                return self.texts["public_item"].format(item=self.item_title(state.current_item))
            return self.texts["public"]
        return None if was_closed else title

    def _title(self, entry: Entry) -> str | None:
        data, texts = entry.data, self.texts
        if entry.type == "item_current":
            return self.item_title(str(data.get("item")))
        if entry.type == "floor_given":
            return self.name(str(data.get("seat")))
        if entry.type in ("suspended", "resumed"):
            return texts[entry.type]
        vote = next((v for v in self.state.votes if v.id == data.get("vote")), None)
        if entry.type == "vote_opened":
            return texts["vote_opened"].format(question=data.get("question", ""))
        if entry.type == "vote_closed" and vote is not None:
            outcome = _outcome(data.get("result"), texts)
            return texts["vote_closed"].format(question=vote.question, outcome=outcome)
        return None

    def item_title(self, item_id: str) -> str:
        item = self.state.item(item_id)
        if item is None:
            return self.texts["item_unknown"].format(id=item_id)
        return self.texts["item"].format(number=item.number, title=item.title)

    def name(self, seat: str) -> str:
        member = self.state.members.get(seat)
        return member.name if member else self.names.get(seat) or self.texts["speaker"]

    def state_title(self) -> str:
        state = self.state
        if state.closed_session:
            return self.texts["closed"]
        if state.suspended:
            return self.texts["suspended"]
        return self.item_title(state.current_item) if state.current_item else self.texts["start"]


def _outcome(result: Any, texts: Mapping[str, str]) -> str:
    if not isinstance(result, Mapping):
        return texts["void"]
    counts = {k: int(result.get(k) or 0) for k in ("votes_for", "votes_against", "abstain")}
    if result.get("void") or result.get("adopted") is None:
        verdict = texts["void"]
    else:
        verdict = texts["adopted"] if result["adopted"] else texts["rejected"]
    return f"{verdict} ({texts['counts'].format(**counts, s='s' if counts['abstain'] > 1 else '')})"


def _cues(marks: list[tuple[float, str, str]], duration: float) -> list[Chapter]:
    """One chapter per mark, each ending where the next starts; marks in the same
    millisecond make one chapter (the start's title gives way to an event's)."""
    merged: list[tuple[int, str, str]] = []
    for offset, title, kind in marks:
        ms = round(offset * 1000)
        if merged and merged[-1][0] == ms:
            last = merged.pop()
            title, kind = (title, kind) if last[2] == "start" else (f"{last[1]} · {title}", last[2])
        merged.append((ms, title, kind))
    end_ms = round(duration * 1000)
    return [Chapter(ms / 1000, (merged[i + 1][0] if i + 1 < len(merged) else end_ms) / 1000, title, kind)
            for i, (ms, title, kind) in enumerate(merged) if ms < end_ms]


def webvtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def to_webvtt(chapters: Iterable[Chapter]) -> str:
    """A WebVTT file of chapters (``<track kind="chapters">``)."""
    lines = ["WEBVTT", ""]
    for number, chapter in enumerate(chapters, start=1):
        title = " ".join(chapter.title.replace("-->", "→").split())  # one line, never a timing arrow
        lines += [str(number), f"{webvtt_time(chapter.start)} --> {webvtt_time(chapter.end)}", title, ""]
    return "\n".join(lines)


def to_json(chapters: Iterable[Chapter]) -> list[dict[str, Any]]:
    return [c.to_json() for c in chapters]

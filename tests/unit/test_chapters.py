"""signaling/chapters.py: a run's chapters from the sitting's journal (WebVTT and JSON)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from config.settings import AgendaItemSettings, MemberSettings, SittingSettings
from signaling.chapters import Chapter, build_chapters, to_json, to_webvtt, webvtt_time
from signaling.journal import Entry, format_timestamp

T0 = datetime(2026, 11, 28, 20, 15, tzinfo=UTC).timestamp()  # the run's first frame
HOUR = 3600.0
SPEC = SittingSettings(
    id="cm-2026-11-28", title="Conseil municipal du 28 novembre 2026",
    agenda=[AgendaItemSettings(id="i1", title="Approbation du procès-verbal"),
            AgendaItemSettings(id="i2", title="Subvention à l'association des parents d'élèves"),
            AgendaItemSettings(id="i3", title="Questions diverses")],
    members=[MemberSettings(id="m1", name="Claire Dupont"), MemberSettings(id="m2", name="Marc Petit"),
             MemberSettings(id="m3", name="Karim Benali")],
)
RESULT = {"votes_for": 12, "votes_against": 3, "abstain": 1, "not_voting": 0, "adopted": True, "casting_vote": False,
          "void": None, "quorum": [16, 9]}


def entries(*events: tuple[float, str, dict[str, Any]], sitting: str = SPEC.id) -> list[Entry]:
    """Journal entries at T0 + offset seconds."""
    return [Entry(sitting, seq, format_timestamp(datetime.fromtimestamp(T0 + offset, UTC)), "m1", kind, data,
                  "0" * 64, "0" * 64) for seq, (offset, kind, data) in enumerate(events, start=1)]


def item(offset: float, item_id: str) -> tuple[float, str, dict[str, Any]]:
    return (offset, "item_current", {"item": item_id})


def floor(offset: float, seat: str) -> tuple[float, str, dict[str, Any]]:
    return (offset, "floor_given", {"seat": seat, "limit_s": None})


def vote(offset: float, question: str, result: dict[str, Any] | None, duration: float = 60,
         vote_id: str = "v1") -> list[tuple[float, str, dict[str, Any]]]:
    opened = (offset, "vote_opened", {"vote": vote_id, "item": "i2", "question": question, "method": "show_of_hands"})
    return [opened] + ([(offset + duration, "vote_closed", {"vote": vote_id, "result": result})] if result else [])


@dataclass
class Case:
    name: str
    events: list[tuple[float, str, dict[str, Any]]]
    expected: list[tuple[float, float, str]]
    duration: float = HOUR
    lang: str = "fr"
    spec: SittingSettings = field(default_factory=lambda: SPEC)
    names: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("nothing journalled: one chapter, the whole run", [], [(0, HOUR, "Début de la retransmission")]),
    Case("a whole sitting", [
        item(-30, "i1"), floor(-10, "m3"),  # before the run: folded into its first chapter, the item at the start
        item(60, "i2"), floor(90, "m2"),
        *vote(200, "Attribuer 500 € à l'association", RESULT),
        (300, "suspended", {}), (420, "resumed", {}),
        (500, "closed_session", {"closed": True}), floor(520, "m1"),  # nobody is named in a closed session
        (600, "closed_session", {"closed": False}),
        item(700, "i3"),
        floor(HOUR + 5, "m1"),  # after the run: left out
    ], [
        (0, 60, "Point 1 — Approbation du procès-verbal"),
        (60, 90, "Point 2 — Subvention à l'association des parents d'élèves"),
        (90, 200, "Marc Petit"),
        (200, 260, "Vote : Attribuer 500 € à l'association"),
        (260, 300, "Vote : Attribuer 500 € à l'association — adopté (12 pour, 3 contre, 1 abstention)"),
        (300, 420, "Suspension de séance"),
        (420, 500, "Reprise de la séance"),
        (500, 600, "Huis clos"),
        (600, 700, "Reprise en séance publique"),
        (700, HOUR, "Point 3 — Questions diverses"),
    ]),
    Case("rejected, void and still-open votes", [
        *vote(10, "Vendre le terrain", {**RESULT, "votes_for": 4, "votes_against": 9, "abstain": 2, "adopted": False}),
        *vote(100, "Créer un poste", {**RESULT, "adopted": None, "void": "quorum perdu pendant le vote (3/5)"},
              vote_id="v2"),
        *vote(200, "Modifier le tableau des effectifs", None, vote_id="v3"),
    ], [
        (0, 10, "Début de la retransmission"),
        (10, 70, "Vote : Vendre le terrain"),
        (70, 100, "Vote : Vendre le terrain — rejeté (4 pour, 9 contre, 2 abstentions)"),
        (100, 160, "Vote : Créer un poste"),
        (160, 200, "Vote : Créer un poste — vote nul (12 pour, 3 contre, 1 abstention)"),
        (200, HOUR, "Vote : Modifier le tableau des effectifs"),
    ]),
    Case("in a closed session at the start", [item(-600, "i2"), (-300, "closed_session", {"closed": True}),
                                              floor(-200, "m2"), (900, "closed_session", {"closed": False})],
         [(0, 900, "Huis clos"), (900, HOUR, "Reprise en séance publique")]),
    Case("suspended at the start", [item(-600, "i1"), (-60, "suspended", {}), (30, "resumed", {})],
         [(0, 30, "Suspension de séance"), (30, HOUR, "Reprise de la séance")]),
    Case("the item changed behind closed doors", [
        item(10, "i2"), (20, "closed_session", {"closed": True}), item(30, "i3"), *vote(40, "Huis clos vote", RESULT),
        (200, "closed_session", {"closed": False})],
        [(0, 10, "Début de la retransmission"), (10, 20, "Point 2 — Subvention à l'association des parents d'élèves"),
         (20, 200, "Huis clos"), (200, HOUR, "Reprise en séance publique — Point 3 — Questions diverses")]),
    Case("names of members enrolled as they joined, of seats, and unknown", [
        (-50, "member_enrolled", {"member": "s-alice", "name": "Alice Martin", "role": "councillor"}),
        floor(10, "s-alice"), floor(20, "s-guest"), floor(30, "s-nobody")],
        [(0, 10, "Début de la retransmission"), (10, 20, "Alice Martin"), (20, 30, "Bruno Invité"),
         (30, HOUR, "Prise de parole")],
        spec=SittingSettings(id=SPEC.id, title=SPEC.title), names={"s-guest": "Bruno Invité"}),
    Case("events in the same millisecond make one chapter", [item(0, "i1"), item(50, "i2"), floor(50, "m3")],
         [(0, 50, "Point 1 — Approbation du procès-verbal"),
          (50, HOUR, "Point 2 — Subvention à l'association des parents d'élèves · Karim Benali")]),
    Case("unknown events and other sittings are skipped", [
        (5, "programme_started", {"whatever": 1}), item(10, "nope"), floor(20, "m1")],
        [(0, 10, "Début de la retransmission"), (10, 20, "Point nope"), (20, HOUR, "Claire Dupont")]),
    Case("in English", [item(-5, "i1"), *vote(10, "Sell the land", RESULT), (100, "closed_session", {"closed": True})],
         [(0, 10, "Item 1 — Approbation du procès-verbal"), (10, 70, "Vote: Sell the land"),
          (70, 100, "Vote: Sell the land — adopted (12 for, 3 against, 1 abstention)"),
          (100, HOUR, "Closed session (huis clos)")], lang="en"),
    Case("a short run: later events left out", [item(1, "i1"), item(2.5, "i2")],
         [(0, 1, "Début de la retransmission"), (1, 2.5, "Point 1 — Approbation du procès-verbal")], duration=2.5),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_chapters(case: Case) -> None:
    found = build_chapters(case.spec, entries(*case.events), T0, case.duration, case.lang,  # type: ignore[arg-type]
                           names=case.names)
    assert [(c.start, c.end, c.title) for c in found] == case.expected
    assert_valid_webvtt(to_webvtt(found), len(found))


def test_other_sittings_entries_are_ignored() -> None:
    mixed = entries(item(10, "i2")) + entries(item(20, "i3"), sitting="another")
    assert [c.title for c in build_chapters(SPEC, mixed, T0, HOUR)] == [
        "Début de la retransmission", "Point 2 — Subvention à l'association des parents d'élèves"]


def test_an_empty_run_has_no_chapters() -> None:
    assert build_chapters(SPEC, entries(item(10, "i1")), T0, 0) == []
    assert to_webvtt([]) == "WEBVTT\n"


def test_json_form() -> None:
    found = build_chapters(SPEC, entries(item(-5, "i1"), floor(12.3456, "m2")), T0, 100.0)  # the journal keeps ms
    assert to_json(found) == [
        {"start": 0.0, "end": 12.345, "title": "Point 1 — Approbation du procès-verbal", "kind": "start"},
        {"start": 12.345, "end": 100.0, "title": "Marc Petit", "kind": "floor_given"},
    ]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "00:00:00.000"), (12.3456, "00:00:12.346"), (59.9996, "00:01:00.000"), (3723.5, "01:02:03.500"),
    (100 * 3600, "100:00:00.000"),
])
def test_webvtt_time(seconds: float, text: str) -> None:
    assert webvtt_time(seconds) == text


def test_titles_stay_on_one_line_without_a_timing_arrow() -> None:
    text = to_webvtt([Chapter(0, 5, "Vote : a --> b\nsur deux lignes", "vote_opened")])
    assert "a → b sur deux lignes" in text
    assert_valid_webvtt(text, 1)


TIMING = re.compile(r"(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})")


def assert_valid_webvtt(text: str, cues: int) -> None:
    """The WebVTT syntax the browsers parse: header, blank line, then cues (id, timing, one
    text line, blank line) in order, each ending after it starts and where the next begins."""
    assert text.startswith("WEBVTT\n\n") or (cues == 0 and text == "WEBVTT\n")
    blocks = [b for b in text.split("\n\n")[1:] if b]
    assert len(blocks) == cues
    previous_end = 0
    for number, block in enumerate(blocks, start=1):
        lines = block.strip("\n").split("\n")
        assert len(lines) == 3 and lines[0] == str(number)
        match = TIMING.fullmatch(lines[1])
        assert match, lines[1]
        v = [int(g) for g in match.groups()]
        start = v[0] * 3_600_000 + v[1] * 60_000 + v[2] * 1000 + v[3]
        end = v[4] * 3_600_000 + v[5] * 60_000 + v[6] * 1000 + v[7]
        assert end > start and start == previous_end
        previous_end = end
        assert lines[2] and "-->" not in lines[2]

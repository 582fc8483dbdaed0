"""Which videos each member receives: the sitting's ranking and each member's share of it."""

from __future__ import annotations

import pytest

from signaling.video_selection import RECENT_SPEAKERS, Candidate, rank, select, spoke


def cam(owner: str, role: str = "councillor", source: str = "camera") -> Candidate:
    return Candidate(f"{owner}-{source}", owner, source, role)


SITTING = [
    cam("alain"),
    cam("beatrice"),
    cam("chair", "chair"),
    cam("chamber", "chamber"),
    cam("denis"),
    cam("denis", source="screen"),
    cam("eve"),
]


@pytest.mark.parametrize(
    ("floor", "recent", "expected"),
    [
        # nobody spoke, nobody has the floor: the screen, the chair, the chamber, then publishing order
        (
            None,
            [],
            [
                "denis-screen",
                "chair-camera",
                "chamber-camera",
                "alain-camera",
                "beatrice-camera",
                "denis-camera",
                "eve-camera",
            ],
        ),
        # the last speakers come first among the members, the most recent first
        (
            None,
            ["eve", "beatrice"],
            [
                "denis-screen",
                "chair-camera",
                "chamber-camera",
                "eve-camera",
                "beatrice-camera",
                "alain-camera",
                "denis-camera",
            ],
        ),
        # the floor holder comes right after the screen, before the chair
        (
            "eve",
            ["alain"],
            [
                "denis-screen",
                "eve-camera",
                "chair-camera",
                "chamber-camera",
                "alain-camera",
                "beatrice-camera",
                "denis-camera",
            ],
        ),
        # the chair speaking (recent) stays in the chair's place
        (
            None,
            ["chair", "alain"],
            [
                "denis-screen",
                "chair-camera",
                "chamber-camera",
                "alain-camera",
                "beatrice-camera",
                "denis-camera",
                "eve-camera",
            ],
        ),
        # the floor holder's screen is still a screen
        (
            "denis",
            [],
            [
                "denis-screen",
                "denis-camera",
                "chair-camera",
                "chamber-camera",
                "alain-camera",
                "beatrice-camera",
                "eve-camera",
            ],
        ),
    ],
)
def test_the_sittings_ranking(floor: str | None, recent: list[str], expected: list[str]) -> None:
    assert [c.producer_id for c in rank(SITTING, floor=floor, recent_speakers=recent)] == expected


@pytest.mark.parametrize(
    ("member", "limit", "expected"),
    [
        ("alain", 3, ["denis-screen", "chair-camera", "chamber-camera"]),
        ("chair", 3, ["denis-screen", "chamber-camera", "alain-camera"]),  # never one's own camera
        ("denis", 2, ["chair-camera", "chamber-camera"]),  # nor one's own screen
        ("alain", 0, []),
        (
            "alain",
            100,
            ["denis-screen", "chair-camera", "chamber-camera", "beatrice-camera", "denis-camera", "eve-camera"],
        ),
    ],
)
def test_each_members_share(member: str, limit: int, expected: list[str]) -> None:
    ranked = rank(SITTING, floor=None, recent_speakers=[])
    assert [c.producer_id for c in select(ranked, member, limit)] == expected


def test_recent_speakers_move_to_the_front_and_are_bounded() -> None:
    recent: list[str] = []
    for seat in ["a", "b", "a", "c"]:
        spoke(recent, seat)
    assert recent == ["c", "a", "b"]
    spoke(recent, "c")
    assert recent == ["c", "a", "b"]
    for index in range(40):
        spoke(recent, f"s{index}")
    assert len(recent) == RECENT_SPEAKERS and recent[0] == "s39"

"""The vocabulary of the sitting's state machines: actors, events, effects, refusals.

Moderation (:mod:`signaling.moderation`) and deliberation
(:mod:`signaling.deliberation`) are pure: ``decide(state, actor, command, now)``
checks a command and returns a :class:`Decision` (events to journal and apply,
effects for the session to carry out) or raises :class:`Refused`; ``apply``
folds one event into the state. Replaying the journal's events rebuilds the
state after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .protocol import Role


@dataclass(frozen=True)
class Actor:
    seat: str
    role: Role


SERVER = Actor(seat="server", role="chair")


@dataclass(frozen=True)
class Event:
    """Something that happened in the sitting: journalled, then applied to the state."""

    type: str
    data: dict[str, Any]
    actor: str = "server"
    at: float = 0.0


@dataclass(frozen=True)
class Disconnect:
    seat: str
    reason: str


@dataclass(frozen=True)
class Admit:
    seat: str


@dataclass(frozen=True)
class Warn:
    """A message for the chair (and secretaries): quorum lost, a vote blocked..."""

    message: str


Effect = Disconnect | Admit | Warn


@dataclass
class Decision:
    events: list[Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)

    def add(self, actor: Actor, now: float, type: str, **data: Any) -> None:
        self.events.append(Event(type=type, data=data, actor=actor.seat, at=now))


class Refused(Exception):
    """A command the sender may not give, or not now. ``code`` is a protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

"""Building a sitting's state: from its settings, then by replaying its journal."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from config.settings import SittingSettings

from . import rules
from .assembly import Event
from .journal import Entry
from .regimes import regime
from .sitting_state import AgendaItem, Member, SittingState


def sitting_state_from(spec: SittingSettings) -> SittingState:
    return SittingState(
        spec.id,
        regime=regime(spec.regime),
        mode=spec.mode,
        members={m.id: Member(m.id, m.name, m.group) for m in spec.members},
        agenda=[
            AgendaItem(i.id, n, i.title, i.kind, i.no_remote_vote, i.time_limit_s)
            for n, i in enumerate(spec.agenda, start=1)
        ],
        chair=spec.chair,
    )


def replay(state: SittingState, entries: Iterable[Entry]) -> None:
    """Apply journalled events in order: the state as it was before a restart."""
    for entry in entries:
        at = datetime.fromisoformat(entry.at.replace("Z", "+00:00")).timestamp()
        rules.apply(state, Event(entry.type, dict(entry.data), entry.actor, at))

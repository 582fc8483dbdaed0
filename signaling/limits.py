"""What one connection, one sitting and the server will take, each refusal a clear error.

* messages per connection: a token bucket (``limits.messages_per_second``, burst
  ``limits.message_burst``); a message over it is ignored with a non-fatal
  ``rate_limited`` error, and after ``limits.max_refused_messages`` of them the
  connection is closed (fatal ``rate_limited``);
* people per sitting (``limits.max_participants``): one more gets a fatal
  ``forbidden`` « sitting full » (the chair and the secretary are always let in);
* sittings in progress per server (``limits.max_sittings``): a first person joining
  one more gets a fatal ``forbidden`` « server full »;
* ICE candidates per offer or answer (``limits.max_remote_candidates``): counted
  before the SFU sees the SDP; more gets ``bad_sdp``.

Revoked invitations (signaling/revocation.py) are refused here too, at ``hello``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from config.settings import LimitSettings
from sfu.errors import NegotiationError

from . import protocol as p
from .revocation import REVOKED_MESSAGE, refuses_hello

if TYPE_CHECKING:
    from .session import Session
    from .sitting import Sitting
    from .tokens import Invitation

ALWAYS_ADMITTED: tuple[p.Role, ...] = ("chair", "secretary")  # a sitting cannot run without them


class MessageRate:
    """A token bucket over one connection's incoming messages."""

    def __init__(self, limits: LimitSettings) -> None:
        self.rate = limits.messages_per_second
        self.burst = float(limits.message_burst)
        self.max_refused = limits.max_refused_messages
        self.tokens = self.burst
        self.refused = 0
        self._last = time.monotonic()

    def take(self) -> bool:
        """One message arrives: True if within the rate."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.refused += 1
        return False

    def refuse(self, session: Session) -> bool:
        """True if this message must be ignored; tells the client, closes on sustained abuse."""
        if self.take():
            return False
        if self.refused >= self.max_refused:
            session.error("rate_limited", f"too many messages ({self.refused} refused): disconnected", fatal=True)
        else:
            session.error("rate_limited", f"too many messages (at most {self.rate:g} per second): message ignored")
        return True


def _connected(sitting: Sitting) -> int:
    return sum(1 for seat in sitting.seats.values() if seat.session is not None)


def admission_refusal(
    session: Session, sitting: Sitting, invitation: Invitation, token: str
) -> tuple[p.ErrorCode, str] | None:
    """Why this ``hello`` must be refused (code, message), or None to let it in."""
    if refuses_hello(session, sitting.id, invitation.seat, token):
        return "bad_token", REVOKED_MESSAGE
    limits = session.hub.settings.limits
    current = sitting.seats.get(invitation.seat)
    rejoining = current is not None and current.session is not None  # replaces its own connection
    if rejoining or invitation.role in ALWAYS_ADMITTED:
        return None
    if _connected(sitting) == 0:
        in_progress = sum(1 for s in session.hub.sittings.values() if _connected(s) > 0)
        if in_progress >= limits.max_sittings:
            return "forbidden", f"server full: {in_progress} sittings in progress, at most {limits.max_sittings}"
    if _connected(sitting) >= limits.max_participants:
        return "forbidden", f"sitting full: {limits.max_participants} people connected at most"
    return None


def count_candidates(sdp: str) -> int:
    """Distinct ``a=candidate`` lines: bundled m-lines repeat the same ones."""
    return len({line.strip() for line in sdp.splitlines() if line.strip().lower().startswith("a=candidate:")})


def check_candidates(message: p.ClientMessage, limit: int) -> None:
    """Refuse (``bad_sdp``) an offer or answer carrying more ICE candidates than ``limit``."""
    if isinstance(message, (p.Publish, p.SubscribeAnswer)):
        count = count_candidates(message.sdp)
        if count > limit:
            raise NegotiationError("bad_sdp", f"too many ICE candidates in the SDP: {count}, at most {limit}")

"""Time-limited TURN credentials (the "TURN REST API" shared-secret scheme).

The TURN server (coturn with ``use-auth-secret`` and ``static-auth-secret=SECRET``) and
Hemicycle share one secret and nothing else: no user database, no call between them.
For each participant Hemicycle mints

    username   = "<expiry, unix time>:<seat id>"
    credential = base64(HMAC-SHA1(SECRET, username))

and coturn, on every authenticated request, recomputes the HMAC from the username and
refuses it once the expiry has passed. See docs/turn.md.

The secret and the credentials are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class TurnCredential:
    username: str
    credential: str
    expires_at: int

    def __repr__(self) -> str:  # never show the credential by accident
        return f"TurnCredential(username={self.username!r}, expires_at={self.expires_at})"


def credential_for(username: str, secret: str) -> str:
    """coturn's password for ``username``: base64 of HMAC-SHA1 keyed with the shared secret."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def mint(secret: str, user: str, ttl: int, now: float | None = None) -> TurnCredential:
    """A credential for ``user`` valid ``ttl`` seconds from ``now`` (default: the clock)."""
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    expires_at = int(now if now is not None else time.time()) + int(ttl)
    username = f"{expires_at}:{user}"
    return TurnCredential(username, credential_for(username, secret), expires_at)


def ice_servers_for(settings: Settings, user: str, now: float | None = None) -> list[dict[str, Any]]:
    """The ``ice_servers`` of one participant's ``welcome``.

    The static ``ice.servers`` as configured, then, when ``turn.urls`` and ``turn.secret``
    are set, one entry with all the TURN URLs and a fresh credential for ``user``.
    """
    servers: list[dict[str, Any]] = [s.model_dump() for s in settings.ice.servers]
    turn = settings.turn
    if turn.urls and turn.secret is not None:
        cred = mint(turn.secret.get_secret_value(), user, turn.ttl, now)
        servers.append({"urls": list(turn.urls), "username": cred.username, "credential": cred.credential})
        log.debug("TURN credential for %s valid until %d", user, cred.expires_at)
    return servers

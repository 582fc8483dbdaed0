"""Signed invitations: who (seat, name), as what (role), to which sitting, until when.

Format: ``base64url(JSON payload) "." base64url(HMAC-SHA256(key, payload))``.
The server alone holds the key. Tokens travel in the URL fragment and over the
WebSocket, never in a query string, and are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .protocol import Role

ROLES: tuple[Role, ...] = ("chair", "secretary", "councillor", "public", "technician", "chamber")


class TokenError(Exception):
    """A token was refused. ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Invitation:
    sitting: str
    seat: str
    name: str
    role: Role
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("signing key must be at least 32 bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> TokenSigner:
        """Load the key, creating it (mode 0600) on first start."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_bytes(secrets.token_bytes(32))
        return cls(path.read_bytes())

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def mint(self, sitting: str, name: str, role: Role, lifetime: float, seat: str | None = None) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        payload = {
            "v": 1,
            "sit": sitting,
            # the room's PC and its encoder (WHIP) share one seat: the chamber never receives itself
            "seat": seat or ("chamber" if role == "chamber" else secrets.token_hex(8)),
            "name": name,
            "role": role,
            "exp": int(time.time() + lifetime),
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str, now: float | None = None) -> Invitation:
        if not token.isascii():
            raise TokenError("bad_token", "malformed invitation")
        body, dot, mac = token.partition(".")
        if not dot or not body or not mac:
            raise TokenError("bad_token", "malformed invitation")
        if not hmac.compare_digest(self._mac(body), mac):
            raise TokenError("bad_token", "invitation signature is invalid")
        try:
            payload = json.loads(_unb64(body))
            invitation = Invitation(
                sitting=str(payload["sit"]),
                seat=str(payload["seat"]),
                name=str(payload["name"]),
                role=payload["role"],
                expires=int(payload["exp"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError("bad_token", "invitation content is invalid") from exc
        if invitation.role not in ROLES:
            raise TokenError("bad_token", "invitation role is invalid")
        if invitation.expires < (time.time() if now is None else now):
            raise TokenError("expired_token", "invitation has expired")
        return invitation

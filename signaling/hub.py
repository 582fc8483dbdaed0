"""The server's shared state: settings, the token signer, and the sittings it holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from config import Settings

from .programme import Programme
from .sitting import Sitting
from .tokens import TokenSigner


@dataclass
class Hub:
    settings: Settings
    signer: TokenSigner
    sittings: dict[str, Sitting] = field(default_factory=dict)
    programmes: dict[str, Programme] = field(default_factory=dict)  # one per sitting: the public stream

    def invitation_url(self, token: str) -> str:
        return f"{self.settings.base_url}/join#token={token}"

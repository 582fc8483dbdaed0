"""Shared fixtures: an in-process server on loopback, and invitations to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from config import Settings
from signaling.app import HUB
from signaling.hub import Hub
from tests.servers import start_app


@dataclass
class RunningServer:
    base_url: str
    hub: Hub
    app: web.Application

    def token(self, name: str, role: str = "councillor", sitting: str = "demo", lifetime: float = 3600, **kw: Any) -> str:
        return self.hub.signer.mint(sitting, name, role, lifetime=lifetime, **kw)  # type: ignore[arg-type]

    @property
    def router(self) -> Any:
        return self.hub.sittings["demo"].router


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The programme (a worker encoding 720p30) only where a test is about it: see tests/test_programme*.py.
    return Settings(port=0, data_dir=tmp_path, demo=False, programme={"enabled": False})


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    runner, base_url = await start_app(settings)
    yield RunningServer(base_url, runner.app[HUB], runner.app)
    await runner.cleanup()

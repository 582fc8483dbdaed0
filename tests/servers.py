"""Starting the real application in the test's event loop, on loopback."""

from __future__ import annotations

from aiohttp import web

from config import Settings
from signaling.app import create_app


async def start_app(settings: Settings) -> tuple[web.AppRunner, str]:
    """The app from ``create_app`` listening on 127.0.0.1 (any free port); returns it and its URL."""
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

"""The server refuses to start without its web client, and says how it must be installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from signaling import web_base


def test_the_checkout_serves_its_web_client() -> None:
    app = web.Application()
    web_base.add_static(app)
    assert any(r.canonical == "/static" for r in app.router.resources())


def test_an_install_without_the_web_client_fails_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # what a non-editable "pip install ." gives: the packages in site-packages, no web_client/ beside them
    monkeypatch.setattr(web_base, "WEB_CLIENT", tmp_path / "web_client")
    with pytest.raises(RuntimeError, match="pip install -e"):
        web_base.add_static(web.Application())

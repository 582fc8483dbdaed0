"""TURN REST API credentials (coturn ``use-auth-secret``): scheme, expiry, settings, welcome, no leak.

The end-to-end check against a real coturn and real browsers is tests/e2e/test_turn_relay.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from config import Settings, load_settings
from signaling.turn import credential_for, ice_servers_for, mint

SECRET = "north-wind-7f3a9c1e-not-a-real-secret"
TURN_URLS = ["turn:turn.mairie.example:3478?transport=udp", "turns:turn.mairie.example:443?transport=tcp"]


def _coturn_password(secret: str, username: str) -> str:
    """What coturn computes for a REST API user, written out independently."""
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def test_credential_is_base64_hmac_sha1_of_expiry_and_seat() -> None:
    cred = mint(SECRET, "m-dupont", ttl=3600, now=1_700_000_000.7)
    assert cred.username == "1700003600:m-dupont"
    assert cred.expires_at == 1_700_003_600
    assert cred.credential == _coturn_password(SECRET, "1700003600:m-dupont")
    assert len(base64.b64decode(cred.credential)) == 20  # a SHA-1 digest
    assert SECRET not in repr(cred) and cred.credential not in repr(cred)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_credential_agrees_with_openssl() -> None:
    username = "1893456000:seat-42"
    out = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", SECRET, "-binary"],
        input=username.encode(),
        capture_output=True,
        check=True,
    ).stdout
    assert credential_for(username, SECRET) == base64.b64encode(out).decode()


def test_expiry_is_now_plus_ttl_and_changes_with_time() -> None:
    before = int(time.time())
    cred = mint(SECRET, "a", ttl=6 * 3600)
    after = int(time.time())
    assert before + 6 * 3600 <= cred.expires_at <= after + 6 * 3600
    assert int(cred.username.split(":", 1)[0]) == cred.expires_at
    later = mint(SECRET, "a", ttl=6 * 3600, now=cred.expires_at)  # a rejoin gets a new credential
    assert later.expires_at == cred.expires_at + 6 * 3600 and later.credential != cred.credential
    with pytest.raises(ValueError):
        mint(SECRET, "a", ttl=0)


def test_ice_servers_keep_static_servers_and_add_one_turn_entry() -> None:
    settings = Settings(
        demo=False,
        ice={"servers": [{"urls": ["stun:stun.mairie.example:3478"]}]},
        turn={"urls": TURN_URLS, "secret": SECRET, "ttl": 600},
    )
    servers = ice_servers_for(settings, "m-dupont", now=1_000_000)
    assert servers[0] == {"urls": ["stun:stun.mairie.example:3478"], "username": None, "credential": None}
    assert servers[1] == {
        "urls": TURN_URLS,
        "username": "1000600:m-dupont",
        "credential": _coturn_password(SECRET, "1000600:m-dupont"),
    }
    # each participant gets their own
    other = ice_servers_for(settings, "m-martin", now=1_000_000)[1]
    assert other["username"] == "1000600:m-martin" and other["credential"] != servers[1]["credential"]


def test_no_turn_entry_without_urls_or_secret() -> None:
    assert ice_servers_for(Settings(demo=False), "x") == []
    assert ice_servers_for(Settings(demo=False, turn={"urls": TURN_URLS}), "x") == []
    assert ice_servers_for(Settings(demo=False, turn={"secret": SECRET}), "x") == []


def test_turn_settings_defaults_and_validation() -> None:
    turn = Settings(demo=False).turn
    assert turn.urls == [] and turn.secret is None and turn.ttl == 6 * 3600
    with pytest.raises(ValidationError):
        Settings(demo=False, turn={"urls": ["stun:stun.example:3478"]})
    with pytest.raises(ValidationError):
        Settings(demo=False, turn={"ttl": 0})


def test_secret_from_environment_keeps_the_files_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hemicycle.toml"
    path.write_text(f"[turn]\nurls = {json.dumps(TURN_URLS)}\nttl = 7200\n")
    monkeypatch.setenv("HEMICYCLE_TURN__SECRET", SECRET)
    settings = load_settings(path)
    assert settings.turn.urls == TURN_URLS
    assert settings.turn.ttl == 7200
    assert settings.turn.secret is not None and settings.turn.secret.get_secret_value() == SECRET
    # the secret does not show in the settings' repr or JSON dump
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in settings.model_dump_json()


def test_minting_logs_neither_secret_nor_credential(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(demo=False, turn={"urls": TURN_URLS, "secret": SECRET})
    with caplog.at_level(logging.DEBUG):
        cred = ice_servers_for(settings, "m-dupont")[-1]["credential"]
    assert SECRET not in caplog.text and cred not in caplog.text


# ------------------------------------------------------------------ the welcome message, in-process server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:  # overrides tests/conftest.py's: the same, with TURN
    return Settings(
        port=0,
        data_dir=tmp_path,
        demo=False,
        ice={"servers": [{"urls": ["stun:stun.mairie.example:3478"]}]},
        turn={"urls": TURN_URLS, "secret": SECRET, "ttl": 3600},
    )


async def _welcome(base_url: str, token: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(base_url.replace("http", "ws", 1) + "/ws")
        await ws.send_str(json.dumps({"type": "hello", "version": 1, "token": token}))
        while True:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data: dict[str, Any] = json.loads(msg.data)
            if data["type"] == "welcome":
                await ws.close()
                return data


@pytest.mark.asyncio
async def test_welcome_carries_a_fresh_credential_per_participant(server, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    t0 = int(time.time())
    welcomes = [await _welcome(server.base_url, server.token(name)) for name in ("Claire Dupont", "Marc Martin")]
    t1 = int(time.time())
    credentials = []
    for welcome in welcomes:
        stun, turn = welcome["ice_servers"]
        assert stun["urls"] == ["stun:stun.mairie.example:3478"]
        assert turn["urls"] == TURN_URLS
        expiry, seat = turn["username"].split(":", 1)
        assert seat == welcome["you"]["id"]
        assert t0 + 3600 <= int(expiry) <= t1 + 3600
        assert turn["credential"] == _coturn_password(SECRET, turn["username"])
        credentials.append(turn["credential"])
    assert credentials[0] != credentials[1]
    # nothing logged by the server (at DEBUG) shows the secret or a credential
    assert SECRET not in caplog.text
    assert not any(c in caplog.text for c in credentials)
    # the SFU itself does not use the TURN server: its RTCConfiguration gets the static servers only
    assert server.router.ice_servers == [{"urls": ["stun:stun.mairie.example:3478"]}]

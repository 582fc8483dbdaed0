"""The ``hemicycle`` command as a user runs it: serve with no config, and invite."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from signaling.tokens import TokenSigner


@pytest.mark.asyncio
async def test_serve_with_embedded_defaults_prints_links_and_serves_pages(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling", "serve", "--port", "0", "--secret-file", str(tmp_path / "key"),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "server exited before it was ready"
            lines.append(line)
            if line.startswith("HEMICYCLE READY "):
                base = line.split()[-1]
                break
        links = [line.split()[-1] for line in lines if "/join#token=" in line]
        assert len(links) == 5  # chair, three councillors, public
        signer = TokenSigner((tmp_path / "key").read_bytes())
        roles = sorted(signer.verify(link.split("#token=")[1]).role for link in links)
        assert roles == ["chair", "councillor", "councillor", "councillor", "public"]
        async with aiohttp.ClientSession() as http:
            for path in ("/", "/join", "/healthz"):
                async with http.get(base + path) as response:
                    assert response.status == 200, path
                    assert "'self'" in response.headers["Content-Security-Policy"]
            async with http.get(base + "/api/demo-links") as response:
                data = await response.json()
                assert [link["url"] for link in data["links"]] == links
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0  # a clean shutdown on SIGTERM


def test_invite_mints_a_link_the_server_accepts(tmp_path: Path) -> None:
    key = tmp_path / "key"
    out = subprocess.run(
        [sys.executable, "-m", "signaling", "invite", "--name", "Camille Martin", "--role", "chair",
         "--secret-file", str(key), "--base-url", "https://visio.example"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout.strip()
    assert out.startswith("https://visio.example/join#token=")
    invitation = TokenSigner(key.read_bytes()).verify(out.split("#token=")[1])
    assert (invitation.name, invitation.role, invitation.sitting) == ("Camille Martin", "chair", "demo")

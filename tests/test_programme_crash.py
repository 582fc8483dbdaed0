"""kill -9 of the server while the programme records: the recording made so far plays.

The worker writes each HLS segment as it is produced; when the server dies its stdin
closes and it finishes the playlist itself. Whatever the end, the segments already
written decode, and the replay serves the run after the restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import av
import psutil
import pytest

from signaling.tokens import TokenSigner
from tests.peers import Peer
from tests.test_crash_safety import free_port
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio

SMALL = {"HEMICYCLE_PROGRAMME__WIDTH": "320", "HEMICYCLE_PROGRAMME__HEIGHT": "180", "HEMICYCLE_PROGRAMME__FPS": "15",
         "HEMICYCLE_PROGRAMME__HLS_SEGMENT_S": "1"}


async def start(data: Path, port: int) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMICYCLE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling", "serve",
        "--port", str(port), "--no-demo", "--sitting", "demo",
        env={**env, **SMALL, "HEMICYCLE_DATA_DIR": str(data)}, cwd=data,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, "the server exited before it was ready"
        if line.startswith("HEMICYCLE READY"):
            return proc


async def test_recording_survives_kill_9_of_the_server(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = await start(tmp_path, port)
    signer = TokenSigner((tmp_path / "secret.key").read_bytes())
    member = Peer(base, signer.mint("demo", "Alice", "councillor", 3600), "red", 440.0)
    runs = tmp_path / "recordings" / "demo"
    try:
        await member.join()
        await member.publish()
        await wait_for(lambda: runs.exists() and any(len(list(r.glob("seg*.ts"))) >= 4 for r in runs.iterdir()),
                       timeout=40)
        workers = [c for c in psutil.Process(server.pid).children() if "sfu.programme" in " ".join(c.cmdline())]
        assert len(workers) == 1
    finally:
        server.send_signal(signal.SIGKILL)
        await server.wait()
        await member.close()
    psutil.wait_procs(workers, timeout=15)  # its stdin closed: it ends the run by itself
    assert not workers[0].is_running()
    (run,) = list(runs.iterdir())
    segments = sorted(run.glob("seg*.ts"))
    decoded = 0
    for segment in segments:
        with av.open(str(segment)) as container:
            decoded += sum(1 for _ in container.decode(video=0))
    assert decoded >= 15 * 3

    server = await start(tmp_path, port)  # the replay serves the run
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/replay/demo/runs.json") as response:
                assert response.status == 200
                listing = await response.json()
            assert [r["id"] for r in listing["runs"]] == [run.name]
            async with http.get(f"{base}/replay/demo/{run.name}/programme.m3u8") as response:
                playlist = await response.text()
            assert "#EXT-X-ENDLIST" in playlist and playlist.count("#EXTINF") >= len(segments) - 1
    finally:
        server.send_signal(signal.SIGTERM)
        await server.wait()

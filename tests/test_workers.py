"""``server.workers = 2``: the real server (front + 2 worker processes), two sittings, aiortc members.

Each sitting lands on its own process; media flows in both; signaling goes through the
front's WebSocket relay (a chair's mute included); ``/metrics`` gathers both workers; bad
input gets the errors and close codes of a single server; kill -9 of one worker leaves the
other sitting served, and the killed one comes back with its journal (members rejoin).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.workers import round_trips
from config import Settings
from config.settings import LimitSettings
from sfu import aiortc_glue
from signaling.tokens import TokenSigner
from signaling.workers import place, worker_count, worker_settings
from tests.peers import Peer
from tests.servers import start_app
from tests.test_bad_input import CASES
from tests.test_media_relay import wait_for

CONFIG = """
demo = false
[server]
workers = 2
[programme]
enabled = false
[[sittings]]
id = "a"
title = "Conseil municipal A"
[[sittings]]
id = "b"
title = "Commission B"
"""


class Front:
    def __init__(self, proc: asyncio.subprocess.Process, base_url: str, signer: TokenSigner) -> None:
        self.proc, self.base_url, self.signer = proc, base_url, signer

    def token(self, name: str, role: str = "councillor", sitting: str = "a", lifetime: float = 3600, **kw: Any) -> str:
        return self.signer.mint(sitting, name, role, lifetime=lifetime, **kw)  # type: ignore[arg-type]

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(self.base_url + path) as response:
            return response.status, await response.text()

    async def health(self) -> dict[str, Any]:
        status, text = await self.get("/healthz")
        assert status == 200
        return json.loads(text)  # type: ignore[no-any-return]


@pytest.fixture
async def front(tmp_path: Path) -> AsyncIterator[Front]:
    aiortc_glue.restrict_host_addresses(["127.0.0.1"])  # the members' ICE, in this process (no in-process server)
    (tmp_path / "hemicycle.toml").write_text(CONFIG, encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "signaling",
        "serve",
        "--config",
        "hemicycle.toml",
        "--port",
        "0",
        env={**os.environ, "HEMICYCLE_DATA_DIR": str(tmp_path)},
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line, "the server exited before it was ready"
        if line.startswith("HEMICYCLE READY"):
            break
    drain = asyncio.get_running_loop().create_task(proc.stdout.read())
    yield Front(proc, line.split()[-1], TokenSigner((tmp_path / "secret.key").read_bytes()))
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 30) == 0  # a clean stop, workers included
    drain.cancel()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def joined(base_url: str, token: str, colour: str, tone: float) -> Peer:
    peer = Peer(base_url, token, colour, tone)
    await peer.join()
    await peer.publish()
    return peer


def frames_from(receiver: Peer, sender: Peer) -> int:
    got = receiver.received.get(sender.me or "")
    return 0 if got is None else len(got.counters)


async def both_see_each_other(x: Peer, y: Peer, colours: tuple[str, str], more: int = 20) -> None:
    start = (frames_from(x, y), frames_from(y, x))
    await wait_for(lambda: frames_from(x, y) > start[0] + more and frames_from(y, x) > start[1] + more, timeout=30)
    assert x.received[y.me or ""].colours[-1] == colours[1]
    assert y.received[x.me or ""].colours[-1] == colours[0]


def mic_muted(observer: Peer, member: str | None) -> bool:
    return any(
        m["type"] == "participant_updated"
        and m["participant"]["id"] == member
        and {"source": "mic", "muted": True} in m["participant"]["sources"]
        for m in observer.messages
    )


@pytest.mark.asyncio
async def test_two_sittings_two_workers_media_signaling_metrics_and_kill_9(front: Front) -> None:
    health = await front.health()
    owner = {s: w["pid"] for w in health["workers"] for s in w["sittings"]}
    assert set(owner) == {"a", "b"} and owner["a"] != owner["b"]  # one sitting per process
    assert front.proc.pid not in owner.values()
    trips = await round_trips(front.base_url, front.token("Public", "public", sitting="b"))
    print(f"signaling round trip through the front: median {statistics.median(trips):.2f} ms, max {max(trips):.2f}")
    assert statistics.median(trips) < 10
    peers: list[Peer] = []
    try:
        chair_a = await joined(front.base_url, front.token("Maire", "chair"), "red", 440)
        member_a = await joined(front.base_url, front.token("Élu A"), "green", 660)
        chair_b = await joined(front.base_url, front.token("Président B", "chair", sitting="b"), "blue", 880)
        member_b = await joined(front.base_url, front.token("Élue B", sitting="b"), "yellow", 550)
        peers += [chair_a, member_a, chair_b, member_b]
        await both_see_each_other(chair_a, member_a, ("red", "green"))
        await both_see_each_other(chair_b, member_b, ("blue", "yellow"))
        assert member_a.me not in chair_b.participants  # sittings stay apart

        # signaling through the relay: the chair mutes a member, everyone hears of it
        await chair_a.send({"type": "mute", "participant_id": member_a.me, "source": "mic"})
        await wait_for(lambda: mic_muted(chair_a, member_a.me))

        # HTTP by sitting: each /live/<sitting> answers from its own worker
        for sitting, title in (("a", "Conseil municipal A"), ("b", "Commission B")):
            status, text = await front.get(f"/live/{sitting}/state.json")
            assert status == 200 and json.loads(text)["title"] == title
        assert (await front.get("/live/nowhere"))[0] == 404
        assert (await front.get("/replay/index.json"))[0] == 200

        # /metrics: both workers, each with its sitting, and every process's CPU
        status, text = await front.get("/metrics")
        assert status == 200
        wa, wb = (str(next(w["index"] for w in health["workers"] if s in w["sittings"])) for s in ("a", "b"))
        assert metric(text, "hemicycle_rtp_forwarded_packets_total", sitting="a", worker=wa) > 0
        assert metric(text, "hemicycle_rtp_forwarded_packets_total", sitting="b", worker=wb) > 0
        assert metric(text, "hemicycle_participants", sitting="a", role="chair", worker=wa) == 1
        for worker in (wa, wb, "front"):
            assert metric(text, "process_cpu_seconds_total", worker=worker) > 0
        assert metric(text, "hemicycle_worker_up") == 2

        # kill -9 the worker of b: a goes on; b's members are told (1012) and come back
        os.kill(owner["b"], signal.SIGKILL)
        await wait_for(lambda: chair_b.ws is not None and chair_b.ws.closed, timeout=10)
        assert chair_b.ws is not None and chair_b.ws.close_code == 1012  # service restart: reconnect
        await both_see_each_other(chair_a, member_a, ("red", "green"))
        again = await front.health()
        deadline = time.monotonic() + 30
        while not all(w["up"] for w in again["workers"]):
            assert time.monotonic() < deadline, again
            await asyncio.sleep(0.2)
            again = await front.health()
        new_pid = next(w["pid"] for w in again["workers"] if "b" in w["sittings"])
        assert new_pid != owner["b"] and sum(w["restarts"] for w in again["workers"]) == 1
        for peer in (chair_b, member_b):
            await peer.close()
        chair_b = await joined(front.base_url, chair_b.token, "blue", 880)
        member_b = await joined(front.base_url, member_b.token, "yellow", 550)
        peers += [chair_b, member_b]
        await both_see_each_other(chair_b, member_b, ("blue", "yellow"))
        await chair_b.send({"type": "mute", "participant_id": member_b.me, "source": "mic"})
        await wait_for(lambda: mic_muted(chair_b, member_b.me))
        await both_see_each_other(chair_a, member_a, ("red", "green"))
    finally:
        for peer in peers:
            await peer.close()


async def _exchange(base_url: str, frames: list[Any]) -> tuple[list[dict[str, Any]], int | None]:
    """Raw frames on a fresh WebSocket: the replies, and the close code (None: left open)."""
    replies: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(base_url.replace("http", "ws", 1) + "/ws", max_msg_size=0)
        for frame in frames:
            try:
                await (
                    ws.send_bytes(frame)
                    if isinstance(frame, bytes)
                    else ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))
                )
            except ConnectionError:  # a frame beyond aiohttp's own cut: the server drops the connection mid-send
                break
        while True:
            try:
                msg = await ws.receive(timeout=2)
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            replies.append(json.loads(msg.data))
        code = ws.close_code if ws.closed else None
        await ws.close()
    return replies, code


@pytest.mark.asyncio
async def test_bad_input_through_the_front_gets_what_a_single_server_says(front: Front, tmp_path: Path) -> None:
    single_settings = Settings(
        port=0,
        data_dir=tmp_path / "single",
        secret_file=tmp_path / "secret.key",
        demo=False,
        programme={"enabled": False},
        sittings=[{"id": "a", "title": "Conseil municipal A"}],
    )
    runner, single = await start_app(single_settings)
    cases = {
        **CASES,
        "binary frame": (lambda s: [b"\x00\x01"], "bad_message"),
        "far too large": (lambda s: ["x" * (5 * LimitSettings().max_message_bytes)], None),
    }
    try:
        for case, (frames, code) in cases.items():
            through_front = await _exchange(front.base_url, frames(front))
            alone = await _exchange(single, frames(front))
            errors = [[r for r in replies if r["type"] == "error"] for replies, _ in (through_front, alone)]
            assert errors[0] == errors[1], case  # code, message and fatal alike
            assert code is None or [e["code"] for e in errors[0][:1]] == [code], (case, errors)
            assert through_front[1] == alone[1], (case, through_front[1], alone[1])  # the same close code
        async with aiohttp.ClientSession() as http:  # HTTP routed by a token: refused alike
            for body in ({"token": "forged.token"}, {"token": front.token("X", sitting="b")}, [1]):
                answers = []
                for base in (front.base_url, single):
                    async with http.post(base + "/api/acknowledge", json=body) as response:
                        answers.append((response.status, await response.text()))
                assert answers[0] == answers[1], (body, answers)
    finally:
        await runner.cleanup()


def test_placement_balances_by_expected_load() -> None:
    members = [{"id": f"m{i}", "name": f"M{i}"} for i in range(45)]
    specs = Settings(
        sittings=[
            {"id": "small1", "title": "s"},
            {"id": "big", "title": "b", "members": members},
            {"id": "small2", "title": "s"},
            {"id": "small3", "title": "s"},
        ]
    ).sittings
    assert place(specs, 2) == [["big"], ["small1", "small2", "small3"]]  # 45² outweighs 3 × 20²
    assert place(specs[:1] + specs[2:], 2) == [["small1", "small3"], ["small2"]]
    assert place(specs, 1) == [["big", "small1", "small2", "small3"]]


def test_worker_count_and_worker_settings() -> None:
    two = [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}]
    assert worker_count(Settings()) == 1  # the default: one process, as before
    assert worker_count(Settings(server={"workers": 4}, sittings=two)) == 2  # never more than the sittings
    assert worker_count(Settings(server={"workers": "auto"}, sittings=two * 50)) == min(
        100, len(os.sched_getaffinity(0))
    )
    with pytest.raises(ValueError):
        Settings(server={"workers": -1})
    front = Settings(
        server={"workers": 2},
        sittings=two,
        ice={"udp_port": 40000},
        tls={"self_signed": True},
        metrics={"token": "s3cret"},
        recording={"retention_days": 30},
    )
    one = worker_settings(front, 1, ["b"], "https://visio.example")
    assert [s.id for s in one.sittings] == ["b"] and one.ice.udp_port == 40001
    assert (one.host, one.port, one.tls.enabled, one.public_url) == ("127.0.0.1", 0, False, "https://visio.example")
    assert one.metrics.token is not None and one.metrics.token.get_secret_value() == "s3cret"
    assert one.recording.retention_days is None and worker_settings(front, 0, ["a"], "x").recording.retention_days == 30

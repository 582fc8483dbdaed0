"""signaling/public_web.py: the public live and replay pages, served by a real aiohttp app from
a real HLS run (PyAV's hls muxer: H.264 + AAC in MPEG-TS) and a real journal."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from config import Settings
from config.settings import AgendaItemSettings, MemberSettings, SittingSettings
from signaling import rules
from signaling.app import CSP
from signaling.assembly import Event
from signaling.journal import Journal, JournalKey
from signaling.public_web import add_public_routes, recordings_retention
from signaling.replay import sitting_state_from
from signaling.sitting_state import SittingState

RUN = "20261128-201500"
STARTED = 1_795_896_900.0  # 2026-11-28 20:15 UTC: the first frame of RUN
EMBEDDER = "https://www.mairie.example"
SPEC = SittingSettings(
    id="demo", title="Conseil municipal du 28 novembre 2026",
    agenda=[AgendaItemSettings(id="i1", title="Approbation du procès-verbal"),
            AgendaItemSettings(id="i2", title="Subvention à l'association des parents d'élèves")],
    members=[MemberSettings(id="m1", name="Claire Dupont"), MemberSettings(id="m2", name="Marc Petit")],
)


def write_hls_run(directory: Path, seconds: float = 2.5, fps: int = 10) -> None:
    """A real run as the programme writes it: EVENT playlist, seg%05d.ts, recording.json."""
    directory.mkdir(parents=True)
    options = {"hls_time": "1", "hls_playlist_type": "event", "hls_segment_filename": str(directory / "seg%05d.ts")}
    with av.open(str(directory / "programme.m3u8"), "w", format="hls", options=options) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 36, "yuv420p"
        video.options = {"profile": "baseline", "g": str(fps)}
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "mono"
        samples = 0
        for n in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((36, 64, 3), n * 9 % 255, np.uint8), format="rgb24")
            frame.pts = n
            out.mux(video.encode(frame))
            while samples < (n + 1) * 48000 // fps:
                sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                sound.sample_rate, sound.pts = 48000, samples
                samples += 1024
                out.mux(audio.encode(sound))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    (directory / "recording.json").write_text(json.dumps({"started_at": STARTED, "sitting": "demo", "width": 64,
                                                          "height": 36, "fps": fps}))


@pytest.fixture(scope="module")
def hls_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hls") / RUN
    write_hls_run(path)
    return path


@dataclass
class Seat:
    id: str
    name: str


@dataclass
class FakeSitting:
    """What the public pages read of a signaling.sitting.Sitting."""

    id: str
    title: str
    state: SittingState
    seats: dict[str, Seat] = field(default_factory=dict)
    active_speaker: str | None = None
    programme_running: bool = True

    def apply(self, kind: str, **data: Any) -> None:
        rules.apply(self.state, Event(kind, data, "m1", time.time()))


@dataclass
class Site:
    client: TestClient[web.Request, web.Application]
    data_dir: Path
    recordings: Path
    sittings: dict[str, FakeSitting]
    journal: Journal

    @property
    def demo(self) -> FakeSitting:
        return self.sittings["demo"]

    async def get(self, path: str, status: int = 200) -> Any:
        response = await self.client.get(URL(path, encoded=True))
        assert response.status == status, (path, response.status, await response.text())
        return response


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(port=0, data_dir=data_dir, demo=False, sittings=[SPEC],
                    public={"frame_ancestors": [EMBEDDER]}, **overrides)


def build_app(settings: Settings, sittings: dict[str, FakeSitting], journal: Journal) -> web.Application:
    app = web.Application()

    async def other_page(request: web.Request) -> web.StreamResponse:
        return web.Response(text="members only", content_type="text/html")

    async def app_wide_headers(request: web.Request, response: web.StreamResponse) -> None:  # as signaling.app
        response.headers.setdefault("Content-Security-Policy", CSP)

    app.router.add_get("/join", other_page)
    app.on_response_prepare.append(app_wide_headers)
    add_public_routes(app, lambda: sittings, settings, journal.entries)
    app.cleanup_ctx.append(recordings_retention)
    return app


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3", JournalKey.load_or_create(tmp_path / "journal-key.pem")) as opened:
        yield opened


@pytest.fixture
async def site(tmp_path: Path, hls_run: Path, journal: Journal) -> AsyncIterator[Site]:
    settings = make_settings(tmp_path)
    shutil.copytree(hls_run, settings.recordings_dir / "demo" / RUN)
    (tmp_path / "secret.key").write_text("TOP SECRET")
    events: list[tuple[float, str, dict[str, Any]]] = [
        (-60, "item_current", {"item": "i1"}), (0.8, "item_current", {"item": "i2"}),
        (1.5, "floor_given", {"seat": "m2", "limit_s": None})]
    for offset, kind, data in events:
        journal.append_sync("demo", "m1", kind, data, at=STARTED + offset)
    demo = FakeSitting("demo", SPEC.title, sitting_state_from(SPEC), {"m1": Seat("m1", "Claire Dupont")})
    demo.apply("item_current", item="i2")
    demo.apply("floor_given", seat="m2", limit_s=None)
    sittings = {"demo": demo}
    async with TestClient(TestServer(build_app(settings, sittings, journal))) as client:
        yield Site(client, tmp_path, settings.recordings_dir, sittings, journal)


def set_live(site: Site, live: bool) -> None:
    """The run being written (no ENDLIST yet) or finished."""
    playlist = site.recordings / "demo" / RUN / "programme.m3u8"
    text = playlist.read_text().replace("#EXT-X-ENDLIST\n", "")
    playlist.write_text(text if live else text + "#EXT-X-ENDLIST\n")


def frame_ancestors(response: Any) -> str:
    match = re.search(r"frame-ancestors ([^;]+)", response.headers["Content-Security-Policy"])
    assert match
    return match.group(1)


async def test_public_pages_may_be_framed_by_the_town_and_nothing_else(site: Site) -> None:
    for path in ["/live/demo", "/live/demo/state.json", "/replay/", "/replay/index.json", "/replay/demo",
                 "/replay/demo/runs.json", f"/replay/demo/{RUN}/programme.m3u8", f"/replay/demo/{RUN}/seg00000.ts",
                 f"/replay/demo/{RUN}/chapters.vtt"]:
        response = await site.get(path)
        assert frame_ancestors(response) == EMBEDDER, path
        assert "camera=()" in response.headers["Permissions-Policy"] and "microphone=()" in response.headers[
            "Permissions-Policy"]
        assert "Set-Cookie" not in response.headers
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "media-src 'self' blob:" in policy and "script-src 'self'" in policy
    assert frame_ancestors(await site.get("/join")) == "'none'"
    not_found = await site.get("/live/nope", 404)
    assert frame_ancestors(not_found) == EMBEDDER and "Page introuvable" in await not_found.text()


async def test_without_embedder_the_public_pages_refuse_frames_too(tmp_path: Path, journal: Journal) -> None:
    settings = Settings(port=0, data_dir=tmp_path, demo=False, sittings=[SPEC],
                        public={"frame_ancestors": ["https://ok.example", "x; script-src *"]})
    sittings = {"demo": FakeSitting("demo", SPEC.title, sitting_state_from(SPEC))}
    async with TestClient(TestServer(build_app(settings, sittings, journal))) as client:
        response = await client.get("/live/demo")
        assert frame_ancestors(response) == "https://ok.example"  # an injection attempt is dropped
    settings = Settings(port=0, data_dir=tmp_path, demo=False, sittings=[SPEC])
    async with TestClient(TestServer(build_app(settings, sittings, journal))) as client:
        assert frame_ancestors(await client.get("/live/demo")) == "'none'"


async def test_pages_are_the_static_files(site: Site) -> None:
    for path, marker in [("/live/demo", "/static/js/live.js"), ("/replay/", "/static/js/replay-list.js"),
                         ("/replay/demo", "/static/js/replay.js")]:
        response = await site.get(path)
        assert response.content_type == "text/html" and marker in await response.text()
    assert (await site.client.get("/replay", allow_redirects=False)).headers["Location"] == "/replay/"
    await site.get("/replay/nope", 404)
    await site.get("/replay/..", 404)


async def test_state_json_says_what_happens_now(site: Site) -> None:
    set_live(site, True)
    response = await site.get("/live/demo/state.json")
    assert response.headers["Cache-Control"] == "no-cache"
    assert await response.json() == {
        "title": SPEC.title, "status": "live",
        "item": {"number": 2, "title": "Subvention à l'association des parents d'élèves"},
        "speaker": "Marc Petit", "hls": "/live/demo/hls/programme.m3u8", "whep": "/whep/demo"}

    demo = site.demo
    demo.apply("floor_taken", seat="m2", duration_s=3)
    demo.active_speaker = "m1"
    assert (await (await site.get("/live/demo/state.json")).json())["speaker"] == "Claire Dupont"
    demo.active_speaker = "s-unknown"
    assert (await (await site.get("/live/demo/state.json")).json())["speaker"] is None

    demo.active_speaker = "m1"
    for kind, data, status in [("suspended", {}, "suspended"), ("resumed", {}, "live"),
                               ("closed_session", {"closed": True}, "closed_session")]:
        demo.apply(kind, **data)
        body = await (await site.get("/live/demo/state.json")).json()
        assert body["status"] == status
        assert body["speaker"] == ("Claire Dupont" if status == "live" else None)  # nobody named behind closed doors

    demo.apply("closed_session", closed=False)
    demo.programme_running = False
    body = await (await site.get("/live/demo/state.json")).json()
    assert body["status"] == "not_started" and body["hls"] is None and body["whep"] == "/whep/demo"
    await site.get("/live/nope/state.json", 404)


async def test_live_hls_serves_the_run_being_written(site: Site) -> None:
    await site.get("/live/demo/hls/programme.m3u8", 404)  # the run ended: nothing live
    set_live(site, True)
    site.demo.programme_running = False
    await site.get("/live/demo/hls/programme.m3u8", 404)  # a run cut short is no live programme
    site.demo.programme_running = True

    response = await site.get("/live/demo/hls/programme.m3u8")
    assert response.content_type == "application/vnd.apple.mpegurl" and response.headers["Cache-Control"] == "no-cache"
    playlist = await response.text()
    assert "#EXT-X-ENDLIST" not in playlist and "#EXT-X-PLAYLIST-TYPE:EVENT" in playlist
    segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    assert segments == [f"{RUN}/seg00000.ts", f"{RUN}/seg00001.ts", f"{RUN}/seg00002.ts"]

    segment = await site.get(f"/live/demo/hls/{segments[0]}")
    assert segment.content_type == "video/mp2t" and "max-age" in segment.headers["Cache-Control"]
    body = await segment.read()
    assert body == (site.recordings / "demo" / RUN / "seg00000.ts").read_bytes() and body[0] == 0x47  # TS sync byte
    with av.open(str(site.recordings / "demo" / RUN / "seg00000.ts")) as container:
        assert {s.codec_context.name for s in container.streams} == {"h264", "aac"}

    (site.recordings / "demo" / RUN / "programme.m3u8").write_text(playlist.replace(f"{RUN}/", "") + "#EXTINF:1.0,\n")
    assert (await (await site.get("/live/demo/hls/programme.m3u8")).text()).endswith("#EXTINF:1.0,\n")  # re-read


async def test_replay_lists_runs_and_closes_a_run_cut_short(site: Site) -> None:
    index = await (await site.get("/replay/index.json")).json()
    assert index == {"sittings": [{"id": "demo", "title": SPEC.title, "url": "/replay/demo", "started_at": STARTED,
                                   "duration": 2.5, "runs": 1, "minutes": False}]}
    runs = await (await site.get("/replay/demo/runs.json")).json()
    (run,) = runs["runs"]
    assert runs["title"] == SPEC.title and runs["minutes"] is None
    assert run["id"] == RUN and run["duration"] == pytest.approx(2.5) and run["ended"] and not run["live"]
    assert run["size"] > 10_000 and run["segments"] == 3 and run["started_at"] == STARTED
    assert run["playlist"] == f"/replay/demo/{RUN}/programme.m3u8"
    assert run["chapters"] == f"/replay/demo/{RUN}/chapters.vtt"

    ended = await (await site.get(run["playlist"])).text()
    assert ended.count("#EXT-X-ENDLIST") == 1 and "\nseg00000.ts\n" in ended
    set_live(site, True)
    live = await (await site.get(run["playlist"])).text()
    assert "#EXT-X-ENDLIST" not in live  # being written: players follow it
    assert (await (await site.get("/replay/demo/runs.json")).json())["runs"][0]["live"]
    site.demo.programme_running = False  # the server stopped mid-run: the recording ends there
    cut = await site.get(run["playlist"])
    assert cut.content_type == "application/vnd.apple.mpegurl"
    assert (await cut.text()).endswith("#EXT-X-ENDLIST\n")
    del site.sittings["demo"]  # a sitting no longer configured keeps its recordings
    assert (await (await site.get(run["playlist"])).text()).endswith("#EXT-X-ENDLIST\n")
    segment = await site.get(f"/replay/demo/{RUN}/seg00002.ts")
    assert segment.content_type == "video/mp2t"
    await site.get(f"/replay/demo/{RUN}/seg00099.ts", 404)
    await site.get("/replay/demo/20261128-999999/programme.m3u8", 404)


async def test_chapters_from_the_journal(site: Site) -> None:
    response = await site.get(f"/replay/demo/{RUN}/chapters.vtt")
    assert response.content_type == "text/vtt" and response.charset == "utf-8"
    assert await response.text() == (
        "WEBVTT\n\n"
        "1\n00:00:00.000 --> 00:00:00.800\nPoint 1 — Approbation du procès-verbal\n\n"
        "2\n00:00:00.800 --> 00:00:01.500\nPoint 2 — Subvention à l'association des parents d'élèves\n\n"
        "3\n00:00:01.500 --> 00:00:02.500\nMarc Petit\n")
    english = await (await site.get(f"/replay/demo/{RUN}/chapters.json?lang=en")).json()
    assert [c["title"] for c in english] == ["Item 1 — Approbation du procès-verbal",
                                             "Item 2 — Subvention à l'association des parents d'élèves", "Marc Petit"]
    assert english[2] == {"start": 1.5, "end": 2.5, "title": "Marc Petit", "kind": "floor_given"}
    await site.get("/replay/demo/20261128-000000/chapters.vtt", 404)


async def test_minutes_when_published(site: Site) -> None:
    await site.get("/replay/demo/minutes", 404)
    minutes = site.data_dir / "minutes" / "demo.html"
    minutes.parent.mkdir()
    minutes.write_text('<!DOCTYPE html>\n<html lang="fr"><head><style>body{margin:0}</style></head>'
                       "<body><h1>Projet de procès-verbal</h1></body></html>")
    assert (await (await site.get("/replay/demo/runs.json")).json())["minutes"] == "/replay/demo/minutes"
    assert (await (await site.get("/replay/index.json")).json())["sittings"][0]["minutes"] is True
    response = await site.get("/replay/demo/minutes")
    assert "Projet de procès-verbal" in await response.text()
    policy = response.headers["Content-Security-Policy"]
    assert "style-src 'sha256-" in policy and "script-src 'none'" in policy and "default-src 'none'" in policy
    assert frame_ancestors(response) == EMBEDDER


@pytest.mark.parametrize("path", [
    "/replay/demo/..%2f..%2fsecret.key/x.ts",
    "/replay/demo/..%2F..%2F..%2Fsecret.key/seg00000.ts",
    "/replay/..%2f..%2f/20261128-201500/seg00000.ts",
    "/replay/%2e%2e/20261128-201500/seg00000.ts",
    "/replay/demo/20261128-201500/..%2f..%2f..%2fsecret.key",
    "/replay/demo/20261128-201500/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.key",
    "/replay/demo/20261128-201500/recording.json",
    "/replay/demo/20261128-201500/..",
    "/replay/%2e%2e/runs.json",
    "/replay/..%2f..%2fsecret.key/minutes",
    "/replay/%2e%2e%2f%2e%2e%2fsecret/minutes",
    "/live/demo/hls/..%2f..%2f..%2f/secret.key",
    "/live/demo/hls/20261128-201500/..%2f..%2f..%2fsecret.key",
    "/live/..%2f..%2f..%2fsecret.key/hls/programme.m3u8",
])
async def test_path_traversal_is_refused(site: Site, path: str) -> None:
    response = await site.client.get(URL(path, encoded=True))
    assert response.status in (400, 404), path
    assert "TOP SECRET" not in await response.text()


async def test_retention_deletes_old_runs_at_start(tmp_path: Path, hls_run: Path, journal: Journal) -> None:
    settings = make_settings(tmp_path, recording={"retention_days": 30})
    old = settings.recordings_dir / "old" / "20240101-100000"
    shutil.copytree(hls_run, old)
    (old / "recording.json").write_text(json.dumps({"started_at": time.time() - 31 * 86400}))
    recent = settings.recordings_dir / "demo" / RUN
    shutil.copytree(hls_run, recent)
    (recent / "recording.json").write_text(json.dumps({"started_at": time.time() - 86400}))
    sittings = {"demo": FakeSitting("demo", SPEC.title, sitting_state_from(SPEC))}
    async with TestClient(TestServer(build_app(settings, sittings, journal))):
        for _ in range(100):
            if not old.exists():
                break
            await asyncio.sleep(0.02)
        assert not old.exists() and recent.exists()


async def test_whether_the_programme_runs_may_come_from_elsewhere(tmp_path: Path, journal: Journal) -> None:
    """The app may know it from its programmes rather than from the sitting object."""
    settings = make_settings(tmp_path)
    sittings = {"demo": FakeSitting("demo", SPEC.title, sitting_state_from(SPEC), programme_running=False)}
    running: set[str] = set()
    app = web.Application()
    add_public_routes(app, lambda: sittings, settings, running=running.__contains__)
    async with TestClient(TestServer(app)) as client:
        assert (await (await client.get("/live/demo/state.json")).json())["status"] == "not_started"
        running.add("demo")
        assert (await (await client.get("/live/demo/state.json")).json())["status"] == "live"


async def test_without_recording_there_is_no_hls(tmp_path: Path, hls_run: Path, journal: Journal) -> None:
    """The programme writes HLS only when it records: an old run cut short is not live."""
    settings = make_settings(tmp_path, recording={"enabled": False})
    shutil.copytree(hls_run, settings.recordings_dir / "demo" / RUN)
    playlist = settings.recordings_dir / "demo" / RUN / "programme.m3u8"
    playlist.write_text(playlist.read_text().replace("#EXT-X-ENDLIST\n", ""))
    sittings = {"demo": FakeSitting("demo", SPEC.title, sitting_state_from(SPEC))}
    async with TestClient(TestServer(build_app(settings, sittings, journal))) as client:
        assert (await (await client.get("/live/demo/state.json")).json())["hls"] is None
        assert (await client.get("/live/demo/hls/programme.m3u8")).status == 404
        assert (await (await client.get(f"/replay/demo/{RUN}/programme.m3u8")).text()).endswith("#EXT-X-ENDLIST\n")

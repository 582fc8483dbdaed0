"""What the public pages share: their headers (CSP allowing the town's site to frame them),
the running sittings and recordings they show, and the HLS files they serve.

Handlers and routes: :mod:`signaling.public_web`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web

from config import Settings
from config.settings import SittingSettings

from . import recordings as rec
from .journal import Entry
from .web_base import WEB_CLIENT

log = logging.getLogger(__name__)

SittingsGetter = Callable[[], Mapping[str, Any]]  # sitting id -> signaling.sitting.Sitting (duck-typed)
EntriesGetter = Callable[[str], Iterable[Entry]]  # sitting id -> its journal entries
RunningGetter = Callable[[str], bool]  # sitting id -> its programme is running
PERMISSIONS_POLICY = "camera=(), microphone=(), display-capture=(), geolocation=()"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_HEADERS = {"Content-Type": "video/mp2t", "Cache-Control": "public, max-age=86400, immutable"}
NO_CACHE = "no-cache"
ORIGIN = re.compile(r"(https?://)?(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?|'self'")
PLAYLIST_CACHE = 64  # playlists kept rewritten in memory
NONE = "'none'"
PlaylistMode = Literal["live", "event", "recording"]


def csp(frame_ancestors: Iterable[str]) -> str:
    """The app's policy (signaling.app.CSP) with the given ``frame-ancestors``."""
    frame_ancestors = list(frame_ancestors)
    sources = [s for s in frame_ancestors if ORIGIN.fullmatch(s)]
    for refused in set(frame_ancestors) - set(sources):
        log.warning("public.frame_ancestors: %r is not an origin (https://www.mairie.example): ignored", refused)
    return ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
            f"style-src 'self'; script-src 'self'; frame-ancestors {' '.join(sources) or NONE}; base-uri 'none'; "
            "form-action 'none'")


@dataclass
class Public:
    settings: Settings
    sittings: SittingsGetter
    entries: EntriesGetter
    is_running: RunningGetter
    csp: str
    playlists: dict[tuple[Path, PlaylistMode], tuple[tuple[int, int], bytes]] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.settings.recordings_dir

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Content-Security-Policy": self.csp, "Permissions-Policy": PERMISSIONS_POLICY, **extra}

    def spec(self, sitting: str) -> SittingSettings:
        known = next((s for s in self.settings.sittings if s.id == sitting), None)
        return known or SittingSettings(id=sitting, title=sitting)

    def title(self, sitting: str) -> str:
        live = self.sittings().get(sitting)
        return str(getattr(live, "title", None) or self.spec(sitting).title)

    def running(self, sitting: str) -> bool:
        return self.is_running(sitting)

    async def live_run(self, sitting: str) -> str | None:
        """The run the programme of ``sitting`` is writing now, if it is running (it writes
        HLS only when recording is enabled)."""
        if not self.settings.recording.enabled or not self.running(sitting) or not rec.valid_sitting_id(sitting):
            return None
        return await asyncio.to_thread(rec.live_run_id, self.root, sitting)

    def minutes(self, sitting: str) -> Path | None:
        path = self.settings.data_dir / "minutes" / f"{sitting}.html"
        return path if rec.valid_sitting_id(sitting) and path.is_file() else None


PUBLIC = web.AppKey("public", Public)


def url(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


def page(public: Public, name: str, status: int = 200) -> web.StreamResponse:
    return web.FileResponse(WEB_CLIENT / name, status=status, headers=public.headers(**{"Cache-Control": NO_CACHE}))


def not_found(public: Public) -> web.StreamResponse:
    return page(public, "not-found.html", status=404)


def cached_playlist(public: Public, path: Path, mode: PlaylistMode) -> bytes:
    """A run's playlist: "live" (segments named under their run, ``/live/…/hls/<run>/seg….ts``),
    "event" (as written) or "recording" (ENDLIST appended if missing). Read again only when
    it changed: every viewer of the live programme polls it."""
    try:
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        cached = public.playlists.get((path, mode))
        if cached is not None and cached[0] == version:
            return cached[1]
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise web.HTTPNotFound() from exc
    if mode != "event":
        text = rec.prefixed_segments(text, path.parent.name + "/") if mode == "live" else rec.closed_playlist(text)
    body = text.encode()
    while len(public.playlists) >= PLAYLIST_CACHE:
        del public.playlists[next(iter(public.playlists))]
    public.playlists[(path, mode)] = (version, body)
    return body


def segment(request: web.Request) -> web.StreamResponse:
    """A segment of a run: immutable once listed, cacheable."""
    public, info = request.app[PUBLIC], request.match_info
    try:
        path = rec.run_file(public.root, info["sitting"], info["run"], info["name"])
    except rec.RecordingPathError as exc:
        raise web.HTTPNotFound() from exc
    if info["name"] == rec.PLAYLIST or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers=public.headers(**SEGMENT_HEADERS))

"""The public pages: the live programme (``/live/<sitting>``) and the recordings (``/replay/``).

Anyone may open them (no token, no cookie, nothing from another host) and the town may
embed them in an ``<iframe>`` on its own site: their Content-Security-Policy allows the
origins of ``public.frame_ancestors``, every other page keeps ``frame-ancestors 'none'``.
Pages are static files of web_client/; their data comes from ``state.json``,
``runs.json``, the HLS playlists and the chapters. See docs/public.md.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from config import Settings

from . import recordings as rec
from .chapters import Lang, build_chapters, to_json, to_webvtt
from .public_site import (
    NO_CACHE,
    NONE,
    PLAYLIST_TYPE,
    PUBLIC,
    EntriesGetter,
    PlaylistMode,
    Public,
    RunningGetter,
    SittingsGetter,
    cached_playlist,
    csp,
    not_found,
    page,
    segment,
    url,
)

log = logging.getLogger(__name__)
RETENTION_PERIOD_S = 3600.0


def add_public_routes(app: web.Application, sittings: SittingsGetter, settings: Settings,
                      entries: EntriesGetter | None = None, running: RunningGetter | None = None) -> None:
    """``sittings``: the sittings by id (the hub's); ``entries``: a sitting's journal entries,
    for the chapters (none: chapters only say where the broadcast starts); ``running``:
    whether a sitting's programme runs (default: the sitting's ``programme_running``)."""

    def programme_running(sitting: str) -> bool:
        return bool(getattr(sittings().get(sitting), "programme_running", False))

    app[PUBLIC] = Public(settings, sittings, entries or (lambda sitting: []), running or programme_running,
                         csp(settings.public.frame_ancestors))
    r = app.router
    r.add_get("/live/{sitting}", _live_page)
    r.add_get("/live/{sitting}/state.json", _live_state)
    r.add_get("/live/{sitting}/hls/programme.m3u8", _live_playlist)
    r.add_get("/live/{sitting}/hls/{run}/{name}", _live_segment)
    r.add_get("/replay", _to_replay_index)
    r.add_get("/replay/", _replay_index_page)
    r.add_get("/replay/index.json", _replay_index)
    r.add_get("/replay/{sitting}", _replay_page)
    r.add_get("/replay/{sitting}/runs.json", _runs)
    r.add_get("/replay/{sitting}/minutes", _minutes)
    r.add_get("/replay/{sitting}/{run}/programme.m3u8", _replay_playlist)
    r.add_get("/replay/{sitting}/{run}/chapters.vtt", _chapters)
    r.add_get("/replay/{sitting}/{run}/chapters.json", _chapters)
    r.add_get("/replay/{sitting}/{run}/{name}", _replay_segment)


# --- live ----------------------------------------------------------------------------------


async def _live_page(request: web.Request) -> web.StreamResponse:
    public = request.app[PUBLIC]
    if request.match_info["sitting"] not in public.sittings():
        return not_found(public)
    return page(public, "live.html")


async def _live_state(request: web.Request) -> web.StreamResponse:
    public, sitting_id = request.app[PUBLIC], request.match_info["sitting"]
    sitting = public.sittings().get(sitting_id)
    if sitting is None:
        raise web.HTTPNotFound()
    state = sitting.state
    status = ("closed_session" if state.closed_session else "suspended" if state.suspended
              else "live" if public.running(sitting_id) else "not_started")
    item = state.item(state.current_item)
    live_run = await public.live_run(sitting_id)
    body = {
        "title": sitting.title,
        "status": status,
        "item": {"number": item.number, "title": item.title} if item else None,
        "speaker": _speaker(sitting) if status == "live" else None,  # nobody is named behind closed doors
        "hls": url("live", sitting_id, "hls", "programme.m3u8") if live_run else None,
        "whep": url("whep", sitting_id),
    }
    return web.json_response(body, headers=public.headers(**{"Cache-Control": NO_CACHE}))


def _speaker(sitting: Any) -> str | None:
    """Who the programme shows: the floor holder, else the active speaker."""
    seat_id = sitting.state.floor or getattr(sitting, "active_speaker", None)
    if seat_id is None:
        return None
    member = sitting.state.members.get(seat_id)
    seat = getattr(sitting, "seats", {}).get(seat_id)
    return str(member.name) if member else str(seat.name) if seat else None


async def _live_playlist(request: web.Request) -> web.StreamResponse:
    public, sitting = request.app[PUBLIC], request.match_info["sitting"]
    run = await public.live_run(sitting)
    if run is None:
        raise web.HTTPNotFound()
    path = rec.run_file(public.root, sitting, run, rec.PLAYLIST)
    body = await asyncio.to_thread(cached_playlist, public, path, "live")
    return web.Response(body=body, headers=public.headers(**{"Content-Type": PLAYLIST_TYPE, "Cache-Control": NO_CACHE}))


async def _live_segment(request: web.Request) -> web.StreamResponse:
    return segment(request)


# --- replay --------------------------------------------------------------------------------


async def _to_replay_index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/replay/")


async def _replay_index_page(request: web.Request) -> web.StreamResponse:
    return page(request.app[PUBLIC], "replay-list.html")


async def _replay_index(request: web.Request) -> web.StreamResponse:
    public = request.app[PUBLIC]

    def sittings() -> list[tuple[str, list[rec.Run], bool]]:
        root = public.root
        return [(s, rec.list_runs(root, s), public.minutes(s) is not None) for s in rec.list_sittings(root)]

    found = sorted(await asyncio.to_thread(sittings), key=lambda s: -s[1][0].started_at)
    body = {"sittings": [{"id": sitting, "title": public.title(sitting), "url": url("replay", sitting),
                          "started_at": runs[0].started_at, "duration": round(sum(r.duration for r in runs), 3),
                          "runs": len(runs), "minutes": minutes} for sitting, runs, minutes in found]}
    return web.json_response(body, headers=public.headers(**{"Cache-Control": NO_CACHE}))


async def _replay_page(request: web.Request) -> web.StreamResponse:
    public, sitting = request.app[PUBLIC], request.match_info["sitting"]
    if not rec.valid_sitting_id(sitting) or not await asyncio.to_thread(rec.list_runs, public.root, sitting):
        return not_found(public)
    return page(public, "replay.html")


async def _runs(request: web.Request) -> web.StreamResponse:
    public, sitting = request.app[PUBLIC], request.match_info["sitting"]
    if not rec.valid_sitting_id(sitting):
        raise web.HTTPNotFound()
    runs = await asyncio.to_thread(rec.list_runs, public.root, sitting)
    if not runs:
        raise web.HTTPNotFound()
    live = await public.live_run(sitting)
    body = {
        "sitting": sitting,
        "title": public.title(sitting),
        "minutes": url("replay", sitting, "minutes") if public.minutes(sitting) else None,
        "runs": [{**run.to_json(), "live": run.id == live,
                  "playlist": url("replay", sitting, run.id, rec.PLAYLIST),
                  "chapters": url("replay", sitting, run.id, "chapters.vtt"),
                  "chapters_json": url("replay", sitting, run.id, "chapters.json")} for run in runs],
    }
    return web.json_response(body, headers=public.headers(**{"Cache-Control": NO_CACHE}))


async def _replay_playlist(request: web.Request) -> web.StreamResponse:
    public, sitting, run = request.app[PUBLIC], request.match_info["sitting"], request.match_info["run"]
    try:
        path = rec.run_file(public.root, sitting, run, rec.PLAYLIST)
    except rec.RecordingPathError as exc:
        raise web.HTTPNotFound() from exc
    mode: PlaylistMode = "event" if await public.live_run(sitting) == run else "recording"
    body = await asyncio.to_thread(cached_playlist, public, path, mode)
    return web.Response(body=body, headers=public.headers(**{"Content-Type": PLAYLIST_TYPE, "Cache-Control": NO_CACHE}))


async def _replay_segment(request: web.Request) -> web.StreamResponse:
    return segment(request)


async def _chapters(request: web.Request) -> web.StreamResponse:
    public, sitting, run_id = request.app[PUBLIC], request.match_info["sitting"], request.match_info["run"]
    lang: Lang = "en" if request.query.get("lang") == "en" else "fr"
    try:
        run = await asyncio.to_thread(rec.read_run, public.root, sitting, run_id)
    except rec.RecordingPathError as exc:
        raise web.HTTPNotFound() from exc
    if run is None:
        raise web.HTTPNotFound()
    live = public.sittings().get(sitting)
    names = {seat_id: str(seat.name) for seat_id, seat in getattr(live, "seats", {}).items()}

    def chapters() -> list[Any]:
        entries = public.entries(sitting)
        return build_chapters(public.spec(sitting), entries, run.started_at, run.duration, lang, names)

    found = await asyncio.to_thread(chapters)
    headers = public.headers(**{"Cache-Control": NO_CACHE})
    if request.path.endswith(".json"):
        return web.json_response(to_json(found), headers=headers)
    return web.Response(text=to_webvtt(found), content_type="text/vtt", charset="utf-8", headers=headers)


async def _minutes(request: web.Request) -> web.StreamResponse:
    """The published minutes: a standalone HTML file whose inline <style> is allowed by hash."""
    public = request.app[PUBLIC]
    path = public.minutes(request.match_info["sitting"])
    if path is None:
        return not_found(public)
    text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in re.findall(r"<style>(.*?)</style>", text, re.DOTALL))
    policy = public.csp.replace("default-src 'self'", "default-src 'none'").replace(
        "style-src 'self'", f"style-src {hashes or NONE}").replace("script-src 'self'", f"script-src {NONE}")
    headers = public.headers(**{"Content-Security-Policy": policy, "Cache-Control": NO_CACHE})
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers=headers)


# --- retention -----------------------------------------------------------------------------


async def recordings_retention(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: with ``recording.retention_days`` set, delete older recordings at start
    and every hour (after :func:`add_public_routes`)."""
    public = app[PUBLIC]
    days = public.settings.recording.retention_days
    task = None if days is None else asyncio.create_task(_prune_forever(public, days))
    yield
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


async def _prune_forever(public: Public, days: float) -> None:
    while True:
        live = {sitting for sitting in public.sittings() if public.running(sitting)}
        try:
            await asyncio.to_thread(rec.prune, public.root, days, time.time(), live.__contains__)
        except Exception:
            log.exception("recordings retention failed")
        await asyncio.sleep(RETENTION_PERIOD_S)

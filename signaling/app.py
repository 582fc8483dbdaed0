"""The aiohttp application factory: static web client, the WebSocket, and start-up/shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from config import Settings
from sfu import aiortc_glue, sdp_munging
from sfu.router import Router

from .convocation import acknowledge
from .hub import Hub
from .journal import JOURNAL_FILENAME, KEY_FILENAME, Journal, JournalKey
from .metrics import setup_metrics
from .programme import Programme
from .public_web import add_public_routes, recordings_retention
from .replay import replay, sitting_state_from
from .revocation import watch as watch_revocations
from .session import Session
from .sitting import Sitting
from .tls import check_origin, hsts_wanted
from .tokens import TokenSigner
from .web_base import CSP, DEMO_LINKS, WEB_CLIENT, add_client_routes, add_static
from .whip_whep import WebRtcHttp

log = logging.getLogger(__name__)

__all__ = ["CSP", "DEMO_LINKS", "HUB", "JOURNAL", "WEB_CLIENT", "create_app"]  # CSP…: from web_base
HUB = web.AppKey("hub", Hub)
JOURNAL = web.AppKey("journal", Journal)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    hub = Hub(settings=settings, signer=TokenSigner.from_file(settings.secret_path))
    app[HUB] = hub
    app.cleanup_ctx.append(_sittings_ctx)
    app.cleanup_ctx.append(lambda app: watch_revocations(app[HUB]))  # revoked invitations dropped
    add_client_routes(app, hsts=lambda: hsts_wanted(app[HUB].settings))  # /, /join, demo links, headers
    app.router.add_get("/ws", _websocket)
    app.router.add_post("/api/acknowledge", acknowledge)
    app.router.add_get("/healthz", _health)
    WebRtcHttp(lambda: hub.sittings, lambda: hub.programmes, hub.signer, settings).add_routes(app)
    add_public_routes(  # /live/<sitting>, /replay/ (docs/public.md)
        app, lambda: hub.sittings, settings,
        entries=lambda sitting: app[JOURNAL].entries(sitting) if JOURNAL in app else [],
        running=lambda sitting: (programme := hub.programmes.get(sitting)) is not None and programme.running,
    )
    app.cleanup_ctx.append(recordings_retention)  # prunes old recordings at start, then hourly
    setup_metrics(app, hub)  # GET /metrics (Prometheus), docs/operations.md
    add_static(app)
    return app


async def _sittings_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    aiortc_glue.restrict_host_addresses(hub.settings.ice.host_addresses)
    ice_settings = hub.settings.ice
    if ice_settings.udp_port_min is not None and ice_settings.udp_port_max is not None:
        aiortc_glue.restrict_udp_ports(ice_settings.udp_port_min, ice_settings.udp_port_max)
    elif ice_settings.udp_port is not None:
        await aiortc_glue.share_udp_port(ice_settings.udp_port, ice_settings.host_addresses)
    sdp_munging.set_announced_address(ice_settings.announced_address)
    sdp_munging.set_opus_dtx(hub.settings.media.opus_dtx)
    caps = {"camera": hub.settings.media.camera_bitrate, "screen": hub.settings.media.screen_bitrate}
    ice = [s.model_dump(exclude_none=True) for s in hub.settings.ice.servers]
    data_dir = hub.settings.data_dir
    journal = Journal(data_dir / JOURNAL_FILENAME, JournalKey.load_or_create(data_dir / KEY_FILENAME))
    for spec in hub.settings.sittings:
        state = sitting_state_from(spec)
        replay(state, journal.entries(spec.id))
        router = Router(spec.id, ice_servers=ice, bitrate_caps=caps)
        sitting = Sitting(
            spec.id,
            spec.title,
            router,
            state,
            journal,
            auto_enrol=not spec.members,
            reconnect_grace=hub.settings.media.reconnect_grace,
            max_videos=hub.settings.media.max_videos,
        )
        hub.sittings[spec.id] = sitting
        hub.programmes[spec.id] = Programme(sitting, hub.settings)
        for member in sorted(state.connected):  # connections did not survive the restart
            await sitting.server_event("connection_lost", member=member)
    app[JOURNAL] = journal
    yield
    for programme in hub.programmes.values():
        await programme.close()  # the recordings end cleanly
    hub.programmes.clear()
    for sitting in hub.sittings.values():
        await sitting.router.close()
    hub.sittings.clear()
    await journal.aclose()
    aiortc_glue.allow_any_udp_port()  # a range or the shared port: also closes the shared sockets
    sdp_munging.set_announced_address(None)
    sdp_munging.set_opus_dtx(True)


async def _websocket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    limits = hub.settings.limits
    check_origin(request, hub.settings)  # a foreign web page gets 403 before the upgrade
    ws = web.WebSocketResponse(heartbeat=limits.heartbeat, max_msg_size=limits.max_message_bytes * 4)
    await ws.prepare(request)
    await Session(hub, ws, request.transport).run()
    return ws


async def _health(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    return web.json_response({"status": "ok", "sittings": len(hub.sittings)})

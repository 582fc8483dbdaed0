"""The front process of ``server.workers``: the public listener in front of the workers.

It owns the public port (HTTP or HTTPS), serves what belongs to no sitting itself (the
client's pages and static files, demo links, ``/healthz``, ``/metrics`` gathered from
every worker: signaling/front_metrics.py) and hands the rest to the worker holding the
sitting (signaling/workers.py):

* ``/ws``: the sitting is read from the invitation in the first message (``hello``),
  verified with the same key as the workers; then every message is relayed as it comes,
  both ways, and the close code and reason of either side are passed on to the other.
  A message that names no sitting of ours (no ``hello``, a forged token…) goes to any
  worker, which answers exactly as a single server would;
* ``/whip/<sitting>…``, ``/whep/<sitting>…``, ``/live/<sitting>…``, ``/replay/<sitting>…``:
  by the path; ``POST /api/acknowledge``: by the token in its body; anything else: any
  worker (``/replay/``, its index: every worker reads the same recordings).

Media never passes here: browsers reach the worker's UDP sockets directly (ICE). The
front checks the WebSocket's Origin itself (it knows the public port) and adds
``X-Forwarded-For``, so a worker never takes a proxied request for a local one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict

from config import Settings

from .front_metrics import setup_front_metrics
from .tls import check_origin, hsts_wanted
from .tokens import TokenError, TokenSigner
from .web_base import add_client_routes, add_static
from .workers import Pool, Worker

log = logging.getLogger(__name__)

SITTING_PREFIXES = ("whip", "whep", "live", "replay")  # /<prefix>/<sitting>/…
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    )
)
WS_OWN_HEADERS = (
    "origin",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
)
UNSENDABLE = (WSCloseCode.ABNORMAL_CLOSURE, 1005, 1015)  # reserved: never sent in a close frame
RESTARTING = "this sitting's process is restarting; try again in a few seconds"


@dataclass
class Front:
    settings: Settings
    signer: TokenSigner
    pool: Pool


FRONT = web.AppKey("front", Front)


def create_front_app(settings: Settings, pool: Pool) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[FRONT] = Front(settings, TokenSigner.from_file(settings.secret_path), pool)
    add_client_routes(app, hsts=lambda: hsts_wanted(app[FRONT].settings))
    app.router.add_get("/ws", _websocket)
    app.router.add_get("/healthz", _health)
    app.router.add_post("/api/acknowledge", _acknowledge)
    setup_front_metrics(app, lambda: app[FRONT].settings, pool)
    add_static(app)
    app.router.add_route("*", "/{path:.*}", _proxy)  # last: whatever the front does not serve itself
    return app


# ---------------------------------------------------------------------------- which worker


def sitting_in_path(path: str) -> str | None:
    parts = path.split("/", 3)
    return parts[2] if len(parts) >= 3 and parts[1] in SITTING_PREFIXES and parts[2] else None


def sitting_of_token(front: Front, token: Any) -> str | None:
    if not isinstance(token, str) or len(token) > 4096:
        return None
    try:
        return front.signer.verify(token).sitting
    except TokenError:
        return None


def choose(front: Front, sitting: str | None) -> Worker | None:
    """The sitting's worker (None while it restarts); any worker for what names no sitting of ours."""
    owner = front.pool.owner(sitting) if sitting is not None else None
    if owner is not None:
        return owner if owner.up else None
    return front.pool.any()


# ---------------------------------------------------------------------------- HTTP


async def _proxy(request: web.Request, body: bytes | None = None, sitting: str | None = None) -> web.StreamResponse:
    front = request.app[FRONT]
    worker = choose(front, sitting or sitting_in_path(request.path))
    if worker is None:
        return _unavailable()
    if body is None:
        body = await request.read()  # at most client_max_size, as the worker would accept
    assert front.pool.http is not None
    try:
        async with front.pool.http.request(
            request.method,
            worker.url + request.raw_path,
            headers=_forwarded(request),
            data=body,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=120),
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        if request.transport is None or request.transport.is_closing():
            raise  # the client left: nothing to answer
        log.warning("worker %d did not answer %s %s: %r", worker.index, request.method, request.path, exc)
        return _unavailable()


async def _acknowledge(request: web.Request) -> web.StreamResponse:
    """``POST /api/acknowledge`` writes to the sitting's journal: to the worker of its token."""
    body = await request.read()
    try:
        token = json.loads(body).get("token")
    except (ValueError, AttributeError):
        token = None
    return await _proxy(request, body, sitting_of_token(request.app[FRONT], token))


def _forwarded(request: web.Request, drop: tuple[str, ...] = ()) -> CIMultiDict[str]:
    headers = CIMultiDict(
        (name, value)
        for name, value in request.headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() not in drop and name.lower() != "content-length"
    )
    previous = request.headers.get("X-Forwarded-For")
    remote = request.remote or "unknown"
    headers["X-Forwarded-For"] = f"{previous}, {remote}" if previous else remote
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


def _unavailable() -> web.Response:
    return web.Response(status=503, text=RESTARTING + "\n", headers={"Retry-After": "2"})


async def _health(request: web.Request) -> web.StreamResponse:
    front = request.app[FRONT]
    workers = [
        {"index": w.index, "pid": w.pid, "up": w.up, "sittings": w.sittings, "restarts": w.restarts}
        for w in front.pool.workers
    ]
    status = "ok" if all(w.up for w in front.pool.workers) else "degraded"
    return web.json_response({"status": status, "sittings": len(front.settings.sittings), "workers": workers})


# ---------------------------------------------------------------------------- WebSocket


async def _websocket(request: web.Request) -> web.StreamResponse:
    front = request.app[FRONT]
    limits = front.settings.limits
    check_origin(request, front.settings)  # a foreign web page gets 403 before the upgrade, as without workers
    client = web.WebSocketResponse(heartbeat=limits.heartbeat, max_msg_size=limits.max_message_bytes * 4)
    await client.prepare(request)
    first = await client.receive()
    if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return client  # gone before a word, or far too large (aiohttp closed it with 1009, as without workers)
    sitting = None
    if first.type == WSMsgType.TEXT and len(first.data) <= limits.max_message_bytes:
        with contextlib.suppress(ValueError, AttributeError, RecursionError):
            hello = json.loads(first.data)
            sitting = sitting_of_token(front, hello.get("token")) if hello.get("type") == "hello" else None
    worker = choose(front, sitting)
    upstream = None
    if worker is not None:
        assert front.pool.http is not None
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            upstream = await front.pool.http.ws_connect(
                worker.url + "/ws",
                headers=_forwarded(request, drop=WS_OWN_HEADERS),
                max_msg_size=0,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
                compress=0,
            )
    if upstream is None:  # the worker is restarting: the client comes back (server_error is transient)
        await client.send_json({"type": "error", "code": "server_error", "message": RESTARTING, "fatal": True})
        await client.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"restarting")
        return client
    try:
        await (upstream.send_str(first.data) if first.type == WSMsgType.TEXT else upstream.send_bytes(first.data))
        await relay(client, upstream)
    finally:
        await upstream.close()
    return client


async def relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Both directions at once, until either side closes; its close code goes to the other."""
    loop = asyncio.get_running_loop()
    down = loop.create_task(_pump(upstream, client, WSCloseCode.SERVICE_RESTART))  # the worker died
    up = loop.create_task(_pump(client, upstream, WSCloseCode.GOING_AWAY))  # the client vanished
    try:
        await asyncio.wait((down, up), return_when=asyncio.FIRST_COMPLETED)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.gather(down, up, return_exceptions=True)), 5)
    finally:
        for task in (down, up):
            task.cancel()
        await asyncio.gather(down, up, return_exceptions=True)


async def _pump(source: Any, target: Any, lost: int) -> None:
    """Copy messages from ``source`` to ``target``; then close ``target`` as ``source`` closed
    (its code and reason; ``lost`` when the connection ended without a close frame)."""
    reason = ""
    while True:
        msg = await source.receive()
        try:
            if msg.type == WSMsgType.TEXT:
                await target.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await target.send_bytes(msg.data)
            elif msg.type not in (WSMsgType.PING, WSMsgType.PONG):
                if msg.type == WSMsgType.CLOSE and isinstance(msg.extra, str):
                    reason = msg.extra
                break
        except (ConnectionError, RuntimeError):
            return  # the target is gone: its own pump closes the source
    code = source.close_code
    if code is None or code in UNSENDABLE:
        code = lost
    if not target.closed:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await target.close(code=code, message=reason.encode()[:120])

"""What every Hemicycle web app serves alike: the client's pages, security headers, demo links.

Shared by the application (signaling/app.py) and, with ``server.workers``, by the front
process (signaling/front.py), which must not load the media stack to serve them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from .tls import HSTS

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"  # beside the packages: run from a checkout
DEMO_LINKS = web.AppKey("demo_links", list)

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def add_client_routes(app: web.Application, hsts: Callable[[], bool]) -> None:
    """``/``, ``/join``, ``/api/demo-links``, ``/static/`` and the security headers of every
    response (``hsts()``: add Strict-Transport-Security)."""
    app[DEMO_LINKS] = []
    app.router.add_get("/", page("index.html"))
    app.router.add_get("/join", page("join.html"))
    app.router.add_get("/api/demo-links", _demo_links)

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
        if hsts():
            response.headers.setdefault("Strict-Transport-Security", HSTS)

    app.on_response_prepare.append(security_headers)


def add_static(app: web.Application) -> None:
    if not (WEB_CLIENT / "index.html").is_file():
        raise RuntimeError(
            f"the web client is not at {WEB_CLIENT}: Hemicycle runs from its source checkout "
            "(pip install -e ., as README.md and the Dockerfile do)"
        )
    app.router.add_static("/static/", WEB_CLIENT, follow_symlinks=False)


def page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_CLIENT / name)

    return handler


async def _demo_links(request: web.Request) -> web.StreamResponse:
    links = request.app[DEMO_LINKS]
    proxied = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers  # remote is the proxy
    if not links or request.remote not in ("127.0.0.1", "::1") or proxied:
        raise web.HTTPNotFound()
    return web.json_response({"links": links})

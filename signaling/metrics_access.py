"""Who may read ``/metrics``: loopback clients that came through no proxy, or the bearer token.

Apart from signaling/metrics.py so that the front process of ``server.workers``
(signaling/front_metrics.py) checks the same way without loading the media stack.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from config import Settings

FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def allowed(request: web.Request, token: str | None) -> bool:
    """A loopback client that came through no proxy, or the right bearer token."""
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    forwarded = any(header in request.headers for header in FORWARDING_HEADERS)
    return is_loopback(request.remote) and not forwarded


def check_access(request: web.Request, settings: Settings) -> None:
    """Raise 401 or 403 unless :func:`allowed` (also the front's, with ``server.workers``)."""
    secret = settings.metrics.token
    token = secret.get_secret_value() if secret is not None else None
    if not allowed(request, token):
        if token:
            raise web.HTTPUnauthorized(
                text="/metrics: a bearer token is required\n", headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
            )
        raise web.HTTPForbidden(text="/metrics is served to loopback clients only (or set metrics.token)\n")

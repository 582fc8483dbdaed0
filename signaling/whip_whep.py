"""WHEP (draft-ietf-wish-whep: egress) and WHIP (RFC 9725: ingest), over HTTP.

- ``POST /whep/{sitting}``: a viewer's SDP offer (``application/sdp``, recvonly audio
  and video, every candidate included): ``201 Created`` with the answer and a
  ``Location`` to ``DELETE`` when done. No token: the programme is public.
- ``POST /whip/{sitting}``: an encoder's SDP offer (sendonly), with an invitation
  token as ``Authorization: Bearer``: its tracks publish into the sitting as that
  seat (the chamber's camera and microphone, role ``chamber``).
- No trickle ICE: ``PATCH`` answers 405. docs/public.md documents both.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from sfu.errors import NegotiationError

from .limits import count_candidates
from .programme import Programme, ProgrammeUnavailable
from .revocation import revocations, token_digest
from .tokens import TokenError, TokenSigner

log = logging.getLogger(__name__)

SDP = "application/sdp"
MAX_SDP_BYTES = 64 * 1024
ALLOW = "OPTIONS, POST, DELETE"


class WebRtcHttp:
    """The handlers; ``sittings()`` and ``programmes()`` give the live objects by sitting id."""

    def __init__(
        self,
        sittings: Callable[[], Mapping[str, Any]],
        programmes: Callable[[], Mapping[str, Programme]],
        signer: TokenSigner,
        settings: Any,
    ) -> None:
        self.sittings = sittings
        self.programmes = programmes
        self.signer = signer
        self.settings = settings
        self.publishers: dict[str, tuple[str, str]] = {}  # resource id -> (sitting id, transport id)
        self._ids = itertools.count(1)
        self._watchdog: asyncio.Task[None] | None = None

    def add_routes(self, app: web.Application) -> None:
        for kind in ("whep", "whip"):
            handler = self.whep if kind == "whep" else self.whip
            app.router.add_post(f"/{kind}/{{sitting}}", handler)
            app.router.add_route("OPTIONS", f"/{kind}/{{sitting}}", _options)
            app.router.add_delete(f"/{kind}/{{sitting}}/{{resource}}", self.delete)
            app.router.add_route("PATCH", f"/{kind}/{{sitting}}/{{resource}}", _no_trickle)
        app.on_cleanup.append(self._stop_watchdog)

    async def _stop_watchdog(self, app: web.Application) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog

    async def _watch_publishers(self) -> None:
        """An encoder that vanished (no DELETE): close its transport once its media falls silent."""
        timeout = self.settings.media.rtcp_silence_timeout
        while True:
            await asyncio.sleep(1.0)
            for resource, (sitting_id, transport_id) in list(self.publishers.items()):
                sitting = self.sittings().get(sitting_id)
                last = None if sitting is None else sitting.router.last_activity(transport_id)
                if last is None or time.monotonic() - last > timeout:
                    del self.publishers[resource]
                    if sitting is not None:
                        log.info("WHIP publisher %s of sitting %s went silent: closed", resource, sitting_id)
                        await sitting.router.close_transport(transport_id)

    # ------------------------------------------------------------------ WHEP

    async def whep(self, request: web.Request) -> web.StreamResponse:
        offer = await _offer(request, self.settings.limits.max_remote_candidates)
        programme = self.programmes().get(request.match_info["sitting"])
        if programme is None:
            raise _error(web.HTTPNotFound, "no such sitting")
        if len(programme.viewers) >= self.settings.programme.max_viewers:
            raise _error(web.HTTPServiceUnavailable, "too many viewers: use the HLS stream", retry=30)
        try:
            viewer_id, answer = await programme.add_viewer(offer)
        except ProgrammeUnavailable as exc:
            raise _error(web.HTTPServiceUnavailable, str(exc), retry=10) from exc
        except NegotiationError as exc:
            raise _error(web.HTTPBadRequest, f"{exc.code}: {exc}") from exc
        location = f"/whep/{programme.sitting.id}/{viewer_id}"
        return web.Response(status=201, text=answer, content_type=SDP, headers={"Location": location})

    # ------------------------------------------------------------------ WHIP

    async def whip(self, request: web.Request) -> web.StreamResponse:
        sitting = self.sittings().get(request.match_info["sitting"])
        if sitting is None:
            raise _error(web.HTTPNotFound, "no such sitting")
        token = _bearer(request)
        try:
            invitation = self.signer.verify(token)
        except TokenError as exc:
            raise _error(web.HTTPUnauthorized, str(exc), bearer=True) from exc
        listing = revocations(self.settings.data_dir)
        listing.refresh()
        if invitation.sitting != sitting.id or listing.refuses(sitting.id, invitation.seat, token_digest(token)):
            raise _error(web.HTTPForbidden, "this invitation does not open this sitting")
        if invitation.role in ("public", "technician") or invitation.seat in sitting.state.removed:
            raise _error(web.HTTPForbidden, f"the role {invitation.role} does not publish")
        offer = await _offer(request, self.settings.limits.max_remote_candidates)
        seat = sitting.seat(invitation.seat, invitation.name, invitation.role)
        resource = f"r{next(self._ids)}"
        transport_id = f"{sitting.id}-whip-{resource}"
        router = sitting.router
        router.create_send_transport(transport_id)
        try:
            tracks = _tracks_of(offer)
            answer = await router.publish(transport_id, seat.id, offer, tracks)
        except NegotiationError as exc:
            await router.close_transport(transport_id)
            raise _error(web.HTTPBadRequest, f"{exc.code}: {exc}") from exc
        self.publishers[resource] = (sitting.id, transport_id)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_publishers())
        log.info("seat %s publishes into sitting %s over WHIP", seat.id, sitting.id)
        return web.Response(status=201, text=answer, content_type=SDP,
                            headers={"Location": f"/whip/{sitting.id}/{resource}"})

    # ------------------------------------------------------------------ both

    async def delete(self, request: web.Request) -> web.StreamResponse:
        sitting_id, resource = request.match_info["sitting"], request.match_info["resource"]
        if request.path.startswith("/whep/"):
            programme = self.programmes().get(sitting_id)
            if programme is None or not await programme.close_viewer(resource):
                raise _error(web.HTTPNotFound, "no such viewer")
        else:
            entry = self.publishers.get(resource)
            sitting = self.sittings().get(sitting_id)
            if entry is None or entry[0] != sitting_id or sitting is None:
                raise _error(web.HTTPNotFound, "no such publisher")
            del self.publishers[resource]
            await sitting.router.close_transport(entry[1])
        return web.Response(status=200)


def _tracks_of(offer: str) -> dict[str, str]:
    """Each sendonly m-line of an encoder's offer: audio is its microphone, video its camera."""
    from sfu.aiortc_glue import describe_sdp

    try:
        lines = describe_sdp(offer)
    except ValueError as exc:
        raise NegotiationError("bad_sdp", str(exc)) from exc
    kinds = [line.kind for line in lines]
    if len(set(kinds)) != len(kinds) or not set(kinds) <= {"audio", "video"}:
        raise NegotiationError("bad_sdp", "a WHIP offer has at most one audio and one video m-line")
    return {line.mid or "": "mic" if line.kind == "audio" else "camera" for line in lines}


async def _offer(request: web.Request, max_candidates: int) -> str:
    if request.content_type != SDP:
        raise _error(web.HTTPUnsupportedMediaType, "the body must be an SDP offer (Content-Type: application/sdp)")
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise _error(web.HTTPRequestEntityTooLarge, f"an SDP offer is at most {MAX_SDP_BYTES} bytes",
                     max_size=MAX_SDP_BYTES, actual_size=request.content_length)
    body = await request.content.read(MAX_SDP_BYTES + 1)
    if len(body) > MAX_SDP_BYTES:
        raise _error(web.HTTPRequestEntityTooLarge, f"an SDP offer is at most {MAX_SDP_BYTES} bytes",
                     max_size=MAX_SDP_BYTES, actual_size=len(body))
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(web.HTTPBadRequest, "the SDP offer is not UTF-8 text") from exc
    if not offer.startswith("v=0"):
        raise _error(web.HTTPBadRequest, "bad_sdp: not an SDP offer")
    if count_candidates(offer) > max_candidates:
        raise _error(web.HTTPBadRequest, f"bad_sdp: more than {max_candidates} ICE candidates")
    return offer


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _error(web.HTTPUnauthorized, "an invitation token is required (Authorization: Bearer TOKEN)", bearer=True)
    return token.strip()


def _error(kind: type[web.HTTPException], message: str, retry: int | None = None, bearer: bool = False,
           **extra: Any) -> web.HTTPException:
    headers = {"Retry-After": str(retry)} if retry else {}
    if bearer:
        headers["WWW-Authenticate"] = 'Bearer realm="hemicycle"'
    return kind(text=message + "\n", headers=headers, **extra)


async def _options(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204, headers={"Allow": ALLOW, "Accept-Post": SDP})


async def _no_trickle(request: web.Request) -> web.StreamResponse:
    raise _error(web.HTTPMethodNotAllowed, "trickle ICE is not supported: send every candidate in the offer",
                 method="PATCH", allowed_methods=["DELETE"])

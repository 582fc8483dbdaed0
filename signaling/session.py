"""One participant's WebSocket: handshake, negotiation, and a bounded send queue.

A client that sends garbage gets an ``error`` message (and, for fatal ones, the
door); a client too slow to read its messages is dropped rather than allowed to
stall the sitting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ValidationError

from sfu.errors import NegotiationError
from sfu.router import SlotInfo

from . import protocol as p
from .assembly import Refused
from .limits import MessageRate, admission_refusal, check_candidates
from .protocol_sitting import SittingCommand, WaitingRoom
from .tokens import TokenError
from .turn import ice_servers_for

if TYPE_CHECKING:
    from .hub import Hub
    from .sitting import Seat, Sitting

log = logging.getLogger(__name__)
_connection_ids = itertools.count(1)
CONNECT_ALLOWANCE_S = 20.0  # extra seconds of silence for a publishing connection not yet connected


class Session:
    def __init__(self, hub: Hub, ws: web.WebSocketResponse, transport: asyncio.Transport | None = None) -> None:
        self.hub = hub
        self.ws = ws
        self._transport = transport  # the TCP connection, to cut a client that stopped reading
        self._aborted = False
        self.number = next(_connection_ids)
        self.limits = hub.settings.limits
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=self.limits.send_queue)
        self.rate = MessageRate(self.limits)
        self.sitting: Sitting | None = None
        self.seat: Seat | None = None
        self.joined = False  # the invitation was accepted
        self.media_ready = False  # admitted: transports exist, welcome sent
        self.receiving_paused = False  # the public during a closed session
        self._left_cleanly = False
        self.send_transport_id = f"c{self.number}-send"
        self.recv_transport_id = f"c{self.number}-recv"
        self._renegotiate_wanted = False
        self._slots_wanted = False  # the slot table changed without a new m-line (update_slots)
        self._negotiating = False
        self._closing: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def seat_id(self) -> str | None:
        return None if self.seat is None else self.seat.id

    # ------------------------------------------------------------------ sending

    def send(self, message: BaseModel) -> None:
        """Queue a message; a client whose queue is full is too slow and is dropped."""
        if self._closing is not None:
            return
        try:
            self.queue.put_nowait(p.dump(message))
        except asyncio.QueueFull:
            log.warning("connection %d too slow to read, dropping it", self.number)
            self.abort("too slow")

    def error(self, code: p.ErrorCode, message: str, fatal: bool = False) -> None:
        self.send(p.Error(code=code, message=message, fatal=fatal))
        if fatal:
            self.close_soon(message)

    def close_soon(self, reason: str) -> None:
        if self._closing is None:
            self._closing = reason
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            if self.queue.full():  # make room for the close marker
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                self.queue.put_nowait(None)

    def abort(self, reason: str) -> None:
        """Cut the connection now, without a goodbye the client could not read anyway."""
        self.close_soon(reason)
        self._aborted = True
        if self._transport is not None:
            self._transport.abort()

    async def _writer(self) -> None:
        while True:
            text = await self.queue.get()
            if text is None:
                break
            try:
                await asyncio.wait_for(self.ws.send_str(text), timeout=10)
            except (TimeoutError, ConnectionError, RuntimeError):
                break
        await self.ws.close()

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        writer = asyncio.get_running_loop().create_task(self._writer())
        try:
            async for msg in self.ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and self.rate.refuse(self):
                    pass  # over the rate: ignored (signaling/limits.py)
                elif msg.type == WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self.error("bad_message", "binary frames are not part of the protocol")
                elif msg.type == WSMsgType.ERROR:
                    break
                if self._closing is not None:
                    break
        finally:
            self.close_soon("connection closed")
            if self._aborted:
                writer.cancel()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(writer, timeout=5)
            await self._leave()

    async def _on_text(self, text: str) -> None:
        if len(text.encode()) > self.limits.max_message_bytes:
            self.error("too_large", f"message larger than {self.limits.max_message_bytes} bytes", fatal=True)
            return
        try:
            raw = json.loads(text)
            # lone surrogates (from "\ud800" escapes) are not text: refuse them here, before
            # they reach an error message, the journal or a name on someone's screen
            json.dumps(raw, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
            self.error("bad_json", "message is not JSON text (or is nested too deeply)")
            return
        try:
            message = p.ClientMessageAdapter.validate_python(raw)
        except RecursionError:
            self.error("bad_message", "message nested too deeply")
            return
        except ValidationError as exc:
            kind = raw.get("type") if isinstance(raw, dict) else None
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            self.error("bad_message", f"invalid {kind or 'message'}: {where}: {first.get('msg')}")
            return
        if not self.joined and not isinstance(message, p.Hello):
            self.error("not_ready", "the first message must be hello", fatal=True)
            return
        if self.joined and not self.media_ready and not isinstance(message, (p.Hello, p.Leave)):
            self.error("not_ready", "waiting for the chair to admit you")
            return
        try:
            await self._dispatch(message)
        except (NegotiationError, Refused) as exc:
            self.error(exc.code, exc.message)  # type: ignore[arg-type]
        except Exception:
            log.exception("connection %d: handling %s failed", self.number, type(message).__name__)
            self.error("server_error", "the server could not handle this message")

    async def _dispatch(self, message: p.ClientMessage) -> None:
        if isinstance(message, p.Hello):
            await self._hello(message)
            return
        assert self.sitting is not None and self.seat is not None
        check_candidates(message, self.limits.max_remote_candidates)
        sitting, seat, router = self.sitting, self.seat, self.sitting.router
        if isinstance(message, p.Publish):
            if seat.role == "public":
                self.error("forbidden", "the public watches and listens only")
                return
            mids = [t.mid for t in message.tracks]
            sources = [t.source for t in message.tracks]
            if len(set(mids)) != len(mids) or len(set(sources)) != len(sources):
                self.error("bad_message", "each mid and each source may appear once")
                return
            tracks = {t.mid: t.source for t in message.tracks}
            answer = await router.publish(self.send_transport_id, seat.id, message.sdp, tracks)
            self.send(p.PublishAnswer(sdp=answer))
        elif isinstance(message, p.Unpublish):
            router.unpublish(self.send_transport_id, message.source)
        elif isinstance(message, p.SetSourceMuted):
            refusal = await sitting.set_muted(seat, message.source, message.muted)
            if refusal:
                self.error("forbidden", refusal)
        elif isinstance(message, p.ReceiveVideos):
            sitting.set_video_limit(seat, message.max)
        elif isinstance(message, p.SubscribeAnswer):
            await router.subscribe_answer(self.recv_transport_id, message.revision, message.sdp)
            self._negotiating = False
            if self._renegotiate_wanted:
                self.renegotiate()
            elif self._slots_wanted:
                self.update_slots()
        elif isinstance(message, p.Leave):
            self._left_cleanly = True
            self.close_soon("left")
        elif isinstance(message, SittingCommand):
            if seat.role in ("public", "technician", "chamber"):
                raise Refused("forbidden", f"{message.type}: not allowed for the role {seat.role}")
            await sitting.command(seat, message)

    async def _hello(self, hello: p.Hello) -> None:
        if self.joined:
            self.error("bad_message", "already joined")
            return
        if hello.version != p.PROTOCOL_VERSION:
            self.error("bad_version", f"protocol version {p.PROTOCOL_VERSION} required", fatal=True)
            return
        try:
            invitation = self.hub.signer.verify(hello.token)
        except TokenError as exc:
            self.error(exc.code, str(exc), fatal=True)  # type: ignore[arg-type]
            return
        sitting = self.hub.sittings.get(invitation.sitting)
        if sitting is None:
            self.error("wrong_sitting", "this invitation is for a sitting this server does not hold", fatal=True)
            return
        refusal = admission_refusal(self, sitting, invitation, hello.token)  # revoked, sitting or server full
        if refusal is not None:
            self.error(*refusal, fatal=True)
            return
        seat = sitting.seat(invitation.seat, invitation.name, invitation.role)
        if seat.id in sitting.state.removed:
            self.error("forbidden", "the chair removed you from this sitting", fatal=True)
            return
        if seat.session is not None:
            previous = seat.session
            previous.error("replaced", "you joined from another window", fatal=True)
            await sitting.detach(seat, previous, "replaced")
        self.sitting, self.seat = sitting, seat
        self.joined = True
        if sitting.must_wait(seat):
            seat.session = self
            self.send(WaitingRoom())
            await sitting.server_event("waiting", seat=seat.id, name=seat.name, role=seat.role)
            return
        await self._enter()

    def admit(self) -> None:
        """The chair admitted this waiting member: enter the sitting."""
        if self.joined and not self.media_ready and self._closing is None:
            self._spawn(self._enter())

    async def _enter(self) -> None:
        assert self.sitting is not None and self.seat is not None
        sitting, seat = self.sitting, self.seat
        sitting.router.create_send_transport(self.send_transport_id)
        sitting.router.create_recv_transport(self.recv_transport_id)
        self.media_ready = True
        log.info("seat %s joined sitting %s as %s", seat.id, sitting.id, seat.role)
        self.send(
            p.Welcome(
                you=sitting.participant(seat),
                sitting=sitting.info(),
                participants=[x for x in sitting.participants() if x.id != seat.id],
                ice_servers=[p.IceServer(**s) for s in ice_servers_for(self.hub.settings, seat.id)],
            )
        )
        await sitting.attach(seat, self)
        if sitting.subscribe_to_all(seat):
            self.renegotiate()
        sitting.sync_media()  # e.g. the public arriving during a closed session receives nothing
        self._spawn(self._watch_media())

    # ------------------------------------------------------------------ negotiation

    def renegotiate(self) -> None:
        """Send the subscriber a new offer, coalescing changes while one is in flight."""
        self._renegotiate_wanted = True
        if not self._negotiating and self._closing is None:
            self._negotiating = True
            self._spawn(self._offer())

    def update_slots(self) -> None:
        """Tell the subscriber what its slots carry now (no new m-line: no offer). During a
        negotiation the table waits for the answer: the offer's own table may be stale by then."""
        self._slots_wanted = True
        if self._negotiating or self._closing is not None or self.sitting is None:
            return
        router = self.sitting.router
        if not router.has_transport(self.recv_transport_id):
            return
        self._slots_wanted = False
        revision, table = router.slot_table(self.recv_transport_id)
        if revision:  # before the first offer there is nothing to re-point
            self.send(p.SubscribeSlots(revision=revision, slots=_slots(table)))

    async def _offer(self) -> None:
        assert self.sitting is not None
        self._renegotiate_wanted = False
        self._slots_wanted = False
        router = self.sitting.router
        try:
            if not router.has_transport(self.recv_transport_id):
                self._negotiating = False
                return
            info = await router.subscribe_offer(self.recv_transport_id)
            self.send(p.SubscribeOffer(revision=info.revision, sdp=info.sdp, slots=_slots(info.slots)))
        except Exception:
            # never leave the member without further offers: the next change retries
            self._negotiating = False
            raise

    # ------------------------------------------------------------------ liveness and leaving

    async def _watch_media(self) -> None:
        """Drop a member whose publishing connection went silent (tab killed, network lost).

        Silence counts from the publishing answer, whatever aiortc thinks of the connection
        afterwards: an ICE consent failure can leave it neither failed nor closed.
        """
        assert self.sitting is not None
        timeout = self.hub.settings.media.rtcp_silence_timeout
        router = self.sitting.router
        while self._closing is None:
            await asyncio.sleep(1.0)
            last = router.last_activity(self.send_transport_id)
            if last is None:
                return
            # until its connection first comes up (ICE, DTLS: seconds on a slow link or a busy
            # server), a publisher gets CONNECT_ALLOWANCE_S more
            up = router.transport_was_connected(self.send_transport_id)
            limit = timeout if up else timeout + CONNECT_ALLOWANCE_S
            if router.is_publishing(self.send_transport_id) and time.monotonic() - last > limit:
                log.info("connection %d: no media for %.0f s", self.number, timeout)
                self.close_soon("media silent")
                await self.ws.close()
                return

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("connection %d task failed", self.number, exc_info=task.exception())

    async def _leave(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.sitting is not None and self.seat is not None:
            await self.sitting.detach(self.seat, self, "left" if self._left_cleanly else "lost")


def _slots(table: list[SlotInfo]) -> list[p.Slot]:
    return [
        p.Slot(mid=s.mid, kind=s.kind, participant_id=s.owner, source=s.source)  # type: ignore[arg-type]
        for s in table
    ]

"""The fuzz harness: a Hemicycle server, its witnesses and the attackers, in an event loop
that runs in a background thread, driven one batch at a time from hypothesis' (synchronous)
``@given`` functions in the test thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_args

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from config import Settings
from config.settings import LimitSettings
from signaling.app import HUB, create_app
from signaling.protocol import ClientMessageAdapter, ErrorCode, ServerMessageAdapter
from tests.conftest import RunningServer
from tests.peers import Peer

from . import sdp as sdp_tools
from .strategies import Batch, Frame, Huge, Ident, Marker, Rev, Sdp, Tok

T = TypeVar("T")
ERROR_CODES = frozenset(get_args(ErrorCode))
FENCE = "fence-"  # an unknown message type: always a non-fatal bad_message, whatever the state
WITNESS_SEATS = ("witness-a", "witness-b")
MAX_MESSAGE_BYTES = LimitSettings().max_message_bytes
WATCHED_LOGGERS = ("signaling", "sfu", "aiohttp", "asyncio", "aiortc", "aioice", "")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ErrorRecords(logging.Handler):
    """Every ERROR record from any logger (signaling, sfu, aiohttp, asyncio, aiortc...)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def describe(record: logging.LogRecord) -> str:
    text = f"{record.name}: {record.getMessage()}"
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        tb = exc.__traceback__
        where = ""
        while tb is not None:
            where = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 2)[-1]}:{tb.tb_lineno}"
            tb = tb.tb_next
        text += f" [{type(exc).__name__}: {str(exc)[:120]} at {where}]"
    return text


@dataclass
class KnownBug:
    """A bug found by this fuzz test, reproduced by its own strict xfail test: while it is not
    fixed, its log record (and the ``server_error`` it causes) does not fail the fuzz run."""

    name: str
    matches: Callable[[logging.LogRecord], bool]  # its ERROR record
    frame: Callable[[str | bytes], bool] = lambda wire: False  # a frame that triggers it (no refusal sent)
    seen: int = 0


@dataclass
class Stats:
    sent: Counter[str] = field(default_factory=Counter)  # by origin: valid, mutated, sdp
    sent_by_target: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # error replies by code
    accepted: Counter[str] = field(default_factory=Counter)  # frames that got no error, by type
    closed_by_server: int = 0
    connections: int = 0
    recovered_answers: int = 0
    failures: list[str] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def oracle(text: str | None, binary: bool) -> str | None:
    """What the protocol says the server must answer, when the frame is not a valid message."""
    if binary:
        return "bad_message"
    assert text is not None
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        return "too_large"
    try:
        raw = json.loads(text)
        json.dumps(raw, ensure_ascii=False).encode("utf-8")  # lone surrogates are not Unicode text
    except (ValueError, RecursionError):
        return "bad_json"
    try:
        ClientMessageAdapter.validate_python(raw)
    except ValidationError:
        return "bad_message"
    return None


def apply_raw(text: str, op: tuple[Any, ...] | None) -> str | bytes:
    if op is None:
        return text
    kind = op[0]
    if kind == "dup_key":  # the same key twice: JSON parsers keep the last one
        key, value = op[1], json.dumps(_plain(op[2]))
        return "{" + json.dumps(key) + ": " + value + ", " + text[1:] if text.startswith("{") else text
    if kind == "truncate":
        return text[: int(len(text) * op[1])]
    if kind == "replace":
        return str(op[1])
    if kind == "replace_json":
        return json.dumps(op[1], allow_nan=True)
    if kind == "deep":
        _, key, depth, bracket = op
        opening, closing = ("[", "]") if bracket == "[" else ('{"k":', "}")
        junk = opening * depth + "1" + closing * depth
        return "{" + json.dumps(key) + ": " + junk + ", " + text[1:]
    if kind == "whitespace":
        return op[1] + text.replace(",", op[1] + "," + op[1]).replace(":", op[1] + ":") + op[1]
    if kind == "bytes":
        return bytes(op[1])
    raise ValueError(op)


def _plain(value: Any) -> Any:
    if isinstance(value, Huge):
        return value.char * value.n
    return value


class Attacker:
    """A hostile client: raw frames on a WebSocket, each followed by a fence message."""

    numbers = itertools.count(1)

    def __init__(self, world: World, role: str | None) -> None:
        self.world = world
        self.role = role
        self.seat: str | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.inbox: list[dict[str, Any]] = []
        self.fences: dict[int, asyncio.Event] = {}
        self.closed = asyncio.Event()
        self.offer: dict[str, Any] | None = None
        self.answers: dict[int, str] = {}
        self.reader: asyncio.Task[None] | None = None
        self.fence_numbers = itertools.count(1)
        self.joined = False

    async def connect(self) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.world.ws_url, max_msg_size=0, autoclose=True)
        self.reader = asyncio.get_running_loop().create_task(self._read())
        self.world.stats.connections += 1

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                if data.get("type") == "error" and data.get("message", "").startswith("invalid " + FENCE):
                    number = int(data["message"][len("invalid " + FENCE) :].split(":", 1)[0])
                    self.fences.setdefault(number, asyncio.Event()).set()
                    continue
                self.inbox.append(data)
                if data.get("type") == "subscribe_offer":
                    self.offer = data
                elif data.get("type") in ("welcome", "waiting_room"):
                    self.joined = True
        finally:
            self.closed.set()

    async def exchange(self, frame: str | bytes, timeout: float = 10.0) -> tuple[list[dict[str, Any]], str]:
        """Send one frame and a fence; return the replies and ``fenced``, ``closed`` or ``hung``."""
        assert self.ws is not None
        start = len(self.inbox)
        number = next(self.fence_numbers)
        event = self.fences.setdefault(number, asyncio.Event())
        try:
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_str(frame)
            await self.ws.send_str(json.dumps({"type": f"{FENCE}{number}"}))
        except (ConnectionError, RuntimeError):
            pass  # closed under us: the replies say why
        fence = asyncio.ensure_future(event.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        _, pending = await asyncio.wait({fence, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        outcome = "fenced" if event.is_set() else "closed" if self.closed.is_set() else "hung"
        return self.inbox[start:], outcome

    @property
    def alive(self) -> bool:
        return self.ws is not None and not self.closed.is_set() and not self.ws.closed

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.reader, 5)
        if self.session is not None:
            await self.session.close()


class World:
    """Runs in the loop thread; the test thread calls :meth:`call`."""

    def __init__(self, data_dir: Path, known_bugs: list[KnownBug]) -> None:
        self.thread = LoopThread()
        self.data_dir = data_dir
        self.known_bugs = known_bugs
        self.stats = Stats()
        self.handler = ErrorRecords()
        self.checked_records = 0
        self.attackers: dict[str, Attacker] = {}
        self.generations: Counter[str] = Counter()
        self.witnesses: list[Peer] = []
        self.samples: list[tuple[float, int, int, int]] = []
        self.server: RunningServer | None = None
        self.runner: web.AppRunner | None = None
        self.publish_templates: list[str] = []
        self.baseline_tasks = 0
        self.control: Attacker | None = None
        self.verbose = bool(os.environ.get("FUZZ_VERBOSE"))

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 180) -> T:
        return self.thread.run(coro, timeout)

    @property
    def ws_url(self) -> str:
        assert self.server is not None
        return self.server.base_url.replace("http", "ws", 1) + "/ws"

    @property
    def sitting(self) -> Any:
        assert self.server is not None
        return self.server.hub.sittings["demo"]

    # ------------------------------------------------------------------ start and stop

    def start(self) -> None:
        logging.getLogger().addHandler(self.handler)
        self.call(self._start())

    async def _start(self) -> None:
        # the per-connection rate limit (signaling/limits.py) would ignore nearly every fuzzed
        # message, unread: raised here so that each reaches the parser and the handlers
        limits = {"messages_per_second": 1e6, "message_burst": 1_000_000, "max_refused_messages": 10**9}
        app = create_app(Settings(port=0, data_dir=self.data_dir, demo=False, limits=limits, programme={"enabled": False}))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.server = RunningServer(f"http://127.0.0.1:{port}", app[HUB], app)
        a = Peer(self.server.base_url, self.server.token("Témoin A", seat=WITNESS_SEATS[0]), "red", 440)
        b = Peer(self.server.base_url, self.server.token("Témoin B", seat=WITNESS_SEATS[1]), "blue", 880)
        self.witnesses = [a, b]
        for peer in self.witnesses:
            await peer.join()
            await peer.publish()
        self.publish_templates = await sdp_tools.publish_templates()
        deadline = time.monotonic() + 30
        while min(self.video_counts()) < 30:
            if time.monotonic() > deadline:
                raise AssertionError(f"the witnesses never received each other: {self.video_counts()}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        self.baseline_kinds = self.server_tasks()
        self.baseline_tasks = sum(self.baseline_kinds.values())
        self._monitor = asyncio.get_running_loop().create_task(self._watch())

    def video_counts(self) -> tuple[int, int]:
        a, b = self.witnesses
        return (len(a.received[b.me].counters) if b.me in a.received else 0,
                len(b.received[a.me].counters) if a.me in b.received else 0)

    def audio_count(self) -> int:
        a, b = self.witnesses
        return b.received[a.me].audio_frames if a.me in b.received else 0

    async def _watch(self) -> None:
        while True:
            self.samples.append((time.monotonic(), *self.video_counts(), self.audio_count()))
            await asyncio.sleep(0.5)

    def longest_stall(self) -> float:
        """The longest time either witness went without a new video frame from the other."""
        worst, last_change = 0.0, [self.samples[0][0]] * 2
        previous = self.samples[0]
        for sample in self.samples[1:]:
            for side in (0, 1):
                if sample[1 + side] > previous[1 + side]:
                    last_change[side] = sample[0]
                worst = max(worst, sample[0] - last_change[side])
            previous = sample
        return worst

    def server_tasks(self) -> Counter[str]:
        """Tasks by coroutine, but those of the witnesses' own peer connections (each new slot
        the SFU offers them adds receiver and sender tasks on their side, not the server's)."""
        mine = set()
        pcs = [pc for peer in self.witnesses for pc in (peer.publish_pc, peer.subscribe_pc) if pc is not None]
        # and the slots of the witnesses' receiving transports on the server: a pool that grows
        # to the most producers there ever were at once and is re-pointed, never shrunk (design)
        pcs += [t.pc for t in self.sitting.router.transports.values()]
        for pc in pcs:
            for t in pc.getTransceivers():
                mine |= {id(t.sender), id(t.receiver)}
        kinds: Counter[str] = Counter()
        for task in asyncio.all_tasks():
            coro = task.get_coro()
            owner = getattr(coro, "cr_frame", None) and coro.cr_frame.f_locals.get("self")  # type: ignore[union-attr]
            if id(owner) in mine or isinstance(owner, (Peer, World)):
                continue
            kinds[getattr(coro, "__qualname__", "?")] += 1
        return kinds

    def stop(self) -> None:
        try:
            self.call(self._stop(), timeout=60)
        finally:
            self.thread.stop()
            logging.getLogger().removeHandler(self.handler)

    async def _stop(self) -> None:
        self._monitor.cancel()
        for attacker in [*self.attackers.values(), *([self.control] if self.control else [])]:
            await attacker.close()
        for peer in self.witnesses:
            await peer.close()
        if self.runner is not None:
            await self.runner.cleanup()

    # ------------------------------------------------------------------ batches

    def run_batch(self, batch: Batch) -> list[str]:
        """Send one batch; returns what went wrong (empty: all well)."""
        return self.call(self._run_batch(batch))

    async def _run_batch(self, batch: Batch) -> list[str]:
        failures: list[str] = []
        if len(self.stats.failures) > 40:
            return []  # enough to report; keep the run bounded
        await self._unlock()
        attacker = await self._attacker(batch.target)
        for frame in batch.frames:
            if not attacker.alive:
                break  # a leave, a fatal error, a removal: the rest of the batch is not sent
            failures += await self._send(attacker, frame, batch.target)
        if batch.target == "prehello":
            await attacker.close()
        failures += self.check_logs()
        failures += self.check_witnesses()
        self.stats.failures += failures
        if failures and self.verbose:
            print("\n".join(failures), flush=True)
        return failures

    async def _unlock(self) -> None:
        """A fuzzed chair may lock the sitting: unlock it, so that every role gets in."""
        if not self.sitting.state.locked:
            return
        if self.control is None or not self.control.alive:
            if self.control is not None:
                await self.control.close()
            self.control = await self._join("chair", "control-chair")
        await self.control.exchange(json.dumps({"type": "lock", "locked": False}))

    async def _attacker(self, target: str) -> Attacker:
        if target == "prehello":
            attacker = Attacker(self, None)
            await attacker.connect()
            return attacker
        current = self.attackers.get(target)
        if current is not None and current.alive:
            return current
        if current is not None:
            await current.close()
        seat = f"atk-{target}-{self.generations[target]}"
        if seat in self.sitting.state.removed:
            self.generations[target] += 1
            seat = f"atk-{target}-{self.generations[target]}"
        attacker = self.attackers[target] = await self._join(target, seat)
        return attacker

    async def _join(self, role: str, seat: str) -> Attacker:
        assert self.server is not None
        attacker = Attacker(self, role)
        attacker.seat = seat
        await attacker.connect()
        token = self.server.token(f"Attaquant {seat}", role=role, seat=seat)
        await attacker.exchange(json.dumps({"type": "hello", "version": 1, "token": token}))
        return attacker

    def known_ids(self) -> list[str]:
        roles = set(self.generations) | {"chair", "secretary", "councillor"}
        ids = {f"atk-{role}-{g}" for role in roles for g in range(self.generations[role] + 1)}
        return [*sorted(ids), "1", "2", "3", "control-chair"]

    async def _resolve(self, value: Any, attacker: Attacker) -> Any:
        if isinstance(value, dict):
            return {k: await self._resolve(v, attacker) for k, v in value.items()}
        if isinstance(value, list):
            return [await self._resolve(v, attacker) for v in value]
        if not isinstance(value, Marker):
            return value
        assert self.server is not None
        if isinstance(value, Huge):
            return value.char * value.n
        if isinstance(value, Tok):
            if value.variant == "expired":
                return self.server.token("Périmé", role=value.role, lifetime=-5)
            if value.variant == "other_sitting":
                return self.server.token("Ailleurs", role=value.role, sitting="elsewhere")
            token = self.server.token(f"Nouveau {value.role}", role=value.role)
            return token[:-3] + "AAA" if value.variant == "tampered" else token
        if isinstance(value, Ident):
            ids = self.known_ids()
            return ids[value.k % len(ids)]
        if isinstance(value, Rev):
            revision = attacker.offer["revision"] if attacker.offer else 0
            return revision + value.delta
        if isinstance(value, Sdp):
            return sdp_tools.mutate(await self._template(value, attacker), value.ops)
        raise AssertionError(value)

    async def _template(self, value: Sdp, attacker: Attacker) -> str:
        if value.kind == "answer" and attacker.offer is not None:
            return await self._answer(attacker, attacker.offer)
        return self.publish_templates[value.template % len(self.publish_templates)]

    async def _answer(self, attacker: Attacker, offer: dict[str, Any]) -> str:
        revision = offer["revision"]
        if revision not in attacker.answers:
            attacker.answers[revision] = await sdp_tools.answer_to(offer["sdp"])
        return attacker.answers[revision]

    async def _send(self, attacker: Attacker, frame: Frame, target: str) -> list[str]:
        failures: list[str] = []
        payload = await self._resolve(frame.payload, attacker)
        text = json.dumps(payload, ensure_ascii=frame.ascii, allow_nan=True)
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate: only as a JSON escape
            text = json.dumps(payload, ensure_ascii=True, allow_nan=True)
        raw = None if frame.raw is None else tuple([await self._resolve(x, attacker) for x in frame.raw])
        wire = b"\x00\x01" if frame.binary and raw is None else apply_raw(text, raw)
        binary = frame.binary or isinstance(wire, bytes)
        if binary and isinstance(wire, str):
            wire = wire.encode()
        if isinstance(wire, str):
            try:
                wire.encode()
            except UnicodeEncodeError:
                wire = wire.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        expected = oracle(None if binary else wire, binary)  # type: ignore[arg-type]
        if expected is None and len(wire) > 4 * MAX_MESSAGE_BYTES:
            expected = "too_large"
        replies, outcome = await attacker.exchange(wire)
        self.stats.sent[frame.origin] += 1
        self.stats.sent_by_target[target] += 1
        label = f"{target} {frame.origin} {_short(wire)}"
        errors = []
        for reply in replies:
            try:
                ServerMessageAdapter.validate_python(reply)
            except ValidationError as exc:
                failures.append(f"{label}: the server sent an invalid message {reply!r}: {exc}")
            if reply.get("type") == "error":
                errors.append(reply)
                self.stats.errors[reply.get("code", "?")] += 1
                if reply.get("code") not in ERROR_CODES:
                    failures.append(f"{label}: unknown error code {reply!r}")
                if reply.get("code") == "server_error" and not self._known_frame(wire):
                    failures.append(f"{label}: server_error {reply!r}")
        if not errors:
            kind = payload.get("type") if isinstance(payload, dict) and not binary else "?"
            self.stats.accepted[str(kind)[:24]] += 1
        if outcome == "hung":
            failures.append(f"{label}: no answer to the fence within 10 s (hang); last replies {attacker.inbox[-3:]!r:.600}; closed={attacker.closed.is_set()} ws.closed={attacker.ws and attacker.ws.closed}; server tasks:\n{_stacks()}")
        elif outcome == "closed":
            self.stats.closed_by_server += 1
        if any(e.get("fatal") for e in errors) and outcome == "fenced":
            failures.append(f"{label}: a fatal error but the connection stayed open: {errors}")
        if expected is not None and outcome != "hung":
            codes = [e.get("code") for e in errors]
            too_large_cut = expected == "too_large" and outcome == "closed"  # aiohttp's own limit
            if expected not in codes and not too_large_cut and not self._known_frame(wire):
                failures.append(f"{label}: expected {expected}, got {codes or replies[:3]} ({outcome})")
        if (isinstance(frame.payload, dict) and isinstance(frame.payload.get("revision"), Rev)
                and frame.payload["revision"].delta == 0 and any(e.get("code") == "bad_sdp" for e in errors)
                and attacker.alive and attacker.offer is not None):
            failures += await self._recover_answer(attacker, label)
        return failures

    async def _recover_answer(self, attacker: Attacker, label: str) -> list[str]:
        """After a refused answer, the genuine one must still be accepted: negotiation is not stuck."""
        assert attacker.offer is not None
        offer = attacker.offer
        answer = await self._answer(attacker, offer)
        message = {"type": "subscribe_answer", "revision": offer["revision"], "sdp": answer}
        replies, outcome = await attacker.exchange(json.dumps(message))
        errors = [r for r in replies if r.get("type") == "error"]
        if outcome == "fenced" and errors:
            return [f"{label}: after a refused subscribe_answer the genuine answer is refused too: {errors}"]
        self.stats.recovered_answers += 1
        return []

    def _known_frame(self, wire: str | bytes) -> bool:
        return any(bug.frame(wire) for bug in self.known_bugs)

    # ------------------------------------------------------------------ checks

    def check_logs(self) -> list[str]:
        failures = []
        new = self.handler.records[self.checked_records :]
        self.checked_records = len(self.handler.records)
        for record in new:
            bug = next((b for b in self.known_bugs if b.matches(record)), None)
            if bug is not None:
                bug.seen += 1
                self.stats.known[bug.name] += 1
            else:
                failures.append("ERROR logged: " + describe(record))
        return failures

    def check_witnesses(self) -> list[str]:
        failures = []
        for peer in self.witnesses:
            seat = self.sitting.seats.get(peer.me)
            if seat is None or seat.session is None or peer.ws is None or peer.ws.closed:
                failures.append(f"witness {peer.me} is no longer in the sitting")
            errors = [m for m in peer.messages if m.get("type") == "error"]
            if errors:
                failures.append(f"witness {peer.me} received errors: {errors}")
        if self.samples and time.monotonic() - self.samples[0][0] > 10:
            recent = [s for s in self.samples if s[0] > time.monotonic() - 6]
            if recent and (recent[-1][1] <= recent[0][1] or recent[-1][2] <= recent[0][2]):
                failures.append(f"a witness received no video for 6 s: {recent[0]} -> {recent[-1]}")
        return failures

    async def settle(self, timeout: float = 20) -> dict[str, Any]:
        """Close every attacker; wait for the Router to hold only the witnesses' media."""
        for attacker in [*self.attackers.values(), *([self.control] if self.control else [])]:
            await attacker.close()
        self.attackers.clear()
        self.control = None
        router = self.sitting.router
        # two witnesses, each with a send and a receive transport, publishing mic and camera,
        # each consuming the other's two producers
        expected = {"transports": 4, "producers": 4, "consumers": 4}
        deadline = time.monotonic() + timeout
        while router.counts() != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        gc.collect()
        await asyncio.sleep(0.5)
        return {
            "counts": router.counts(),
            "expected": expected,
            "tasks": sum(self.server_tasks().values()),
            "new_tasks": dict(self.server_tasks() - self.baseline_kinds),
            "baseline_tasks": self.baseline_tasks,
            "owners": sorted(set(router.owners.values())),
            "witness_slots": [len(getattr(t, "slots", ())) for t in router.transports.values()],
        }


def _stacks() -> str:
    """Where the server's connection handlers are waiting (for hang reports)."""
    import io

    out = io.StringIO()
    for task in asyncio.all_tasks():
        text = io.StringIO()
        task.print_stack(file=text)
        if "_watch_media" not in text.getvalue() and ("signaling" in text.getvalue() or "web_protocol" in text.getvalue()):
            out.write(text.getvalue())
    return out.getvalue()[-12000:]


def _short(wire: str | bytes, limit: int = 160) -> str:
    text = repr(wire[:limit])
    return text + (f"... ({len(wire)} chars)" if len(wire) > limit else "")

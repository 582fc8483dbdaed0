"""signaling/memory.py: the collection and malloc_trim after members leave."""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
import weakref
from types import SimpleNamespace
from typing import Any

import pytest

from signaling import memory


class Node:
    other: Any = None


def test_trim_calls_malloc_trim_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "_TRIM", lambda pad: calls.append(pad) or 1)
    assert memory.trim() is True
    assert calls == [0]


def test_trim_is_a_no_op_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_TRIM", None)
    assert memory.trim() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_the_real_malloc_trim_is_found_and_harmless() -> None:
    assert memory._TRIM is not None
    blocks = [bytearray(200_000) for _ in range(50)]  # some heap to give back
    del blocks
    assert memory.trim() is True
    assert memory.trim() is True  # twice in a row: nothing left, still fine


def test_reclaim_frees_a_reference_cycle() -> None:
    gc.disable()
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # only the cycle collector frees it
        collecting, trimming = memory.reclaim()
        assert gone() is None
        assert collecting >= 0 and trimming >= 0
    finally:
        gc.enable()


def test_reclaimer_runs_only_when_a_transport_has_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    settled: list[int] = []
    monkeypatch.setattr(memory, "reclaim", lambda: (runs.append(1), (0.001, 0.002))[1])
    monkeypatch.setattr(memory, "settle", lambda: settled.append(1))
    live = {"a", "b"}
    ticks = itertools.count(0.0, 10.0)  # looks 10 s apart: the budget never holds a reclaim back here
    reclaimer = memory.Reclaimer(lambda: set(live), clock=lambda: next(ticks))
    assert reclaimer.check() is False  # first look
    live.add("c")
    assert reclaimer.check() is False  # a join: nothing to give back
    live.discard("a")
    assert reclaimer.check() is True
    assert reclaimer.check() is False  # nothing new has gone
    live.clear()
    assert reclaimer.check() is True
    assert len(runs) == 2 and reclaimer.runs == 2
    assert len(settled) == 3  # the looks that did not reclaim froze what had grown old instead
    assert reclaimer.seconds == pytest.approx(0.006)
    assert reclaimer.longest_gc == 0.001 and reclaimer.longest_trim == 0.002


def test_reclaimer_keeps_within_its_budget_and_does_not_forget_a_departure(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    monkeypatch.setattr(memory, "reclaim", lambda: (runs.append(1), (0.4, 0.1))[1])  # a 0.5 s pause
    monkeypatch.setattr(memory, "settle", lambda: None)
    now = [100.0]
    live = {"a", "b", "c"}
    reclaimer = memory.Reclaimer(lambda: set(live), budget=0.01, clock=lambda: now[0])
    assert reclaimer.check() is False
    live.discard("a")
    assert reclaimer.check() is True  # the first departure: at once
    live.discard("b")
    now[0] += 49.0
    assert reclaimer.check() is False  # 0.5 s of pause buys 50 s without one
    now[0] += 1.0
    assert reclaimer.check() is True  # the departure seen at 149 s is not forgotten
    assert reclaimer.check() is False and len(runs) == 2


def test_settled_objects_are_not_walked_and_a_reclaim_still_frees_their_cycles() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    try:
        memory.settle()
        assert gc.get_freeze_count() > 0
        assert not any(o is a for o in gc.get_objects(2))  # frozen: automatic full collections skip it
        del a, b
        gc.collect()
        assert gone() is not None  # a frozen cycle waits for a reclaim
        memory.reclaim()
        assert gone() is None
        assert gc.get_freeze_count() > 0  # the survivors are frozen again
    finally:
        gc.unfreeze()


def test_warm_up_generates_a_certificate() -> None:
    memory.warm_up()
    assert "cryptography.hazmat.backends.openssl" in sys.modules  # what the first member used to load


def test_start_warms_up_watches_the_hub_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    warmed: list[int] = []
    monkeypatch.setattr(memory, "reclaim", lambda: (runs.append(1), (0.0, 0.0))[1])
    monkeypatch.setattr(memory, "settle", lambda: None)
    monkeypatch.setattr(memory, "warm_up", lambda: warmed.append(1))
    transports = {"t1": object(), "t2": object()}
    hub: Any = SimpleNamespace(sittings={"demo": SimpleNamespace(router=SimpleNamespace(transports=transports))})
    assert memory.live_transports(hub) == {"t1", "t2"}

    async def scenario() -> None:
        task = memory.start(hub, every=0.01)
        assert warmed == [1]
        await asyncio.sleep(0.05)
        assert runs == []
        del transports["t1"]
        await asyncio.sleep(0.05)
        assert runs == [1]
        await memory.stop(task)
        assert task.cancelled()

    asyncio.run(scenario())

"""The scenario's load generators: P processes of synthetic members, driven as one.

Member index ``i`` lives in process ``i % P`` (bench/scenario_loadgen.py). Every command goes to every
process at once and the answers are merged here: sums of members and counters, the slowest grow, the
latency histograms merged before the percentiles (bench/scenario_check.py). What needs the whole room is
done here too: the chair's id for the decoders, the microphones the chair must mute, and the exact check
(every process paused, drained, counted, then resumed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from .procs import Child, module_argv
from .scenario_check import Plan, compare, merge_counters, merge_stats

AUTO_MIN_MEMBERS = 16  # --loadgens auto: 2 processes from this many members (if 2 CPUs are usable)


def loadgens_for(option: str, n: int) -> int:
    """``--loadgens``: an int, or ``auto`` (2 with >= 2 usable CPUs and N >= 16, else 1)."""
    if option != "auto":
        return max(1, int(option))
    return 2 if len(os.sched_getaffinity(0)) >= 2 and n >= AUTO_MIN_MEMBERS else 1


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` (the first ones get the remainder)."""
    return [total // parts + (1 if p < total % parts else 0) for p in range(parts)]


class Fleet:
    """P load-generator processes (registered in ``children`` as ``loadgen0``..)."""

    def __init__(self, kind: str, args: argparse.Namespace, url: str, work: Path, processes: int,
                 children: dict[str, Child]) -> None:  # fmt: skip
        self.plan = Plan(args.scenario, args.speakers, args.cameras, args.videos)
        self.decoders = args.decoders
        self.previous: dict[str, Any] | None = None  # the last checkpoint's merged counters
        secret = ["--secret-file", str(work / "secret.key")] if kind == "hemicycle" else []
        self.children: list[Child] = []
        joining = split(args.concurrency, processes)  # --concurrency members joining at once, in all
        for p in range(processes):
            argv = module_argv(
                "bench.scenario_loadgen", "--url", url, *secret, "--scenario", args.scenario,
                "--speakers", str(args.speakers), "--cameras", str(args.cameras), "--videos", str(args.videos),
                "--silence", args.silence, "--decoders", str(args.decoders), "--video-bitrate", str(args.video_bitrate),
                "--concurrency", str(max(1, joining[p])), "--process", str(p), "--processes", str(processes),
                *([] if args.no_uvloop else ["--uvloop"]),
            )  # fmt: skip
            if args.loadgen_nice:
                argv = ["nice", "-n", str(args.loadgen_nice), *argv]  # nice execs: the same process
            name = "load generator" + (f" {p}/{processes}" if processes > 1 else "")
            child = Child(name, argv, str(work / f"{kind}-loadgen{p}.log"))
            children[f"loadgen{p}"] = child
            self.children.append(child)

    def ready(self, timeout: float = 120) -> dict[str, Any]:
        answers = [json.loads(child.expect("SCENARIO LOADGEN READY", timeout)) for child in self.children]
        return answers[0]

    def ask(self, commands: str | list[str], prefix: str, timeout: float = 60, only: int | None = None) -> list[Any]:
        """Send to every process (or process ``only``) first, then read each one's answer."""
        chosen = self.children if only is None else [self.children[only]]
        commands = [commands] * len(chosen) if isinstance(commands, str) else commands
        for child, command in zip(chosen, commands, strict=True):
            child.send(command)
        deadline = time.monotonic() + timeout
        return [json.loads(c.expect(prefix, max(1.0, deadline - time.monotonic()))) for c in chosen]

    # ------------------------------------------------------------------ the room

    def grow(self, members: int, limit: float) -> dict[str, Any]:
        """Grow to ``members`` in every process, then tell the decoders whose camera to decode."""
        answers = self.ask(f"grow {members} {limit:.0f}", "GROWN", timeout=limit + 60)
        grown = {
            "members": sum(a["members"] for a in answers),
            "ok": sum(a["ok"] for a in answers),
            "failed": [f for a in answers for f in a["failed"]],
            "lagging": {int(i): n for a in answers for i, n in a["lagging"].items()},
            "seconds": max(a["seconds"] for a in answers),
        }
        roster = self.roster()
        if self.decoders > 0 and self.plan.camera_on(0) and 0 in roster:
            self.ask(f"decode {roster[0]['id']}", "DECODING")
        return grown

    def roster(self) -> dict[int, dict[str, Any]]:
        """Every member that joined: index -> {"id", "audio"}."""
        return {int(i): m for answer in self.ask("roster", "ROSTER") for i, m in answer["members"].items()}

    def arrange(self) -> dict[str, Any]:
        """The chair (process 0) mutes every microphone but the speakers' (it does nothing unless sitting)."""
        roster = self.roster()
        wanted = {
            "unmute": [m["id"] for i, m in sorted(roster.items()) if i > 0 and self.plan.speaks(i)],
            "speaking": [m["id"] for i, m in sorted(roster.items()) if self.plan.speaks(i)],
            "muted": sorted(f"{m['id']}:mic" for i, m in roster.items() if not self.plan.speaks(i) and m["audio"]),
        }
        (arranged,) = self.ask(f"arrange {json.dumps(wanted, separators=(',', ':'))}", "ARRANGED", only=0)
        return dict(arranged)

    def viewers(self, viewers: int, limit: float) -> dict[str, Any]:
        shares = split(viewers, len(self.children))
        answers = self.ask([f"viewers {share} {limit:.0f}" for share in shares], "VIEWERS", timeout=limit + 60)
        return {
            "viewers": sum(a["viewers"] for a in answers),
            "failed": [f for a in answers for f in a["failed"]],
            "seconds": max(a["seconds"] for a in answers),
        }

    # ------------------------------------------------------------------ measuring

    def checkpoint(self) -> dict[str, Any]:
        """Every process paused, drained and counted, then resumed; the exact check since the previous one."""
        try:
            self.ask("pause", "PAUSED")
            self.ask("drain", "DRAINED")
            now = merge_counters(self.ask("counters", "COUNTERS"))
        finally:
            self.ask("resume", "RESUMED")
        before, self.previous = self.previous, now
        return compare(before, now, self.plan)

    def stats(self) -> dict[str, Any]:
        return merge_stats(self.ask("stats", "STATS"))

    def stop(self) -> None:
        for child in self.children:  # EOF to all first: they close their members in parallel
            try:
                if child.proc.stdin is not None:
                    child.proc.stdin.close()
            except OSError:
                pass
        for child in self.children:
            child.stop(polite=10)

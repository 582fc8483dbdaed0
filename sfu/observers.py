"""Observers: the active-speaker signal, from the RFC 6464 audio level of each packet."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# RFC 6464 levels are -dBov: 0 is loudest, 127 silence. Below this, nobody speaks.
SPEECH_LEVEL = 50
WINDOW = 0.5
# Browsers send a 20 ms Opus frame per packet: a window holds this many while the microphone sends.
# Opus DTX sends one packet per 400 ms when silent: the packets that did not come count as silence.
PACKETS_PER_WINDOW = round(WINDOW / 0.020)


class ActiveSpeakerObserver:
    """Keeps a short average of each audio producer's level; the loudest one speaks.

    The average is over the window's time, not over the packets that came: a
    microphone in DTX (a few comfort-noise packets a second) after a word or a click
    decays to silent instead of being judged on its few loud packets. Paused (muted)
    producers feed nothing, so a muted member is never the speaker. The speaker stays
    the last one who spoke until another speaks (or it is muted or leaves).
    """

    def __init__(self, on_change: Callable[[Any], None]) -> None:
        self._on_change = on_change
        self._levels: dict[Any, list[float]] = {}  # producer -> [sum of loudness, count, last time]
        self.speaker: Any = None

    def feed(self, producer: Any, level: int) -> None:
        entry = self._levels.get(producer)
        if entry is None:
            entry = self._levels[producer] = [0.0, 0.0, 0.0]
        entry[0] += 127 - level
        entry[1] += 1
        entry[2] = time.monotonic()

    def forget(self, producer: Any) -> None:
        self._levels.pop(producer, None)
        if self.speaker is producer:
            self.speaker = None
            self._on_change(None)

    def evaluate(self) -> None:
        """Called every WINDOW seconds: pick the loudest producer above the speech level."""
        now = time.monotonic()
        best: Any = None
        best_loudness = float(127 - SPEECH_LEVEL)
        for producer, (total, count, last) in self._levels.items():
            if count and now - last < WINDOW * 2:
                loudness = total / max(count, PACKETS_PER_WINDOW)
                if loudness > best_loudness:
                    best, best_loudness = producer, loudness
        for entry in self._levels.values():
            entry[0] = entry[1] = 0.0
        if best is not None and best is not self.speaker:
            self.speaker = best
            self._on_change(best)

"""Loss injection for tests and benches: drops packets as a lossy network would."""

from __future__ import annotations

import random


class LossInjector:
    """Drops one packet in every ``1/rate``, at a random phase: loss on the wire, for tests."""

    def __init__(self, rate: float) -> None:
        self.period = max(2, round(1 / rate))
        self.count = random.randrange(self.period)
        self.dropped = 0

    def __call__(self) -> bool:
        self.count += 1
        if self.count % self.period:
            return False
        self.dropped += 1
        return True

"""Adaptive throttling: a limit factor that falls while CPU stays above a threshold.

Multiplicative decrease, additive increase (as TCP does): a sustained overload quickly sheds
load, and the limit comes back gradually instead of letting the whole burst in at once.
"""

from __future__ import annotations

DECREASE = 0.8
"""Each sample above the threshold multiplies the factor by this."""
INCREASE = 0.1
"""Each sample below the threshold adds this, up to 1."""


class AdaptiveFactor:
    def __init__(self, cpu_above: float, min_factor: float, source: str = "system") -> None:
        self.cpu_above = cpu_above
        self.min_factor = min_factor
        self.source = source
        self.factor = 1.0

    def update(self, cpu: float) -> float:
        """Feed one CPU sample (a fraction of 1); returns the new factor."""
        if cpu > self.cpu_above:
            self.factor = max(self.min_factor, self.factor * DECREASE)
        else:
            self.factor = min(1.0, self.factor + INCREASE)
        return self.factor

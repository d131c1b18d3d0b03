"""How long a session's replies take to sound after the user's turn ends, and what that
means for the slow-answer filler: the ``"adaptive"`` delay and the "would it be cut in its
first half?" check. Pure: no session, no clock."""

from __future__ import annotations

from collections import deque
from typing import Literal

from .latency import fit, quantile

__all__ = ["TurnLeads"]

LEAD_WINDOW = 20
"""Reply leads kept (the most recent turns)."""
MIN_LEADS = 3
"""Turns timed before ``after = "adaptive"`` trusts the leads (until then: 1.2 s)."""
ADAPTIVE_QUANTILE = 0.8
"""``"adaptive"`` waits this quantile of the recent leads: only a later reply is filled."""
ADAPTIVE_DEFAULT = 1.2
ADAPTIVE_MIN = 0.6
ADAPTIVE_MAX = 3.0
"""Bounds (seconds) of the adaptive delay."""
MAX_LEAD = 10.0
"""Longest reply lead kept; a longer wait was not a reply being prepared."""


class TurnLeads:
    """How long this session's replies took to sound after the user's turn ended."""

    def __init__(self, window: int = LEAD_WINDOW) -> None:
        self._leads: deque[float] = deque(maxlen=window)

    def record(self, seconds: float) -> None:
        """A reply sounded ``seconds`` after the end of the user's turn."""
        if 0 <= seconds <= MAX_LEAD:
            self._leads.append(seconds)

    def leads(self) -> list[float]:
        """The kept leads, oldest first."""
        return list(self._leads)

    def after(self, setting: float | Literal["adaptive"]) -> float:
        """Seconds to wait before the filler: the setting, or the adaptive delay."""
        if setting != "adaptive":
            return float(setting)
        if len(self._leads) < MIN_LEADS:
            return ADAPTIVE_DEFAULT
        usual = quantile(list(self._leads), ADAPTIVE_QUANTILE)
        return min(ADAPTIVE_MAX, max(ADAPTIVE_MIN, usual))

    def remaining(self, elapsed: float) -> float | None:
        """Predicted seconds until a reply waited on for ``elapsed`` s sounds: the median
        over the recent leads longer than ``elapsed``; None when unknown or overrunning."""
        if len(self._leads) < MIN_LEADS:
            return None
        longer = [lead - elapsed for lead in self._leads if lead > elapsed]
        return quantile(longer, 0.5) if longer else None

    def worth_it(self, elapsed: float, duration: float) -> bool:
        """False when the reply is predicted to sound within the filler's first half."""
        remaining = self.remaining(elapsed)
        return fit(["x"], lambda _: duration, remaining, finish_within=0.0) is not None

"""Choosing what a filler says: first or follow-up pool, never the same phrase twice in a row."""

from __future__ import annotations

import random
from collections.abc import Sequence


class PhrasePicker:
    """Picks filler phrases for one session so that no phrase repeats back to back."""

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._last: str | None = None

    @property
    def last(self) -> str | None:
        """The phrase picked most recently, if any."""
        return self._last

    def pick(self, phrases: Sequence[str], followups: Sequence[str], *, index: int) -> str:
        """Return the phrase for the ``index``-th filler (0-based) of a tool call."""
        pool = followups if index > 0 and followups else phrases
        fresh = [p for p in pool if p != self._last] or list(pool)
        phrase = self._rng.choice(fresh)
        self._last = phrase
        return phrase

"""Choosing what a filler says: first or follow-up pool, never the same phrase twice in a row."""

from __future__ import annotations

import random
from collections.abc import Mapping

from .options import Pool, fill


class PhrasePicker:
    """Picks filler phrases for one session so that no phrase repeats back to back."""

    def __init__(self, *, seed: int | str | None = None) -> None:
        self._rng = random.Random(seed)
        self._last: str | None = None

    @property
    def last(self) -> str | None:
        """The phrase picked most recently, if any."""
        return self._last

    def pick(self, pool: Pool, *, index: int, values: Mapping[str, object]) -> str | None:
        """The ``index``-th filler (0-based) of a call, templates filled from ``values``.

        Returns None when no phrase of the pool can be filled from ``values``.
        """
        source = pool.followups if index > 0 and pool.followups else pool.phrases
        candidates = [t for p in source if (t := fill(p, values)) is not None]
        if not candidates and source is not pool.phrases:
            candidates = [t for p in pool.phrases if (t := fill(p, values)) is not None]
        if not candidates:
            return None
        fresh = [p for p in candidates if p != self._last] or candidates
        phrase = self._rng.choice(fresh)
        self._last = phrase
        return phrase

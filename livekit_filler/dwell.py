"""A stream's dwell: the silence it waits before its next filler, as a small pure model.

The dwell counts from its anchor, the moment the last speech (a filler, real speech, the
caller) ended, and a filler is due one dwell length later, never before ``not_before``.
It is a :class:`DwellPhase`, changed only by the named transitions, times passed in:

- ``restart(now)``: HELD or COUNTING → COUNTING from ``now`` (speech ended, or the floor
  was not ours: a filler needs its own silence first)
- ``hold()``: COUNTING or HELD → HELD (the caller speaks: nothing is due until they stop)
- ``defer(until, now)``: → COUNTING from ``now``, and no filler before ``until`` (none
  would fit the predicted wait)

Time never runs back: a restart before the anchor or a deferral into the past is refused
(:class:`DwellError`). How long the dwell is comes from the stream's options and the
tools' learned latency (:meth:`Dwell.first_length`, :meth:`Dwell.followup_length`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

FINISH_SLACK = 0.1
"""A follow-up is timed to end this long before the reply is due, so that it finishes
rather than being cut at its last pause when the tool returns a little early."""


class DwellError(ValueError):
    """A dwell transition with a time that runs back (a defect)."""


class DwellPhase(Enum):
    """Whether the dwell runs."""

    COUNTING = "counting"
    """Silence since the anchor: a filler is due one dwell length later (and not before
    ``not_before``)."""
    HELD = "held"
    """The caller speaks: no filler is due until the dwell restarts."""


@dataclass
class Dwell:
    """The dwell of one stream."""

    anchor: float | None
    """Event-loop time the dwell counts from; None while HELD."""
    not_before: float | None = None
    """No filler before this event-loop time (a deferral: none would fit the predicted
    wait); None: no deferral yet."""

    @property
    def phase(self) -> DwellPhase:
        """HELD while the caller speaks, else COUNTING (derived from the anchor)."""
        return DwellPhase.HELD if self.anchor is None else DwellPhase.COUNTING

    # -- transitions -------------------------------------------------------------------------

    def restart(self, now: float) -> None:
        """→ COUNTING from ``now``: speech ended, or the floor was not the stream's."""
        if self.anchor is not None and now < self.anchor:
            raise DwellError(f"the dwell cannot restart at {now}, before its anchor {self.anchor}")
        self.anchor = now

    def hold(self) -> None:
        """→ HELD: the caller speaks; nothing is due until the dwell restarts."""
        self.anchor = None

    def defer(self, until: float, now: float) -> None:
        """→ COUNTING from ``now``, no filler before ``until`` (nothing fits the wait now)."""
        if until < now:
            raise DwellError(f"a deferral until {until} is in the past (now {now})")
        self.not_before = until
        self.restart(now)

    # -- when a filler is due ----------------------------------------------------------------

    def due(self, length: float) -> float | None:
        """Event-loop time a filler is due after a dwell of ``length`` s (None while HELD)."""
        if self.anchor is None:
            return None
        due = self.anchor + length
        return due if self.not_before is None else max(due, self.not_before)

    def elapsed(self, now: float, length: float) -> bool:
        """True when a filler is due by ``now`` (never while HELD)."""
        due = self.due(length)
        return due is not None and now >= due

    def first_length(self, planned: float, *, grace: float, started: float) -> float:
        """The dwell before a call's first filler: ``planned`` (adaptive timing's plan,
        counted from the call's start at ``started``); after a restart past that start, never
        shorter than ``grace`` from the restart."""
        if self.anchor is None or self.anchor <= started:
            return planned
        return max(grace, planned - (self.anchor - started))

    def followup_length(
        self,
        remaining: float,
        *,
        now: float,
        interval: float,
        grace: float,
        window: float,
        longest: float,
    ) -> float:
        """The dwell before a follow-up: soon enough that the ``longest`` phrase ends
        :data:`FINISH_SLACK` before the reply is due (the tool predicted done in
        ``remaining`` s from ``now``, plus the answer ``window``), never longer than
        ``interval`` nor shorter than ``grace``."""
        if self.anchor is None:
            return interval
        due = remaining + (now - self.anchor) + window - FINISH_SLACK
        return min(interval, max(grace, due - longest))

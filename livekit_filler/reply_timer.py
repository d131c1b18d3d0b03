"""Times a session's answer leads: from a tool's return to its reply's first audio.

Pure logic: :class:`ReplyTimer` is told when a tool step's result is ready and when real
speech starts sounding, and records each lead into a :class:`~.latency.LatencyModel`
(:meth:`~.latency.LatencyModel.answer_lead` then tells a filler how long it may go on).
"""

from __future__ import annotations

from .latency import LatencyModel

__all__ = ["HELD_BACK", "ReplyTimer"]

HELD_BACK = 0.03
"""A reply that sounded within this many seconds of a filler's end may have waited for it."""


class ReplyTimer:
    """Times a session's answer leads into a :class:`LatencyModel`: from a tool's return to
    its reply's first audio.

    A reply that sounded right as a filler ended may have waited for it: its lead is only an
    upper bound, so half of it is kept (the next filler ends sooner; a reply that did not
    wait gives the true lead back). A new tool call or the user speaking first voids it.
    """

    def __init__(self, model: LatencyModel) -> None:
        self._model = model
        self._ready_at: float | None = None

    def answer_ready(self, now: float) -> None:
        """A tool step's result is ready: its reply is being prepared."""
        self._ready_at = now

    def void(self) -> None:
        """What sounds next is not this reply (another tool call, the user's turn)."""
        self._ready_at = None

    def reply_started(self, now: float, filler_ended_at: float | None) -> float | None:
        """Real speech started sounding; returns the lead recorded, if any."""
        ready, self._ready_at = self._ready_at, None
        if ready is None or now < ready:
            return None
        lead = now - ready
        if filler_ended_at is not None and ready <= filler_ended_at <= now <= (
            filler_ended_at + HELD_BACK
        ):
            lead /= 2  # it may have waited for the filler: the true lead was shorter
        self._model.record_lead(lead)
        return lead

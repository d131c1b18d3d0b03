"""A stream's timing: how long its dwell is and which phrases fit the predicted wait.

With adaptive timing (the default) a :class:`~livekit_filler.stream.FillerStream` asks the
tool's learned latency (:mod:`~livekit_filler.latency`) when to speak: a tool predicted slow
gets its first filler after ``grace``, a tool predicted fast none unless it overruns, an
unknown tool waits ``delay``; each phrase is chosen to fit the predicted wait, and none starts
that would be cut in its first half. With fixed timing the dwell is ``delay``, then
``interval``.

:class:`StreamTiming` reads its stream through :class:`TimedStream` (the options, calls,
count, clip and contextual phrase as they are now) and is given the rest explicitly: the
latency model, the stream's :class:`~livekit_filler.dwell.Dwell`, a clock, and the
speaker's durations and answer window. It imports no session machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Literal, Protocol

from livekit import rtc

from .dwell import Dwell, DwellPhase
from .latency import LatencyModel, estimate_duration, fit, plan_start
from .options import FillerOptions, Pool, fill


class TimedCall(Protocol):
    """What the timing reads of one call (a :class:`~livekit_filler.stream.StreamCall`)."""

    @property
    def tool_name(self) -> str: ...

    @property
    def started_at(self) -> float | None: ...


class TimedStream(Protocol):
    """What the timing reads of its stream (a :class:`~livekit_filler.stream.FillerStream`)."""

    @property
    def options(self) -> FillerOptions: ...

    @property
    def calls(self) -> Collection[TimedCall]: ...

    @property
    def started_at(self) -> float: ...

    @property
    def count(self) -> int: ...

    @property
    def clip(self) -> rtc.AudioFrame | None: ...

    @property
    def contextual_text(self) -> str | None: ...

    @property
    def arguments(self) -> dict[str, object]: ...


class StreamTiming:
    """When a stream's next filler is due, and which of its phrases fit the wait."""

    def __init__(
        self,
        stream: TimedStream,
        *,
        latency: LatencyModel,
        dwell: Dwell,
        clock: Callable[[], float],
        duration_of: Callable[[str], float | None],
        answer_window: Callable[[float], float],
        language: Callable[[], str | None],
    ) -> None:
        """``duration_of(text)``: seconds a text plays in the stream's voice (None: unknown);
        ``answer_window(finish_within)``: seconds a filler may sound past the tool's return."""
        self._stream = stream
        self._latency = latency
        self._dwell = dwell
        self._clock = clock
        self._duration_of = duration_of
        self._window = answer_window
        self._language = language

    @property
    def adaptive(self) -> bool:
        """True when this stream is timed by the tools' learned latency."""
        return self._stream.options.timing == "adaptive"

    def remaining(self, q: float = 0.5) -> float | None:
        """Predicted seconds until the step's last call returns (the ``q`` quantile); None
        when unknown."""
        if not self.adaptive or not self._stream.calls:
            return None
        now = self._clock()
        longest = 0.0
        for call in self._stream.calls:
            started = call.started_at if call.started_at is not None else self._stream.started_at
            left = self._latency.remaining(call.tool_name, now - started, q)
            if left is None:
                return None
            longest = max(longest, left)
        return longest

    def _duration(self, text: str) -> float:
        """Seconds ``text`` plays: its rendered sound's, else estimated from its length."""
        known = self._duration_of(text)
        return known if known is not None else estimate_duration(text)

    def _candidates(self) -> tuple[list[str], Pool]:
        """The templates the next filler is chosen from, and their pool."""
        pool = self._stream.options.pool_for(self._language())
        source = pool.followups if self._stream.count > 0 and pool.followups else pool.phrases
        return list(source), pool

    def fitting_pool(self) -> Pool | Literal[False] | None:
        """The phrases that fit the predicted wait (None: no prediction, pick as usual;
        False: nothing fits, start nothing now)."""
        remaining = self.remaining()
        if remaining is None:
            return None
        stream = self._stream
        if stream.clip is not None:
            return False if remaining < stream.clip.duration / 2 else None
        if stream.count == 0 and stream.contextual_text is not None:
            texts = [stream.contextual_text]
            return None if fit(texts, self._duration, remaining, finish_within=0.0) else False
        templates, _ = self._candidates()
        values = stream.arguments
        filled = {t: fill(t, values) for t in templates}
        usable = [t for t in templates if filled[t] is not None]
        if not usable or any(self._duration_of(filled[t] or "") is None for t in usable):
            return None  # no sound of this voice rendered yet: its pace is unknown
        fitting = fit(
            [filled[t] or "" for t in usable],
            self._duration,
            remaining,
            finish_within=self._answer_window(),
        )
        if fitting is None:
            return False
        chosen = set(fitting)
        return Pool(tuple(t for t in usable if filled[t] in chosen))

    def _answer_window(self) -> float:
        """Seconds a filler may sound past the tool's return (the learned reply lead, else
        the call's ``finish_within``)."""
        return self._window(self._stream.options.finish_within)

    # -- the dwell ---------------------------------------------------------------------------

    def dwell_length(self) -> float:
        """Seconds of silence before the next filler: ``delay`` then ``interval``; with
        adaptive timing, the first filler's planned start and follow-ups fitted to the
        predicted wait."""
        options = self._stream.options
        if not self.adaptive:
            return options.delay if self._stream.count == 0 else options.interval
        if self._stream.count == 0:
            return min(self._first_dwell(call) for call in self._stream.calls)
        # a follow-up: soon enough to end as the reply is predicted to sound, never later
        # than ``interval``; the fit check decides whether one starts at all
        if self._dwell.phase is DwellPhase.HELD:
            return options.interval
        remaining = self.remaining()
        now = self._clock()
        if remaining is None:
            return options.interval
        templates, _ = self._candidates()
        values = self._stream.arguments
        longest = max((self._duration(fill(t, values) or t) for t in templates), default=0)
        return self._dwell.followup_length(
            remaining,
            now=now,
            interval=options.interval,
            grace=options.grace,
            window=self._answer_window(),
            longest=longest,
        )

    def _first_dwell(self, call: TimedCall) -> float:
        options = self._stream.options
        started = call.started_at if call.started_at is not None else self._stream.started_at
        plan = plan_start(
            typical=self._latency.typical(call.tool_name),
            worst=self._latency.worst(call.tool_name),
            delay=options.delay,
            grace=options.grace,
            fast_below=options.fast_below,
            slow_after=options.slow_after,
        )
        # the dwell restarted (the user spoke): the plan counts from the call's start, but
        # a filler never comes sooner than ``grace`` after the restart
        return self._dwell.first_length(plan.dwell, grace=options.grace, started=started)

    def due(self) -> float | None:
        """Event-loop time the next filler is due (None while the dwell is HELD)."""
        if self._dwell.phase is DwellPhase.HELD:
            return None
        return self._dwell.due(self.dwell_length())

    def dwell_elapsed(self) -> bool:
        """True once the next filler is due."""
        due = self.due()
        return due is not None and self._clock() >= due

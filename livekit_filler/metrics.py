"""What a controller played, cut and skipped, and how much dead air its tools left."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from .log import logger

__all__ = ["FillerMetrics"]

_KEEP = 256
"""Samples kept per list: a long-lived session must not grow without bound."""
EARLY_CUT = 0.5
"""A filler stopped within this many seconds of its audio's start was "cut early"."""
_UNCOUNTED_MID_WORD = frozenset({"user_speech", "session_closed", "closed"})
"""Cuts that are not ours to time: the user (or a closing session) stops a filler at once."""


@dataclass
class FillerMetrics:
    """Per-session filler counters; logged as one summary when the controller detaches."""

    tool_calls: int = 0
    fillers_played: int = 0
    """Fillers whose audio started: counted when their first frame goes to the session's
    audio output (with its ``filler_played`` event and ``filler`` span), so a filler cut
    while queued, or whose render failed before any audio, is not counted."""
    fillers_cut: Counter[str] = field(default_factory=Counter)
    """Cut fillers by reason: answer, real_speech, user_speech, handoff, session_closed..."""
    fillers_skipped: Counter[str] = field(default_factory=Counter)
    """Fillers that were due and did not play, each counted once under the first reason it
    was skipped for (a stream retrying the same filler is not counted again): busy,
    handoff, no_fit, closed..., refused, tts_failed (a render failed, or renders are
    paused after a failed one), tts_down (the TTS failed on real speech), no_phrase,
    no_voice."""
    first_filler_latency: list[float] = field(default_factory=list)
    """Seconds from a tool's start to its first filler's audio (the latest 256 filled tools)."""
    tool_dead_air: list[float] = field(default_factory=list)
    """Seconds with neither agent nor caller audible during each tool step, up to its
    return or to the first words of an AgentTask it started, whichever came first (the
    latest 256 steps)."""
    dead_air_before_answer: list[float] = field(default_factory=list)
    """Seconds with neither agent nor caller audible from each tool step's start to its
    answer (the first real speech after it returned) or to the first words of an
    AgentTask it started: the silence a caller sat through, never the sub-agent's
    conversation (the latest 256 steps)."""
    fillers_finished: int = 0
    """Fillers left to finish when the answer was ready (they ended within the answer window)."""
    fillers_cut_at_pause: int = 0
    """Playing fillers we ended in a pause between words (or before their first word)."""
    fillers_cut_mid_word: int = 0
    """Playing fillers we stopped inside a word (user interruptions and closes not counted)."""
    fillers_cut_early: int = 0
    """Playing fillers stopped within their first 0.5 s (:data:`EARLY_CUT`)."""
    _awaiting_answer: list[tuple[float, float]] = field(default_factory=list, repr=False)
    _audible: list[tuple[float, float]] = field(default_factory=list, repr=False)
    _audible_since: float | None = field(default=None, repr=False)

    def tool_started(self) -> None:
        """A tool call began."""
        self.tool_calls += 1

    def played(self) -> None:
        """A filler's audio started."""
        self.fillers_played += 1

    def cut(self, reason: str, *, position: float | None = None, mid_word: bool = False) -> None:
        """A filler was stopped by livekit-filler.

        Args:
            reason: why.
            position: seconds into its audio where it stops (None: it never sounded).
            mid_word: it stops inside a word.
        """
        self.fillers_cut[reason] += 1
        if position is None:
            return
        if position < EARLY_CUT:
            self.fillers_cut_early += 1
        if mid_word:
            if reason not in _UNCOUNTED_MID_WORD:
                self.fillers_cut_mid_word += 1
        else:
            self.fillers_cut_at_pause += 1

    def finished(self) -> None:
        """A playing filler was left to finish when the answer was ready."""
        self.fillers_finished += 1

    def answer_started(self, now: float | None = None) -> None:
        """Real (non-filler) agent speech started: the answer of every step waiting for one."""
        if not self._awaiting_answer:
            return
        now = asyncio.get_running_loop().time() if now is None else now
        for started_at, _ in self._awaiting_answer:
            self.dead_air_before_answer.append(self._silence(started_at, now))
        self._awaiting_answer.clear()
        del self.dead_air_before_answer[:-_KEEP]

    def skip(self, reason: str) -> None:
        """A filler was not played."""
        self.fillers_skipped[reason] += 1

    def audible(self, on: bool, now: float | None = None) -> None:
        """Someone (agent or user) started or stopped being audible."""
        now = asyncio.get_running_loop().time() if now is None else now
        if on and self._audible_since is None:
            self._audible_since = now
        elif not on and self._audible_since is not None:
            self._audible.append((self._audible_since, now))
            self._audible_since = None
            del self._audible[:-_KEEP]

    def tool_ended(
        self, started_at: float, first_audio_at: float | None, *, handed_off_at: float | None = None
    ) -> None:
        """Record a finished tool step's first-filler latency and the dead air it left.

        Args:
            started_at: event-loop time the step's first call started.
            first_audio_at: event-loop time its first filler's audio started, if any.
            handed_off_at: event-loop time the first words of an AgentTask it started
                sounded, if any: its dead air ends there (what follows is the sub-agent's
                conversation), and so does its wait for an answer.
        """
        end = asyncio.get_running_loop().time()
        if handed_off_at is not None:
            end = min(end, handed_off_at)
        if first_audio_at is not None:
            self.first_filler_latency.append(first_audio_at - started_at)
            del self.first_filler_latency[:-_KEEP]
        silence = self._silence(started_at, end)
        self.tool_dead_air.append(silence)
        del self.tool_dead_air[:-_KEEP]
        if handed_off_at is not None:
            self.dead_air_before_answer.append(silence)
            del self.dead_air_before_answer[:-_KEEP]
            return
        self._awaiting_answer.append((started_at, end))
        del self._awaiting_answer[:-_KEEP]

    def _silence(self, started_at: float, end: float) -> float:
        """Seconds from ``started_at`` to ``end`` when nobody was audible."""
        spans = [*self._audible]
        if self._audible_since is not None:
            spans.append((self._audible_since, end))
        covered = 0.0
        cursor = started_at
        for start, stop in sorted(spans):
            start, stop = max(start, cursor), min(stop, end)
            if stop > start:
                covered += stop - start
                cursor = stop
        return max(0.0, end - started_at - covered)

    def summary(self) -> dict[str, object]:
        """A JSON-friendly summary."""
        return {
            "tool_calls": self.tool_calls,
            "fillers_played": self.fillers_played,
            "fillers_cut": dict(self.fillers_cut),
            "fillers_skipped": dict(self.fillers_skipped),
            "first_filler_latency_max": max(self.first_filler_latency, default=None),
            "tool_dead_air_max": max(self.tool_dead_air, default=None),
            "dead_air_before_answer_total": round(sum(self.dead_air_before_answer), 3),
            "fillers_finished": self.fillers_finished,
            "fillers_cut_at_pause": self.fillers_cut_at_pause,
            "fillers_cut_mid_word": self.fillers_cut_mid_word,
            "fillers_cut_early": self.fillers_cut_early,
        }

    def log_summary(self) -> None:
        """Log the summary (static message, data in ``extra``)."""
        logger.info("filler session summary", extra={"filler_metrics": self.summary()})

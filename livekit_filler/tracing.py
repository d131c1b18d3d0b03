"""Fillers in LiveKit's OpenTelemetry traces, beside the tool call they filled.

Every filler played becomes a ``filler`` span under LiveKit's own tracer
(``livekit.agents.telemetry.tracer``), parented to the ``function_tool`` span of the call
it filled, from the moment it was scheduled to the moment it ended; its first audio adds a
``first_audio`` event, a cut a ``filler_cut`` event. The span is opened (dated from the
schedule) only once its first audio frame went out: a filler cut while queued, or whose
render failed before any audio, was never heard and has no span, as it has no
``filler_played`` event and is not in ``fillers_played``. A skipped filler is a
``filler_skipped`` span of no length with its reason. What a filler said is recorded only
when ``FillerSettings.trace_text`` is on: it is the agent's speech, and traces often leave
the machine.
"""

from __future__ import annotations

import time
import weakref

from livekit.agents.telemetry import tracer
from livekit.agents.voice import SpeechHandle
from opentelemetry import context as otel_context, trace

TraceContext = otel_context.Context

__all__ = [
    "ATTR_KIND",
    "ATTR_OUTCOME",
    "ATTR_REASON",
    "ATTR_SOURCE",
    "ATTR_SPEECH_ID",
    "ATTR_TEXT",
    "ATTR_TOOL",
    "FillerSpans",
    "TraceContext",
    "current_context",
]

ATTR_TOOL = "lk.filler.tool"
ATTR_SOURCE = "lk.filler.source"
"""Where the audio came from: cache, tts (synthesized now), clip, or text (say(text))."""
ATTR_REASON = "lk.filler.reason"
ATTR_OUTCOME = "lk.filler.outcome"
"""How a played filler ended: finished, cut or interrupted (by LiveKit, e.g. the user)."""
ATTR_TEXT = "lk.filler.text"
ATTR_KIND = "lk.filler.kind"
"""Why a filler not for a tool spoke: ``slow_answer`` or ``busy`` (absent for tool fillers)."""
ATTR_SPEECH_ID = "lk.speech_id"
"""LiveKit's own attribute name for a speech handle's id."""


def current_context() -> otel_context.Context:
    """The trace context of the running task (inside a tool: its ``function_tool`` span)."""
    return otel_context.get_current()


class FillerSpans:
    """Opens, annotates and ends the spans of one controller's fillers."""

    def __init__(self, *, include_text: bool) -> None:
        self._include_text = include_text
        self._spans: weakref.WeakKeyDictionary[SpeechHandle, trace.Span] = (
            weakref.WeakKeyDictionary()
        )
        self._cut: weakref.WeakSet[SpeechHandle] = weakref.WeakSet()
        self._scheduled: weakref.WeakKeyDictionary[
            SpeechHandle, tuple[otel_context.Context | None, dict[str, str], int]
        ] = weakref.WeakKeyDictionary()

    def played(
        self,
        handle: SpeechHandle,
        *,
        tool: str | None,
        source: str,
        text: str,
        parent: otel_context.Context | None,
        kind: str | None = None,
    ) -> None:
        """A filler was scheduled: its span opens at its first audio (:meth:`first_audio`),
        dated from now, and runs until the handle is done."""
        attributes: dict[str, str] = {ATTR_SOURCE: source, ATTR_SPEECH_ID: handle.id}
        if tool is not None:
            attributes[ATTR_TOOL] = tool
        if kind is not None:
            attributes[ATTR_KIND] = kind
        if self._include_text:
            attributes[ATTR_TEXT] = text
        self._scheduled[handle] = (parent, attributes, time.time_ns())
        handle.add_done_callback(self._end)

    def first_audio(self, handle: SpeechHandle) -> None:
        """The filler's first audio frame went out: it was played, its span opens."""
        scheduled = self._scheduled.pop(handle, None)
        if scheduled is None:
            return
        parent, attributes, start = scheduled
        span = tracer.start_span("filler", context=parent, attributes=attributes, start_time=start)
        span.add_event("first_audio")
        self._spans[handle] = span

    def cut(self, handle: SpeechHandle, *, reason: str) -> None:
        """livekit-filler cut the filler."""
        if (span := self._spans.get(handle)) is not None:
            self._cut.add(handle)
            span.add_event("filler_cut", {ATTR_REASON: reason})
            span.set_attributes({ATTR_OUTCOME: "cut", ATTR_REASON: reason})

    def skipped(
        self,
        *,
        tool: str | None,
        reason: str,
        parent: otel_context.Context | None,
        kind: str | None = None,
    ) -> None:
        """A filler was not played."""
        attributes = {ATTR_REASON: reason}
        if tool is not None:
            attributes[ATTR_TOOL] = tool
        if kind is not None:
            attributes[ATTR_KIND] = kind
        tracer.start_span("filler_skipped", context=parent, attributes=attributes).end()

    def _end(self, handle: SpeechHandle) -> None:
        self._scheduled.pop(handle, None)
        span = self._spans.pop(handle, None)
        if span is None:
            return
        if handle not in self._cut:
            span.set_attribute(ATTR_OUTCOME, "interrupted" if handle.interrupted else "finished")
        span.end()

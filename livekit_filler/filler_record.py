"""The record of each filler: its metrics, its span and its event, once per transition.

The speaker tells :class:`FillerRecord` when a filler is heard (its first audio frame went
out), cut or left to finish, or skipped; the record counts it in
:class:`~livekit_filler.metrics.FillerMetrics`, marks its span
(:class:`~livekit_filler.tracing.FillerSpans`) and emits ``filler_played``, ``filler_cut`` or
``filler_skipped``, and warns once when LiveKit's speech gap turns fillers off.
"""

from __future__ import annotations

from collections.abc import Callable

from livekit.agents.voice import SpeechHandle

from .events import FillerEvent, FillerKind
from .floor import MAX_SPEECH_GAP, Verdict
from .log import logger
from .metrics import FillerMetrics
from .playing import Phase, Playing
from .tracing import FillerSpans, TraceContext


class FillerRecord:
    """Counts, traces and announces the fillers of one session."""

    def __init__(
        self, *, metrics: FillerMetrics, emit: Callable[[FillerEvent], None], spans: FillerSpans
    ) -> None:
        self._metrics = metrics
        self._emit = emit
        self._spans = spans
        self._warned_gap = False

    def heard(self, handle: SpeechHandle | None, playing: Playing) -> None:
        """A filler's first audio frame went to the output (text: it was scheduled): it is
        played, in the metrics, its span and the ``filler_played`` event alike."""
        self._metrics.played()
        if handle is not None:
            self._spans.first_audio(handle)
        speech_id = handle.id if handle is not None else None
        self._emit(
            FillerEvent(
                "filler_played",
                tool=playing.tool,
                speech_id=speech_id,
                source=playing.source,
                kind=playing.kind,
            )
        )

    def cut(
        self,
        handle: SpeechHandle,
        playing: Playing | None,
        reason: str,
        tool: str | None,
        *,
        stop: float | None,
    ) -> None:
        """Count a filler's cut (or its finish), with where its audio stops: once, as its
        transition into FINISHING, STOPPING or CUT happens once."""
        if playing is not None and playing.phase is Phase.FINISHING:
            self._metrics.finished()
            logger.debug("filler left to finish", extra={"tool": tool, "reason": reason})
            return
        mid_word = False
        if playing is not None and stop is not None and playing.speech:
            pauses = playing.pauses
            mid_word = pauses is None or not pauses.quiet_at(stop)
        self._spans.cut(handle, reason=reason)
        self._metrics.cut(reason, position=stop, mid_word=mid_word)
        self._emit(FillerEvent("filler_cut", tool=tool, reason=reason, speech_id=handle.id))
        logger.debug(
            "filler cut",
            extra={"tool": tool, "reason": reason, "at": stop, "mid_word": mid_word},
        )

    def skip(
        self,
        reason: str,
        *,
        tool: str | None = None,
        parent: TraceContext | None = None,
        counted: bool = True,
        kind: FillerKind | None = None,
    ) -> None:
        """Record a filler that was not played (``counted``: in ``fillers_skipped`` too; a
        filler already counted under another reason is not counted again)."""
        if reason == Verdict.SPEECH_GAP.value and not self._warned_gap:
            self._warned_gap = True
            logger.warning(
                "fillers are off while min_consecutive_speech_delay is above %.1f s: a cut"
                " filler would delay the reply by that gap",
                MAX_SPEECH_GAP,
                extra={"tool": tool},
            )
        if counted:
            self._metrics.skip(reason)
        self._spans.skipped(tool=tool, reason=reason, parent=parent, kind=kind)
        self._emit(FillerEvent("filler_skipped", tool=tool, reason=reason, kind=kind))

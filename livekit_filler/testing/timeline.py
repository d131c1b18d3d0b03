"""Record who was audible when in a test session, and analyse the result.

:class:`TimelineRecorder` turns what a :class:`FakeAudioOutput` played into a list of
:class:`Utterance`. The analysis helpers (:func:`overlaps`, :func:`dead_air`,
:func:`longest_silence`, :func:`first_after`, :func:`format_timeline`) are pure
functions over such a list, so they also work on hand-made timelines.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from livekit.agents.voice import AgentSession, SpeechHandle, UserStateChangedEvent

from ..marks import is_filler_speech
from .fake_audio import FakeAudioOutput, FakeTextOutput, PlayedSegment

__all__ = [
    "TimelineRecorder",
    "Utterance",
    "dead_air",
    "first_after",
    "format_timeline",
    "longest_silence",
    "overlaps",
    "user_speaking_spans",
]

Speaker = Literal["agent", "user"]
Kind = Literal["speech", "filler", "user"]


@dataclass(frozen=True)
class Utterance:
    """Something audible: agent audio that was played, or user speech.

    Attributes:
        speaker: ``"agent"`` or ``"user"``.
        text: What was said (for agent audio, the text of the speech that produced it).
        start: Seconds after the recorder's ``t0`` when it became audible.
        end: Seconds after ``t0`` when it stopped.
        interrupted: Whether playback was cut short.
        kind: ``"speech"``, ``"filler"`` or ``"user"``.
        agent: Class name of ``session.current_agent`` when it started ("" for unknown).
            LiveKit switches that at the start of an AgentTask or hand-off, so speech of the
            previous agent still playing out then carries the new agent's name.
    """

    speaker: Speaker
    text: str
    start: float
    end: float
    interrupted: bool = False
    kind: Kind = "speech"
    agent: str = ""

    @property
    def duration(self) -> float:
        """Seconds audible."""
        return self.end - self.start


class TimelineRecorder:
    """Records what an :class:`AgentSession` actually played, with text and timing.

    Create it with :meth:`install` before ``session.start()``.

    Example:
        ```python
        session = make_session(llm=FakeLLM(), tts=FakeTTS())
        rec = TimelineRecorder.install(session)
        await session.start(MyAgent())
        await session.say("Hello there").wait_for_playout()
        print(format_timeline(rec.utterances))
        ```
    """

    def __init__(
        self,
        session: AgentSession[Any],
        *,
        filler_texts: Iterable[str] = (),
        audio_output: FakeAudioOutput | None = None,
    ) -> None:
        """Create a recorder without installing it; prefer :meth:`install`.

        Args:
            session: The session to watch.
            filler_texts: Texts whose speech counts as ``kind="filler"``.
            audio_output: The sink to record from; a new one when None.
        """
        self._session = session
        self._filler_texts = frozenset(t.strip() for t in filler_texts)
        self.t0 = asyncio.get_running_loop().time()
        """Loop time (seconds) that utterance and marker times are relative to."""
        self.audio_output = audio_output or FakeAudioOutput()
        """The sink whose segments become agent utterances."""
        self.text_output = FakeTextOutput(on_text=self._on_text)
        """The transcription sink used to label agent audio with text."""
        self.markers: dict[str, list[float]] = {}
        """Named time markers (seconds after ``t0``), see :meth:`mark`."""
        self.user_states: list[tuple[float, str]] = []
        """``(time, new_state)`` for every ``user_state_changed`` event."""
        self._user_utterances: list[Utterance] = []
        self._handles: dict[str, SpeechHandle] = {}
        # speech id -> indices into text_output.segments written while it was current
        self._text_segments: dict[str, list[int]] = {}
        # segment -> (agent class name, index among its speech's audio segments)
        self._seg_info: dict[PlayedSegment, tuple[str, int]] = {}
        self._audio_count: dict[str, int] = {}
        self._installed = False

    @classmethod
    def install(
        cls,
        session: AgentSession[Any],
        *,
        filler_texts: Iterable[str] = (),
        audio_output: FakeAudioOutput | None = None,
    ) -> TimelineRecorder:
        """Attach fake audio and text outputs to ``session`` and start recording.

        Call it before ``session.start()``, inside a running event loop.

        Args:
            session: A session without audio output (no room), e.g. from
                :func:`make_session`.
            filler_texts: Texts whose speech counts as ``kind="filler"``, besides
                speech marked by :func:`livekit_filler.marks.mark_filler`.
            audio_output: A sink to use instead of a new :class:`FakeAudioOutput`.

        Returns:
            The recorder.
        """
        rec = cls(session, filler_texts=filler_texts, audio_output=audio_output)
        rec._attach()
        return rec

    def _attach(self) -> None:
        if self._installed:
            return
        if self.audio_output.on_segment_captured is not None:
            raise ValueError("audio_output already reports its segments to another recorder")
        self.audio_output.on_segment_captured = self._on_segment_captured
        self._session.output.audio = self.audio_output
        self._session.output.transcription = self.text_output
        self._session.on("user_state_changed", self._on_user_state_changed)
        self._installed = True

    def detach(self) -> None:
        """Stop listening to session events. Recorded data stays available. Idempotent."""
        if not self._installed:
            return
        self._session.off("user_state_changed", self._on_user_state_changed)
        self._installed = False

    def now(self) -> float:
        """Return seconds since ``t0``."""
        return asyncio.get_running_loop().time() - self.t0

    def mark(self, label: str) -> float:
        """Record a named time marker (e.g. ``"tool_start"``) at :meth:`now`.

        Returns:
            The marker's time, in seconds after ``t0``.
        """
        t = self.now()
        self.markers.setdefault(label, []).append(t)
        return t

    def add_user_utterance(self, text: str, start: float, end: float) -> None:
        """Record user speech between ``start`` and ``end`` (seconds after ``t0``).

        Raises:
            ValueError: If ``end`` is before ``start``.
        """
        if end < start:
            raise ValueError(f"end ({end!r}) must not be before start ({start!r})")
        self._user_utterances.append(
            Utterance(speaker="user", text=text, start=start, end=end, kind="user")
        )

    @property
    def utterances(self) -> list[Utterance]:
        """Everything audible so far, sorted by start time.

        Agent audio still playing is included with ``end`` set to now.
        """
        items = [self._agent_utterance(seg) for seg in self.audio_output.segments]
        items.extend(self._user_utterances)
        items.sort(key=lambda u: (u.start, u.end))
        return items

    def _agent_utterance(self, seg: PlayedSegment) -> Utterance:
        handle = self._handles.get(seg.speech_id or "")
        agent, index = self._seg_info.get(seg, ("", 0))
        text = self._segment_text(seg.speech_id or "", index)
        if not text and handle is not None and index == 0:
            text = _handle_text(handle)
        filler = (handle is not None and is_filler_speech(handle)) or (
            bool(text) and text in self._filler_texts
        )
        seg.text = text
        seg.kind = "filler" if filler else "speech"
        seg.agent = agent
        end = seg.end if seg.end is not None else asyncio.get_running_loop().time()
        return Utterance(
            speaker="agent",
            text=text,
            start=seg.start - self.t0,
            end=end - self.t0,
            interrupted=seg.interrupted,
            kind="filler" if filler else "speech",
            agent=seg.agent,
        )

    def _current_agent_name(self) -> str:
        try:
            return type(self._session.current_agent).__name__
        except RuntimeError:
            return ""

    def _segment_text(self, speech_id: str, index: int) -> str:
        # A speech plays one audio segment per generation step (e.g. before and after
        # a tool call), and each step writes one transcription segment: pair them in order.
        indices = self._text_segments.get(speech_id, [])
        if index >= len(indices):
            return ""
        return self.text_output.segments[indices[index]].strip()

    def _on_segment_captured(self, seg: PlayedSegment) -> None:
        # the first frame of a segment is captured while its speech is the current one
        handle = self._session.current_speech
        index = 0
        if handle is not None:
            seg.speech_id = handle.id
            self._handles[handle.id] = handle
            index = self._audio_count.get(handle.id, 0)
            self._audio_count[handle.id] = index + 1
        self._seg_info[seg] = (self._current_agent_name(), index)

    def _on_text(self, text: str) -> None:
        handle = self._session.current_speech
        if handle is None:
            return
        self._handles[handle.id] = handle
        indices = self._text_segments.setdefault(handle.id, [])
        current = len(self.text_output.segments) - 1
        if not indices or indices[-1] != current:
            indices.append(current)

    def _on_user_state_changed(self, ev: UserStateChangedEvent) -> None:
        t = self.now()
        self.user_states.append((t, ev.new_state))
        self.markers.setdefault(f"user_{ev.new_state}", []).append(t)


def _handle_text(handle: SpeechHandle) -> str:
    parts = [
        item.text_content or ""
        for item in handle.chat_items
        if item.type == "message" and item.role == "assistant"
    ]
    return " ".join(p for p in parts if p).strip()


def _overlap(a: Utterance, b: Utterance) -> bool:
    return a.start < b.end and b.start < a.end


def overlaps(
    utterances: Sequence[Utterance], *, include_user: bool = False
) -> list[tuple[Utterance, Utterance]]:
    """Return pairs of utterances audible at the same time.

    Intervals that merely touch do not overlap.

    Args:
        utterances: The timeline.
        include_user: Also report agent audio overlapping user speech.

    Returns:
        ``(earlier, later)`` pairs (by start time); agent-over-agent always, and
        agent-with-user when ``include_user`` is set. User-with-user is never reported.
    """
    ordered = sorted(utterances, key=lambda u: (u.start, u.end))
    pairs: list[tuple[Utterance, Utterance]] = []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.start >= a.end:
                break
            if not _overlap(a, b):
                continue
            speakers = {a.speaker, b.speaker}
            if speakers == {"agent"} or (include_user and speakers == {"agent", "user"}):
                pairs.append((a, b))
    return pairs


def _covered(
    utterances: Sequence[Utterance], start: float, end: float
) -> list[tuple[float, float]]:
    """Merge the audible intervals clipped to ``[start, end]``."""
    spans = sorted(
        (max(u.start, start), min(u.end, end))
        for u in utterances
        if u.end > start and u.start < end and u.end > u.start
    )
    merged: list[tuple[float, float]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _gaps(utterances: Sequence[Utterance], start: float, end: float) -> list[float]:
    if end <= start:
        return []
    gaps: list[float] = []
    cursor = start
    for s, e in _covered(utterances, start, end):
        gaps.append(s - cursor)
        cursor = e
    gaps.append(end - cursor)
    return [g for g in gaps if g > 0]


def dead_air(utterances: Sequence[Utterance], start: float, end: float) -> float:
    """Return the seconds within ``[start, end]`` when nobody (agent or user) is audible."""
    return sum(_gaps(utterances, start, end))


def longest_silence(utterances: Sequence[Utterance], start: float, end: float) -> float:
    """Return the longest stretch within ``[start, end]`` when nobody is audible, in seconds."""
    return max(_gaps(utterances, start, end), default=0.0)


def user_speaking_spans(markers: Mapping[str, Sequence[float]]) -> list[tuple[float, float]]:
    """When the session reported the user speaking (``user_state``), as ``(start, end)``
    spans, from a :class:`TimelineRecorder`'s ``markers`` (an open span ends at infinity).

    This is what code in the session can know; the user's audio starts a VAD frame or more
    earlier.
    """
    events = sorted(
        [(t, True) for t in markers.get("user_speaking", ())]
        + [(t, False) for name in ("user_listening", "user_away") for t in markers.get(name, ())]
    )
    spans: list[tuple[float, float]] = []
    since: float | None = None
    for t, speaking in events:
        if speaking and since is None:
            since = t
        elif not speaking and since is not None:
            spans.append((since, t))
            since = None
    return spans if since is None else [*spans, (since, math.inf)]


def first_after(
    utterances: Sequence[Utterance],
    t: float,
    *,
    kind: Kind | None = None,
    agent: str | None = None,
) -> Utterance | None:
    """Return the first utterance starting at or after ``t`` that matches the filters.

    Args:
        utterances: The timeline.
        t: Time in seconds after ``t0``.
        kind: Only utterances of this kind.
        agent: Only utterances made while this agent class was active.
    """
    for u in sorted(utterances, key=lambda u: (u.start, u.end)):
        if u.start < t:
            continue
        if kind is not None and u.kind != kind:
            continue
        if agent is not None and u.agent != agent:
            continue
        return u
    return None


def format_timeline(utterances: Sequence[Utterance]) -> str:
    """Render the timeline as an aligned text table, one utterance per line.

    Example output::

        start    end  who    kind    agent      text
        0.00   1.20  agent  speech  Assistant  Hello there
        1.50   2.10  user   user               What's up?
    """
    header = ("start", "end", "who", "kind", "agent", "text")
    rows = [
        (
            f"{u.start:.2f}",
            f"{u.end:.2f}",
            u.speaker,
            u.kind,
            u.agent,
            u.text + (" (cut)" if u.interrupted else ""),
        )
        for u in sorted(utterances, key=lambda u: (u.start, u.end))
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [
            row[i].rjust(widths[i]) if i < 2 else row[i].ljust(widths[i])
            for i in range(len(widths))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)

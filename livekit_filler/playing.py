"""One filler's playing state: its phase, the named transitions between phases, and where
its audio stops.

Pure (no session, no event loop): the speaker (:mod:`~livekit_filler.speaker`) drives a
:class:`Playing` from its audio gate and its cuts, passing the time in. Each transition
checks the phase it leaves and raises :class:`PlayingStateError` from any other, so what is
safe to do with a filler is what its :class:`Phase` allows:

- ``start``: QUEUED → SOUNDING (its first frame goes out)
- ``finish``: SOUNDING → FINISHING; ``stop``: SOUNDING or AWAITING_PAUSE → STOPPING;
  ``await_pause``: SOUNDING → AWAITING_PAUSE (the graceful ends)
- ``cut_now``: SOUNDING → CUT; ``drop``: QUEUED or SKIPPED → CUT (the cuts at once)
- ``hold_refused``, ``render_failed``: QUEUED → SKIPPED (it never sounds)

A cut (or finish) is counted once: on the one transition into FINISHING, STOPPING or CUT
(:attr:`Playing.recorded`). The filler leaves the speaker when its speech handle is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Literal

from livekit import rtc

from .events import AudioSource, FillerKind
from .pauses import Pauses, find_pauses, pauses_of

OnSkip = Callable[[str], None]
"""Where a filler that could not play is reported (a stream's: once per due filler)."""

MAX_CUT_WAIT = 0.4
"""Longest wait (seconds) for a pause between words; past it the filler fades out at once."""


class PlayingStateError(RuntimeError):
    """A transition was asked of a filler in a phase that does not allow it (a defect)."""


class Phase(Enum):
    """Where a scheduled filler with audio of ours is in its life."""

    QUEUED = "queued"
    """Scheduled, no frame out yet: waiting its turn in the speech queue, held (``hold=``),
    or its render has not sent audio yet."""
    SOUNDING = "sounding"
    """Its first frame went out and it plays on."""
    AWAITING_PAUSE = "awaiting_pause"
    """Cut gracefully, but its next pause is still arriving from the render: the gate stops
    it at the first pause it sees (or where it is, past :data:`MAX_CUT_WAIT`)."""
    STOPPING = "stopping"
    """Ends at :attr:`Playing.stop_at` (a pause between words): the gate lets nothing after
    it out, and a timer interrupts its speech then."""
    FINISHING = "finishing"
    """The answer is ready and it ends within the answer window: it plays to its end."""
    CUT = "cut"
    """Interrupted at once (the user, real speech, a hand-off, a close); before its first
    frame, the gate lets none out (``stop_at`` 0)."""
    SKIPPED = "skipped"
    """Never sounded: its hold said no, or its render ended before any audio."""


RECORDED = frozenset({Phase.FINISHING, Phase.STOPPING, Phase.CUT})
"""The phases whose entry counted the filler's cut or finish."""
ENDING = frozenset({Phase.AWAITING_PAUSE, Phase.STOPPING, Phase.FINISHING, Phase.CUT})
"""The phases of a filler already on its way out: a later cut only hurries it."""


@dataclass
class Playing:
    """A filler the speaker's gate feeds: its phase, where its audio is, where it stops.

    Set once when it is scheduled: ``tool``, ``source``, ``kind``, ``key``. Refreshed as
    audio arrives (by the gate, or a cut looking for a pause): ``pauses``, ``heard``,
    ``sent``. Everything else changes only through the transitions below.
    """

    key: str | None = None
    """Its sound's cache key while it streams from a render (its pauses are known once the
    render completes); None for a clip."""
    tool: str | None = None
    source: AudioSource = "tts"
    kind: FillerKind | None = None
    on_skip: OnSkip | None = None
    """Told ``tts_failed`` when its render ends before any audio (it never played); taken
    by the transition into SKIPPED."""
    pauses: Pauses | None = None
    """Its pauses between words, when its whole sound is known (a rendered phrase)."""
    heard: list[rtc.AudioFrame] | None = None
    """The frames let through so far, kept while its whole sound is not known."""
    sent: float = 0.0
    """Seconds of its audio the gate has let through."""
    started_at: float | None = None
    """Event-loop time its first frame went out (its playout starts then)."""
    synced: bool = False
    """``started_at`` is the audio output's own playback start (not the gate's estimate)."""
    _phase: Phase = field(default=Phase.QUEUED, init=False)
    _stop_at: float | None = field(default=None, init=False)
    _cut_for: tuple[str, str | None] | None = field(default=None, init=False)
    timer: asyncio.TimerHandle | None = field(default=None, init=False)
    """STOPPING: the timer that interrupts its speech at ``stop_at``."""

    # -- derived -----------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """Where it is in its life (changed only by the transitions)."""
        return self._phase

    @property
    def speech(self) -> bool:
        """True for spoken words (a rendered phrase); False for a clip (no words to cut)."""
        return self.key is not None

    @property
    def stop_at(self) -> float | None:
        """Seconds into its audio where it ends (STOPPING: a pause; 0 when cut before its
        first frame); None: it plays on (until LiveKit interrupts it)."""
        return self._stop_at

    @property
    def recorded(self) -> bool:
        """Its cut or finish is counted already."""
        return self._phase in RECORDED

    @property
    def ending(self) -> bool:
        """On its way out already (a graceful end under way, finishing, or cut)."""
        return self._phase in ENDING

    @property
    def cut_for(self) -> tuple[str, str | None]:
        """AWAITING_PAUSE: the waiting cut's reason and tool."""
        if self._cut_for is None:
            raise PlayingStateError(f"no cut waits for a pause ({self._phase.value})")
        return self._cut_for

    def position(self, now: float) -> float | None:
        """Seconds of it played by ``now`` (None: not started)."""
        return None if self.started_at is None else max(0.0, now - self.started_at)

    # -- transitions -------------------------------------------------------------------------

    def _move(self, to: Phase, *allowed: Phase) -> None:
        if self._phase not in allowed:
            raise PlayingStateError(
                f"a filler cannot go from {self._phase.value} to {to.value}"
                f" (only from {', '.join(p.value for p in allowed)})"
            )
        self._phase = to

    def start(self, now: float) -> None:
        """QUEUED → SOUNDING: its first frame goes out at ``now``."""
        self._move(Phase.SOUNDING, Phase.QUEUED)
        self.started_at = now

    def sync(self, now: float) -> bool:
        """The audio output started playing it at ``now``: its clock starts then (once, and
        not after a stop was placed on the old clock). Not a transition. True if taken."""
        if self._stop_at is not None or self.synced:
            return False
        self.synced = True
        self.started_at = now
        return True

    def finish(self) -> None:
        """SOUNDING → FINISHING: left to play to its end (the answer window holds it)."""
        self._move(Phase.FINISHING, Phase.SOUNDING)

    def stop(self, at: float, timer: asyncio.TimerHandle) -> None:
        """SOUNDING or AWAITING_PAUSE → STOPPING: it ends ``at`` s into its audio, where
        ``timer`` interrupts its speech."""
        self._move(Phase.STOPPING, Phase.SOUNDING, Phase.AWAITING_PAUSE)
        self._stop_at = at
        self._cut_for = None
        self.timer = timer

    def await_pause(self, reason: str, tool: str | None) -> None:
        """SOUNDING → AWAITING_PAUSE: a graceful cut (``reason``) waits for its next pause
        to arrive from the render."""
        self._move(Phase.AWAITING_PAUSE, Phase.SOUNDING)
        self._cut_for = (reason, tool)

    def drop(self) -> None:
        """QUEUED or SKIPPED → CUT before its first frame: the gate lets none out."""
        self._move(Phase.CUT, Phase.QUEUED, Phase.SKIPPED)
        self._stop_at = 0.0

    def cut_now(self) -> None:
        """SOUNDING → CUT: interrupted mid-way (LiveKit stops reading its audio)."""
        self._move(Phase.CUT, Phase.SOUNDING)

    def hold_refused(self) -> OnSkip | None:
        """Its hold said no (it never sounds): QUEUED → SKIPPED, or it stays CUT when it was
        dropped meanwhile. Returns where to report the skip (taken: reported once)."""
        if self._phase is not Phase.CUT:
            self._move(Phase.SKIPPED, Phase.QUEUED)
        skip, self.on_skip = self.on_skip, None
        return skip

    def render_failed(self) -> OnSkip | None:
        """QUEUED → SKIPPED: its audio ended before any frame. Returns where to report it."""
        self._move(Phase.SKIPPED, Phase.QUEUED)
        skip, self.on_skip = self.on_skip, None
        return skip

    # -- its pauses --------------------------------------------------------------------------

    def learn_pauses(self, sound: rtc.AudioFrame | None) -> None:
        """Learn its pauses once its whole ``sound`` is rendered (found once per sound);
        until then (``sound`` None), the pauses in the audio it has let through (those ahead
        of what plays)."""
        if self.pauses is not None or self.key is None:
            return
        if sound is not None:
            self.pauses = pauses_of(sound, self.key)
            self.heard = None
        elif self.heard:
            first = self.heard[0]
            partial = find_pauses(
                b"".join(bytes(f.data) for f in self.heard),
                first.sample_rate,
                first.num_channels,
            )
            # what comes after the audio that arrived is unknown
            self.pauses = replace(partial, complete=False)


FINISH: Literal["finish"] = "finish"
AWAIT_PAUSE: Literal["await_pause"] = "await_pause"


def graceful_end(
    pauses: Pauses,
    position: float,
    *,
    may_finish: bool,
    window: float,
    lead: float | None,
    streaming: bool,
) -> float | Literal["finish", "await_pause"] | None:
    """How a filler ``position`` s into its audio ends when the tool's result is ready.

    :data:`FINISH` when it may finish (``may_finish``) and its speech ends within the answer
    ``window``; else the pause to stop at: the last before the reply is due (``lead`` s
    from now, once replies are timed), else the next, when it comes within
    ``max(MAX_CUT_WAIT, lead)``; else :data:`AWAIT_PAUSE` while the rest of it is still
    arriving from the render (``streaming``); else None: cut it at once.
    """
    if may_finish and pauses.complete and pauses.end_of_speech - position <= window:
        return FINISH
    stop = None if lead is None else pauses.latest_cut(position, position + lead)
    if stop is None:
        stop = pauses.next_cut(position)
    if stop - position <= max(MAX_CUT_WAIT, lead or 0.0):
        return stop
    if not pauses.complete and streaming:
        return AWAIT_PAUSE
    return None

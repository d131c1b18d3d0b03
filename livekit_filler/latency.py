"""How long each tool usually takes, learned from its recent calls, and when to fill it.

Pure logic, no session machinery: :class:`LatencyModel` keeps the last few latencies of each
tool (by name) and answers "how much longer will this call run?" with a median over the
calls that ran at least as long as this one already has, so one outlier barely moves it.
It also keeps the **answer lead**: how long the session's LLM and TTS took, after a tool
returned, to make its reply sound. A filler may go on that long after the answer is ready
without delaying it (:meth:`LatencyModel.answer_lead`, a low quantile, minus a margin).
:func:`plan_start` and :func:`fit` turn a prediction into the stream's decisions: when the
first filler starts, which phrase fits the wait, whether a follow-up is worth starting.

The model persists as a small JSON file (:data:`FILE_NAME`) in the audio cache directory,
written atomically after each call, and read back by the next process; a missing,
unreadable or corrupt file is an empty history, never an error.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .log import logger

__all__ = [
    "FILE_NAME",
    "LEAD_MARGIN",
    "LatencyModel",
    "ReplyTimer",
    "StartPlan",
    "estimate_duration",
    "fit",
    "plan_start",
    "quantile",
    "reset_shared",
    "shared_model",
]

FILE_NAME = "tool_latency.json"
"""The model's file in the cache directory."""

FILE_FORMAT = 1
WINDOW = 20
"""Latencies kept per tool: the most recent calls."""
MAX_TOOLS = 512
"""Tools kept (the least recently called are forgotten first)."""
SECONDS_PER_CHAR = 0.065
"""Estimated speech seconds per character of a phrase that is not rendered yet."""
LEAD_QUANTILE = 0.2
"""The answer lead used is this low quantile of the recent ones: a reply that comes sooner
than usual is rarely held back."""
LEAD_MARGIN = 0.05
"""Seconds taken off the answer lead: a filler ends this long before the reply is due."""
MAX_LEAD = 2.0
"""Longest answer lead kept (seconds); a longer wait was not a reply being prepared."""


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * min(max(q, 0.0), 1.0)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class LatencyModel:
    """Recent latencies per tool name; predictions robust to outliers (medians, quantiles)."""

    def __init__(self, *, window: int = WINDOW, path: Path | None = None) -> None:
        """Create an empty model.

        Args:
            window: latencies kept per tool (the most recent).
            path: where :meth:`save` writes (and :meth:`load` reads) the model; None keeps it
                in memory only.
        """
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window!r}")
        self.window = window
        self.path = path
        self._samples: dict[str, deque[float]] = {}
        self._leads: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._warned = False

    def __contains__(self, tool: object) -> bool:
        return tool in self._samples

    def samples(self, tool: str) -> list[float]:
        """The kept latencies of ``tool``, oldest first."""
        return list(self._samples.get(tool, ()))

    def record(self, tool: str, seconds: float) -> None:
        """A call of ``tool`` returned after ``seconds``."""
        if not (math.isfinite(seconds) and seconds >= 0):
            return
        with self._lock:
            history = self._samples.pop(tool, None) or deque(maxlen=self.window)
            history.append(seconds)
            self._samples[tool] = history  # most recently used last
            while len(self._samples) > MAX_TOOLS:
                del self._samples[next(iter(self._samples))]

    def forget(self, tool: str) -> None:
        """Drop what is known of ``tool`` (its next call is timed as an unknown tool's)."""
        with self._lock:
            self._samples.pop(tool, None)

    def typical(self, tool: str) -> float | None:
        """The median latency of ``tool``'s recent calls; None for an unknown tool."""
        history = self._samples.get(tool)
        return quantile(list(history), 0.5) if history else None

    def worst(self, tool: str, q: float = 0.9) -> float | None:
        """A high quantile (default p90) of ``tool``'s recent latencies; None if unknown."""
        history = self._samples.get(tool)
        return quantile(list(history), q) if history else None

    def remaining(self, tool: str, elapsed: float, q: float = 0.5) -> float | None:
        """Predicted seconds until a call of ``tool`` that has run ``elapsed`` s returns.

        The median (or the ``q`` quantile) of ``latency - elapsed`` over the recent calls
        that took longer than ``elapsed``. None when the tool is unknown or runs longer than
        any recent call (an overrun: nothing is known about it any more).
        """
        history = self._samples.get(tool)
        if not history:
            return None
        longer = [s - elapsed for s in history if s > elapsed]
        return quantile(longer, q) if longer else None

    def record_lead(self, seconds: float) -> None:
        """A reply sounded ``seconds`` after its tool returned (nothing held it back)."""
        if math.isfinite(seconds) and 0 <= seconds <= MAX_LEAD:
            with self._lock:
                self._leads.append(seconds)

    def leads(self) -> list[float]:
        """The kept answer leads, oldest first."""
        return list(self._leads)

    def answer_lead(self) -> float | None:
        """Seconds a filler may go on after a tool returned without delaying the reply: a
        low quantile (:data:`LEAD_QUANTILE`) of the recent answer leads minus
        :data:`LEAD_MARGIN`; None before any reply was timed."""
        if not self._leads:
            return None
        return max(0.0, quantile(list(self._leads), LEAD_QUANTILE) - LEAD_MARGIN)

    # -- persistence -----------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        """The model as plain JSON data."""
        return {
            "format": FILE_FORMAT,
            "tools": {tool: [round(s, 4) for s in h] for tool, h in self._samples.items()},
            "leads": [round(s, 4) for s in self._leads],
        }

    def merge_json(self, data: object) -> int:
        """Add the latencies of :meth:`to_json` data (older than what is known); returns how
        many tools were read. Anything malformed is skipped."""
        if not isinstance(data, Mapping) or data.get("format") != FILE_FORMAT:
            return 0
        tools = data.get("tools")
        if not isinstance(tools, Mapping):
            return 0
        read = 0
        with self._lock:
            leads = [v for v in _seconds(data.get("leads")) if v <= MAX_LEAD]
            self._leads = deque([*leads, *self._leads], maxlen=self.window)
            for tool, values in tools.items():
                if not isinstance(tool, str):
                    continue
                good = _seconds(values)
                if not good:
                    continue
                known = self._samples.get(tool, ())
                self._samples[tool] = deque([*good, *known], maxlen=self.window)
                read += 1
        return read

    def load(self) -> int:
        """Read :attr:`path` (missing or corrupt: nothing read, one warning); returns the
        number of tools read."""
        if self.path is None:
            return 0
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        except OSError as e:
            self._warn("cannot read the tool latency file", e)
            return 0
        try:
            data = json.loads(text)
        except ValueError as e:
            self._warn("ignoring a corrupt tool latency file", e)
            return 0
        return self.merge_json(data)

    def save(self) -> bool:
        """Write the model to :attr:`path` atomically (a temporary file, then a rename).

        Returns:
            False when there is no path or the write failed (one warning per model).
        """
        if self.path is None:
            return False
        data = json.dumps(self.to_json(), separators=(",", ":"))
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(data, encoding="utf-8")
            tmp.replace(self.path)
        except OSError as e:
            self._warn("cannot write the tool latency file", e)
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return False
        return True

    def _warn(self, message: str, error: Exception) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(message, extra={"path": str(self.path), "error": repr(error)})


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


def _seconds(values: object) -> list[float]:
    """The finite, non-negative numbers of a JSON list (anything else: none)."""
    if not isinstance(values, list):
        return []
    return [
        float(v)
        for v in values
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    ]


_models: dict[Path | None, LatencyModel] = {}
_models_lock = threading.Lock()


def shared_model(directory: Path | str | None) -> LatencyModel:
    """The process-wide model persisted in ``directory`` (None: in memory only).

    Every controller of the process with the same directory shares it, so a session learns
    from the sessions before it; the file is read once, on first use.
    """
    key = Path(directory).expanduser() if directory is not None else None
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = LatencyModel(path=key / FILE_NAME if key is not None else None)
            model.load()
            _models[key] = model
        return model


def reset_shared() -> None:
    """Forget every process-wide model (tests; the files are kept)."""
    with _models_lock:
        _models.clear()


# -- decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StartPlan:
    """When a call's first filler is due and why."""

    dwell: float
    """Seconds after the call started."""
    kind: str
    """``"fixed"``, ``"unknown"`` (no history: ``delay``), ``"slow"`` (``grace``),
    ``"fast"`` (silent unless it overruns) or ``"usual"`` (``delay``)."""


def plan_start(
    *,
    typical: float | None,
    worst: float | None,
    delay: float,
    grace: float,
    fast_below: float,
    slow_after: float,
    adaptive: bool = True,
) -> StartPlan:
    """When the first filler of a call is due.

    Args:
        typical: the tool's median latency (None: unknown tool).
        worst: its p90 latency.
        delay: the configured delay (fixed timing, unknown tools, usual tools).
        grace: the delay of a tool predicted slow.
        fast_below: a tool whose p90 is at most this is fast: no filler unless it runs
            past ``delay`` and twice its p90.
        slow_after: a tool whose median is at least this is slow: a filler after ``grace``.
        adaptive: False: always ``delay``.
    """
    if not adaptive:
        return StartPlan(delay, "fixed")
    if typical is None or worst is None:
        return StartPlan(delay, "unknown")
    if worst <= fast_below:
        return StartPlan(max(delay, 2 * worst), "fast")
    if typical >= slow_after:
        return StartPlan(min(grace, delay), "slow")
    return StartPlan(delay, "usual")


EARLY = 0.5
"""A filler is not started when the call is likely to end within this many seconds."""


def fit(
    candidates: Iterable[str],
    duration: Callable[[str], float],
    remaining: float | None,
    *,
    finish_within: float,
    soonest: float | None = None,
) -> list[str] | None:
    """The candidates that fit a predicted wait of ``remaining`` seconds.

    - unknown (None): every candidate;
    - None when the call is likely to end (``soonest``, a low quantile of the remaining
      time; default ``remaining``) within :data:`EARLY` seconds: start nothing;
    - those that end before the answer (or within ``finish_within`` after it, when they are
      left to finish), else the shortest one, if it would still play at least half its length;
    - None when even the shortest would be cut in its first half: start nothing.
    """
    texts = list(dict.fromkeys(candidates))
    if remaining is None or not texts:
        return texts
    if (soonest if soonest is not None else remaining) < EARLY:
        return None
    lengths = {t: duration(t) for t in texts}
    whole = [t for t in texts if lengths[t] <= remaining + finish_within]
    if whole:
        return whole
    shortest = min(texts, key=lambda t: lengths[t])
    if remaining < lengths[shortest] / 2:
        return None
    return [shortest]


def estimate_duration(text: str, seconds_per_char: float = SECONDS_PER_CHAR) -> float:
    """Seconds of speech for ``text`` when its sound is not rendered yet."""
    return len(text.strip()) * seconds_per_char

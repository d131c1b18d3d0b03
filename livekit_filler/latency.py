"""How long each tool usually takes, learned from its recent calls, and when to fill it.

Pure logic, no session machinery: :class:`LatencyModel` keeps the last few latencies of each
tool (by name) and answers "how much longer will this call run?" with a median over the
calls that ran at least as long as this one already has, so one outlier barely moves it.
It also keeps the **answer lead**: how long the session's LLM and TTS took, after a tool
returned, to make its reply sound. A filler may go on that long after the answer is ready
without delaying it (:meth:`LatencyModel.answer_lead`, a low quantile, minus a margin).
:func:`plan_start` and :func:`fit` turn a prediction into the stream's decisions: when the
first filler starts, which phrase fits the wait, whether a follow-up is worth starting.

The model persists as a small JSON history per project, shared by every process that uses
the cache directory: :meth:`LatencyModel.save` merges the samples this process recorded
since its last save into what the file holds (the files, their lock and their atomic write
are :mod:`.latency_files`). It runs in the background writer (:mod:`.disk_writer`),
coalesced (:data:`SAVE_DELAY`), never on the event loop. A missing, unreadable or corrupt
file, or a tool whose entry cannot be read, is an empty history (one WARNING).
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .disk_writer import writer
from .latency_files import LockTimeout, default_scope, history_path, locked, write_atomically
from .log import logger

__all__ = [
    "LEAD_MARGIN",
    "LatencyModel",
    "StartPlan",
    "estimate_duration",
    "fit",
    "plan_start",
    "quantile",
    "reset_shared",
    "shared_model",
]

SAVE_DELAY = 0.25
"""Seconds a save waits for more calls to join it (one write for a burst of calls)."""
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
    """Recent latencies per tool name; predictions robust to outliers (medians, quantiles).

    Thread-safe: sessions of one process on several event loops (LiveKit's thread executor)
    record into and read one model.
    """

    def __init__(self, *, window: int = WINDOW, path: Path | None = None) -> None:
        """Create an empty model.

        Args:
            window: latencies kept per tool (the most recent).
            path: the history :meth:`save` merges into (and :meth:`load` reads); None keeps
                the model in memory only.
        """
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window!r}")
        self.window = window
        self.path = path
        self._samples: dict[str, deque[float]] = {}
        self._leads: deque[float] = deque(maxlen=window)
        self._unsaved: dict[str, deque[float]] = {}
        """Samples recorded since the last save (what this process adds to the file)."""
        self._unsaved_leads: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self.saves = 0
        """Histories written by this model."""

    def __contains__(self, tool: object) -> bool:
        with self._lock:
            return tool in self._samples

    def samples(self, tool: str) -> list[float]:
        """The kept latencies of ``tool``, oldest first."""
        with self._lock:
            return list(self._samples.get(tool, ()))

    def record(self, tool: str, seconds: float) -> None:
        """A call of ``tool`` returned after ``seconds``."""
        if not (math.isfinite(seconds) and seconds >= 0):
            return
        with self._lock:
            _push(self._samples, tool, [seconds], self.window)
            if self.path is not None:
                _push(self._unsaved, tool, [seconds], self.window)

    def forget(self, tool: str) -> None:
        """Drop what is known of ``tool`` (its next call is timed as an unknown tool's)."""
        with self._lock:
            self._samples.pop(tool, None)
            self._unsaved.pop(tool, None)

    def typical(self, tool: str) -> float | None:
        """The median latency of ``tool``'s recent calls; None for an unknown tool."""
        history = self.samples(tool)
        return quantile(history, 0.5) if history else None

    def worst(self, tool: str, q: float = 0.9) -> float | None:
        """A high quantile (default p90) of ``tool``'s recent latencies; None if unknown."""
        history = self.samples(tool)
        return quantile(history, q) if history else None

    def remaining(self, tool: str, elapsed: float, q: float = 0.5) -> float | None:
        """Predicted seconds until a call of ``tool`` that has run ``elapsed`` s returns.

        The median (or the ``q`` quantile) of ``latency - elapsed`` over the recent calls
        that took longer than ``elapsed``. None when the tool is unknown or runs longer than
        any recent call (an overrun: nothing is known about it any more).
        """
        history = self.samples(tool)
        if not history:
            return None
        longer = [s - elapsed for s in history if s > elapsed]
        return quantile(longer, q) if longer else None

    def record_lead(self, seconds: float) -> None:
        """A reply sounded ``seconds`` after its tool returned (nothing held it back)."""
        if math.isfinite(seconds) and 0 <= seconds <= MAX_LEAD:
            with self._lock:
                self._leads.append(seconds)
                if self.path is not None:
                    self._unsaved_leads.append(seconds)

    def leads(self) -> list[float]:
        """The kept answer leads, oldest first."""
        with self._lock:
            return list(self._leads)

    def answer_lead(self) -> float | None:
        """Seconds a filler may go on after a tool returned without delaying the reply: a
        low quantile (:data:`LEAD_QUANTILE`) of the recent answer leads minus
        :data:`LEAD_MARGIN`; None before any reply was timed."""
        leads = self.leads()
        if not leads:
            return None
        return max(0.0, quantile(leads, LEAD_QUANTILE) - LEAD_MARGIN)

    # -- persistence -----------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        """The model as plain JSON data."""
        with self._lock:
            return _as_json(self._samples, self._leads)

    def merge_json(self, data: object) -> int:
        """Add the latencies of :meth:`to_json` data (older than what is known); returns how
        many tools were read. A tool whose entry is malformed is skipped (one WARNING)."""
        tools, leads, bad = _parse(data)
        if bad:
            self._warn("ignoring unreadable entries of a tool latency history", bad)
        with self._lock:
            self._leads = deque([*leads, *self._leads], maxlen=self.window)
            for tool, good in tools.items():
                known = self._samples.get(tool, ())
                self._samples[tool] = deque([*good, *known], maxlen=self.window)
            while len(self._samples) > MAX_TOOLS:
                del self._samples[next(iter(self._samples))]
        return len(tools)

    def load(self) -> int:
        """Read :attr:`path` (missing or corrupt: nothing read, one warning); returns the
        number of tools read. Blocking: run it off the event loop (:meth:`load_soon`)."""
        if self.path is None:
            return 0
        data = self._read()
        return 0 if data is None else self.merge_json(data)

    def load_soon(self) -> None:
        """Read :attr:`path` in the background writer (before any save of this model)."""
        if self.path is not None:
            writer().submit(("latency-load", self.path), self.load)

    def save_soon(self, *, delay: float = SAVE_DELAY) -> None:
        """Merge this process's new samples into :attr:`path` in the background writer,
        within ``delay`` seconds; saves asked for meanwhile are one write."""
        if self.path is not None:
            writer().submit(("latency", self.path), self.save, delay=delay)

    def save(self) -> bool:
        """Merge the samples recorded since the last save into :attr:`path`, under its lock,
        and write it atomically (a temporary file, then a rename). Blocking: the background
        writer runs it (:meth:`save_soon`).

        The model then holds the merged history: what every process has learned.

        Returns:
            False when there is no path, the lock could not be taken or the write failed
            (one warning per model); the new samples are then kept for the next save.
        """
        path = self.path
        if path is None:
            return False
        with self._lock:
            unsaved, self._unsaved = self._unsaved, {}
            unsaved_leads, self._unsaved_leads = self._unsaved_leads, deque(maxlen=self.window)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with locked(path.with_name(path.name + ".lock")):
                data = self._read()
                tools, leads, bad = _parse(data)
                if bad:  # rewritten without them: an empty history for those tools
                    self._warn("ignoring unreadable entries of a tool latency history", bad)
                for tool, values in unsaved.items():
                    _push(tools, tool, list(values), self.window)
                while len(tools) > MAX_TOOLS:
                    del tools[next(iter(tools))]
                merged_leads = deque([*leads, *unsaved_leads], maxlen=self.window)
                write_atomically(path, json.dumps(_as_json(tools, merged_leads), indent=None))
        except (OSError, LockTimeout) as e:
            with self._lock:  # kept for the next save
                for tool, values in unsaved.items():
                    newer = list(self._unsaved.get(tool, ()))
                    self._unsaved[tool] = deque([*values, *newer], maxlen=self.window)
                self._unsaved_leads = deque(
                    [*unsaved_leads, *self._unsaved_leads], maxlen=self.window
                )
            if isinstance(e, LockTimeout):
                self._warn(
                    "tool latency history locked by another process; learning kept in "
                    "memory for the next save",
                    e,
                )
            else:
                self._warn("cannot write the tool latency history; learning kept in memory", e)
            return False
        with self._lock:
            # the file's history plus what was recorded while it was written
            for tool, values in tools.items():
                newer = list(self._unsaved.get(tool, ()))
                self._samples[tool] = deque([*values, *newer], maxlen=self.window)
            self._leads = deque([*merged_leads, *self._unsaved_leads], maxlen=self.window)
            while len(self._samples) > MAX_TOOLS:
                del self._samples[next(iter(self._samples))]
            self.saves += 1
        return True

    def _read(self) -> object:
        """The history file's JSON data; None when missing, unreadable or corrupt."""
        assert self.path is not None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as e:
            self._warn("cannot read the tool latency history", e)
            return None
        try:
            return json.loads(text)
        except ValueError as e:
            self._warn("ignoring a corrupt tool latency history", e)
            return None

    def _warn(self, message: str, error: object) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning(message, extra={"path": str(self.path), "error": repr(error)})
        else:
            logger.debug(message, extra={"path": str(self.path), "error": repr(error)})


def _push(into: dict[str, deque[float]], tool: str, values: list[float], window: int) -> None:
    """Append ``values`` to ``tool``'s samples, making it the most recently used tool."""
    history = into.pop(tool, None) or deque(maxlen=window)
    history.extend(values)
    into[tool] = history
    while len(into) > MAX_TOOLS:
        del into[next(iter(into))]


def _as_json(tools: Mapping[str, Iterable[float]], leads: Iterable[float]) -> dict[str, object]:
    return {
        "format": FILE_FORMAT,
        "tools": {tool: [round(s, 4) for s in h] for tool, h in tools.items()},
        "leads": [round(s, 4) for s in leads],
    }


def _parse(data: object) -> tuple[dict[str, deque[float]], list[float], list[str]]:
    """The tools and leads of history data, and what could not be read (tool names, or the
    whole file); a tool with a malformed entry is left out, the others are kept."""
    tools: dict[str, deque[float]] = {}
    if data is None:
        return tools, [], []
    if not isinstance(data, Mapping) or data.get("format") != FILE_FORMAT:
        return tools, [], ["<file>"]
    entries = data.get("tools")
    if not isinstance(entries, Mapping):
        return tools, [], ["<tools>"]
    bad: list[str] = []
    for tool, values in entries.items():
        good = _seconds(values)
        if not isinstance(tool, str) or not good or len(good) != len(values):
            bad.append(str(tool))
            continue
        tools[tool] = deque(good[-WINDOW:], maxlen=WINDOW)
    leads = [v for v in _seconds(data.get("leads")) if v <= MAX_LEAD][-WINDOW:]
    return tools, leads, bad


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


def shared_model(directory: Path | str | None, scope: str | None = None) -> LatencyModel:
    """The process-wide model of project ``scope`` (default :func:`default_scope`) persisted
    in ``directory`` (None: in memory only).

    Every controller of the process with the same directory and scope shares it, so a
    session learns from the sessions before it; the history is read once, in the
    background writer, on first use.
    """
    path = history_path(directory, scope or default_scope()) if directory is not None else None
    with _models_lock:
        model = _models.get(path)
        if model is None:
            model = LatencyModel(path=path)
            model.load_soon()
            _models[path] = model
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

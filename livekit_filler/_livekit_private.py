"""The one place livekit-filler reads LiveKit private attributes or unexported modules.

- ``AgentSession`` has no public, synchronous way to reach the activity ``say()`` targets
  (``wait_for_idle()`` returns it, but only asynchronously). The floor decision must know
  synchronously whether ``say()`` would land in a paused or draining activity, and whether
  speech waits in its queue, so :func:`activity_view` reads ``AgentSession._activity`` and
  ``AgentActivity._speech_q``.
- A plugin TTS keeps its voice in private options (``tts._opts``), read for the audio cache key;
  ``tts.FallbackAdapter`` keeps its TTSs in ``_tts_instances`` (the first is the primary) and
  ``tts.StreamAdapter`` its wrapped TTS in ``_wrapped_tts`` (:func:`voice_source`).
- Whether the session is closing (:func:`session_closing`): ``aclose()``, ``shutdown()`` or
  an error close sets ``AgentSession._closing_task`` / ``_closing`` before it cancels the
  tools and drains; the public ``close`` event comes only at the end.
- A tool that declares no ``RunContext`` learns its call from LiveKit's task record
  (:func:`running_tool_call`), so ``@fillers`` never changes a tool's signature.
- ``ActivityClosedError``, ``is_context_type``, ``audio_frames_from_file`` and (for the
  testing kit) ``SessionConnectOptions`` live in modules that ``livekit.agents`` does not
  export.
- A filler render's TTS errors must stay out of the session's error budget, but LiveKit's
  ``ChunkedStream`` / ``SynthesizeStream`` always report them with ``tts.emit("error", ...)``
  on the TTS instance the session listens to. :func:`hide_render_errors` wraps that
  instance's ``emit`` so an ``error`` emitted from inside :func:`filler_render` (the render's
  task and the stream tasks it creates, which copy its context) goes to the render instead.
  This relies on LiveKit emitting from the stream's own tasks (pinned by a test).

Every read fails safe: an unknown layout reads as "not a safe moment" (a filler is skipped,
never played into the wrong place), with one WARNING per missing name naming the
livekit-agents version and what is skipped. Unexported modules are imported on first use
(:func:`_private`), never when ``livekit_filler`` is imported, so a release that moves one
cannot stop the worker. ``tests/test_livekit_private.py`` pins each of them and fails loudly
when a livekit-agents release changes one, and simulates each one missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, RunContext, __version__ as LIVEKIT_VERSION
from livekit.agents.llm import FunctionCall
from livekit.agents.tts import TTS, FallbackAdapter, StreamAdapter, TTSError
from livekit.agents.voice import SpeechHandle

from .log import logger
from .voice_identity import canonical_options, dumps

__all__ = [
    "ActivityView",
    "RunningToolCall",
    "activity_closed_error",
    "activity_view",
    "audio_frames_from_file",
    "filler_render",
    "hide_render_errors",
    "is_context_type",
    "running_tool_call",
    "session_closing",
    "session_connect_options",
    "tts_voice",
    "tts_voice_data",
    "voice_source",
]

PRIVATE_NAMES: dict[str, tuple[str, str]] = {
    "AgentActivity": ("livekit.agents.voice.agent_activity", "AgentActivity"),
    "ActivityClosedError": ("livekit.agents.voice.agent_activity", "ActivityClosedError"),
    "is_context_type": ("livekit.agents.llm.utils", "is_context_type"),
    "audio_frames_from_file": ("livekit.agents.utils.audio", "audio_frames_from_file"),
    "SessionConnectOptions": ("livekit.agents.voice.agent_session", "SessionConnectOptions"),
    "_get_activity_task_info": ("livekit.agents.voice.agent", "_get_activity_task_info"),
    "_AgentActivityContextVar": ("livekit.agents.voice.agent_activity", "_AgentActivityContextVar"),
}
"""Each unexported LiveKit name used: (module, attribute), imported on first use."""

PRIVATE_ATTRIBUTES = {
    "session.activity": "_activity",
    "activity.agent": "agent",
    "activity.paused": "scheduling_paused",
    "activity.queue": "_speech_q",
    "session.closing_task": "_closing_task",
    "session.closing": "_closing",
    "fallback.instances": "_tts_instances",
    "stream_adapter.wrapped": "_wrapped_tts",
}
"""Each attribute read of a LiveKit object (their names may change in a release)."""

_MISSING = object()
_imported: dict[str, Any] = {}
_warned: set[str] = set()


def _fallback(what: str, skipped: str) -> None:
    """Log one WARNING per missing name: the LiveKit version, the name, what is skipped."""
    if what not in _warned:
        _warned.add(what)
        logger.warning(
            "livekit-agents %s has no %s: %s", LIVEKIT_VERSION, what, skipped,
            extra={"livekit_agents": LIVEKIT_VERSION, "missing": what},
        )  # fmt: skip


def _private(key: str, skipped: str) -> Any:
    """The unexported LiveKit name ``key`` (see :data:`PRIVATE_NAMES`), imported on first
    use; None, with one WARNING saying ``skipped``, when this release lacks it."""
    value = _imported.get(key)
    if value is None:
        module, name = PRIVATE_NAMES[key]
        try:
            value = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            value = _MISSING
        _imported[key] = value
    if value is _MISSING:
        _fallback(".".join(PRIVATE_NAMES[key]), skipped)
        return None
    return value


def _read(obj: object, key: str, skipped: str) -> Any:
    """``obj``'s attribute :data:`PRIVATE_ATTRIBUTES` ``[key]``; ``_MISSING`` (one WARNING)
    when this release has no such attribute."""
    name = PRIVATE_ATTRIBUTES[key]
    try:
        return getattr(obj, name)
    except AttributeError:
        _fallback(f"{type(obj).__name__}.{name}", skipped)
        return _MISSING


class _NeverRaised(Exception):
    """Stands in for an exception class this LiveKit release does not have."""


def activity_closed_error() -> type[Exception]:
    """LiveKit's ``ActivityClosedError`` (``wait_for_idle`` on a closed activity)."""
    cls = _private("ActivityClosedError", "a closing session is told by RuntimeError only")
    return cls if isinstance(cls, type) and issubclass(cls, Exception) else _NeverRaised


def is_context_type(hint: Any, *, allow_subclasses: bool = True) -> bool:
    """True when ``hint`` is LiveKit's ``RunContext`` (LiveKit's own test, else ours)."""
    check = _private("is_context_type", "RunContext parameters are found by their type alone")
    if check is not None:
        return bool(check(hint, allow_subclasses=allow_subclasses))
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and (
        origin is RunContext or (allow_subclasses and issubclass(origin, RunContext))
    )


def audio_frames_from_file(path: str, *, sample_rate: int) -> AsyncIterator[rtc.AudioFrame]:
    """LiveKit's file decoder; raises RuntimeError when this release has none (no clip)."""
    decode = _private("audio_frames_from_file", "filler clips from audio files are skipped")
    if decode is None:
        raise RuntimeError("this livekit-agents release cannot decode audio files")
    frames: AsyncIterator[rtc.AudioFrame] = decode(path, sample_rate=sample_rate)
    return frames


def session_connect_options(**options: Any) -> Any:
    """LiveKit's ``SessionConnectOptions`` (the testing kit's sessions never retry); None
    when this release has none (the session's defaults then)."""
    cls = _private("SessionConnectOptions", "test sessions keep LiveKit's retry defaults")
    return None if cls is None else cls(**options)


@dataclass(frozen=True)
class ActivityView:
    """What the floor decision reads of the activity ``session.say()`` would use."""

    agent: Agent
    paused: bool
    """``scheduling_paused``: the activity is pausing or draining (say() would raise)."""
    queued: bool
    """Speech is scheduled but not playing yet."""


def activity_view(session: AgentSession[Any]) -> ActivityView | None:
    """The activity ``session.say()`` would use right now, or None (not running, closing,
    or a layout this module cannot read: no filler then)."""
    skipped = "fillers are skipped (the floor cannot be read)"
    activity = _read(session, "session.activity", skipped)
    activity_class = _private("AgentActivity", skipped)
    if activity is _MISSING or activity_class is None or not isinstance(activity, activity_class):
        return None
    agent = _read(activity, "activity.agent", skipped)
    paused = _read(activity, "activity.paused", skipped)
    queue = _read(activity, "activity.queue", skipped)
    if not isinstance(agent, Agent) or not isinstance(paused, bool) or queue is _MISSING:
        return None
    return ActivityView(agent=agent, paused=paused, queued=bool(queue))


def voice_source(tts: TTS[Any]) -> TTS[Any]:
    """The TTS whose voice fillers of ``tts`` are keyed by and rendered with.

    A ``tts.FallbackAdapter`` speaks with its first TTS (``_tts_instances[0]``, the primary)
    as long as it works: fillers are rendered by the primary only, never by a fallback in
    another voice. A ``tts.StreamAdapter`` speaks with the TTS it wraps (``_wrapped_tts``).
    Any other TTS, or a wrapper whose layout is unknown, is its own source.
    """
    skipped = "the wrapper's fillers stay in memory (its voice cannot be read)"
    for _ in range(8):  # wrappers of wrappers; a loop ends here
        inner: object = None
        if isinstance(tts, FallbackAdapter):
            instances = _read(tts, "fallback.instances", skipped)
            inner = instances[0] if isinstance(instances, list | tuple) and instances else None
        elif isinstance(tts, StreamAdapter):
            inner = _read(tts, "stream_adapter.wrapped", skipped)
        if not isinstance(inner, TTS):
            return tts
        tts = inner
    return tts


def session_closing(session: AgentSession[Any]) -> bool:
    """True once ``session`` began to close (``aclose()``, ``shutdown()``, an error), before
    its ``close`` event: nothing new may be scheduled then. An unknown layout reads as
    closing (a skipped filler is always safe), with one WARNING."""
    skipped = "fillers are skipped (whether the session is closing cannot be read)"
    task = _read(session, "session.closing_task", skipped)
    closing = _read(session, "session.closing", skipped)
    if task is _MISSING or closing is _MISSING:
        return True
    return task is not None or bool(closing)


def tts_voice(tts: TTS[Any]) -> str | None:
    """:func:`tts_voice_data` as canonical JSON text (None: the voice cannot be read)."""
    data = tts_voice_data(tts)
    return None if data is None else dumps(data)


def tts_voice_data(tts: TTS[Any]) -> dict[str, Any] | None:
    """Everything a TTS's options say about its sound, for the filler audio cache key.

    LiveKit's ``TTS`` base class has no voice property; the plugins keep voice, language,
    speed, emotion, prosody and so on in their private options (``tts._opts``), nested in
    dataclasses, dicts and protobuf messages. They are read deeply and canonically, without
    credentials (:func:`livekit_filler.voice_identity.canonical_options`), from
    :func:`voice_source` (a wrapper's primary or wrapped TTS). A public ``voice`` string is
    used when a TTS has one (the testing kit's FakeTTS does).

    Returns:
        None when the voice cannot be read: the caller must not share that TTS's audio.
    """
    source = voice_source(tts)
    public = getattr(source, "voice", None)
    if isinstance(public, str):
        return {"voice": public}
    try:
        options = source._opts  # type: ignore[attr-defined]
    except AttributeError:
        return None
    return canonical_options(options) if options is not None else None


@dataclass(frozen=True)
class RunningToolCall:
    """The tool call the current task executes, as LiveKit's tool runner recorded it."""

    session: AgentSession[Any]
    function_call: FunctionCall
    speech_handle: SpeechHandle | None


def running_tool_call() -> RunningToolCall | None:
    """The tool call being executed by the current task, for a tool with no RunContext.

    LiveKit records it on the tool's task (``__livekit_agents_activity_task``) and the
    activity in a context variable; None when either is missing (a tool called outside a
    session, or a changed layout).
    """
    skipped = "tools without a RunContext parameter get no fillers"
    task_info = _private("_get_activity_task_info", skipped)
    context_var = _private("_AgentActivityContextVar", skipped)
    if task_info is None or context_var is None:
        return None
    task = asyncio.current_task()
    info = task_info(task) if task is not None else None
    activity = context_var.get(None)
    call = getattr(info, "function_call", None)
    if activity is None or not isinstance(call, FunctionCall):
        return None
    session = getattr(activity, "session", None)
    if not isinstance(session, AgentSession):
        return None
    handle = getattr(info, "speech_handle", None)
    return RunningToolCall(session, call, handle if isinstance(handle, SpeechHandle) else None)


_render_errors: contextvars.ContextVar[Callable[[TTSError], None] | None] = contextvars.ContextVar(
    "livekit_filler_render_errors", default=None
)
_FILTERED = "__livekit_filler_render_filter__"


@contextlib.contextmanager
def filler_render(on_error: Callable[[TTSError], None]) -> Iterator[None]:
    """Inside this block (and in the tasks started in it), a TTS whose errors are hidden
    (:func:`hide_render_errors`) reports its ``error`` events to ``on_error`` only."""
    token = _render_errors.set(on_error)
    try:
        yield
    finally:
        _render_errors.reset(token)


def hide_render_errors(tts: TTS[Any]) -> bool:
    """Keep the ``error`` events of filler renders on ``tts`` away from its listeners.

    The session counts every unrecoverable ``error`` its TTS emits and closes after
    ``max_unrecoverable_errors``; a filler render's failure is not the session's business.
    Installs (once per instance) an ``emit`` that hands an ``error`` emitted inside
    :func:`filler_render` to that render and passes every other event through unchanged.

    Returns:
        False when ``emit`` cannot be wrapped: the caller must not render with ``tts``.
    """
    emit = tts.emit
    if getattr(emit, _FILTERED, False):
        return True

    def emit_outside_renders(event: Any, *args: Any) -> None:
        sink = _render_errors.get() if event == "error" else None
        if sink is None:
            emit(event, *args)
        elif args and isinstance(args[0], TTSError):
            sink(args[0])

    setattr(emit_outside_renders, _FILTERED, True)
    try:
        object.__setattr__(tts, "emit", emit_outside_renders)
    except (AttributeError, TypeError):
        return False
    return getattr(tts.emit, _FILTERED, False) is True

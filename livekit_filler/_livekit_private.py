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
never played into the wrong place). ``tests/test_livekit_private.py`` pins each of them and
fails loudly when a livekit-agents release changes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent, AgentSession
from livekit.agents.llm import FunctionCall
from livekit.agents.llm.utils import is_context_type
from livekit.agents.tts import TTS, FallbackAdapter, StreamAdapter, TTSError
from livekit.agents.utils.audio import audio_frames_from_file
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.agent_activity import ActivityClosedError, AgentActivity
from livekit.agents.voice.agent_session import SessionConnectOptions

from .log import logger
from .voice_identity import canonical_options, dumps

__all__ = [
    "ActivityClosedError",
    "ActivityView",
    "RunningToolCall",
    "SessionConnectOptions",
    "activity_view",
    "audio_frames_from_file",
    "filler_render",
    "hide_render_errors",
    "is_context_type",
    "running_tool_call",
    "session_closing",
    "tts_voice",
    "tts_voice_data",
    "voice_source",
]

_warned = False


@dataclass(frozen=True)
class ActivityView:
    """What the floor decision reads of the activity ``session.say()`` would use."""

    agent: Agent
    paused: bool
    """``scheduling_paused``: the activity is pausing or draining (say() would raise)."""
    queued: bool
    """Speech is scheduled but not playing yet."""


def activity_view(session: AgentSession[Any]) -> ActivityView | None:
    """The activity ``session.say()`` would use right now, or None (not running, closing)."""
    global _warned
    try:
        activity = session._activity
    except AttributeError:
        if not _warned:
            _warned = True
            logger.warning("this livekit-agents version hides AgentSession._activity")
        return None
    if not isinstance(activity, AgentActivity):
        return None
    try:
        queued = bool(activity._speech_q)
    except AttributeError:
        queued = True  # unknown layout: assume busy, a skipped filler is always safe
    return ActivityView(agent=activity.agent, paused=activity.scheduling_paused, queued=queued)


def voice_source(tts: TTS[Any]) -> TTS[Any]:
    """The TTS whose voice fillers of ``tts`` are keyed by and rendered with.

    A ``tts.FallbackAdapter`` speaks with its first TTS (``_tts_instances[0]``, the primary)
    as long as it works: fillers are rendered by the primary only, never by a fallback in
    another voice. A ``tts.StreamAdapter`` speaks with the TTS it wraps (``_wrapped_tts``).
    Any other TTS, or a wrapper whose layout is unknown, is its own source.
    """
    for _ in range(8):  # wrappers of wrappers; a loop ends here
        inner: object = None
        if isinstance(tts, FallbackAdapter):
            instances = getattr(tts, "_tts_instances", None)
            inner = instances[0] if isinstance(instances, list | tuple) and instances else None
        elif isinstance(tts, StreamAdapter):
            inner = getattr(tts, "_wrapped_tts", None)
        if not isinstance(inner, TTS):
            return tts
        tts = inner
    return tts


def session_closing(session: AgentSession[Any]) -> bool:
    """True once ``session`` began to close (``aclose()``, ``shutdown()``, an error), before
    its ``close`` event: nothing new may be scheduled then. An unknown layout reads as
    closing (a skipped filler is always safe), with one WARNING."""
    global _warned_closing
    try:
        return session._closing_task is not None or bool(session._closing)
    except AttributeError:
        if not _warned_closing:
            _warned_closing = True
            logger.warning("this livekit-agents version hides AgentSession._closing")
        return True


_warned_closing = False


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
    try:
        from livekit.agents.voice.agent import _get_activity_task_info
        from livekit.agents.voice.agent_activity import _AgentActivityContextVar
    except ImportError:
        return None
    task = asyncio.current_task()
    info = _get_activity_task_info(task) if task is not None else None
    activity = _AgentActivityContextVar.get(None)
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

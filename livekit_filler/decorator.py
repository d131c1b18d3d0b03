"""``@fillers``: give a slow ``@function_tool`` fillers with no code inside it."""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast, get_type_hints, overload

from livekit.agents import Agent, RunContext
from livekit.agents.llm import FunctionTool, RawFunctionTool, StopResponse

from ._livekit_private import RunningToolCall, is_context_type, running_tool_call
from .agent_phrases import register
from .controller import FillerController
from .log import logger
from .options import Timing, decorator_rule, rule_texts, template_fields
from .settings import ToolRule

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])
_ToolT = TypeVar("_ToolT", FunctionTool[Any, Any], RawFunctionTool[Any, Any])

_CONTEXT_STRING = re.compile(r"(^|\.)RunContext(\[.*\])?$")


class _Decorator:
    def __init__(self, rule: ToolRule) -> None:
        self._rule = rule

    @overload
    def __call__(self, fn: _ToolT) -> _ToolT: ...

    @overload
    def __call__(self, fn: _F) -> _F: ...

    def __call__(self, fn: Any) -> Any:
        # placed above @function_tool: rebuild the tool around a wrapper of its function
        if isinstance(fn, FunctionTool):
            return FunctionTool(self._wrap_async(getattr(fn, "__wrapped__")), fn.info)  # noqa: B009
        if isinstance(fn, RawFunctionTool):
            return RawFunctionTool(self._wrap_async(getattr(fn, "__wrapped__")), fn.info)  # noqa: B009
        return self._wrap_async(fn)

    def _wrap_async(self, fn: Any) -> Any:
        if not inspect.iscoroutinefunction(inspect.unwrap(fn)) and not inspect.iscoroutinefunction(
            fn
        ):
            raise TypeError(
                f"@fillers needs an async function tool, got {getattr(fn, '__name__', fn)!r}"
            )
        return _wrap(fn, self._rule)


def fillers(
    *phrases: str,
    followup_phrases: Sequence[str] | None = None,
    delay: float | None = None,
    interval: float | None = None,
    max_count: int | None = None,
    clip: str | None = None,
    languages: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    start_message: str | None = None,
    start_message_before_run: bool | None = None,
    failure_message: str | None = None,
    enabled: bool | None = None,
    timing: Timing | None = None,
    grace: float | None = None,
    fast_below: float | None = None,
    slow_after: float | None = None,
    busy_message: str | None = None,
) -> _Decorator:
    """Play fillers while the decorated function tool runs.

    Put it under ``@function_tool`` (it is accepted above it too). The tool keeps its name,
    docstring, argument schema and ``RunContext`` injection. Options left out (None) come
    from the tool's ``[tools.NAME]`` config section, then the session controller's settings;
    a session without a controller gets a default one. Every option of a config section
    (:class:`~livekit_filler.ToolRule`) is accepted, with the same name, type and
    validation; a value given here, ``False`` and ``0`` included, beats the section's.
    The fixed phrases and messages are registered on the tool: the controller renders them
    when an agent holding the tool becomes active, and ``livekit-filler render`` before any
    call.

    Args:
        *phrases: what to say first; none means the section's or the settings' phrases. A
            phrase may name the tool's arguments, ``"Let me check the {club} schedule"``; a
            name that is not a parameter of the tool fails at decoration time.
        followup_phrases: what to say from the second filler on.
        delay: seconds the tool must run before the first filler.
        interval: seconds of silence between two fillers of one call.
        max_count: most fillers per call.
        clip: a built-in clip name or an audio file played instead of speech.
        languages: per-language pools, ``{"fr": {"phrases": [...], "followup_phrases": [...]}}``.
        start_message: spoken as the tool starts (no dwell), under the same safety rules.
        start_message_before_run: hold the tool body until the start message has played.
        failure_message: spoken when the tool raises (not for ``StopResponse``).
        enabled: False plays no filler for this tool; True plays them over a section's false.
        timing: ``"adaptive"`` (by the tool's learned latency) or ``"fixed"``.
        grace: seconds before the first filler when the tool is predicted slow.
        fast_below: the tool is fast when its recent calls (p90) returned within this.
        slow_after: the tool is slow when its recent calls (median) took at least this.
        busy_message: said once when the caller speaks during this tool while it cannot be
            interrupted; ``""`` says nothing.

    Raises:
        FillerConfigError: a bad option (a ``ValueError`` naming it), at decoration.
        ValueError: a template naming an unknown argument, at decoration.

    Example:
        ```python
        class FrontDesk(Agent):
            @function_tool
            @fillers("Let me check the schedule.", delay=1.0)
            async def get_programs(self, context: RunContext) -> str:
                ...
        ```
    """
    return _Decorator(
        decorator_rule(
            phrases,
            followup_phrases=followup_phrases,
            delay=delay,
            interval=interval,
            max_count=max_count,
            clip=clip,
            languages=languages,
            start_message=start_message,
            start_message_before_run=start_message_before_run,
            failure_message=failure_message,
            enabled=enabled,
            timing=timing,
            grace=grace,
            fast_below=fast_below,
            slow_after=slow_after,
            busy_message=busy_message,
        )
    )


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        return dict(getattr(fn, "__annotations__", {}))


def _context_param(fn: Callable[..., Any], signature: inspect.Signature) -> str | None:
    """Name of the parameter LiveKit injects the RunContext into, if the tool declares one."""
    hints = _type_hints(fn)
    for name in signature.parameters:
        hint = hints.get(name)
        if isinstance(hint, str):
            if _CONTEXT_STRING.search(hint):
                return name
        elif hint is not None and is_context_type(hint, allow_subclasses=True):
            return name
    return None


def _check_templates(signature: inspect.Signature, rule: ToolRule, name: str) -> None:
    params = set(signature.parameters)
    for text in rule_texts(rule):
        unknown = sorted(template_fields(text) - params)
        if unknown:
            raise ValueError(
                f"fillers() on tool {name!r}: phrase {text!r} names {', '.join(unknown)}, "
                f"which {'is not a parameter' if len(unknown) == 1 else 'are not parameters'} "
                f"of the tool (parameters: {', '.join(sorted(params)) or 'none'})"
            )


def _arguments(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, object]:
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError:
        return {}
    return {k: v for k, v in bound.arguments.items() if not isinstance(v, RunContext)}


def _wrap(fn: Callable[..., Any], rule: ToolRule) -> Any:
    signature = inspect.signature(fn)
    declares_context = _context_param(fn, signature) is not None
    _check_templates(signature, rule, fn.__name__)

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _running_call(args, kwargs, declares_context)
        controller = FillerController._for_tool(call.session) if call is not None else None
        token = None
        if controller is not None and call is not None:
            try:
                token = controller._calls.begin(
                    call_id=call.function_call.call_id,
                    # the name the LLM called, which @function_tool(name=...) may have changed
                    tool_name=call.function_call.name,
                    tool_handle=call.speech_handle,
                    rule=rule,
                    arguments=_arguments(signature, args, kwargs),
                )
            except Exception:  # fillers are an extra: the tool runs as if undecorated
                logger.exception("filler bookkeeping failed at the start of a tool call")
        reason = "answer"
        try:
            if token is not None and token.call.options.start_message_before_run:
                await token.call.start_done.wait()
            # the body runs in this very task: AgentTask awaits and the circular-wait
            # guard keep working exactly as without the decorator
            result = await fn(*args, **kwargs)
            if _hands_off(result):
                reason = "handoff"  # the step's fillers end: the call is the next agent's
            return result
        except StopResponse:
            raise
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except Exception:
            reason = "error"
            raise
        finally:
            if token is not None and controller is not None:
                # _calls.end never raises: the tool's result, exception or cancellation
                # passes through unchanged
                controller._calls.end(token, reason=reason)

    # the phrases are known before the first call: the controller pre-renders them when an
    # agent holding this tool becomes active, `livekit-filler render` before any call
    register(wrapper, rule)
    return cast(Callable[..., Any], wrapper)


def _hands_off(result: object) -> bool:
    """True when a tool's result hands the call to another agent (an ``Agent``, alone or in
    a tuple with the tool's output)."""
    if isinstance(result, tuple):
        return any(isinstance(item, Agent) for item in result)
    return isinstance(result, Agent)


def _running_call(
    args: tuple[Any, ...], kwargs: dict[str, Any], declares_context: bool
) -> RunningToolCall | None:
    """The call this tool body serves: from its RunContext argument, else LiveKit's record."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, RunContext):
            try:
                return RunningToolCall(value.session, value.function_call, value.speech_handle)
            except Exception:  # a hand-built RunContext without a session or call
                return None
    return None if declares_context else running_tool_call()

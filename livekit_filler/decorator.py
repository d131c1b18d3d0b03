"""``@fillers``: give a slow ``@function_tool`` fillers with no code inside it."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, get_type_hints, overload

from livekit.agents import RunContext
from livekit.agents.llm import FunctionTool, RawFunctionTool
from livekit.agents.llm.utils import is_context_type

from .controller import FillerController
from .options import ToolFillerSpec

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])
_ToolT = TypeVar("_ToolT", FunctionTool[Any, Any], RawFunctionTool[Any, Any])

_CONTEXT_STRING = re.compile(r"(^|\.)RunContext(\[.*\])?$")

CONTEXT_PARAM = "_filler_run_context"
"""Keyword-only parameter added to a tool that declares no RunContext of its own."""


class _Decorator:
    def __init__(self, spec: ToolFillerSpec) -> None:
        self._spec = spec

    @overload
    def __call__(self, fn: _ToolT) -> _ToolT: ...

    @overload
    def __call__(self, fn: _F) -> _F: ...

    def __call__(self, fn: Any) -> Any:
        # placed above @function_tool: rebuild the tool around a wrapper of its function
        if isinstance(fn, FunctionTool):
            inner = _wrap(getattr(fn, "__wrapped__"), self._spec, tool_name=fn.info.name)  # noqa: B009
            return FunctionTool(inner, fn.info)
        if isinstance(fn, RawFunctionTool):
            inner = _wrap(getattr(fn, "__wrapped__"), self._spec, tool_name=fn.info.name)  # noqa: B009
            return RawFunctionTool(inner, fn.info)
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"@fillers needs an async function tool, got {getattr(fn, '__name__', fn)!r}"
            )
        return _wrap(fn, self._spec, tool_name=None)


def fillers(
    *phrases: str,
    delay: float | None = None,
    interval: float | None = None,
    max_count: int | None = None,
) -> _Decorator:
    """Play fillers while the decorated function tool runs.

    Put it under ``@function_tool`` (it is accepted above it too). The tool keeps its name,
    docstring, argument schema and ``RunContext`` injection. Options left out come from
    the session controller's settings; a session without a controller gets a default one.

    Args:
        *phrases: what to say; none means the settings' phrases.
        delay: seconds the tool must run before the first filler.
        interval: seconds of silence between two fillers of one call.
        max_count: most fillers per call.

    Raises:
        ValueError: a bad option, named, at decoration time.

    Example:
        ```python
        class FrontDesk(Agent):
            @function_tool
            @fillers("Let me check the schedule.", delay=1.0)
            async def get_programs(self, context: RunContext) -> str:
                ...
        ```
    """
    return _Decorator(ToolFillerSpec(phrases, delay, interval, max_count))


def _context_param(fn: Callable[..., Any]) -> str | None:
    """Name of the parameter LiveKit injects the RunContext into, if the tool declares one."""
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = dict(getattr(fn, "__annotations__", {}))
    for name in inspect.signature(fn).parameters:
        hint = hints.get(name)
        if isinstance(hint, str):
            if _CONTEXT_STRING.search(hint):
                return name
        elif hint is not None and is_context_type(hint, allow_subclasses=True):
            return name
    return None


def _wrap(fn: Callable[..., Any], spec: ToolFillerSpec, *, tool_name: str | None) -> Any:
    context_param = _context_param(fn)
    name = tool_name or fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.pop(CONTEXT_PARAM, None) if context_param is None else None
        if ctx is None:
            ctx = _find_context(args, kwargs)
        controller = _controller_for(ctx)
        call = (
            controller.begin_tool_call(
                call_id=ctx.function_call.call_id,
                tool_name=name,
                tool_handle=ctx.speech_handle,
                spec=spec,
            )
            if controller is not None and ctx is not None
            else None
        )
        try:
            # the body runs in this very task: AgentTask awaits and the circular-wait
            # guard keep working exactly as without the decorator (internals §3.2, §6.3)
            return await fn(*args, **kwargs)
        finally:
            if call is not None and controller is not None:
                controller.end_tool_call(call)

    if context_param is None:
        sig = inspect.signature(fn)
        extra = inspect.Parameter(
            CONTEXT_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=RunContext
        )
        params = list(sig.parameters.values())
        # a keyword-only parameter must come before **kwargs
        if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
            params.insert(len(params) - 1, extra)
        else:
            params.append(extra)
        try:
            resolved = get_type_hints(fn, include_extras=True)
        except Exception:
            resolved = dict(getattr(fn, "__annotations__", {}))
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**resolved, CONTEXT_PARAM: RunContext}
    setattr(wrapper, "__livekit_filler_spec__", spec)  # noqa: B010
    return cast(Callable[..., Any], wrapper)


def _find_context(args: tuple[Any, ...], kwargs: dict[str, Any]) -> RunContext[Any] | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, RunContext):
            return value
    return None


def _controller_for(ctx: RunContext[Any] | None) -> FillerController | None:
    if ctx is None:
        return None
    return FillerController.of(ctx.session) or FillerController.attach(ctx.session)

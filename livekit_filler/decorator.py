"""``@fillers``: give a slow ``@function_tool`` fillers with no code inside it."""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, get_type_hints, overload

from livekit.agents import RunContext
from livekit.agents.llm import FunctionTool, RawFunctionTool, StopResponse
from livekit.agents.llm.utils import is_context_type

from .controller import FillerController
from .errors import FillerConfigError
from .log import logger
from .options import ToolFillerSpec, template_fields

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
        return _wrap(fn, self._spec)


def fillers(
    *phrases: str,
    delay: float | None = None,
    interval: float | None = None,
    max_count: int | None = None,
    start_message: str | None = None,
    start_message_before_run: bool = False,
    failure_message: str | None = None,
) -> _Decorator:
    """Play fillers while the decorated function tool runs.

    Put it under ``@function_tool`` (it is accepted above it too). The tool keeps its name,
    docstring, argument schema and ``RunContext`` injection. Options left out come from
    the session controller's settings; a session without a controller gets a default one.

    Args:
        *phrases: what to say; none means the settings' phrases. A phrase may name the
            tool's arguments, ``"Let me check the {club} schedule"``; a name that is not a
            parameter of the tool fails at decoration time.
        delay: seconds the tool must run before the first filler.
        interval: seconds of silence between two fillers of one call.
        max_count: most fillers per call.
        start_message: spoken as the tool starts (no dwell), under the same safety rules.
        start_message_before_run: hold the tool body until the start message has played.
        failure_message: spoken when the tool raises (not for ``StopResponse``).

    Raises:
        ValueError: a bad option, or a template naming an unknown argument, at decoration.

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
        ToolFillerSpec(
            phrases,
            delay,
            interval,
            max_count,
            start_message=start_message,
            start_message_before_run=start_message_before_run,
            failure_message=failure_message,
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


def _check_templates(signature: inspect.Signature, spec: ToolFillerSpec, name: str) -> None:
    params = set(signature.parameters)
    for text in spec.texts():
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


def _wrap(fn: Callable[..., Any], spec: ToolFillerSpec) -> Any:
    signature = inspect.signature(fn)
    context_param = _context_param(fn, signature)
    _check_templates(signature, spec, fn.__name__)

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.pop(CONTEXT_PARAM, None) if context_param is None else None
        if ctx is None:
            ctx = _find_context(args, kwargs)
        controller = _controller_for(ctx)
        call = (
            controller.begin_tool_call(
                call_id=ctx.function_call.call_id,
                # the name the LLM called, which @function_tool(name=...) may have changed
                tool_name=ctx.function_call.name,
                tool_handle=ctx.speech_handle,
                spec=spec,
                arguments=_arguments(signature, args, kwargs),
            )
            if controller is not None and ctx is not None
            else None
        )
        reason = "answer"
        try:
            if call is not None and spec.start_message_before_run:
                await call.stream.start_message_done.wait()
            # the body runs in this very task: AgentTask awaits and the circular-wait
            # guard keep working exactly as without the decorator (internals §3.2, §6.3)
            return await fn(*args, **kwargs)
        except StopResponse:
            raise
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except Exception:
            reason = "error"
            raise
        finally:
            if call is not None and controller is not None:
                controller.end_tool_call(call, reason=reason)

    if context_param is None:
        extra = inspect.Parameter(
            CONTEXT_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=RunContext
        )
        params = list(signature.parameters.values())
        # a keyword-only parameter must come before **kwargs
        if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
            params.insert(len(params) - 1, extra)
        else:
            params.append(extra)
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**_type_hints(fn), CONTEXT_PARAM: RunContext}
    return cast(Callable[..., Any], wrapper)


def _find_context(args: tuple[Any, ...], kwargs: dict[str, Any]) -> RunContext[Any] | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, RunContext):
            return value
    return None


def _controller_for(ctx: RunContext[Any] | None) -> FillerController | None:
    if ctx is None:
        return None
    controller = FillerController.of(ctx.session)
    if controller is not None or FillerController.detached(ctx.session):
        return controller
    try:
        return FillerController.attach(ctx.session)
    except FillerConfigError as e:
        # Attach explicitly at start-up to fail early; here, mid-call, the tool must still run.
        if str(e) not in _config_errors_logged:
            _config_errors_logged.add(str(e))
            logger.error("fillers disabled: invalid configuration", extra={"error": str(e)})
        return None


_config_errors_logged: set[str] = set()

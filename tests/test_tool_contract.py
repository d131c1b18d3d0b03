"""A decorated tool is the same tool on every LiveKit path that runs tools.

Each path runs the plain and the decorated tool side by side: same signature, same schema,
same result; the body always runs; fillers are simply absent where there is no session.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from livekit.agents import AgentSession, RunContext, function_tool, llm
from livekit.agents.llm import FunctionTool, Toolset
from livekit.agents.llm.utils import execute_function_call, prepare_function_arguments
from livekit.agents.voice import SpeechHandle

from livekit_filler import FillerController, fillers

BODIES_RUN: list[str] = []


async def _forecast(city: str, days: int = 2) -> str:
    """Forecast for a city.

    Args:
        city: The city.
        days: Days ahead.
    """
    BODIES_RUN.append(city)
    return f"sunny in {city} for {days} days"


async def _forecast_ctx(context: RunContext[Any], city: str, days: int = 2) -> str:
    """Forecast for a city, with a run context.

    Args:
        city: The city.
        days: Days ahead.
    """
    BODIES_RUN.append(city)
    return f"sunny in {city} for {days} days"


def _pair(fn: Any, name: str) -> tuple[FunctionTool[Any, Any], FunctionTool[Any, Any]]:
    plain = function_tool(name=name)(fn)
    decorated = function_tool(name=name)(fillers("One moment.", delay=0.0)(fn))
    return plain, decorated


def _call(name: str, arguments: dict[str, Any]) -> llm.FunctionToolCall:
    return llm.FunctionToolCall(call_id=f"call_{name}", name=name, arguments=json.dumps(arguments))


@pytest.fixture(autouse=True)
def _clear() -> None:
    BODIES_RUN.clear()


@pytest.mark.parametrize("fn", [_forecast, _forecast_ctx], ids=["no_context", "run_context"])
def test_signature_and_schema_are_unchanged(fn: Any) -> None:
    plain, decorated = _pair(fn, "forecast")
    assert inspect.signature(decorated) == inspect.signature(plain)
    assert decorated.info == plain.info
    assert llm.utils.build_legacy_openai_schema(decorated) == llm.utils.build_legacy_openai_schema(
        plain
    )


async def test_execute_function_call_without_a_run_context_returns_the_same_value() -> None:
    for tool in _pair(_forecast, "forecast"):
        result = await execute_function_call(
            _call("forecast", {"city": "Oslo"}), llm.ToolContext([tool])
        )
        assert result.raw_exception is None, result.raw_exception
        assert result.raw_output == "sunny in Oslo for 2 days"
    assert BODIES_RUN == ["Oslo", "Oslo"]


async def test_prepare_function_arguments_without_a_run_context_is_unchanged() -> None:
    plain, decorated = _pair(_forecast, "forecast")
    expected = prepare_function_arguments(fnc=plain, json_arguments='{"city": "Rome"}')
    assert prepare_function_arguments(fnc=decorated, json_arguments='{"city": "Rome"}') == expected
    args, kwargs = expected
    assert await decorated(*args, **kwargs) == "sunny in Rome for 2 days"


class _NotASession:
    """What a user's unit test may pass as a RunContext's session (a mock's attributes)."""

    def __init__(self) -> None:
        self.current_agent = None
        self._global_run_state = None


async def test_a_run_context_whose_session_is_not_an_agent_session_still_runs_the_body() -> None:
    for tool in _pair(_forecast_ctx, "forecast"):
        ctx: RunContext[None] = RunContext(
            session=_NotASession(),  # type: ignore[arg-type]
            speech_handle=SpeechHandle.create(),
            function_call=llm.FunctionCall(call_id="c1", name="forecast", arguments="{}"),
        )
        result = await execute_function_call(
            _call("forecast", {"city": "Lima"}), llm.ToolContext([tool]), call_ctx=ctx
        )
        assert result.raw_exception is None, result.raw_exception
        assert result.raw_output == "sunny in Lima for 2 days"
    assert BODIES_RUN == ["Lima", "Lima"]


async def test_a_toolset_of_decorated_tools_is_found_and_runs_like_a_plain_one() -> None:
    class Weather(Toolset):
        def __init__(self, *, decorate: bool) -> None:
            fn = fillers("One moment.", delay=0.0)(_forecast) if decorate else _forecast
            self.forecast = function_tool(name="forecast")(fn)
            super().__init__(id=f"weather_{decorate}")

    for decorate in (False, True):
        toolset = Weather(decorate=decorate)
        ctx = llm.ToolContext([toolset])
        assert list(ctx.function_tools) == ["forecast"]
        result = await execute_function_call(_call("forecast", {"city": "Kyiv"}), ctx)
        assert result.raw_output == "sunny in Kyiv for 2 days"
    assert BODIES_RUN == ["Kyiv", "Kyiv"]


async def test_no_controller_is_attached_to_anything_but_an_agent_session() -> None:
    assert FillerController._for_tool(_NotASession()) is None
    assert FillerController._for_tool(None) is None
    async with AgentSession() as session:
        assert FillerController.of(session) is None

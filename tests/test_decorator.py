"""``@fillers``: the tool LiveKit sees is unchanged, and the options reach the fillers.

This module uses ``from __future__ import annotations`` (every annotation is a string);
``test_decorated_tools_in_a_generated_module_work`` covers modules with and without it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filler_harness import ANSWER, RESULT, SPC, TTFB, fillers_of, settle
from livekit.agents import Agent, RunContext, function_tool, llm
from livekit.agents.llm import FunctionTool
from livekit.agents.llm.utils import (
    build_legacy_openai_schema,
    build_strict_openai_schema,
    function_arguments_to_pydantic_model,
)

from livekit_filler import FillerController, FillerSettings, ToolRule, fillers
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    Utterance,
    format_timeline,
    make_session,
    overlaps,
)

GLOBAL = "Global words."
RULE = "Rule words."
DECORATOR = "Decorator words."

# -- the schema LiveKit builds is unchanged ------------------------------------------------


async def _lookup(self: Any, context: RunContext[Any], city: str, unit: str = "c") -> str:
    """Look up the weather in a city.

    Args:
        city: The city to look up.
        unit: "c" or "f".
    """
    return f"{RESULT} for {city} in {unit}"


async def _lookup_no_context(self: Any, city: str, days: int = 2) -> str:
    """Look up the forecast for a city.

    Args:
        city: The city to look up.
        days: How many days ahead.
    """
    return f"{RESULT} for {city} over {days} days"


def _copy(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A fresh function object with ``fn``'s code (so each variant decorates its own)."""

    async def clone(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    clone.__name__ = clone.__qualname__ = name
    clone.__doc__ = fn.__doc__
    clone.__annotations__ = dict(fn.__annotations__)
    clone.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    clone.__module__ = fn.__module__
    return clone


PLACEMENTS = ["under_function_tool", "above_function_tool"]


def _decorate(fn: Callable[..., Any], placement: str, **tool_kwargs: Any) -> FunctionTool[Any, Any]:
    if placement == "under_function_tool":
        tool: FunctionTool[Any, Any] = function_tool(**tool_kwargs)(fillers(delay=0.2)(fn))
    else:
        tool = fillers(delay=0.2)(function_tool(**tool_kwargs)(fn))
    return tool


def _schemas(tool: FunctionTool[Any, Any]) -> tuple[Any, ...]:
    return (
        tool.info.name,
        tool.info.description,
        function_arguments_to_pydantic_model(tool).model_json_schema(),
        build_legacy_openai_schema(tool),
        build_strict_openai_schema(tool),
    )


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("fn", [_lookup, _lookup_no_context], ids=["run_context", "no_context"])
@pytest.mark.parametrize(
    "tool_kwargs",
    [{}, {"name": "weather", "description": "Custom description."}, {"on_duplicate": "confirm"}],
    ids=["plain", "renamed", "confirm_duplicate"],
)
def test_name_description_and_argument_schema_are_unchanged(
    placement: str, fn: Callable[..., Any], tool_kwargs: dict[str, Any]
) -> None:
    reference = function_tool(**tool_kwargs)(_copy(fn, "lookup_weather"))
    decorated = _decorate(_copy(fn, "lookup_weather"), placement, **tool_kwargs)
    assert isinstance(decorated, FunctionTool)
    assert _schemas(decorated) == _schemas(reference)
    schema = json.dumps(_schemas(decorated)[2])
    assert "context" not in schema
    assert "_filler" not in schema


# -- a real session: arguments and the RunContext reach the tool, fillers play ----------------

CALLS: list[tuple[str, str, dict[str, Any]]] = []


class VariantAgent(Agent):
    """One tool per way of writing a decorated tool; each records what it was given."""

    def __init__(self, duration: float = 0.7) -> None:
        super().__init__(instructions="You are a test assistant.", tools=[free_lookup])
        self.duration = duration

    @function_tool
    @fillers(delay=0.2)
    async def ctx_under(self, context: RunContext[Any], city: str, days: int = 2) -> str:
        """Look up a city.

        Args:
            city: The city.
            days: Days ahead.
        """
        CALLS.append(("ctx_under", type(context).__name__, {"city": city, "days": days}))
        assert context.function_call.name == "ctx_under"
        await asyncio.sleep(self.duration)
        return RESULT

    @fillers(delay=0.2)
    @function_tool
    async def ctx_above(self, city: str, context: RunContext[Any], days: int = 2) -> str:
        """Look up a city.

        Args:
            city: The city.
            days: Days ahead.
        """
        CALLS.append(("ctx_above", type(context).__name__, {"city": city, "days": days}))
        assert context.function_call.name == "ctx_above"
        await asyncio.sleep(self.duration)
        return RESULT

    @function_tool
    @fillers(delay=0.2)
    async def no_ctx_under(self, city: str, days: int = 2) -> str:
        """Look up a city.

        Args:
            city: The city.
            days: Days ahead.
        """
        CALLS.append(("no_ctx_under", "", {"city": city, "days": days}))
        await asyncio.sleep(self.duration)
        return RESULT

    @fillers(delay=0.2)
    @function_tool
    async def no_ctx_above(self, city: str, days: int = 2) -> str:
        """Look up a city.

        Args:
            city: The city.
            days: Days ahead.
        """
        CALLS.append(("no_ctx_above", "", {"city": city, "days": days}))
        await asyncio.sleep(0.7)
        return RESULT


@function_tool
@fillers(delay=0.2)
async def free_lookup(city: str, days: int = 2) -> str:
    """Look up a city (a module-level tool passed with ``Agent(tools=...)``).

    Args:
        city: The city.
        days: Days ahead.
    """
    CALLS.append(("free_lookup", "", {"city": city, "days": days}))
    await asyncio.sleep(0.7)
    return RESULT


def tool_script(arguments: dict[str, Any]) -> Callable[[llm.ChatContext], FakeResponse | None]:
    """The user's message names the tool to call; the tool's result gets ANSWER."""

    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        last = chat_ctx.items[-1]
        if isinstance(last, llm.FunctionCallOutput):
            return FakeResponse(text=ANSWER) if RESULT in last.output else None
        if isinstance(last, llm.ChatMessage) and last.role == "user":
            name = last.text_content or ""
            return FakeResponse(tool_calls=[FakeToolCall(name, arguments)])
        return None

    return respond


async def run_agent(
    agent: Agent,
    tool_name: str,
    *,
    settings: FillerSettings | None,
    arguments: dict[str, Any] | None = None,
) -> tuple[list[Utterance], FillerController | None]:
    fake_llm = FakeLLM(tool_script(arguments or {}), default=None, ttft=0.05)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as s:
        if settings is not None:
            FillerController.attach(s, settings=settings)
        rec = TimelineRecorder.install(s)
        await s.start(agent)
        await s.run(user_input=tool_name)
        await settle(s, 0.05)
        controller = FillerController.of(s)
        utterances = rec.utterances
    return utterances, controller


VARIANTS = ["ctx_under", "ctx_above", "no_ctx_under", "no_ctx_above", "free_lookup"]


async def test_arguments_and_run_context_reach_every_decorated_variant_and_fillers_play(
    caplog: pytest.LogCaptureFixture,
) -> None:
    CALLS.clear()
    caplog.set_level(logging.WARNING, logger="livekit.agents")
    settings = FillerSettings.from_values(phrases=[GLOBAL], followup_phrases=[], max_count=1)
    results = await asyncio.gather(
        *(
            run_agent(VariantAgent(), name, settings=settings, arguments={"city": "Paris"})
            for name in VARIANTS
        )
    )
    by_tool = {name: (kind, args) for name, kind, args in CALLS}
    for name, (utterances, _) in zip(VARIANTS, results, strict=True):
        timeline = format_timeline(utterances)
        assert name in by_tool, f"{name} never ran"
        kind, args = by_tool[name]
        assert args == {"city": "Paris", "days": 2}
        assert kind == ("RunContext" if name.startswith("ctx") else "")
        assert [f.text for f in fillers_of(utterances)] == [GLOBAL], f"{name}\n{timeline}"
        assert ANSWER in [u.text for u in utterances], f"{name}\n{timeline}"
        assert overlaps(utterances) == []
    # LiveKit found every tool as a plain FunctionTool: no "function tool X is wrapped" warning
    assert not [r for r in caplog.records if "is wrapped" in r.getMessage()]


MODULE = '''{future}
import asyncio

from livekit.agents import Agent, RunContext, function_tool
from livekit_filler import fillers

CALLS = []


class Reference(Agent):
    def __init__(self):
        super().__init__(instructions="test")

    @function_tool
    async def lookup(self, context: RunContext, city: str, days: int = 2) -> str:
        """Look up a city.

        Args:
            city: The city.
            days: Days ahead.
        """
        return "unused"

    @function_tool
    async def lookup_plain(self, city: str) -> str:
        """Look up a city without a context.

        Args:
            city: The city.
        """
        return "unused"


class Decorated(Agent):
    def __init__(self):
        super().__init__(instructions="test")

    @function_tool
    @fillers(delay=0.2)
    async def lookup(self, context: RunContext, city: str, days: int = 2) -> str:
        """Look up a city.

        Args:
            city: The city.
            days: Days ahead.
        """
        CALLS.append((type(context).__name__, city, days))
        await asyncio.sleep(0.6)
        return "the looked-up result"

    @fillers(delay=0.2)
    @function_tool
    async def lookup_plain(self, city: str) -> str:
        """Look up a city without a context.

        Args:
            city: The city.
        """
        CALLS.append(("", city, 0))
        await asyncio.sleep(0.6)
        return "the looked-up result"
'''


@pytest.mark.parametrize("future", [True, False], ids=["future_annotations", "plain_annotations"])
async def test_decorated_tools_in_a_generated_module_work(
    future: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"filler_tools_{'future' if future else 'plain'}"
    path = tmp_path / f"{name}.py"
    path.write_text(MODULE.format(future="from __future__ import annotations" if future else ""))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)

    reference = {t.info.name: _schemas(t) for t in module.Reference().tools}
    decorated = {t.info.name: _schemas(t) for t in module.Decorated().tools}
    assert decorated == reference

    settings = FillerSettings.from_values(phrases=[GLOBAL], followup_phrases=[], max_count=1)
    results = await asyncio.gather(
        run_agent(module.Decorated(), "lookup", settings=settings, arguments={"city": "Oslo"}),
        run_agent(
            module.Decorated(), "lookup_plain", settings=settings, arguments={"city": "Rome"}
        ),
    )
    assert sorted(module.CALLS) == [("", "Rome", 0), ("RunContext", "Oslo", 2)]
    for utterances, _ in results:
        assert [f.text for f in fillers_of(utterances)] == [GLOBAL], format_timeline(utterances)


# -- bad options fail at decoration time -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "phrases", "option"),
    [
        ({"delay": -1}, (), "delay"),
        ({"delay": float("nan")}, (), "delay"),
        ({"delay": "1"}, (), "delay"),
        ({"delay": True}, (), "delay"),
        ({"interval": 0}, (), "interval"),
        ({"interval": -0.5}, (), "interval"),
        ({"interval": float("inf")}, (), "interval"),
        ({"max_count": -1}, (), "max_count"),
        ({"max_count": 1.5}, (), "max_count"),
        ({"max_count": "2"}, (), "max_count"),
        ({}, ("   ",), "phrases"),
        ({}, ("",), "phrases"),
        ({}, (3,), "phrases"),
    ],
)
def test_bad_option_fails_at_decoration_with_a_value_error_naming_it(
    kwargs: dict[str, Any], phrases: tuple[Any, ...], option: str
) -> None:
    with pytest.raises(ValueError, match=option):
        fillers(*phrases, **kwargs)


def test_zero_delay_and_zero_max_count_are_valid_options() -> None:
    async def tool(city: str) -> str:
        return city

    for decorate in (fillers(delay=0), fillers(max_count=0)):
        decorated = decorate(tool)
        assert inspect.signature(decorated) == inspect.signature(tool)


def test_a_sync_function_is_rejected_with_a_type_error() -> None:
    def sync_tool(city: str) -> str:
        return city

    with pytest.raises(TypeError, match="async"):
        fillers()(sync_tool)  # type: ignore[type-var]


def test_a_sync_function_tool_is_rejected_with_a_type_error_above_function_tool() -> None:
    def sync_tool(city: str) -> str:
        """Look up a city."""
        return city

    with pytest.raises(TypeError, match="async"):
        fillers()(function_tool(sync_tool))  # type: ignore[type-var]


# -- controller and settings ------------------------------------------------------------------


class Desk(Agent):
    """Tools decorated in different ways, all running ``duration`` seconds."""

    def __init__(self, duration: float = 1.0) -> None:
        super().__init__(instructions="You are a test assistant.")
        self.duration = duration

    @function_tool
    @fillers()
    async def plain_tool(self, context: RunContext[Any]) -> str:
        """A tool with no decorator options."""
        await asyncio.sleep(self.duration)
        return RESULT

    @function_tool
    @fillers(DECORATOR, delay=0.2, interval=0.2, max_count=2)
    async def deco_tool(self, context: RunContext[Any]) -> str:
        """A tool whose decorator sets every option."""
        await asyncio.sleep(self.duration)
        return RESULT

    @function_tool(name="find_programs")
    @fillers()
    async def renamed_tool(self, context: RunContext[Any]) -> str:
        """A tool the LLM knows under another name."""
        await asyncio.sleep(self.duration)
        return RESULT


@pytest.fixture
def config_file() -> None:
    """config/filler.toml in the working directory (tmp_path, see conftest)."""
    Path("config").mkdir()
    Path("config/filler.toml").write_text(
        'delay = 0.2\nphrases = ["From the config file."]\nfollowup_phrases = []\nmax_count = 1\n'
    )


@pytest.mark.usefixtures("config_file")
async def test_a_decorated_tool_in_a_session_without_controller_attaches_a_default_one() -> None:
    # no controller is attached: the decorator attaches one with FillerSettings.load()
    utterances, controller = await run_agent(Desk(duration=0.7), "plain_tool", settings=None)
    assert controller is not None
    assert controller.settings.phrases == ["From the config file."]
    assert [f.text for f in fillers_of(utterances)] == ["From the config file."]


async def test_option_precedence_is_decorator_over_tool_rule_over_global_settings() -> None:
    rules = {
        # deco_tool's decorator says delay 0.2, interval 0.2, max_count 2 and DECORATOR
        "deco_tool": ToolRule(delay=5.0, interval=5.0, max_count=1, phrases=[RULE]),
    }
    slow_global = FillerSettings.from_values(
        delay=5.0, interval=5.0, max_count=3, phrases=[GLOBAL], followup_phrases=[], tools=rules
    )
    global_only = FillerSettings.from_values(
        delay=0.2, interval=0.2, max_count=2, phrases=[GLOBAL], followup_phrases=[]
    )
    rule_over_global = FillerSettings.from_values(
        delay=5.0,
        interval=5.0,
        max_count=1,
        phrases=[GLOBAL],
        followup_phrases=[],
        tools={"plain_tool": ToolRule(delay=0.2, interval=0.2, max_count=2, phrases=[RULE])},
    )
    (global_run, _), (rule_run, _), (deco_run, _) = await asyncio.gather(
        run_agent(Desk(), "plain_tool", settings=global_only),
        run_agent(Desk(), "plain_tool", settings=rule_over_global),
        run_agent(Desk(), "deco_tool", settings=slow_global),
    )
    assert [f.text for f in fillers_of(global_run)] == [GLOBAL, GLOBAL], format_timeline(global_run)
    assert [f.text for f in fillers_of(rule_run)] == [RULE, RULE], format_timeline(rule_run)
    assert [f.text for f in fillers_of(deco_run)] == [DECORATOR, DECORATOR], format_timeline(
        deco_run
    )


async def test_tool_rule_applies_under_function_tool_with_a_custom_name() -> None:
    settings = FillerSettings.from_values(
        delay=5.0,
        phrases=[GLOBAL],
        followup_phrases=[],
        tools={"find_programs": ToolRule(delay=0.2, max_count=1, phrases=[RULE])},
    )
    utterances, _ = await run_agent(Desk(duration=0.7), "find_programs", settings=settings)
    assert [f.text for f in fillers_of(utterances)] == [RULE], format_timeline(utterances)


async def test_disabled_tool_rule_or_disabled_settings_silence_a_decorated_tool() -> None:
    rule_off = FillerSettings.from_values(
        delay=0.2, phrases=[GLOBAL], tools={"deco_tool": ToolRule(enabled=False)}
    )
    all_off = FillerSettings.from_values(delay=0.2, phrases=[GLOBAL], enabled=False)
    (rule_run, _), (off_run, _) = await asyncio.gather(
        run_agent(Desk(duration=0.7), "deco_tool", settings=rule_off),
        run_agent(Desk(duration=0.7), "plain_tool", settings=all_off),
    )
    for utterances in (rule_run, off_run):
        assert fillers_of(utterances) == [], format_timeline(utterances)
        assert ANSWER in [u.text for u in utterances]


async def test_decorator_phrases_replace_the_settings_phrases_and_followups() -> None:
    settings = FillerSettings.from_values(
        delay=5.0, phrases=[GLOBAL], followup_phrases=["Global follow-up."]
    )
    utterances, _ = await run_agent(Desk(duration=1.1), "deco_tool", settings=settings)
    assert [f.text for f in fillers_of(utterances)] == [DECORATOR, DECORATOR]

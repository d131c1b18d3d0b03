"""The slow-answer filler's pure parts: the session's reply leads, the adaptive delay, the
first-half check, and the llm_node watch passing every chunk through unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit.agents import llm

from livekit_filler.reply_watch import _is_output, watched_node
from livekit_filler.turn_leads import (
    ADAPTIVE_DEFAULT,
    ADAPTIVE_MAX,
    ADAPTIVE_MIN,
    MAX_LEAD,
    TurnLeads,
)


def leads(*values: float) -> TurnLeads:
    model = TurnLeads()
    for value in values:
        model.record(value)
    return model


def test_a_fixed_after_is_the_setting() -> None:
    assert leads(0.2, 0.3, 0.4).after(1.5) == 1.5


def test_adaptive_waits_the_default_until_three_turns_were_timed() -> None:
    assert leads().after("adaptive") == ADAPTIVE_DEFAULT
    assert leads(0.9, 1.0).after("adaptive") == ADAPTIVE_DEFAULT


def test_adaptive_waits_the_p80_of_the_leads_within_bounds() -> None:
    assert leads(1.0, 1.0, 1.0, 1.0, 2.0).after("adaptive") == pytest.approx(1.2)
    assert leads(0.1, 0.1, 0.1).after("adaptive") == ADAPTIVE_MIN
    assert leads(5.0, 6.0, 7.0).after("adaptive") == ADAPTIVE_MAX


def test_leads_out_of_range_are_not_kept() -> None:
    model = leads(-0.1, MAX_LEAD + 1, 0.5)
    assert model.leads() == [0.5]


def test_the_window_keeps_the_most_recent_leads() -> None:
    model = TurnLeads(window=3)
    for value in (1.0, 2.0, 3.0, 4.0):
        model.record(value)
    assert model.leads() == [2.0, 3.0, 4.0]


def test_remaining_is_the_median_over_the_longer_leads() -> None:
    model = leads(1.0, 2.0, 3.0, 4.0)
    assert model.remaining(1.5) == pytest.approx(1.5)  # of 0.5, 1.5, 2.5
    assert model.remaining(5.0) is None  # overrunning: nothing known
    assert leads(1.0).remaining(0.5) is None  # too few turns timed


def test_no_filler_when_the_reply_is_due_within_its_first_half() -> None:
    model = leads(1.5, 1.5, 1.6, 1.6)
    assert not model.worth_it(1.2, 1.0)  # due in ~0.35 s: nothing starts
    late = leads(3.0, 3.0, 3.2, 3.4)
    assert late.worth_it(1.2, 1.0)
    assert leads().worth_it(1.2, 1.0)  # unknown: it may speak


def chunk(content: str | None = None, *, tool: bool = False, role_only: bool = False) -> Any:
    calls = [llm.FunctionToolCall(name="t", arguments="{}", call_id="c")] if tool else []
    delta = llm.ChoiceDelta(role="assistant", content=content, tool_calls=calls)
    return llm.ChatChunk(id="x", delta=None if role_only else delta)


def test_only_words_or_a_tool_call_are_an_answer() -> None:
    assert _is_output("Hi")
    assert not _is_output("")
    assert _is_output(chunk("Hi"))
    assert _is_output(chunk(tool=True))
    assert not _is_output(chunk())
    assert not _is_output(chunk(role_only=True))
    assert not _is_output(object())


async def test_the_watched_node_passes_every_chunk_through_and_tells_once() -> None:
    told: list[str] = []
    items = [chunk(), chunk("Hello"), chunk(" there"), "tail"]

    async def node(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for item in items:
            yield item

    result = await watched_node(node, lambda: told.append("out"))(None, [], None)
    seen = []
    async for item in result:
        seen.append(item)
        if len(seen) == 1:
            assert told == []  # a role-only chunk is not the answer yet
    assert seen == items
    assert told == ["out"]


async def test_the_watched_node_tells_of_a_string_reply_and_of_an_empty_stream() -> None:
    told: list[str] = []

    async def text_node(*args: Any) -> str:
        return "The whole reply."

    assert await watched_node(text_node, lambda: told.append("text"))() == "The whole reply."

    async def empty(*args: Any) -> AsyncIterator[Any]:
        return
        yield

    result = await watched_node(empty, lambda: told.append("empty"))()
    assert [item async for item in result] == []
    assert told == ["text", "empty"]


async def test_the_watched_node_tells_when_the_node_raises() -> None:
    told: list[str] = []

    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await watched_node(broken, lambda: told.append("raised"))()
    assert told == ["raised"]

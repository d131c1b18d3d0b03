"""Overhead of ``@fillers`` on a fast tool that gets no filler: decorated vs undecorated.

A real AgentSession (testing kit) runs; the LLM calls a ``harness`` tool, and inside it, with
the genuine ``RunContext`` LiveKit built for that call, the benchmark calls two function tools
that share one body (it returns at once): ``function_tool(body)`` and
``function_tool(fillers()(body))``. Calls alternate, each timed alone with ``perf_counter_ns``;
the difference of the medians is the added time per call. The decorated call begins and ends
a filler stream (whose task is spawned and cancelled), so a second figure times blocks of calls
with an event-loop turn after each, which also counts the cancelled stream task's last step.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

from _harness import header, median, percentile, quiet_logs, table, verdict
from livekit.agents import Agent, RunContext, function_tool, llm

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.testing import FakeLLM, FakeResponse, FakeToolCall, FakeTTS, make_session

TARGET_US = 1000.0


async def lookup(context: RunContext[Any], query: str) -> str:
    """Look something up (instantly)."""
    return query


plain_tool = function_tool(lookup)
decorated_tool = function_tool(fillers()(lookup))


def _script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.ChatMessage) and last.role == "user":
        return FakeResponse(tool_calls=[FakeToolCall("harness")])
    return None


class Measurements:
    def __init__(self) -> None:
        self.plain_ns: list[int] = []
        self.decorated_ns: list[int] = []
        self.block_plain_ns: list[int] = []
        self.block_decorated_ns: list[int] = []
        self.block_size = 0


async def _measure(context: RunContext[Any], calls: int, blocks: int, out: Measurements) -> None:
    clock = time.perf_counter_ns
    for _ in range(200):  # warm-up: first-call caches, the settings, the controller lookup
        await plain_tool(context, query="x")
        await decorated_tool(context, query="x")
        await asyncio.sleep(0)
    gc.collect()
    for i in range(calls):
        # alternate which goes first so neither always follows the other's cleanup
        order = (plain_tool, decorated_tool) if i % 2 == 0 else (decorated_tool, plain_tool)
        for tool in order:
            start = clock()
            await tool(context, query="x")
            elapsed = clock() - start
            (out.plain_ns if tool is plain_tool else out.decorated_ns).append(elapsed)
        await asyncio.sleep(0)  # let the cancelled stream task finish between pairs
    out.block_size = max(1, calls // blocks)
    for _ in range(blocks):
        for tool, sink in (
            (plain_tool, out.block_plain_ns),
            (decorated_tool, out.block_decorated_ns),
        ):
            start = clock()
            for _ in range(out.block_size):
                await tool(context, query="x")
                await asyncio.sleep(0)
            await asyncio.sleep(0)
            sink.append(clock() - start)


class HarnessAgent(Agent):
    def __init__(self, calls: int, blocks: int, out: Measurements) -> None:
        super().__init__(instructions="You are a benchmark assistant.")
        self._calls = calls
        self._blocks = blocks
        self._out = out

    @function_tool
    async def harness(self, context: RunContext[Any]) -> str:
        """Run the measurements with this call's real RunContext."""
        await _measure(context, self._calls, self._blocks, self._out)
        return "done"


async def run(calls: int, blocks: int) -> tuple[Measurements, FillerController]:
    out = Measurements()
    fake_llm = FakeLLM(_script, default=None, ttft=0.01)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=0.3)) as session:
        # delay 1 s: no tool here lives long enough for a filler
        controller = FillerController.attach(
            session,
            settings=FillerSettings.from_values(delay=1.0, prerender=False, disk_cache=False),
        )
        await session.start(HarnessAgent(calls, blocks, out))
        await session.run(user_input="measure")
        return out, controller


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per tool (20000)")
    parser.add_argument("--blocks", type=int, default=20, help="blocks for the 2nd figure (20)")
    args = parser.parse_args()
    quiet_logs()
    header("overhead: @fillers on a fast tool that gets no filler")
    out, controller = asyncio.run(run(args.calls, args.blocks))
    us = 1000.0
    plain = [v / us for v in out.plain_ns]
    deco = [v / us for v in out.decorated_ns]
    added = median(deco) - median(plain)
    block_plain = median(out.block_plain_ns) / out.block_size / us
    block_deco = median(out.block_decorated_ns) / out.block_size / us
    rows: list[list[object]] = [
        [
            "undecorated",
            len(plain),
            f"{median(plain):.2f}",
            f"{percentile(plain, 95):.2f}",
            f"{percentile(plain, 99):.2f}",
            f"{block_plain:.2f}",
        ],
        [
            "@fillers",
            len(deco),
            f"{median(deco):.2f}",
            f"{percentile(deco, 95):.2f}",
            f"{percentile(deco, 99):.2f}",
            f"{block_deco:.2f}",
        ],
    ]
    print(
        table(["tool", "calls", "median us", "p95 us", "p99 us", "us/call incl. loop turn"], rows)
    )
    print()
    print(
        f"added per call (median): {added:.2f} us; with the loop turn: {block_deco - block_plain:.2f} us"
    )
    print(
        f"controller saw {controller.metrics.tool_calls} decorated calls, "
        f"{controller.metrics.fillers_played} fillers played"
    )
    print(f"target: median added <= {TARGET_US:.0f} us: {verdict(added <= TARGET_US)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Watching a reply for its first words or tool call without changing it: an agent's
``llm_node`` and ``on_user_turn_completed`` wrapped as they are, and a realtime generation's
streams relayed unchanged through a task that reads them as they come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from livekit.agents import llm

__all__ = ["relayed", "watched_hook", "watched_node"]

_T = TypeVar("_T")


def relayed(
    source: AsyncIterable[_T], on_item: Callable[[], None], tasks: set[asyncio.Task[None]]
) -> AsyncIterator[_T]:
    """``source``, read at once by a task (whoever iterates the result may start later:
    livekit-agents 1.6.5 reads a generation's streams only once its speech holds the floor),
    calling ``on_item`` at each item and at its end; its error is raised to the reader."""
    queue: asyncio.Queue[tuple[_T] | BaseException | None] = asyncio.Queue()

    async def pump() -> None:
        end: BaseException | None = None  # None: the source ended (or the pump was cancelled)
        try:
            async for item in source:
                queue.put_nowait((item,))
                on_item()
        except Exception as e:
            end = e
        finally:
            queue.put_nowait(end)
            on_item()

    task = asyncio.get_running_loop().create_task(pump(), name="livekit_filler.slow_answer.relay")
    tasks.add(task)
    task.add_done_callback(tasks.discard)

    async def relay() -> AsyncIterator[_T]:
        while True:
            got = await queue.get()
            if got is None:
                return
            if isinstance(got, BaseException):
                raise got
            yield got[0]

    return relay()


def watched_hook(
    original: Callable[..., Any], on_return: Callable[[], None]
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``original`` (an ``on_user_turn_completed``) as is, calling ``on_return`` once it
    returned (LiveKit goes on to the turn's reply); not when it raised (no reply)."""

    async def on_user_turn_completed(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if asyncio.iscoroutine(result):
            result = await result
        on_return()
        return result

    return on_user_turn_completed


def watched_node(
    original: Callable[..., Any], on_output: Callable[[], None]
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``original`` (an ``llm_node``) as is, telling ``on_output`` of its first words or
    tool call, or its end. LiveKit awaits a coroutine an ``llm_node`` returns."""

    async def llm_node(*args: Any, **kwargs: Any) -> Any:
        try:
            result = original(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
        except BaseException:
            on_output()
            raise
        if isinstance(result, AsyncIterable):
            return _chunks(result, on_output)
        on_output()  # a string (the whole reply) or nothing
        return result

    return llm_node


async def _chunks(source: AsyncIterable[Any], on_output: Callable[[], None]) -> AsyncIterator[Any]:
    told = False
    try:
        async for chunk in source:
            if not told and _is_output(chunk):
                told = True
                on_output()
            yield chunk
    finally:
        if not told:
            on_output()
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


def _is_output(chunk: object) -> bool:
    """Words or a tool call (a role-only or usage-only chunk is not yet an answer)."""
    if isinstance(chunk, str):
        return bool(chunk)
    if isinstance(chunk, llm.ChatChunk):
        delta = chunk.delta
        return delta is not None and bool(delta.content or delta.tool_calls)
    return False

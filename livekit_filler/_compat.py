"""What differs between the livekit-agents releases livekit-filler supports.

The supported range is in pyproject.toml (from 1.6.5, the first release with the tool-call
events ``ToolCallStarted``/``ToolCallUpdated``/``ToolCallEnded``/``ToolExecutionUpdatedEvent``).
Each difference the library or its tests meet is one named fact or helper here, so no other
module compares LiveKit versions and a test whose expectation differs by release branches on
a fact from this module, never on a version string. Private attributes are read in
``_livekit_private.py`` instead.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Any

from livekit.agents import AgentSession, llm
from livekit.agents.voice import FunctionToolsExecutedEvent

LIVEKIT_AGENTS_VERSION: tuple[int, ...] = tuple(
    int(part) for part in version("livekit-agents").split(".")[:3] if part.isdigit()
)
"""The installed livekit-agents release, for log lines and reports only: branch on the facts."""

TOOL_OUTPUTS_MAY_BE_NONE: bool = LIVEKIT_AGENTS_VERSION < (1, 7)
"""Up to 1.6.x ``FunctionToolsExecutedEvent.function_call_outputs`` holds ``None`` for a tool
that raised ``StopResponse`` (typed ``list[FunctionCallOutput | None]``); from 1.7.0 it holds
only ``FunctionCallOutput``s."""


def tool_call_outputs(ev: FunctionToolsExecutedEvent) -> list[llm.FunctionCallOutput]:
    """The tools' outputs in ``ev``, without 1.6's ``None`` for a ``StopResponse``."""
    outputs: list[Any] = list(ev.function_call_outputs)
    return [out for out in outputs if out is not None]


WAIT_FOR_IDLE_CANCELS_USER_TURN: bool = LIVEKIT_AGENTS_VERSION < (1, 7)
"""Up to 1.6.x ``AgentActivity.wait_for_idle()`` awaits LiveKit's own end-of-turn and
user-turn tasks unshielded, so cancelling a task that waits in ``session.wait_for_idle()``
cancels the user's turn: LiveKit never answers it and it never reaches the chat context.
1.7.0 shields them."""


async def wait_for_idle(session: AgentSession[Any]) -> None:
    """Await ``session.wait_for_idle()``; cancelling this never reaches LiveKit's own tasks.

    On releases with ``WAIT_FOR_IDLE_CANCELS_USER_TURN`` the wait runs in a task of its own
    behind ``asyncio.shield``; cancelling the caller leaves that task to end by itself (the
    activity goes idle or closes), and its outcome is retrieved so nothing is logged.
    """
    if not WAIT_FOR_IDLE_CANCELS_USER_TURN:
        await session.wait_for_idle()
        return
    waiter = asyncio.ensure_future(session.wait_for_idle())
    waiter.add_done_callback(_retrieve)
    await asyncio.shield(waiter)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()

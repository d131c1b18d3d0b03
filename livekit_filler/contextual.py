"""Optional contextual fillers: a fast LLM phrases the filler from the tool and its arguments.

The LLM gets a hard latency budget. The text it writes is rendered to audio in the background
and used only if both the text and its audio are ready when the filler is due; otherwise the
canned phrase plays. So it never delays a filler, and never touches the tool.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from livekit.agents import llm as lk_llm

from .log import logger

PROMPT = (
    "You are a voice assistant. You just started running the tool `{tool}` with arguments "
    "{arguments}. Write ONE short, natural sentence (at most 12 words) telling the caller you "
    "are working on it. Do not answer the question or invent results. Reply with the sentence only."
)
MAX_CHARS = 120


@dataclass(frozen=True)
class ContextualFillers:
    """A fast LLM that writes the first filler of a tool call, within ``budget`` seconds.

    Use a separate LLM instance from the session's: LiveKit counts an LLM's errors against
    the session that uses it.

    Args:
        llm: the LLM that writes the phrase (a small, fast model).
        budget: seconds the LLM may take; past it the canned phrase plays.
    """

    llm: lk_llm.LLM[Any]
    budget: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.llm, lk_llm.LLM):
            raise TypeError(f"ContextualFillers needs a livekit LLM, got {type(self.llm).__name__}")
        if not 0 < self.budget <= 10:
            raise ValueError(f"budget must be in (0, 10] seconds, got {self.budget!r}")

    async def write(self, tool: str, arguments: dict[str, object]) -> str | None:
        """The LLM's phrase, or None when it is late, fails or says something unusable."""
        try:
            return await asyncio.wait_for(self._ask(tool, arguments), timeout=self.budget)
        except asyncio.TimeoutError:
            logger.debug("contextual filler over budget", extra={"tool": tool})
        except Exception as e:
            logger.debug("contextual filler failed", extra={"tool": tool, "error": repr(e)})
        return None

    async def _ask(self, tool: str, arguments: dict[str, object]) -> str | None:
        ctx = lk_llm.ChatContext.empty()
        ctx.add_message(
            role="user",
            content=PROMPT.format(tool=tool, arguments=json.dumps(arguments, default=str)),
        )
        parts: list[str] = []
        async with self.llm.chat(chat_ctx=ctx) as stream:
            async for chunk in stream:
                if chunk.delta is not None and chunk.delta.content:
                    parts.append(chunk.delta.content)
        text = " ".join("".join(parts).split()).strip().strip('"')
        if not text or len(text) > MAX_CHARS:  # an essay is not a filler
            return None
        return text

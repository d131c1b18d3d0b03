"""A scripted :class:`llm.LLM` that streams canned replies and tool calls, with no network."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
    llm,
    utils,
)

__all__ = ["FakeLLM", "FakeResponse", "FakeToolCall"]

_CHUNK_RE = re.compile(r"\S+\s*|\s+")
# Words per streamed chunk: enough chunks to exercise streaming, few enough to stay cheap.
_WORDS_PER_CHUNK = 3


@dataclass(frozen=True)
class FakeToolCall:
    """A tool call the fake LLM asks for.

    Attributes:
        name: Name of the function tool to call.
        arguments: Arguments, JSON-encoded before they reach the session.
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeResponse:
    """One scripted LLM reply.

    Attributes:
        text: Text streamed to the session (may be empty).
        tool_calls: Tool calls emitted after the text.
        ttft: Seconds before the first chunk; None uses the LLM's ``ttft``.
    """

    text: str = ""
    tool_calls: Sequence[FakeToolCall] = ()
    ttft: float | None = None


Script = Mapping[str, FakeResponse] | Callable[[llm.ChatContext], FakeResponse | None]


def _trigger(chat_ctx: llm.ChatContext) -> str:
    """Return the text that selects a scripted reply: the last user message or tool output."""
    if not chat_ctx.items:
        return ""
    last = chat_ctx.items[-1]
    if isinstance(last, llm.ChatMessage) and last.role == "user":
        return last.text_content or ""
    if isinstance(last, llm.FunctionCallOutput):
        return last.output
    return ""


class FakeLLM(llm.LLM[Any]):
    """An LLM that answers from a script, streaming at a configurable pace.

    Each ``chat()`` call looks at the last chat item (a user message, or a tool's
    output) and picks a :class:`FakeResponse` for it. Every chat context it was
    called with is copied into :attr:`calls`.

    Example:
        ```python
        fake = FakeLLM(
            {
                "What's the weather?": FakeResponse(
                    tool_calls=[FakeToolCall("get_weather", {"city": "Paris"})]
                ),
                "sunny": FakeResponse(text="It's sunny in Paris."),
            }
        )
        ```
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        default: FakeResponse | None = FakeResponse(text="Okay."),
        ttft: float = 0.05,
        chars_per_second: float = 400.0,
    ) -> None:
        """Create the fake.

        Args:
            script: A mapping from trigger text (exact match) to reply, or a callable
                that takes the chat context and returns a reply or None.
            default: Reply when the script has none; None replies with nothing.
            ttft: Default seconds before the first chunk.
            chars_per_second: Streaming pace of the text, in characters per second.

        Raises:
            ValueError: If ``ttft`` is negative or ``chars_per_second`` is not positive.
        """
        super().__init__()
        if ttft < 0:
            raise ValueError(f"ttft must be non-negative, got {ttft!r}")
        if chars_per_second <= 0:
            raise ValueError(f"chars_per_second must be positive, got {chars_per_second!r}")
        self._script = script
        self._default = default
        self._ttft = ttft
        self._chars_per_second = chars_per_second
        self.calls: list[llm.ChatContext] = []
        """A copy of the chat context of every ``chat()`` call, in order."""

    @property
    def model(self) -> str:
        """The model name reported in metrics."""
        return "fake-llm"

    @property
    def provider(self) -> str:
        """The provider name reported in metrics."""
        return "livekit_filler.testing"

    def response_for(self, chat_ctx: llm.ChatContext) -> FakeResponse | None:
        """Return the scripted reply for ``chat_ctx``, or the default."""
        response: FakeResponse | None = None
        if callable(self._script):
            response = self._script(chat_ctx)
        elif self._script is not None:
            response = self._script.get(_trigger(chat_ctx))
        return response if response is not None else self._default

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        """Start streaming the scripted reply for ``chat_ctx``."""
        self.calls.append(chat_ctx.copy())
        response = self.response_for(chat_ctx) or FakeResponse()
        return _FakeLLMStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            response=response,
            ttft=self._ttft if response.ttft is None else response.ttft,
            chars_per_second=self._chars_per_second,
        )


class _FakeLLMStream(llm.LLMStream):
    def __init__(
        self,
        fake: FakeLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
        response: FakeResponse,
        ttft: float,
        chars_per_second: float,
    ) -> None:
        super().__init__(fake, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._response = response
        self._ttft_s = ttft
        self._chars_per_second = chars_per_second

    async def _run(self) -> None:
        request_id = utils.shortuuid("fake_llm_")
        await asyncio.sleep(self._ttft_s)

        words = _CHUNK_RE.findall(self._response.text)
        for i in range(0, len(words), _WORDS_PER_CHUNK):
            chunk = "".join(words[i : i + _WORDS_PER_CHUNK])
            self._event_ch.send_nowait(
                llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=chunk))
            )
            await asyncio.sleep(len(chunk) / self._chars_per_second)

        if self._response.tool_calls:
            calls = [
                llm.FunctionToolCall(
                    name=call.name,
                    arguments=json.dumps(dict(call.arguments)),
                    call_id=utils.shortuuid("call_"),
                )
                for call in self._response.tool_calls
            ]
            self._event_ch.send_nowait(
                llm.ChatChunk(
                    id=request_id, delta=llm.ChoiceDelta(role="assistant", tool_calls=calls)
                )
            )

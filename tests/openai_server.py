"""A local OpenAI-compatible server for tests with the real ``livekit-plugins-openai`` plugins.

It answers on 127.0.0.1 (a free port) what the plugins ask of OpenAI, scripted by the test:

- ``POST /v1/chat/completions``: a streamed reply (server-sent events), text and/or tool calls,
  chosen by the test's :data:`Script` from the messages the model was sent;
- ``POST /v1/audio/speech``: real audio of the text (a tone, 24 kHz mono) in the
  ``response_format`` asked for (mp3, wav, flac or pcm, encoded in-process with PyAV, which
  livekit-agents brings), raw or as ``speech.audio.delta`` events as ``stream_format`` asks;
- ``POST /v1/audio/transcriptions``: the next scripted transcript;
- ``GET /v1/realtime`` (a websocket): enough of the Realtime protocol for LiveKit's
  ``openai.realtime.RealtimeModel``: session events, conversation items created and deleted
  on request, a response per ``response.create`` (a function call or a streamed audio answer
  with its transcript, from the same :data:`Script`), cancel and truncate, and server-side
  speech start/stop on demand (:meth:`OpenAIServer.user_speech`).

Failure switches (:meth:`OpenAIServer.fail`) make a route answer HTTP 500, close the
connection without an answer, or cut the body short. Every request is logged
(:attr:`OpenAIServer.requests`) for the tests to assert on what the model and the TTS were sent.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import math
import socket
import time
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import numpy as np
from aiohttp import WSMsgType, web

SAMPLE_RATE = 24000
"""The rate of every audio answer: what the OpenAI plugins expect of the API."""
SECONDS_PER_CHAR = 0.02
"""Seconds of speech per character of text, for TTS and realtime audio alike."""

Route = Literal["chat", "speech", "transcriptions", "realtime"]
Fault = Literal["500", "close", "truncate"]
"""``"500"``: an HTTP 500 error body. ``"close"``: the connection closes with no answer.
``"truncate"``: the headers promise a body the connection closes halfway through."""

_MIME = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}


@dataclass(frozen=True)
class ToolCall:
    """A function call the scripted model makes."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """What the scripted model answers: text, tool calls, or both (text first)."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Message:
    """One item of the conversation the model was sent, normalised across the two APIs.

    ``role`` is ``system``/``developer``/``user``/``assistant``, ``function_call`` or
    ``function_call_output``; ``name`` is the tool's name for the last two (for an output,
    resolved from its call).
    """

    role: str
    text: str
    name: str = ""


Script = Callable[[Sequence[Message]], Reply]
"""Chooses the model's reply from the conversation (instructions first)."""


@dataclass(frozen=True)
class Request:
    """One logged request: the route and the JSON body (or the form's text fields).

    For the realtime route, one client event per entry (``input_audio_buffer.append`` is
    counted in :attr:`OpenAIServer.audio_appends`, not logged).
    """

    route: Route
    body: dict[str, Any]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tone(text: str) -> bytes:
    """16-bit mono PCM at :data:`SAMPLE_RATE`: a 220 Hz tone, ``SECONDS_PER_CHAR`` a character."""
    n = max(1, round(len(text) * SECONDS_PER_CHAR * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    samples = 8000 * np.sin(2 * math.pi * 220 * t)
    return samples.astype("<i2").tobytes()


def encode(pcm: bytes, response_format: str) -> bytes:
    """Encode 16-bit mono PCM at :data:`SAMPLE_RATE` in an OpenAI ``response_format``."""
    if response_format == "pcm":
        return pcm
    if response_format == "wav":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(pcm)
        return buf.getvalue()
    codec = {"mp3": "libmp3lame", "flac": "flac"}[response_format]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=response_format) as container:
        stream: Any = container.add_stream(codec, rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def _text_of(content: Any) -> str:
    """The text of a chat message's or realtime item's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content or ():
        if isinstance(part, dict):
            text = part.get("text") or part.get("transcript")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


def chat_messages(body: dict[str, Any]) -> list[Message]:
    """A chat-completions request's messages, normalised."""
    names: dict[str, str] = {}
    out: list[Message] = []
    for m in body.get("messages", []):
        role = m.get("role", "")
        if role == "assistant":
            if text := _text_of(m.get("content")):
                out.append(Message("assistant", text))
            for call in m.get("tool_calls") or ():
                fn = call.get("function", {})
                names[call.get("id", "")] = fn.get("name", "")
                out.append(Message("function_call", fn.get("arguments", ""), fn.get("name", "")))
        elif role == "tool":
            call_id = m.get("tool_call_id", "")
            out.append(
                Message("function_call_output", _text_of(m.get("content")), names.get(call_id, ""))
            )
        else:
            out.append(Message(role, _text_of(m.get("content"))))
    return out


class _Realtime:
    """One realtime websocket: its conversation, its instructions and its current response."""

    def __init__(self, server: OpenAIServer, ws: web.WebSocketResponse) -> None:
        self.server = server
        self.ws = ws
        self.instructions = ""
        self.items: list[dict[str, Any]] = []
        self.response: asyncio.Task[None] | None = None

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self.server.new_id("event"))
        await self.ws.send_str(json.dumps(event))

    def conversation(self) -> list[Message]:
        names = {
            i.get("call_id"): i.get("name", "")
            for i in self.items
            if i.get("type") == "function_call"
        }
        out = [Message("system", self.instructions)] if self.instructions else []
        for item in self.items:
            kind = item.get("type")
            if kind == "message":
                out.append(Message(item.get("role", ""), _text_of(item.get("content"))))
            elif kind == "function_call":
                out.append(
                    Message("function_call", item.get("arguments", ""), item.get("name", ""))
                )
            elif kind == "function_call_output":
                name = names.get(item.get("call_id"), "")
                out.append(Message("function_call_output", item.get("output", ""), name))
        return out

    async def add_item(self, item: dict[str, Any], previous_item_id: str | None) -> None:
        item.setdefault("id", self.server.new_id("item"))
        if previous_item_id == "root":
            index = 0
        elif previous_item_id is None:
            index = len(self.items)
        else:
            ids = [i["id"] for i in self.items]
            index = ids.index(previous_item_id) + 1 if previous_item_id in ids else len(self.items)
        previous = self.items[index - 1]["id"] if index > 0 else None
        self.items.insert(index, item)
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        await self.send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            session = event.get("session", {})
            if isinstance(session.get("instructions"), str):
                self.instructions = session["instructions"]
            await self.send({"type": "session.updated", "session": session})
        elif kind == "conversation.item.create":
            await self.add_item(dict(event["item"]), event.get("previous_item_id"))
        elif kind == "conversation.item.delete":
            self.items = [i for i in self.items if i.get("id") != event["item_id"]]
            await self.send({"type": "conversation.item.deleted", "item_id": event["item_id"]})
        elif kind == "conversation.item.truncate":
            await self.send(
                {
                    "type": "conversation.item.truncated",
                    "item_id": event["item_id"],
                    "content_index": 0,
                    "audio_end_ms": event.get("audio_end_ms", 0),
                }
            )
        elif kind == "response.create":
            if self.response is not None and not self.response.done():
                await self.send(
                    {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "code": "conversation_already_has_active_response",
                            "message": "a response is in progress",
                            "event_id": event.get("event_id"),
                        },
                    }
                )
                return
            params = event.get("response") or {}
            self.response = asyncio.create_task(self.respond(params))
        elif kind == "response.cancel":
            if self.response is not None and not self.response.done():
                self.response.cancel()

    async def respond(self, params: dict[str, Any]) -> None:
        response: dict[str, Any] = {
            "id": self.server.new_id("resp"),
            "object": "realtime.response",
            "status": "in_progress",
            "output": [],
            "metadata": params.get("metadata"),
        }
        await self.send({"type": "response.created", "response": dict(response)})
        status = "completed"
        try:
            await asyncio.sleep(self.server.ttft)
            conversation = self.conversation()
            if isinstance(params.get("instructions"), str):
                conversation[:1] = [Message("system", params["instructions"])]
            reply = self.server.script(conversation)
            if reply.text:
                response["output"].append(await self.say(reply.text))
            for call in reply.tool_calls:
                response["output"].append(await self.call(call))
        except asyncio.CancelledError:
            status = "cancelled"
        response["status"] = status
        response["usage"] = {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0}
        await self.send({"type": "response.done", "response": response})

    async def say(self, text: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.server.new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        await self.send({"type": "response.output_item.added", "output_index": 0, "item": item})
        await self.add_item(item, None)
        part = {"type": "audio", "transcript": ""}
        base = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        await self.send({"type": "response.content_part.added", **base, "part": part})
        pcm = tone(text)
        words = text.split(" ")
        chunk = len(pcm) // len(words) // 2 * 2
        for i, word in enumerate(words):
            delta = word if i == 0 else " " + word
            await self.send(
                {"type": "response.output_audio_transcript.delta", **base, "delta": delta}
            )
            audio = pcm[i * chunk : len(pcm) if i == len(words) - 1 else (i + 1) * chunk]
            await self.send(
                {
                    "type": "response.output_audio.delta",
                    **base,
                    "delta": base64.b64encode(audio).decode(),
                }
            )
            await asyncio.sleep(0)
        await self.send({"type": "response.output_audio.done", **base})
        await self.send(
            {"type": "response.output_audio_transcript.done", **base, "transcript": text}
        )
        done_part = {"type": "audio", "transcript": text}
        await self.send({"type": "response.content_part.done", **base, "part": done_part})
        item.update(status="completed", content=[done_part])
        await self.send({"type": "response.output_item.done", "output_index": 0, "item": item})
        return item

    async def call(self, call: ToolCall) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.server.new_id("item"),
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "call_id": self.server.new_id("call"),
            "name": call.name,
            "arguments": "",
        }
        await self.send({"type": "response.output_item.added", "output_index": 0, "item": item})
        await self.add_item(item, None)
        arguments = json.dumps(call.arguments)
        await self.send(
            {
                "type": "response.function_call_arguments.done",
                "item_id": item["id"],
                "output_index": 0,
                "call_id": item["call_id"],
                "arguments": arguments,
            }
        )
        item.update(status="completed", arguments=arguments)
        await self.send({"type": "response.output_item.done", "output_index": 0, "item": item})
        return item


class OpenAIServer:
    """The server; start it with :func:`serve` (an async context manager)."""

    def __init__(self, script: Script, *, ttft: float = 0.03, speech_ttfb: float = 0.03) -> None:
        """Create the server.

        Args:
            script: The model's replies, for chat completions and the realtime websocket.
            ttft: Seconds before the first token of a chat reply or a realtime response.
            speech_ttfb: Seconds before the first byte of a speech answer.
        """
        self.script = script
        self.ttft = ttft
        self.speech_ttfb = speech_ttfb
        self.transcripts: list[str] = []
        """What ``/v1/audio/transcriptions`` answers next, first first."""
        self.requests: list[Request] = []
        """Every request, in arrival order."""
        self.audio_appends = 0
        self.realtime_connections = 0
        """Realtime websockets opened so far (a client's reconnection counts)."""
        self.url = ""
        """``http://127.0.0.1:PORT/v1``, set once started: the plugins' ``base_url``."""
        self._faults: dict[Route, Callable[[dict[str, Any]], Fault | None]] = {}
        self._ids = itertools.count(1)
        self._sockets: list[_Realtime] = []

    def new_id(self, prefix: str) -> str:
        """A fresh identifier such as ``item_7``."""
        return f"{prefix}_{next(self._ids)}"

    def fail(
        self, route: Route, fault: Fault | Callable[[dict[str, Any]], Fault | None] | None
    ) -> None:
        """Make every request on ``route`` fail with ``fault`` (None: answer normally again).

        ``fault`` may be a callable given the request's body, returning the fault or None,
        e.g. ``lambda body: "500" if body["input"] == "Hello." else None``. On the realtime
        route any fault closes the websocket at the next ``response.create``.
        """
        if fault is None:
            self._faults.pop(route, None)
        elif callable(fault):
            self._faults[route] = fault
        else:
            constant: Fault = fault
            self._faults[route] = lambda body: constant

    def bodies(self, route: Route) -> list[dict[str, Any]]:
        """The logged request bodies of one route."""
        return [r.body for r in self.requests if r.route == route]

    def spoken(self) -> list[str]:
        """The ``input`` of every speech request, in order."""
        return [b.get("input", "") for b in self.bodies("speech")]

    async def user_speech(self, started: bool) -> None:
        """Send ``input_audio_buffer.speech_started`` (or ``_stopped``) on every realtime socket."""
        kind = "started" if started else "stopped"
        for rt in list(self._sockets):
            await rt.send(
                {
                    "type": f"input_audio_buffer.speech_{kind}",
                    "audio_start_ms": 0,
                    "item_id": self.new_id("item"),
                }
            )

    def _rid(self) -> dict[str, str]:
        return {"x-request-id": self.new_id("req")}

    def _fault(self, route: Route, body: dict[str, Any]) -> Fault | None:
        check = self._faults.get(route)
        return check(body) if check is not None else None

    async def _broken(self, request: web.Request, fault: Fault, body: bytes) -> web.StreamResponse:
        if fault == "500":
            return web.json_response(
                {"error": {"message": "scripted failure", "type": "server_error", "code": None}},
                status=500,
            )
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if fault == "truncate":
            response.content_length = len(body) + 4096
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()
        return response

    # -- routes ----------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Request("chat", body))
        reply = self.script(chat_messages(body))
        created = int(time.time())
        rid = self.new_id("chatcmpl")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        events = [chunk({"role": "assistant", "content": ""})]
        for i, word in enumerate(reply.text.split(" ") if reply.text else ()):
            events.append(chunk({"content": word if i == 0 else " " + word}))
        for i, call in enumerate(reply.tool_calls):
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": self.new_id("call"),
                                "type": "function",
                                "function": {
                                    "name": call.name,
                                    "arguments": json.dumps(call.arguments),
                                },
                            }
                        ]
                    }
                )
            )
        events.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        usage = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.get("model", ""),
            "choices": [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        events.append(f"data: {json.dumps(usage)}\n\n".encode())
        events.append(b"data: [DONE]\n\n")
        if fault := self._fault("chat", body):
            return await self._broken(request, fault, b"".join(events))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self._rid()})
        await response.prepare(request)
        await asyncio.sleep(self.ttft)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Request("speech", body))
        fmt = body.get("response_format", "mp3")
        if fmt not in _MIME:
            return web.json_response(
                {"error": {"message": f"format {fmt} not served here"}}, status=400
            )
        audio = encode(tone(body.get("input", "")), fmt)
        await asyncio.sleep(self.speech_ttfb)
        if fault := self._fault("speech", body):
            return await self._broken(request, fault, audio)
        pieces = [audio[i : i + 4096] for i in range(0, len(audio), 4096)]
        if body.get("stream_format") == "sse":
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", **self._rid()}
            )
            await response.prepare(request)
            for piece in pieces:
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode()}
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            done = {
                "type": "speech.audio.done",
                "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
            }
            await response.write(f"data: {json.dumps(done)}\n\n".encode())
        else:
            response = web.StreamResponse(headers={"Content-Type": _MIME[fmt], **self._rid()})
            response.content_length = len(audio)
            await response.prepare(request)
            for piece in pieces:
                await response.write(piece)
        await response.write_eof()
        return response

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        body = {k: v for k, v in form.items() if isinstance(v, str)}
        upload = form.get("file")
        body["file_bytes"] = (
            str(len(upload.file.read())) if isinstance(upload, web.FileField) else "0"
        )
        self.requests.append(Request("transcriptions", body))
        text = self.transcripts.pop(0) if self.transcripts else ""
        answer = json.dumps({"text": text, "usage": {"type": "duration", "seconds": 1}}).encode()
        if fault := self._fault("transcriptions", body):
            return await self._broken(request, fault, answer)
        return web.Response(body=answer, content_type="application/json")

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        rt = _Realtime(self, ws)
        self._sockets.append(rt)
        self.realtime_connections += 1
        try:
            await rt.send(
                {
                    "type": "session.created",
                    "session": {
                        "id": self.new_id("sess"),
                        "object": "realtime.session",
                        "type": "realtime",
                        "model": request.query.get("model", ""),
                    },
                }
            )
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                if event.get("type") == "input_audio_buffer.append":
                    self.audio_appends += 1
                    continue
                self.requests.append(Request("realtime", event))
                if event.get("type") == "response.create" and self._fault("realtime", event):
                    await ws.close()
                    break
                await rt.handle(event)
        finally:
            self._sockets.remove(rt)
            if rt.response is not None:
                rt.response.cancel()
                await asyncio.gather(rt.response, return_exceptions=True)
        return ws

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_get("/v1/realtime", self._realtime)
        return app


@asynccontextmanager
async def serve(server: OpenAIServer) -> AsyncIterator[OpenAIServer]:
    """Run ``server`` on 127.0.0.1 with a free port until the block ends."""
    runner = web.AppRunner(server.app(), handle_signals=False, access_log=None)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        for rt in list(server._sockets):
            await rt.ws.close()
        await runner.cleanup()

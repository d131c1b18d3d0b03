"""The example workers' agents on the real OpenAI plugins, against a local OpenAI-compatible server.

``tests/test_examples.py`` runs the examples' agents on the testing kit's fakes; here the
sessions are built as the examples' entrypoints build them (``openai.LLM``, ``openai.TTS``,
``openai.STT``, ``openai.realtime.RealtimeModel`` and the realtime worker's filler voice),
with ``OPENAI_BASE_URL`` pointing at :mod:`openai_server`. A change in how a plugin builds its
requests, decodes its audio or speaks the Realtime protocol fails these tests.

Each call runs without livekit-filler first, then with it, and the two are compared: the
sub-agent's question and the final answer start within the fuzzer's bounds of the run
without fillers, a filler is heard and cut when the tool's AgentTask starts, and no filler
text reaches the model (chat messages, realtime conversation items) or the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import openai as openai_sdk
import pytest
from example_script import (
    AGAIN,
    CHILD,
    FINAL_ANSWER,
    PROGRAMS,
    QUESTION,
    TASK_QUESTION,
    front_desk,
)
from filler_harness import settle, wait_until
from livekit.agents import Agent, APIConnectOptions, function_tool, llm
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.agents.voice.events import CloseEvent, CloseReason, ErrorEvent
from livekit.plugins import openai
from openai_server import Fault, OpenAIServer, serve
from test_examples import EXAMPLES, _load

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.testing import (
    TimelineRecorder,
    UserSpeechSimulator,
    Utterance,
    format_timeline,
    make_session,
    overlaps,
)

NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.0, timeout=5.0)
LOOKUP_SECONDS = 1.2
FILLER_DELAY = 0.7  # a filler (0.56-0.84 s of audio) is still playing when the lookup ends
CUT_BOUND = 0.150  # the playing filler stops this soon after the lookup returns
TIMING_BOUND = 0.150  # devtools/fuzz.py's HANDOFF_BOUND: an AgentTask in the way


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAIServer]:
    """The local OpenAI server, named by ``OPENAI_BASE_URL`` as a user's shell would."""
    async with serve(OpenAIServer(front_desk)) as running:
        monkeypatch.setenv("OPENAI_BASE_URL", running.url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setattr("dotenv.load_dotenv", lambda *args, **kwargs: False)
        yield running


@pytest.fixture
def worker() -> ModuleType:
    return _load(EXAMPLES / "worker.py")


@pytest.fixture
def realtime_worker() -> ModuleType:
    return _load(EXAMPLES / "realtime_worker.py")


def _without_fillers(example: ModuleType) -> type[Any]:
    """The example's FrontDeskAgent with ``get_programs`` undecorated: no livekit-filler."""
    body = inspect.unwrap(example.FrontDeskAgent.get_programs)

    class FrontDeskAgent(example.FrontDeskAgent):  # type: ignore[misc,name-defined]
        @function_tool
        async def get_programs(self) -> str:
            """Use this tool when the user is asking for programs."""
            result: str = await body(self)
            return result

    return FrontDeskAgent


def _filler_texts(example: ModuleType, settings: FillerSettings) -> set[str]:
    """What the example's fillers may say (the busy message is pre-rendered with them)."""
    busy = {settings.busy_message} - {""}
    return {*example.PROGRAM_FILLERS, *settings.phrases, *settings.followup_phrases, *busy}


def _settings() -> FillerSettings:
    return FillerSettings.from_values(delay=FILLER_DELAY, interval=3.0, max_count=1)


@dataclass
class Call:
    """What one front-desk call played, logged and sent."""

    utterances: list[Utterance]
    marks: dict[str, float]
    history: list[str]
    errors: list[ErrorEvent]
    closes: list[CloseEvent]
    turns: int
    requests: Sequence[tuple[str, dict[str, Any]]] = ()

    @property
    def timeline(self) -> str:
        return format_timeline(self.utterances)

    def start_of(self, text: str) -> float | None:
        return next((u.start for u in self.utterances if u.text == text), None)


def _session_models(
    example: ModuleType,
) -> tuple[dict[str, Any], list[Callable[[], Awaitable[None]]]]:
    """The session's models, built as the example's entrypoint builds them, and what closes
    them once the session is over."""
    if hasattr(example, "VAD_KEY"):  # worker.py
        # livekit-plugins-openai 1.6.5's STT never closes the client it creates: give it the
        # one it would build (from OPENAI_BASE_URL and OPENAI_API_KEY), closed by the test
        client = openai_sdk.AsyncClient(max_retries=0)
        chat, speech, stt = openai.LLM(model="gpt-4o-mini"), openai.TTS(), openai.STT(client=client)
        return {"llm": chat, "tts": speech, "stt": stt}, [
            chat.aclose,
            speech.aclose,
            stt.aclose,
            client.close,
        ]
    model = openai.realtime.RealtimeModel(voice=example.VOICE)
    return {"llm": model, "tts": None}, [model.aclose]


def _filler_voice(example: ModuleType) -> openai.TTS | None:
    if hasattr(example, "FILLER_VOICE_MODEL"):  # realtime_worker.py
        return openai.TTS(model=example.FILLER_VOICE_MODEL, voice=example.VOICE)
    return None


async def front_desk_call(
    example: ModuleType,
    server: OpenAIServer,
    *,
    fillers: bool,
    turns: Sequence[tuple[str, str]] = ((QUESTION, TASK_QUESTION), (CHILD, FINAL_ANSWER)),
    tts_options: APIConnectOptions | None = None,
    tts_failing: bool = False,
    settings: FillerSettings | None = None,
) -> Call:
    """Run the thread's flow on the example's agents and the real plugins: each turn's user
    text, then wait until its expected reply is in the history (or the session closed; with
    ``tts_failing``, until the reply's synthesis was asked for)."""
    server.requests.clear()
    errors: list[ErrorEvent] = []
    closes: list[CloseEvent] = []
    closed = asyncio.Event()
    marks: dict[str, float] = {}
    said: list[str] = []
    no_retry = APIConnectOptions(max_retry=0, retry_interval=0.0, timeout=5.0)
    options = SessionConnectOptions(
        llm_conn_options=no_retry,
        stt_conn_options=no_retry,
        tts_conn_options=tts_options or no_retry,
    )
    models, closers = _session_models(example)
    voice = _filler_voice(example)
    if voice is not None:
        closers.append(voice.aclose)
    done_turns = 0
    # worker.py's user speaks (audio through a VAD, transcribed by openai.STT via the server)
    user = UserSpeechSimulator(streaming_stt=False) if "stt" in models else None
    if user is not None:
        kwargs = dict(user.session_kwargs())
        kwargs["stt"] = models.pop("stt")
        models.update(kwargs)
    async with make_session(**models, conn_options=options) as session:
        rec = TimelineRecorder.install(session)
        if user is not None:
            user.install(session, timeline=rec)

        async def lookup() -> Any:
            await asyncio.sleep(LOOKUP_SECONDS)
            marks["lookup_end"] = rec.now()
            return example.CATALOGUE

        def on_item(ev: Any) -> None:
            if isinstance(ev.item, llm.ChatMessage) and ev.item.role == "assistant":
                said.append(ev.item.text_content or "")

        def on_close(ev: CloseEvent) -> None:
            closes.append(ev)
            closed.set()

        session.on("conversation_item_added", on_item)
        session.on("error", errors.append)
        session.on("close", on_close)
        if fillers:
            FillerController.attach(session, settings=settings or _settings(), tts=voice)
        agent = example.FrontDeskAgent if fillers else _without_fillers(example)
        await session.start(agent(lookup=lookup))
        for user_text, reply in turns:
            if closed.is_set():
                break
            done_turns += 1
            marks[user_text] = rec.now()
            if user is not None:
                server.transcripts.append(user_text)
                user.speak(user_text, duration=0.3)
            else:
                session.generate_reply(user_input=user_text)
            try:
                await wait_until(
                    lambda r=reply: (  # type: ignore[misc]
                        r in said or closed.is_set() or (tts_failing and r in server.spoken())
                    ),
                    15.0,
                )
            except TimeoutError:
                raise AssertionError(
                    f"no {reply!r} after {user_text!r}; said {said}; requests "
                    f"{[(r.route, json.dumps(r.body)[-300:]) for r in server.requests]}"
                    f"\n{format_timeline(rec.utterances)}"
                ) from None
            if not closed.is_set():
                await settle(session, 0.05, timeout=10.0)
        if tts_failing:  # the error budget closes the session a moment after the last failure
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(closed.wait(), 3.0)
        history = [
            i.text_content or "" for i in session.history.items if isinstance(i, llm.ChatMessage)
        ]
        utterances = rec.utterances
    for close in closers:
        await close()
    requests = [(r.route, r.body) for r in server.requests]
    return Call(utterances, marks, history, errors, closes, done_turns, requests)


def _compare(example: ModuleType, base: Call, run: Call) -> list[str]:
    """What the run with fillers did wrong, next to the same call without them."""
    problems: list[str] = []
    timeline = f"\nwith fillers:\n{run.timeline}\nwithout:\n{base.timeline}"
    if base.errors or run.errors:
        problems.append(f"errors {run.errors} (without fillers {base.errors})")
    if overlaps(run.utterances):
        problems.append(f"overlapping speech{timeline}")
    fillers = [u for u in run.utterances if u.kind == "filler"]
    texts = _filler_texts(example, _settings())
    if not fillers:
        problems.append(f"no filler heard{timeline}")
    elif {u.text for u in fillers} - set(example.PROGRAM_FILLERS):
        problems.append(f"a filler not of get_programs' phrases{timeline}")
    else:
        cut = fillers[-1]
        lookup_end = run.marks["lookup_end"]
        if not cut.interrupted or not lookup_end <= cut.end + 0.02 <= lookup_end + CUT_BOUND:
            problems.append(f"the filler was not cut when the lookup returned{timeline}")
    for text, since in ((TASK_QUESTION, "lookup_end"), (FINAL_ANSWER, CHILD)):
        with_f, without = run.start_of(text), base.start_of(text)
        if with_f is None or without is None:
            problems.append(f"{text!r} never played{timeline}")
            continue
        late = (with_f - run.marks[since]) - (without - base.marks[since])
        if late > TIMING_BOUND:
            problems.append(f"{text!r} {late * 1000:.0f} ms later than without fillers{timeline}")
    if texts & set(run.history):
        problems.append(f"a filler in the history: {run.history}")
    if FINAL_ANSWER not in run.history:
        problems.append(f"no final answer in the history: {run.history}")
    model_requests = [json.dumps(b) for route, b in run.requests if route in ("chat", "realtime")]
    if leaked := {t for t in texts for body in model_requests if t in body}:
        problems.append(f"filler text sent to the model: {leaked}")
    return problems


def _outputs(call: Call) -> list[str]:
    """get_programs' outputs as the model was sent them (chat tool messages, realtime items)."""
    found: list[str] = []
    for route, body in call.requests:
        if route == "chat":
            found += [m["content"] for m in body["messages"] if m.get("role") == "tool"]
        elif body.get("type") == "conversation.item.create":
            item = body["item"]
            if item.get("type") == "function_call_output":
                found.append(item["output"])
    return found


async def test_worker_front_desk_on_the_real_openai_plugins(
    worker: ModuleType, server: OpenAIServer
) -> None:
    base = await front_desk_call(worker, server, fillers=False)
    assert not [
        r for r, b in base.requests if r == "speech" and b["input"] in worker.PROGRAM_FILLERS
    ]
    run = await front_desk_call(worker, server, fillers=True)
    problems = _compare(worker, base, run)
    assert not problems, problems
    assert PROGRAMS in _outputs(run)
    spoken = [b["input"] for r, b in run.requests if r == "speech"]
    assert TASK_QUESTION in spoken and FINAL_ANSWER in spoken
    # the filler audio came from the session's own TTS, rendered once per phrase
    fillers = [t for t in spoken if t in worker.PROGRAM_FILLERS]
    assert fillers and len(fillers) == len(set(fillers)), spoken


async def test_worker_slow_answer_on_the_real_openai_llm(
    worker: ModuleType, server: OpenAIServer
) -> None:
    """The slow-answer filler watches the real ``openai.LLM``'s stream (its ``llm_node``
    wrapped): with a 2.5 s first token, one slow-answer phrase plays before the reply's first
    words, and the call goes as without fillers."""
    from livekit_filler.settings import DEFAULT_SLOW_ANSWER_PHRASES

    server.ttft = 2.5
    turns = ((QUESTION, TASK_QUESTION),)
    settings = FillerSettings.from_values(
        delay=FILLER_DELAY, interval=3.0, max_count=1, slow_answer={"enabled": True}
    )
    base = await front_desk_call(worker, server, fillers=False, turns=turns)
    run = await front_desk_call(worker, server, fillers=True, turns=turns, settings=settings)
    assert not base.errors and not run.errors
    assert TASK_QUESTION in run.history and TASK_QUESTION in base.history
    slow = [u for u in run.utterances if u.text in DEFAULT_SLOW_ANSWER_PHRASES]
    assert len(slow) == 1, format_timeline(run.utterances)
    agent = [u for u in run.utterances if u.kind != "filler" and u.start > slow[0].start]
    assert agent, format_timeline(run.utterances)  # the reply came after it
    assert not [u for u in base.utterances if u.text in DEFAULT_SLOW_ANSWER_PHRASES]
    assert not overlaps(run.utterances)


async def test_realtime_worker_front_desk_on_the_real_realtime_model(
    realtime_worker: ModuleType, server: OpenAIServer
) -> None:
    base = await front_desk_call(realtime_worker, server, fillers=False)
    run = await front_desk_call(realtime_worker, server, fillers=True)
    problems = _compare(realtime_worker, base, run)
    assert not problems, problems
    assert PROGRAMS in _outputs(run)
    # the realtime model spoke the answers; only the filler voice used the TTS endpoint
    speech = [b for r, b in run.requests if r == "speech"]
    assert speech and {b["input"] for b in speech} <= _filler_texts(realtime_worker, _settings())
    assert {b["voice"] for b in speech} == {realtime_worker.VOICE}
    assert not [b for r, b in base.requests if r == "speech"]


@pytest.mark.allow_error_logs  # LiveKit logs each failed synthesis and the closing session
async def test_worker_closes_at_the_same_turn_as_without_fillers_when_the_tts_fails(
    worker: ModuleType, server: OpenAIServer
) -> None:
    # not "truncate": half an mp3 plays before the error, and played audio resets LiveKit's
    # count of consecutive TTS errors whenever it reaches the output in time, so whether and
    # when the session closes varies run to run, with or without fillers
    faults: list[Fault] = ["500", "close"]
    for fault in faults:
        server.fail("speech", fault)
        turns = (
            (QUESTION, TASK_QUESTION),
            (CHILD, FINAL_ANSWER),
            ("Hello?", AGAIN),
            ("Hi?", AGAIN),
        )
        base = await front_desk_call(worker, server, fillers=False, turns=turns, tts_failing=True)
        run = await front_desk_call(worker, server, fillers=True, turns=turns, tts_failing=True)
        assert [c.reason for c in base.closes] == [CloseReason.ERROR], (fault, base.closes)
        assert [c.reason for c in run.closes] == [CloseReason.ERROR], (fault, run.closes)
        assert run.turns == base.turns, (fault, run.turns, base.turns)
        renders = [
            b for r, b in run.requests if r == "speech" and b["input"] in worker.PROGRAM_FILLERS
        ]
        assert renders, f"{fault}: the filler renders were never tried"
    server.fail("speech", None)


@pytest.mark.parametrize("fault", ["500", "close", "truncate"])
async def test_each_failure_switch_fails_the_plugins_request(
    server: OpenAIServer, fault: Fault
) -> None:
    from livekit.agents import APIError

    tts = openai.TTS()
    chat = openai.LLM(model="gpt-4o-mini")
    server.fail("speech", fault)
    server.fail("chat", fault)
    try:
        with pytest.raises(APIError):
            await tts.synthesize("Hello there.", conn_options=NO_RETRY).collect()
        ctx = llm.ChatContext.empty()
        ctx.add_message(role="user", content=QUESTION)
        with pytest.raises(APIError):
            async with chat.chat(chat_ctx=ctx, conn_options=NO_RETRY) as stream:
                async for _ in stream:
                    pass
        server.fail("speech", None)
        frame = await tts.synthesize("Hello there.", conn_options=NO_RETRY).collect()
        assert frame.duration > 0.2
    finally:
        await tts.aclose()
        await chat.aclose()
    assert [r.route for r in server.requests] == ["speech", "chat", "speech"]


class SlowDesk(Agent):
    """A front desk with one slow tool and fillers, and no AgentTask after it."""

    def __init__(self) -> None:
        super().__init__(instructions="You tell customers about our programs.")

    @function_tool
    @fillers("Let me look up our programs.", "One moment while I check the program list.")
    async def get_programs(self) -> str:
        """Use this tool when the user is asking for programs."""
        await asyncio.sleep(1.5)
        return PROGRAMS


async def test_server_side_speech_start_takes_the_floor_from_a_filler_on_the_real_realtime_model(
    server: OpenAIServer,
) -> None:
    cuts: list[str] = []
    model = openai.realtime.RealtimeModel(voice="alloy")
    voice = openai.TTS(model="gpt-4o-mini-tts", voice="alloy")
    try:
        async with make_session(llm=model, tts=None) as session:
            rec = TimelineRecorder.install(session)
            settings = FillerSettings.from_values(delay=0.3, interval=3.0, max_count=1)
            controller = FillerController.attach(session, settings=settings, tts=voice)
            controller.on("filler_cut", lambda ev: cuts.append(ev.reason or ""))
            await session.start(SlowDesk())
            session.generate_reply(user_input=QUESTION)
            await wait_until(
                lambda: (
                    bool(rec.audio_output.segments) and rec.audio_output.segments[-1].end is None
                ),
                5.0,
            )
            spoke_at = rec.now()
            await server.user_speech(True)  # the model's turn detection hears the caller
            await asyncio.sleep(0.3)
            await server.user_speech(False)
            await asyncio.sleep(0.1)
            heard = list(rec.utterances)
    finally:
        await voice.aclose()
        await model.aclose()
    timeline = format_timeline(heard)
    fillers_heard = [u for u in heard if u.kind == "filler"]
    assert fillers_heard and fillers_heard[0].interrupted, timeline
    assert fillers_heard[0].end - spoke_at < 0.1, timeline
    assert "user_speech" in cuts, cuts
    assert not [u for u in fillers_heard[1:] if u.start >= spoke_at], timeline


@pytest.mark.allow_error_logs  # LiveKit logs the reply the dropped websocket took with it
async def test_a_dropped_realtime_websocket_reconnects_and_the_next_reply_plays(
    server: OpenAIServer,
) -> None:
    drops = [True]  # the first response.create only

    def drop_once(body: dict[str, Any]) -> Fault | None:
        return "close" if drops and drops.pop() else None

    model = openai.realtime.RealtimeModel(voice="alloy")
    try:
        async with make_session(llm=model, tts=None) as session:
            rec = TimelineRecorder.install(session)
            await session.start(SlowDesk())
            await wait_until(lambda: server.realtime_connections == 1, 5.0)
            server.fail("realtime", drop_once)
            session.generate_reply(user_input="Hello?")
            await wait_until(lambda: server.realtime_connections == 2, 10.0)
            await settle(session, 0.1, timeout=10.0)
            session.generate_reply(user_input="Hi?")
            await wait_until(lambda: any(u.text == AGAIN for u in rec.utterances), 10.0)
    finally:
        await model.aclose()
    creates = [b for b in server.bodies("realtime") if b["type"] == "response.create"]
    assert len(creates) == 2, creates

"""Fillers beyond tools (issue 22): the slow-answer filler and the busy acknowledgement.

One process, many sessions on the testing kit (FakeLLM, FakeTTS with a 0.05 s time to first
byte and 0.02 s per character, FakeAudioOutput playing in real time, a simulated caller:
``UserSpeechSimulator``). Every seed runs twice at the same time, with livekit-filler and
without it (the anchor), ``--batch`` pairs at once.

* slow: the caller asks; the LLM's first token comes 2.0-3.5 s later (drawn per seed);
  ``slow_answer = {enabled = true, after = 1.2}``. When the filler starts after the end of
  the user's turn (LiveKit's ``speech_created`` of the reply), and how much later the
  reply's first audio is than without.
* fast: the same with a first token within 0.05-0.6 s: fillers heard, reply delay.
* slow / fast realtime: the same two on a speech-to-speech model (``FakeRealtimeModel``
  with server-side turn detection, its first audio 2.0-3.5 s or 0.05-0.6 s after the
  caller's turn; the filler voice a FakeTTS as above).
* busy: a 2.1-3.7 s tool whose step cannot be interrupted; the caller makes a 0.3-0.6 s
  sound 0.6-1.2 s into it. When the acknowledgement starts after the caller stops, and how
  much later the tool's answer is than without.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _harness import header, percentile, quiet_logs, table, verdict
from livekit.agents import Agent, RunContext, function_tool, llm
from livekit.agents.voice import SpeechCreatedEvent

from livekit_filler import FillerController, FillerSettings
from livekit_filler.testing import (
    FakeLLM,
    FakeRealtimeModel,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    UserSpeechSimulator,
    Utterance,
    make_session,
    overlaps,
)

QUESTION = "What would you recommend for a beginner?"
REPLY = "I would start with the morning class."
BOOK = "Can you book it?"
BOOKED = "booked, reference 42"
ANSWER = "It is booked."
BUSY = "Sorry, just a few more seconds."
TTFB = 0.05
SPC = 0.02


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a front desk.")


class Booking(Agent):
    def __init__(self, body: Callable[[], Awaitable[str]]) -> None:
        super().__init__(instructions="You are a front desk.")
        self._body = body
        self.ended_at: float | None = None

    @function_tool
    async def book(self, context: RunContext[Any]) -> str:
        """Book a class."""
        context.disallow_interruptions()
        try:
            return await self._body()
        finally:
            self.ended_at = asyncio.get_running_loop().time()


@dataclass
class Outcome:
    fillers: list[Utterance]
    anchor: float
    """Loop-time-free: seconds on the recorder's clock of the case's anchor event."""
    answer: float
    overlaps: int
    in_history: int


def _history_fillers(session: Any, texts: set[str]) -> int:
    return sum(
        1
        for i in session.history.items
        if isinstance(i, llm.ChatMessage) and (i.text_content or "") in texts
    )


async def turn(ttft: float, *, fillers: bool, realtime: bool = False) -> Outcome:
    user = UserSpeechSimulator()
    script = {QUESTION: FakeResponse(text=REPLY, ttft=ttft)}
    model = FakeRealtimeModel(script, default=None, turn_detection=True)
    created: list[float] = []
    settings = FillerSettings.from_values(slow_answer={"enabled": True, "after": 1.2})
    tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
    if realtime:  # the model answers by itself; FakeTTS is the filler voice
        session_cm = make_session(llm=model, tts=None)
    else:
        fake = FakeLLM(script, default=None)
        session_cm = make_session(llm=fake, tts=tts, **user.session_kwargs())
    async with session_cm as session:
        rec = TimelineRecorder.install(session)
        if not realtime:
            user.install(session, timeline=rec)

        def on_created(ev: SpeechCreatedEvent) -> None:
            if ev.source == "generate_reply" and not created:
                created.append(rec.now())

        session.on("speech_created", on_created)
        if fillers:
            FillerController.attach(session, settings=settings, tts=tts if realtime else None)
        await session.start(Assistant())
        if realtime:
            start = rec.now()
            await model.current.user_speaks(QUESTION, duration=0.5)
            rec.add_user_utterance(QUESTION, start, rec.now())
        else:
            await user.say(QUESTION, duration=0.5)
        await _until(lambda: any(u.text == REPLY for u in rec.utterances), ttft + 4)
        await asyncio.sleep(0.1)
        utterances = rec.utterances
        phrases = set(settings.slow_answer.phrases)
        in_history = _history_fillers(session, phrases)
        in_history += sum(1 for text in model.conversation_texts() if text in phrases)
    reply = next(u for u in utterances if u.text == REPLY)
    return Outcome(
        fillers=[u for u in utterances if u.kind == "filler"],
        anchor=created[0],
        answer=reply.start - created[0],
        overlaps=len(overlaps(utterances, include_user=True)),
        in_history=in_history,
    )


async def busy(seed: int, *, fillers: bool) -> Outcome:
    rng = random.Random(seed)
    speak_at, noise, rest = rng.uniform(0.6, 1.2), rng.uniform(0.3, 0.6), rng.uniform(1.2, 1.9)
    user = UserSpeechSimulator()
    stopped: list[float] = []

    def script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        last = chat_ctx.items[-1] if chat_ctx.items else None
        if isinstance(last, llm.FunctionCallOutput):
            return FakeResponse(text=ANSWER)
        if isinstance(last, llm.ChatMessage) and last.text_content == BOOK:
            return FakeResponse(tool_calls=[FakeToolCall("book")])
        return None

    async def body() -> str:
        await asyncio.sleep(speak_at)
        utterance = await user.say("", duration=noise)
        assert utterance.ended_at is not None
        stopped.append(utterance.ended_at)
        await asyncio.sleep(rest)
        return BOOKED

    settings = FillerSettings.from_values(max_count=0, busy_message=BUSY)
    fake = FakeLLM(script, default=None)
    tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
    async with make_session(llm=fake, tts=tts, **user.session_kwargs()) as session:
        rec = TimelineRecorder.install(session)
        user.install(session, timeline=rec)
        if fillers:
            FillerController.attach(session, settings=settings)
        agent = Booking(body)
        await session.start(agent)
        await session.run(user_input=BOOK)
        await _until(lambda: any(u.text == ANSWER for u in rec.utterances), 3.0)
        await asyncio.sleep(0.1)
        utterances = rec.utterances
        in_history = _history_fillers(session, {BUSY})
    assert agent.ended_at is not None
    answer = next(u for u in utterances if u.text == ANSWER)
    return Outcome(
        fillers=[u for u in utterances if u.kind == "filler"],
        anchor=stopped[0] - rec.t0,
        answer=answer.start - (agent.ended_at - rec.t0),
        overlaps=len(overlaps(utterances, include_user=True)),
        in_history=in_history,
    )


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate() and loop.time() < end:  # noqa: ASYNC110 - polling a recorder
        await asyncio.sleep(0.01)


async def pairs(
    make: Callable[[int, bool], Awaitable[Outcome]], seeds: range, batch: int
) -> list[tuple[Outcome, Outcome]]:
    out: list[tuple[Outcome, Outcome]] = []
    for first in range(seeds.start, seeds.stop, batch):
        chunk = range(first, min(first + batch, seeds.stop))
        runs = await asyncio.gather(*(make(s, f) for s in chunk for f in (True, False)))
        out += list(zip(runs[::2], runs[1::2], strict=True))
    return out


def ms(value: float) -> str:
    return f"{value * 1000:+.0f} ms"


async def main(seeds: int, batch: int) -> None:
    header("Fillers beyond tools: a slow answer, a caller speaking during a busy tool")
    rows = []
    ok = True
    for name, low, high, realtime in (
        ("slow LLM", 2.0, 3.5, False),
        ("fast LLM", 0.05, 0.6, False),
        ("slow realtime model", 2.0, 3.5, True),
        ("fast realtime model", 0.05, 0.6, True),
    ):

        async def make(
            seed: int,
            with_fillers: bool,
            low: float = low,
            high: float = high,
            realtime: bool = realtime,
        ) -> Outcome:
            ttft = random.Random(seed).uniform(low, high)
            return await turn(ttft, fillers=with_fillers, realtime=realtime)

        results = await pairs(make, range(seeds), batch)
        heard = [len(f.fillers) for f, _ in results]
        starts = [f.fillers[0].start - f.anchor for f, _ in results if f.fillers]
        extra = [f.answer - p.answer for f, p in results]
        bad = sum(f.overlaps + f.in_history for f, _ in results)
        if name.startswith("slow"):
            good = all(h == 1 for h in heard) and all(1.2 <= s <= 1.5 for s in starts)
        else:
            good = not any(heard)
        good = good and percentile(extra, 95) <= 0.05 and bad == 0
        ok &= good
        rows.append(
            [
                f"{name} ({low}-{high} s)",
                f"{sum(1 for h in heard if h)}/{len(heard)}",
                f"{min(starts):.3f}-{max(starts):.3f} s" if starts else "-",
                ms(percentile(extra, 50)),
                ms(percentile(extra, 95)),
                bad,
                verdict(good),
            ]
        )

    async def make_busy(seed: int, with_fillers: bool) -> Outcome:
        return await busy(seed, fillers=with_fillers)

    results = await pairs(make_busy, range(seeds), batch)
    acks = [[u for u in f.fillers if u.text == BUSY] for f, _ in results]
    late = [a[0].start - f.anchor for a, (f, _) in zip(acks, results, strict=True) if a]
    extra = [f.answer - p.answer for f, p in results]
    bad = sum(f.overlaps + f.in_history for f, _ in results)
    good = all(len(a) == 1 for a in acks) and all(0 <= x <= 0.8 for x in late)
    good = good and percentile(extra, 95) <= 0.05 and bad == 0
    ok &= good
    rows.append(
        [
            "busy tool, caller speaks",
            f"{sum(1 for a in acks if a)}/{len(acks)}",
            f"{min(late):.3f}-{max(late):.3f} s" if late else "-",
            ms(percentile(extra, 50)),
            ms(percentile(extra, 95)),
            bad,
            verdict(good),
        ]
    )
    print(
        table(
            [
                "case (anchor: the same seed without fillers)",
                "seeds with a filler",
                "filler start after trigger",
                "answer later p50",
                "p95",
                "overlaps+history",
                "targets",
            ],
            rows,
        )
    )
    print()
    print(
        "trigger: the end of the user's turn (slow, fast; target 1.2-1.5 s) or the caller"
        " stopping (busy; target within 0.8 s). Answer: the reply's first audio after the"
        " turn's end (slow, fast) or after the tool returned (busy); target p95 <= +50 ms."
    )
    print("all targets met" if ok else "SOME TARGETS NOT MET")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40, help="seeds per case")
    parser.add_argument("--batch", type=int, default=8, help="pairs run at once")
    args = parser.parse_args()
    quiet_logs()
    asyncio.run(main(args.seeds, args.batch))

"""One headless call in this (fresh) process; prints its figures as one JSON line.

Not a benchmark by itself: ``per_process.py`` runs it once per call, in a new process each
time, as LiveKit's default job executor does (livekit-internals §9). The call: the session
starts, the agent greets, the caller asks ``CALLER_AT`` seconds after the start, the LLM calls
a 2 s tool with ``@fillers`` (library defaults: the first filler after ``delay`` = 1 s), then
answers. Settings come from ``FillerSettings.load()`` (environment, no config file in the
working directory); the prewarm step (``FillerController.prewarm``) runs before the call, as
in a worker's idle process.

    python benchmarks/one_call.py call            # the call above
    python benchmarks/one_call.py greeting        # start and greeting only
    python benchmarks/one_call.py greeting --no-controller
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import Any

from _call_kit import ANSWER, DESK_PHRASES, GREETING, FrontDesk, make_tts, script
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.events import SpeechCreatedEvent

from livekit_filler import FillerController, FillerSettings, is_filler_speech, shared_cache
from livekit_filler.testing import FakeLLM, TimelineRecorder, make_session

CALLER_AT = 3.0


async def run(mode: str, controller_on: bool, give_way: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    settings = FillerSettings.load()
    sounds_on_disk = FillerController.prewarm(settings) if controller_on else 0
    prewarm_ms = (time.perf_counter() - began) * 1000
    tts = make_tts()
    probe: dict[str, float] = {}
    created: list[tuple[SpeechHandle, float]] = []

    def on_created(ev: SpeechCreatedEvent) -> None:
        created.append((ev.speech_handle, loop.time()))

    out: dict[str, Any] = {"mode": mode, "sounds_on_disk": sounds_on_disk}
    out["prewarm_ms"] = prewarm_ms
    async with make_session(llm=FakeLLM(script, default=None, ttft=0.05), tts=tts) as session:
        session.on("speech_created", on_created)
        rec = TimelineRecorder.install(session)
        controller = FillerController.attach(session, settings=settings) if controller_on else None
        anchor: asyncio.Task[int] | None = None
        if controller is not None and not give_way:
            # the anchor: a pre-render that does not give way, as a hand-written one at the
            # entrypoint would (the public prerender() renders at once, whatever the session
            # is doing); it reaches the one-at-a-time provider before the greeting does
            anchor = asyncio.create_task(controller.prerender(*DESK_PHRASES))
            await asyncio.sleep(0.01)  # its first request is in flight
        started = loop.time()
        await session.start(FrontDesk(probe))
        if mode == "greeting":
            await asyncio.sleep(2.0)  # the greeting plays; pre-renders run meanwhile
        else:
            await asyncio.sleep(max(0.0, started + CALLER_AT - loop.time()))
            await session.run(user_input="Which programs do you have for my son?")
            while (speech := session.current_speech) is not None:
                await speech
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
        if anchor is not None:
            await anchor
        segments = list(rec.audio_output.segments)
        utterances = rec.utterances
    greeting = [s.start for s in segments if created and s.speech_id == created[0][0].id]
    out["greeting_first_audio_ms"] = (min(greeting) - started) * 1000 if greeting else None
    out["greeting_heard"] = any(u.text == GREETING for u in utterances)
    fillers = [(h, t) for h, t in created if is_filler_speech(h)]
    out["fillers"] = len(fillers)
    if fillers and "tool_start" in probe:
        handle, scheduled = fillers[0]
        starts = [s.start for s in segments if s.speech_id == handle.id]
        if starts:
            trigger = probe["tool_start"] + settings.delay
            out["first_filler_after_trigger_ms"] = (min(starts) - trigger) * 1000
            out["first_filler_after_scheduling_ms"] = (min(starts) - scheduled) * 1000
            out["tool_start_after_session_start_s"] = probe["tool_start"] - started
    cache = shared_cache()
    out["filler_tts_chars"] = cache.characters_rendered
    out["filler_texts_synthesized"] = [t for t in tts.synthesized if t not in (GREETING, ANSWER)]
    out["disk_loads"] = cache.disk_loads
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["call", "greeting"])
    parser.add_argument("--no-controller", action="store_true", help="no FillerController")
    parser.add_argument(
        "--no-give-way",
        action="store_true",
        help="anchor: a pre-render that does not wait for the session, started before it",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(run(args.mode, not args.no_controller, not args.no_give_way))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

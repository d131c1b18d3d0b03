"""Filler renders are the session TTS's usage in LiveKit's metrics: users can tell them apart."""

from __future__ import annotations

from typing import Any

from filler_harness import RESULT, phrase_settings, run_tool, sleeping
from livekit.agents.metrics import TTSMetrics

from livekit_filler import FillerController, FillerEvent

FIRST = "Usage of the first filler."
FOLLOWUP = "Usage of the follow-up."


async def test_every_render_is_announced_with_the_request_id_of_its_tts_metrics() -> None:
    rendered: list[FillerEvent] = []
    metrics: list[TTSMetrics] = []

    def watch(controller: FillerController) -> None:
        controller.on("filler_rendered", rendered.append)

        def on_metrics(ev: Any) -> None:
            if isinstance(ev.metrics, TTSMetrics):
                metrics.append(ev.metrics)

        controller.session.on("metrics_collected", on_metrics)

    run = await run_tool(
        sleeping(1.5),
        settings=phrase_settings(FIRST, FOLLOWUP, delay=0.2, interval=0.2, prerender=False),
        on_controller=watch,
    )
    assert run.outcomes == {"slow_tool": RESULT}
    assert [e.characters for e in rendered] == [len(FIRST), len(FOLLOWUP)], run.timeline
    filler_ids = {e.request_id for e in rendered}
    renders = [m for m in metrics if m.request_id in filler_ids]
    speech = [m for m in metrics if m.request_id not in filler_ids]
    # the renders' metrics carry no speech id; every other TTS metric is real speech
    assert len(renders) == 2 and all(m.speech_id is None for m in renders)
    assert sorted(m.characters_count for m in renders) == sorted([len(FIRST), len(FOLLOWUP)])
    assert speech and all(m.speech_id is not None for m in speech)

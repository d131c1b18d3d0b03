"""A crash is an error: a defect in a filler stream, the speaker or a render is logged at ERROR.

Each test injects a programming error (a ``TypeError``) into one part and checks that
livekit-filler logs it at ERROR (so the ``no_error_logs`` fixture fails any other test that
meets one), that the caller still hears the answer, and that a render's defect is not taken
for a TTS outage (no back-off). A real TTS failure still backs off quietly (WARNING).
"""

from __future__ import annotations

import logging

import pytest
from filler_harness import ANSWER, RESULT, SPC, TTFB, Run, phrase_settings, run_tool, sleeping
from livekit.agents import APIStatusError

from livekit_filler import FillerController
from livekit_filler.metrics import FillerMetrics
from livekit_filler.stream_timing import StreamTiming
from livekit_filler.testing import FakeTTS

FIRST = "Crash test, first filler."
FOLLOWUP = "Crash test, the follow-up."


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.get_records("call")
        if r.name.startswith("livekit_filler") and r.levelno >= logging.ERROR
    ]


def _defect(*args: object, **kwargs: object) -> None:
    raise TypeError("injected defect")


async def _run(tts: FakeTTS | None = None) -> tuple[Run, FillerController]:
    controllers: list[FillerController] = []
    run = await run_tool(
        sleeping(1.0),
        settings=phrase_settings(FIRST, FOLLOWUP, delay=0.2, interval=0.2, prerender=False),
        tts=tts,
        wait_for=ANSWER,
        on_controller=controllers.append,
    )
    assert run.outcomes == {"slow_tool": RESULT}, run.outcomes
    assert ANSWER in [u.text for u in run.utterances], run.timeline
    assert not run.closes or all(c.error is None for c in run.closes), run.closes
    return run, controllers[0]


@pytest.mark.allow_error_logs
async def test_a_crashing_render_is_an_error_not_a_tts_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tts = FakeTTS(
        ttfb=TTFB,
        seconds_per_char=SPC,
        synthesize_fault=lambda text: TypeError("injected defect") if text == FIRST else None,
    )
    run, controller = await _run(tts)
    assert any("filler render crashed" in m for m in _errors(caplog)), _errors(caplog)
    # no back-off: the follow-up renders and plays although the first render crashed
    assert controller.voice.failures == 0
    assert FOLLOWUP in [u.text for u in run.fillers], run.timeline


async def test_a_failing_tts_still_backs_off_quietly(caplog: pytest.LogCaptureFixture) -> None:
    tts = FakeTTS(
        ttfb=TTFB,
        seconds_per_char=SPC,
        synthesize_fault=lambda text: APIStatusError("down", status_code=500),
    )
    _, controller = await _run(tts)
    assert controller.voice.failures >= 1
    warnings = [r.getMessage() for r in caplog.get_records("call") if r.levelno == logging.WARNING]
    assert any("filler synthesis failed" in m for m in warnings), warnings
    # and no ERROR: the no_error_logs fixture checks every logger


@pytest.mark.allow_error_logs
async def test_a_crashing_filler_stream_is_an_error(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StreamTiming, "fitting_pool", _defect)
    run, _ = await _run()
    assert any("filler stream crashed" in m for m in _errors(caplog)), _errors(caplog)
    assert not run.fillers, run.timeline


@pytest.mark.allow_error_logs
async def test_a_crash_in_the_speakers_audio_gate_is_an_error(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FillerMetrics, "played", _defect)  # the gate counts a filler's first frame
    await _run()
    assert any("filler audio crashed" in m for m in _errors(caplog)), _errors(caplog)

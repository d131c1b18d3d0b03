"""The timeline PNG (devtools.plot), the call WAV (devtools.sound) and the demo's
wiring of both. Results are built by hand, so these tests run no session and take no time.
"""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest

from devtools import demo, sound
from devtools.plot import COLOURS, plot_runs
from devtools.scenarios import (
    CLUB_ANSWER,
    FILLER_PHRASES,
    PROGRAMS_ANSWER,
    TASK_GREETING,
    ScenarioResult,
    Timings,
)
from livekit_filler.testing.timeline import Utterance


def _club(mode: str = "livekit_filler") -> ScenarioResult:
    utterances = [
        Utterance("user", "", 0.9, 1.2, kind="user"),
        Utterance("agent", FILLER_PHRASES[0], 0.7, 0.95, True, "filler", "FillerClubAgent"),
        Utterance("agent", CLUB_ANSWER, 2.5, 4.7, False, "speech", "FillerClubAgent"),
    ]
    return ScenarioResult(
        scenario="club_info",
        mode=mode,  # type: ignore[arg-type]
        timings=Timings(),
        utterances=utterances,
        markers={"tool_start": [0.2], "tool_end": [2.0]},
    )


def _programs() -> ScenarioResult:
    utterances = [
        Utterance("agent", FILLER_PHRASES[1], 0.7, 1.5, False, "filler", "FillerFrontDeskAgent"),
        Utterance("agent", TASK_GREETING, 2.45, 4.0, False, "speech", "CollectAgeGender"),
        Utterance("agent", PROGRAMS_ANSWER, 4.45, 6.3, False, "speech", "FillerFrontDeskAgent"),
    ]
    return ScenarioResult(
        scenario="programs",
        mode="livekit_filler",
        timings=Timings(),
        utterances=utterances,
        markers={"tool_start": [0.2], "task_start": [2.0], "tool_end": [4.0]},
        errors=["RuntimeError: cannot schedule new speech, the speech scheduling is draining"],
    )


def _colour_present(png: Path, hex_colour: str) -> bool:
    import matplotlib.image as mpimg
    import numpy as np

    image = mpimg.imread(str(png))[:, :, :3]
    target = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(image - target).max(axis=2) < 0.02).any())


def test_plot_writes_a_readable_png(tmp_path: Path) -> None:
    png = plot_runs(
        [_club("none"), _club(), _programs()],
        tmp_path / "sub" / "timeline.png",
        errors=[[], ["ERROR livekit.agents: something failed"], []],
        title="test",
    )

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000
    for kind in ("user", "agent", "filler", "subagent"):
        assert _colour_present(png, COLOURS[kind]), kind


def test_plot_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_runs([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="errors has 2 entries"):
        plot_runs([_club()], tmp_path / "x.png", errors=[[], []])


def _read(path: Path) -> tuple[int, int, bytes]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.readframes(w.getnframes())


def test_wav_without_espeak_has_marker_tones_at_utterance_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)  # no espeak-ng anywhere
    assert not sound.espeak_available()
    result = _club()

    path = sound.write_wav([result], tmp_path / "call.wav")

    rate, channels, frames = _read(path)
    assert (rate, channels) == (sound.SAMPLE_RATE, 1)
    samples = memoryview(frames).cast("h")
    lead = int(0.06 * rate) * 2 + 800 + int(0.4 * rate)  # the run's double beep and pause

    def loud(t0: float, t1: float) -> bool:
        return any(abs(s) > 1000 for s in samples[lead + int(t0 * rate) : lead + int(t1 * rate)])

    for u in result.utterances:
        assert loud(u.start, u.start + 0.05), u
    assert not loud(3.0, 4.5)  # silence inside the answer: only its start is marked
    assert len(samples) / rate == pytest.approx(0.57 + 4.7 + 0.3 + 1.2, abs=0.02)


def test_demo_writes_png_and_wav(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fake_run_all(_timings: Timings) -> list[tuple[ScenarioResult, list[str]]]:
        return [(_club("none"), []), (_club(), []), (_programs(), ["ERROR x: y"])]

    monkeypatch.setattr(demo, "run_all", fake_run_all)
    monkeypatch.setattr(shutil, "which", lambda _name: None)

    code = demo.main(
        ["--png", str(tmp_path / "t.png"), "--wav", str(tmp_path / "c.wav"), "--no-beyond"]
    )

    assert code == 0
    assert (tmp_path / "t.png").stat().st_size > 20_000
    assert _read(tmp_path / "c.wav")[0] == sound.SAMPLE_RATE
    out = capsys.readouterr().out
    assert "marker tones" in out
    assert f"wrote {tmp_path / 't.png'}" in out

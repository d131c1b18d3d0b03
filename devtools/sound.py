"""Render scenario runs as a WAV you can listen to: the simulated call, at its real timing.

:func:`write_wav` mixes every utterance of each run into one mono 16-bit track, at the
utterance's start time, cut at its end (a filler cut off by the answer sounds cut off).
With ``espeak-ng`` on ``PATH`` each utterance's text is spoken (the agent, its fillers,
the sub-agent and the caller in different voices); without it the track is silence with a
short marker tone at each utterance's start, pitched by who speaks. Several runs are
joined one after another, each announced by a double beep. Standard library only.
"""

from __future__ import annotations

import array
import logging
import math
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path

from devtools.scenarios import ScenarioResult
from livekit_filler.testing import Utterance

__all__ = ["SAMPLE_RATE", "espeak_available", "render_run", "write_wav"]

logger = logging.getLogger("devtools.sound")

SAMPLE_RATE = 16000
"""Sample rate of the written WAV, in Hz."""

_GAP = 1.2  # seconds of silence between runs
_TONE = 0.08  # seconds of a marker tone
_TONE_HZ = {"user": 330.0, "agent": 660.0, "filler": 495.0, "subagent": 880.0}
_VOICE = {"user": "en+f3", "agent": "en+m3", "filler": "en+m3", "subagent": "en+m7"}
_GAIN = {"user": 0.8, "agent": 0.9, "filler": 0.6, "subagent": 0.9}


def espeak_available() -> bool:
    """Whether ``espeak-ng`` is on ``PATH``."""
    return shutil.which("espeak-ng") is not None


def _category(u: Utterance) -> str:
    if u.speaker == "user":
        return "user"
    if u.kind == "filler":
        return "filler"
    return "subagent" if u.agent == "CollectAgeGender" else "agent"


def _tone(hz: float, seconds: float, amplitude: float = 0.35) -> list[float]:
    n = int(seconds * SAMPLE_RATE)
    fade = max(1, int(0.005 * SAMPLE_RATE))
    out = []
    for i in range(n):
        env = min(1.0, i / fade, (n - 1 - i) / fade)
        out.append(amplitude * env * math.sin(2 * math.pi * hz * i / SAMPLE_RATE))
    return out


def _espeak(text: str, category: str, seconds: float) -> list[float] | None:
    """Speak ``text`` with espeak-ng, fast enough to fit ``seconds`` if it can."""
    exe = shutil.which("espeak-ng")
    if exe is None or not text.strip():
        return None
    words = max(1, len(text.split()))
    wpm = int(min(450, max(120, words / max(seconds, 0.1) * 60 * 1.1)))
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "u.wav"
        try:
            subprocess.run(
                [exe, "-v", _VOICE[category], "-s", str(wpm), "-w", str(wav_path), text],
                check=True,
                capture_output=True,
                timeout=30,
            )
            return _read_wav(wav_path)
        except (OSError, subprocess.SubprocessError, wave.Error, ValueError):
            logger.warning("espeak-ng failed; using a marker tone", exc_info=True)
            return None


def _read_wav(path: Path) -> list[float]:
    """Read a 16-bit PCM WAV as mono floats at :data:`SAMPLE_RATE` (linear resampling)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit PCM, got {w.getsampwidth() * 8}-bit")
        channels, rate = w.getnchannels(), w.getframerate()
        raw = array.array("h", w.readframes(w.getnframes()))
    mono = [sum(raw[i : i + channels]) / channels / 32768.0 for i in range(0, len(raw), channels)]
    if rate == SAMPLE_RATE or not mono:
        return mono
    n = int(len(mono) * SAMPLE_RATE / rate)
    step = rate / SAMPLE_RATE
    out = []
    for i in range(n):
        x = i * step
        j = int(x)
        frac = x - j
        nxt = mono[j + 1] if j + 1 < len(mono) else mono[j]
        out.append(mono[j] * (1 - frac) + nxt * frac)
    return out


def render_run(result: ScenarioResult, *, use_espeak: bool | None = None) -> list[float]:
    """Mix one run's utterances into mono float samples in [-1, 1].

    Args:
        result: The run.
        use_espeak: Speak the texts with espeak-ng; None uses it if it is on ``PATH``.
            Without it, each utterance is silence that starts with a marker tone.

    Returns:
        The samples, at :data:`SAMPLE_RATE`, from the session's start to the last audio.
    """
    speak = espeak_available() if use_espeak is None else use_espeak
    end = max((u.end for u in result.utterances), default=0.0) + 0.3
    track = [0.0] * int(end * SAMPLE_RATE)
    for u in result.utterances:
        category = _category(u)
        length = max(0, int((u.end - u.start) * SAMPLE_RATE))
        text = u.text or ("hmm" if category == "user" else "")
        voice = _espeak(text, category, u.end - u.start) if speak else None
        if voice is None:
            samples = _tone(_TONE_HZ[category], min(_TONE, max(u.end - u.start, 0.02)))
        else:
            samples = [s * _GAIN[category] for s in voice[:length]]
            fade = min(len(samples), int(0.01 * SAMPLE_RATE))
            for i in range(fade):  # no click where an interruption cuts the voice
                samples[len(samples) - 1 - i] *= i / fade
        offset = int(u.start * SAMPLE_RATE)
        for i, s in enumerate(samples):
            if offset + i < len(track):
                track[offset + i] += s
    return track


def write_wav(
    results: Sequence[ScenarioResult], path: Path | str, *, use_espeak: bool | None = None
) -> Path:
    """Write the runs as one WAV, one after another, each preceded by a double beep.

    Args:
        results: The runs.
        path: Where to write the WAV (parent directories are created).
        use_espeak: Speak the texts with espeak-ng; None uses it if it is on ``PATH``.

    Returns:
        The path written.

    Raises:
        ValueError: If ``results`` is empty.
    """
    if not results:
        raise ValueError("nothing to render: results is empty")
    path = Path(path)
    speak = espeak_available() if use_espeak is None else use_espeak
    beep = [*_tone(1200.0, 0.06, 0.25), *[0.0] * 800, *_tone(1200.0, 0.06, 0.25)]
    samples: list[float] = []
    for result in results:
        samples += beep + [0.0] * int(0.4 * SAMPLE_RATE)
        samples += render_run(result, use_espeak=speak)
        samples += [0.0] * int(_GAP * SAMPLE_RATE)
    pcm = array.array("h", (int(max(-1.0, min(1.0, s)) * 32767) for s in samples))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    logger.debug(
        "call audio written", extra={"path": str(path), "runs": len(results), "espeak": speak}
    )
    return path

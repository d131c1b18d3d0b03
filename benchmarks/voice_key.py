"""Cost of the filler cache key per call: ``sound_key`` with the deep voice identity.

``sound_key(tts, text)`` runs on every filler's cache lookup (a few times per filler: is it
rendered, its duration for the phrase fit, its audio), on the event loop. It reads the TTS's
options deeply each time (no cache: ``update_options`` may change them in place). Anchor: the
key as it was before issue 18 (the plain ``str/int/float/bool`` fields of ``tts._opts``, then
SHA-256), timed in the same run on the same objects. Plugins not installed are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from _harness import header, median, quiet_logs, table, verdict
from livekit.agents import tts as lk_tts

from livekit_filler import voice_key
from livekit_filler.testing import FakeTTS
from livekit_filler.tts_identity import sound_key

TARGET_US = 200.0
"""Per call: a filler's lookups (about six) stay near a millisecond of event-loop time."""
PHRASE = "One moment, let me check that."


def _old_sound_key(tts: lk_tts.TTS[Any], text: str) -> str:
    """The key before issue 18: plain top-level option fields only."""
    public = getattr(tts, "voice", None)
    if isinstance(public, str):
        voice: str | None = public
    else:
        fields = getattr(getattr(tts, "_opts", None), "__dict__", None)
        voice = (
            repr(
                {
                    k: v
                    for k, v in sorted(fields.items())
                    if isinstance(v, str | int | float | bool) and "key" not in k.lower()
                }
            )
            if isinstance(fields, dict)
            else None
        )
    parts = [
        f"{type(tts).__module__}.{type(tts).__qualname__}",
        tts.provider,
        tts.model,
        voice if voice is not None else f"instance {id(tts)}",
        tts.sample_rate,
        tts.num_channels,
        text,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _plugin(name: str) -> Any:
    try:
        return importlib.import_module(f"livekit.plugins.{name}")
    except ImportError:
        return None


def _subjects() -> dict[str, Callable[[], lk_tts.TTS[Any]]]:
    subjects: dict[str, Callable[[], lk_tts.TTS[Any]]] = {"testing.FakeTTS": FakeTTS}
    if openai := _plugin("openai"):
        subjects["openai.TTS"] = lambda: openai.TTS(voice="ash", api_key="sk-bench")
        subjects["FallbackAdapter([openai, openai])"] = lambda: lk_tts.FallbackAdapter(
            [openai.TTS(voice="ash", api_key="k"), openai.TTS(voice="echo", api_key="k")]
        )
    if google := _plugin("google"):
        subjects["google.TTS (protobuf voice)"] = lambda: google.TTS(
            voice_name="en-US-Chirp3-HD-Charon", credentials_info={"type": "service_account"}
        )
    if eleven := _plugin("elevenlabs"):
        subjects["elevenlabs.TTS (20 options)"] = lambda: eleven.TTS(
            api_key="xi",
            voice_settings=eleven.VoiceSettings(stability=0.5, similarity_boost=0.7, speed=1.1),
        )

    def inference_tts() -> lk_tts.TTS[Any]:
        from livekit.agents import inference

        return inference.TTS(
            "cartesia/sonic-3", voice="v", extra_kwargs={"speed": 1.3}, api_key="k", api_secret="s"
        )

    subjects["inference.TTS (extra_kwargs)"] = inference_tts
    return subjects


def _per_call_us(fn: Callable[[], object], calls: int, blocks: int) -> float:
    samples = []
    for _ in range(blocks):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter_ns() - start) / calls / 1000)
    return median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per timed block")
    parser.add_argument("--blocks", type=int, default=15, help="timed blocks (median kept)")
    args = parser.parse_args()
    quiet_logs()
    header("sound_key per call: the deep voice identity vs the flat key it replaced")
    rows = []
    worst = 0.0
    for name, build in _subjects().items():
        tts = build()
        new = _per_call_us(partial(sound_key, tts, PHRASE), args.calls, args.blocks)
        old = _per_call_us(partial(_old_sound_key, tts, PHRASE), args.calls, args.blocks)
        key = _per_call_us(partial(voice_key, tts), args.calls, args.blocks)
        worst = max(worst, new)
        rows.append((name, f"{new:.1f}", f"{key:.1f}", f"{old:.1f}"))
    print(
        table(
            ["TTS", "sound_key us", "voice_key us", "anchor: old sound_key us"],
            rows,
        )
    )
    print()
    print(
        f"target: sound_key under {TARGET_US:.0f} us per call (median of blocks): "
        f"{verdict(worst < TARGET_US)} (slowest {worst:.1f} us)"
    )


if __name__ == "__main__":
    main()

"""Real LiveKit TTS objects, built offline: two that sound different never share a filler.

Every pair below differs in exactly one option that changes the audio (the cases of
issue 18: a nested protobuf voice, a language, an emotion list, a nested speed, a voice
dict, a nested voice id, a prosody, the inference TTS's ``extra_kwargs``, wrappers) and must
get distinct keys; the same object built in another process gets the same key; a rotated
credential keeps the key. A plugin that is not installed skips its cases.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from livekit.agents import tts as lk_tts

from livekit_filler import voice_key
from livekit_filler.tts_identity import LOCAL_PREFIX, sound_key

Build = Callable[[], lk_tts.TTS[Any]]
PHRASE = "One moment, let me check that."


def _plugin(name: str) -> ModuleType:
    module = f"livekit.plugins.{name}"
    pytest.importorskip(module)
    return importlib.import_module(module)


def _google(**kw: Any) -> Build:
    return lambda: _plugin("google").TTS(credentials_info={"type": "service_account"}, **kw)


def _cartesia(**kw: Any) -> Build:
    return lambda: _plugin("cartesia").TTS(**{"api_key": "ck-1", **kw})


def _elevenlabs(speed: float, **kw: Any) -> Build:
    def build() -> lk_tts.TTS[Any]:
        eleven = _plugin("elevenlabs")
        settings = eleven.VoiceSettings(stability=0.5, similarity_boost=0.7, speed=speed)
        return eleven.TTS(**{"api_key": "xi-1", "voice_settings": settings, **kw})  # type: ignore[no-any-return]

    return build


def _hume(name: str, **kw: Any) -> Build:
    def build() -> lk_tts.TTS[Any]:
        hume = _plugin("hume")
        return hume.TTS(**{"api_key": "h-1", "voice": hume.VoiceByName(name=name), **kw})  # type: ignore[no-any-return]

    return build


def _upliftai(**kw: Any) -> Build:
    return lambda: _plugin("upliftai").TTS(**{"api_key": "u-1", **kw})


def _azure(rate: float | None, **kw: Any) -> Build:
    def build() -> lk_tts.TTS[Any]:
        _plugin("azure")
        azure = importlib.import_module("livekit.plugins.azure.tts")
        prosody = azure.ProsodyConfig(rate=rate) if rate is not None else None
        options = {"speech_key": "az-1", "speech_region": "eastus", **kw}
        if prosody is not None:
            options["prosody"] = prosody
        return azure.TTS(**options)  # type: ignore[no-any-return]

    return build


def _openai(**kw: Any) -> Build:
    return lambda: _plugin("openai").TTS(**{"api_key": "sk-test-1", **kw})


def _deepgram(**kw: Any) -> Build:
    return lambda: _plugin("deepgram").TTS(**{"api_key": "dg-1", **kw})


def _rime(**kw: Any) -> Build:
    return lambda: _plugin("rime").TTS(**{"api_key": "r-1", **kw})


def _inference(**kw: Any) -> Build:
    def build() -> lk_tts.TTS[Any]:
        from livekit.agents import inference

        options = {"voice": "9626c31c", "api_key": "lk-key-1", "api_secret": "lk-secret-1", **kw}
        return inference.TTS("cartesia/sonic-3", **options)

    return build


def _fallback(*voices: str) -> Build:
    return lambda: lk_tts.FallbackAdapter([_openai(voice=v)() for v in voices])


def _stream(voice: str) -> Build:
    return lambda: lk_tts.StreamAdapter(tts=_openai(voice=voice)())


PAIRS: dict[str, tuple[Build, Build]] = {
    "google voice_name (a protobuf)": (
        _google(voice_name="en-US-Chirp3-HD-Charon"),
        _google(voice_name="en-US-Chirp3-HD-Aoede"),
    ),
    "google language (a protobuf)": (_google(language="en-US"), _google(language="de-DE")),
    "cartesia emotion (a list)": (_cartesia(emotion=["calm"]), _cartesia(emotion=["excited"])),
    "elevenlabs speed (nested VoiceSettings)": (_elevenlabs(1.0), _elevenlabs(1.2)),
    "hume voice (a dict)": (_hume("Kora"), _hume("Ito")),
    "upliftai voice_id (nested VoiceSettings)": (
        _upliftai(voice_id="17"),
        _upliftai(voice_id="19"),
    ),
    "azure prosody (a dataclass)": (_azure(1.3), _azure(None)),
    "openai voice": (_openai(voice="alloy"), _openai(voice="echo")),
    "deepgram model": (
        _deepgram(model="aura-2-andromeda-en"),
        _deepgram(model="aura-2-thalia-en"),
    ),
    "rime speaker": (_rime(speaker="lyra"), _rime(speaker="astra")),
    "rime temperature (nested options)": (_rime(temperature=0.5), _rime(temperature=0.9)),
    "inference extra_kwargs": (_inference(extra_kwargs={"speed": 1.3}), _inference()),
    "FallbackAdapter primary": (_fallback("alloy", "echo"), _fallback("echo", "alloy")),
    "StreamAdapter wrapped voice": (_stream("alloy"), _stream("echo")),
}

ROTATED: dict[str, tuple[Build, Build]] = {
    "openai api_key": (_openai(voice="ash"), _openai(voice="ash", api_key="sk-test-2")),
    "cartesia api_key": (_cartesia(), _cartesia(api_key="ck-2")),
    "elevenlabs api_key": (_elevenlabs(1.0), _elevenlabs(1.0, api_key="xi-2")),
    "hume api_key": (_hume("Kora"), _hume("Kora", api_key="h-2")),
    "upliftai api_key": (_upliftai(), _upliftai(api_key="u-2")),
    "azure speech_key": (_azure(1.3), _azure(1.3, speech_key="az-2")),
    "deepgram api_key": (_deepgram(), _deepgram(api_key="dg-2")),
    "rime api_key": (_rime(), _rime(api_key="r-2")),
    "inference api_key and api_secret": (
        _inference(),
        _inference(api_key="lk-key-2", api_secret="lk-secret-2"),
    ),
}


@pytest.mark.parametrize("case", list(PAIRS))
def test_two_tts_that_sound_different_get_different_keys(case: str) -> None:
    one, other = (build() for build in PAIRS[case])
    assert voice_key(one) is not None and voice_key(other) is not None
    assert voice_key(one) != voice_key(other)
    assert sound_key(one, PHRASE) != sound_key(other, PHRASE)
    for tts in (one, other):  # both persist: a disk cache and `render` serve them
        assert not sound_key(tts, PHRASE).startswith(LOCAL_PREFIX)


@pytest.mark.parametrize("case", list(ROTATED))
def test_a_rotated_credential_keeps_the_key_and_never_appears_in_it(case: str) -> None:
    one, other = (build() for build in ROTATED[case])
    assert voice_key(one) == voice_key(other)
    assert sound_key(one, PHRASE) == sound_key(other, PHRASE)
    key = voice_key(one) or ""
    for secret in ("sk-test-1", "ck-1", "xi-1", "h-1", "u-1", "az-1", "dg-1", "r-1", "lk-"):
        assert f'"{secret}' not in key


def test_a_fallback_adapter_is_keyed_by_its_primary_and_a_stream_adapter_by_its_tts() -> None:
    alloy = _openai(voice="alloy")()
    assert voice_key(_fallback("alloy", "echo")()) == voice_key(alloy)
    assert voice_key(_stream("alloy")()) == voice_key(alloy)


def _keys() -> dict[str, list[str | None]]:
    keys: dict[str, list[str | None]] = {}
    for case, builds in PAIRS.items():
        try:
            keys[case] = [voice_key(build()) for build in builds]
        except pytest.skip.Exception:
            continue
    return keys


def test_the_same_tts_built_in_another_process_gets_the_same_key() -> None:
    here = _keys()
    assert here, "no plugin installed"
    script = (
        "import json, sys\n"
        "sys.path[:0] = ['tests', '.']\n"
        "import test_voice_keys as t\n"
        "print(json.dumps(t._keys()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == here


UPDATES: dict[str, tuple[Build, dict[str, Any]]] = {
    # these plugins change a nested option in place: a key cached per object would miss it
    "upliftai voice_id": (_upliftai(voice_id="17"), {"voice_id": "19"}),
    "rime temperature": (_rime(temperature=0.5), {"temperature": 0.9}),
    "inference extra_kwargs": (
        _inference(extra_kwargs={"speed": 1.0}),
        {"extra_kwargs": {"speed": 1.3}},
    ),
    "openai voice": (_openai(voice="alloy"), {"voice": "echo"}),
}


@pytest.mark.parametrize("case", list(UPDATES))
def test_update_options_changes_the_key_at_once(case: str) -> None:
    build, change = UPDATES[case]
    tts = build()
    before = sound_key(tts, PHRASE)
    tts.update_options(**change)  # type: ignore[attr-defined]
    assert sound_key(tts, PHRASE) != before

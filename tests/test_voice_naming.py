"""A TTS whose voice cannot be read: named with ``voice_id``, else kept to its own object.

Also: wrappers render fillers with the TTS they are keyed by (a FallbackAdapter's primary),
so a fallback's voice is never stored under the primary's key.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from filler_harness import wait_until
from livekit.agents import tts as lk_tts

from livekit_filler import FillerController, FillerSettings, voice_key
from livekit_filler.disk_writer import flush
from livekit_filler.errors import FillerConfigError
from livekit_filler.filler_voice import FillerVoice
from livekit_filler.sound_cache import FillerAudioCache
from livekit_filler.testing import FakeLLM, FakeTTS, TimelineRecorder, make_session
from livekit_filler.tts_identity import LOCAL_PREFIX, name_voice, sound_key

PHRASE = "One moment, let me check that."


class OpaqueTTS(FakeTTS):
    """A TTS that keeps its voice where nothing can read it (no options, no public voice)."""

    voice = None  # type: ignore[assignment]


def test_an_unreadable_tts_has_no_voice_key_and_keys_its_sounds_to_itself() -> None:
    one, other = OpaqueTTS(), OpaqueTTS()
    assert voice_key(one) is None
    assert sound_key(one, PHRASE).startswith(LOCAL_PREFIX)
    assert sound_key(one, PHRASE) == sound_key(one, PHRASE)
    assert sound_key(one, PHRASE) != sound_key(other, PHRASE)


def test_a_new_tts_at_a_reused_address_never_inherits_the_old_ones_sounds() -> None:
    seen: dict[int, str] = {}
    reused = 0
    for _ in range(200):  # CPython hands a freed object's address to the next one
        tts = OpaqueTTS()
        key = sound_key(tts, PHRASE)
        if id(tts) in seen:
            reused += 1
            assert seen[id(tts)] != key
        seen[id(tts)] = key
        del tts
        gc.collect()
    assert reused > 0, "no address was reused: the test proved nothing"


def test_an_unreadable_tts_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    tts = OpaqueTTS()
    for _ in range(3):
        sound_key(tts, PHRASE)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "voice_id" in warnings[0].getMessage()


def test_a_named_tts_is_keyed_by_its_name_and_persists() -> None:
    one, other = OpaqueTTS(), OpaqueTTS()
    name_voice(one, "brand-voice")
    name_voice(other, "brand-voice")
    assert voice_key(one) is not None and '"voice_id":"brand-voice"' in (voice_key(one) or "")
    assert sound_key(one, PHRASE) == sound_key(other, PHRASE)
    assert not sound_key(one, PHRASE).startswith(LOCAL_PREFIX)
    name_voice(other, "other-voice")
    assert sound_key(one, PHRASE) != sound_key(other, PHRASE)
    name_voice(other, None)
    assert voice_key(other) is None


def test_a_name_on_a_readable_tts_is_added_to_its_key() -> None:
    tts = FakeTTS()
    plain = sound_key(tts, PHRASE)
    name_voice(tts, "v2")
    assert sound_key(tts, PHRASE) != plain  # a new name renders every filler again
    assert sound_key(tts, PHRASE) == sound_key(tts, PHRASE)


async def test_attach_names_the_sessions_tts_with_voice_id() -> None:
    tts = OpaqueTTS()
    async with make_session(llm=FakeLLM(), tts=tts) as session:
        settings = FillerSettings.from_values(prerender=False, disk_cache=False)
        controller = FillerController.attach(session, settings=settings, voice_id="desk-voice")
        try:
            assert '"voice_id":"desk-voice"' in (voice_key(tts) or "")
            assert FillerController.attach(session, voice_id="desk-voice") is controller
            with pytest.raises(ValueError, match="voice_id"):
                FillerController.attach(session, voice_id="another")
        finally:
            await controller.aclose()


async def test_attach_takes_voice_id_from_the_settings_and_checks_it_early() -> None:
    tts = OpaqueTTS()
    async with make_session(llm=FakeLLM(), tts=tts) as session:
        with pytest.raises(FillerConfigError, match="voice_id"):
            FillerController.attach(session, voice_id=" ")
        assert FillerController.of(session) is None  # nothing attached by a bad call
        settings = FillerSettings.from_values(
            prerender=False, disk_cache=False, voice_id="from-settings"
        )
        controller = FillerController.attach(session, settings=settings)
        try:
            assert '"voice_id":"from-settings"' in (voice_key(tts) or "")
        finally:
            await controller.aclose()


def test_the_voice_id_setting_reads_env_and_refuses_blank(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_VOICE_ID", "brand-voice")
    assert FillerSettings.load().voice_id == "brand-voice"
    monkeypatch.setenv("LIVEKIT_FILLER_VOICE_ID", "  ")
    with pytest.raises(FillerConfigError, match="LIVEKIT_FILLER_VOICE_ID"):
        FillerSettings.load()


async def test_a_fallback_adapter_renders_fillers_with_its_primary_only() -> None:
    primary = FakeTTS(ttfb=0.01, fail_on=lambda text: True)  # down
    backup = FakeTTS(ttfb=0.01, seconds_per_char=0.03)  # another voice
    adapter = lk_tts.FallbackAdapter([primary, backup])
    cache = FillerAudioCache()
    voice = FillerVoice(cache, backoff=(0.01, 0.01))
    assert sound_key(adapter, PHRASE) == sound_key(primary, PHRASE)
    assert await voice.prerender(adapter, [PHRASE]) == 0  # the primary failed: nothing kept
    assert cache.peek(sound_key(adapter, PHRASE)) is None
    assert backup.characters_synthesized == 0  # the backup's voice was never asked
    await adapter.aclose()


async def test_a_fallback_adapter_fillers_persist_under_its_primarys_voice(
    tmp_path: Path,
) -> None:
    primary, backup = FakeTTS(ttfb=0.01), FakeTTS(ttfb=0.01, seconds_per_char=0.03)
    adapter = lk_tts.FallbackAdapter([primary, backup])
    cache = FillerAudioCache()
    cache.persist_to(tmp_path / "cache")
    assert await FillerVoice(cache).prerender(adapter, [PHRASE]) == 1
    assert primary.characters_synthesized == len(PHRASE)
    assert flush()  # the background writer published it
    reader = FillerAudioCache()
    reader.persist_to(tmp_path / "cache")
    assert reader.load(sound_key(FakeTTS(), PHRASE))  # the same voice, in a new process
    await adapter.aclose()


def _render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livekit_filler.cli", "render", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


OPAQUE_MODULE = textwrap.dedent(
    """
    from livekit_filler.testing import FakeTTS

    class OpaqueTTS(FakeTTS):
        voice = None

    def make():
        return OpaqueTTS(ttfb=0.01)
    """
)


def test_render_refuses_an_unreadable_tts_in_one_line_saying_how_to_name_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "voices.py").write_text(OPAQUE_MODULE)
    args = ("--tts", "voices:make", "--cache-dir", str(tmp_path / "c"))
    result = _render(tmp_path, *args)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--voice-id" in lines[0] and "voice_id" in lines[0]

    named = _render(tmp_path, *args, "--voice-id", "desk-voice")
    assert named.returncode == 0, named.stderr
    assert '"voice_id":"desk-voice"' in named.stdout
    # a worker that names its TTS the same finds every phrase on disk
    cache = FillerAudioCache()
    cache.persist_to(tmp_path / "c")
    spec = importlib.util.spec_from_file_location("voices", tmp_path / "voices.py")
    assert spec is not None and spec.loader is not None
    voices = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(voices)
    tts: Any = voices.make()
    name_voice(tts, "desk-voice")
    assert cache.load(sound_key(tts, "One moment, let me check that."))


def test_render_prints_the_voice_key(tmp_path: Path) -> None:
    result = _render(
        tmp_path, "--tts", "livekit_filler.testing:FakeTTS", "--cache-dir", str(tmp_path / "c")
    )
    assert result.returncode == 0, result.stderr
    assert f"voice key: {voice_key(FakeTTS())}" in result.stdout


# -- in a session ---------------------------------------------------------------------------


async def _say_twice(tts: FakeTTS, root: Path, voice_id: str | None = None) -> None:
    from livekit.agents import Agent

    settings = FillerSettings.from_values(
        phrases=[PHRASE], prerender=False, cache_dir=root, timing="fixed"
    )
    async with make_session(llm=FakeLLM(), tts=tts) as session:
        TimelineRecorder.install(session)  # an audio output: fillers are rendered
        controller = FillerController.attach(session, settings=settings, voice_id=voice_id)
        await session.start(Agent(instructions="test"))
        for _ in range(2):
            handle = controller.say_filler(PHRASE)
            assert handle is not None
            await handle
            await wait_until(lambda: controller.voice.is_ready(tts, PHRASE), 5.0)


def _sounds(root: Path) -> list[str]:
    from livekit_filler.disk_store import FILE_FORMAT

    assert flush()  # what the background writer had pending is on disk
    directory = root / f"v{FILE_FORMAT}"
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


async def test_a_session_with_an_unreadable_tts_keeps_its_filler_in_memory_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from livekit_filler import shared_cache

    shared_cache().clear()
    tts = OpaqueTTS(ttfb=0.01, seconds_per_char=0.005)
    await _say_twice(tts, tmp_path / "cache")
    assert tts.synthesized == [PHRASE]  # rendered once, replayed from memory the second time
    assert _sounds(tmp_path / "cache") == []  # never written: nothing says which voice it is
    voice_warnings = [r for r in caplog.records if r.name == "livekit_filler.voice"]
    assert [r.levelno for r in voice_warnings] == [logging.WARNING]

    other = OpaqueTTS(ttfb=0.01, seconds_per_char=0.005)  # maybe another voice: no sharing
    await _say_twice(other, tmp_path / "cache")
    assert other.synthesized == [PHRASE]


async def test_a_session_that_names_its_tts_with_voice_id_caches_its_filler_on_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from livekit_filler import shared_cache

    shared_cache().clear()
    tts = OpaqueTTS(ttfb=0.01, seconds_per_char=0.005)
    await _say_twice(tts, tmp_path / "cache", voice_id="desk-v1")
    assert tts.synthesized == [PHRASE]
    assert _sounds(tmp_path / "cache") == [sound_key(tts, PHRASE)]
    assert not [r for r in caplog.records if r.name == "livekit_filler.voice"]

    shared_cache().clear()  # a fresh process: only the disk remains
    again = OpaqueTTS(ttfb=0.01, seconds_per_char=0.005)
    await _say_twice(again, tmp_path / "cache", voice_id="desk-v1")
    assert again.synthesized == []  # replayed from disk

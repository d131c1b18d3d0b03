"""Sounds of an older cache format (keyed the old way) are never replayed, and are removed."""

from __future__ import annotations

import shutil
from pathlib import Path

from livekit_filler.disk_store import FILE_FORMAT
from livekit_filler.disk_writer import flush
from livekit_filler.sound_cache import FillerAudioCache
from livekit_filler.testing import FakeTTS
from livekit_filler.tts_identity import sound_key

PHRASE = "One moment, let me check that."


async def test_an_older_format_is_never_read_and_is_removed_by_the_size_scan(
    tmp_path: Path,
) -> None:
    tts = FakeTTS(ttfb=0.01)
    frame = await tts.synthesize(PHRASE).collect()
    writer = FillerAudioCache()
    writer.persist_to(tmp_path / "new")
    writer.put(sound_key(tts, PHRASE), frame)
    assert flush()  # the background writer published it
    writer.stores[0].wait_for_scan()
    # the same sound, left under the previous format's directory by an older release
    root = tmp_path / "cache"
    old = root / f"v{FILE_FORMAT - 1}"
    shutil.copytree(tmp_path / "new" / f"v{FILE_FORMAT}", old)
    (root / "v1" / "k").mkdir(parents=True)
    (root / ".retired-v0-1-ab").mkdir()  # a removal cut short
    (root / "tool_latency.json").write_text("{}")  # beside the sounds: not a format

    cache = FillerAudioCache()
    assert cache.persist_to(root) == 0  # nothing of the old format is listed
    assert not cache.load(sound_key(tts, PHRASE))  # nor read
    cache.put(sound_key(tts, "Another phrase."), frame)  # a first write starts the scan
    assert flush()
    cache.stores[0].wait_for_scan()
    assert sorted(p.name for p in root.iterdir()) == ["tool_latency.json", f"v{FILE_FORMAT}"]

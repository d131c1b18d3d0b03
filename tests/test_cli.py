"""``livekit-filler render``: the deploy-time render, run as the console command runs it.

Each test runs ``python -m livekit_filler.cli`` (what the ``livekit-filler`` entry point calls)
in a subprocess, in ``tmp_path``, with the default cache directory isolated by conftest.py.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from livekit_filler.settings import (
    DEFAULT_BUSY_MESSAGE,
    DEFAULT_FOLLOWUP_PHRASES,
    DEFAULT_PHRASES,
)
from livekit_filler.sound_cache import FillerAudioCache
from livekit_filler.testing import FakeTTS
from livekit_filler.tts_identity import sound_key

AGENT_MODULE = textwrap.dedent(
    """
    from livekit.agents import Agent, function_tool
    from livekit_filler import fillers

    class Desk(Agent):
        def __init__(self) -> None:
            super().__init__(instructions="test")

        @function_tool
        @fillers("Let me look.", "One second please.", failure_message="That failed.")
        async def look_up(self) -> str:
            "Look something up."
            return "done"

        @function_tool
        @fillers("Checking the {club} schedule.")
        async def schedule(self, club: str) -> str:
            "A template: not rendered before its arguments are known."
            return club
    """
)
MODULE_PHRASES = ("Let me look.", "One second please.", "That failed.")
DEFAULTS = (*DEFAULT_PHRASES, *DEFAULT_FOLLOWUP_PHRASES)


def render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livekit_filler.cli", "render", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_render_fills_the_cache_once_with_every_phrase_a_worker_may_say(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(AGENT_MODULE)
    cache_dir = tmp_path / "baked"
    # --all: every fixed phrase of the settings too (the defaults; no tool here says them)
    args = ("--all", "--module", "agent", "--tts", "livekit_filler.testing:FakeTTS", "--cache-dir")
    first = render(tmp_path, *args, str(cache_dir))
    assert first.returncode == 0, first.stderr
    # the tools' busy acknowledgement (the global default) too: it is on by default
    expected = [*DEFAULTS, *MODULE_PHRASES, DEFAULT_BUSY_MESSAGE]
    for text in expected:
        assert repr(text) in first.stdout
    assert "{club}" not in first.stdout
    billed = sum(len(t) for t in expected)
    assert f"{billed} characters billed" in first.stdout, first.stdout

    again = render(tmp_path, *args, str(cache_dir))
    assert again.returncode == 0, again.stderr
    assert "0 characters billed" in again.stdout, again.stdout

    # a worker with the same TTS finds every phrase on disk
    cache = FillerAudioCache()
    assert cache.persist_to(cache_dir) == len(expected)
    assert all(cache.load(sound_key(FakeTTS(), text)) for text in expected)


@pytest.mark.parametrize("module", ["no_such_agent_module", "broken_agent"])
def test_render_exits_1_with_one_line_when_the_module_does_not_import(
    tmp_path: Path, module: str
) -> None:
    (tmp_path / "broken_agent.py").write_text("raise RuntimeError('missing API key')\n")
    result = render(tmp_path, "--module", module, "--tts", "livekit_filler.testing:FakeTTS")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"livekit-filler render: cannot import module {module!r}")
    assert result.stdout == ""


def test_render_exits_1_with_one_line_naming_the_tts_and_phrase_when_the_tts_is_unreachable(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tts = f"openai:base_url=http://127.0.0.1:{port}/v1,api_key=test"
    result = render(tmp_path, "--tts", tts, "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"livekit-filler render: the TTS {tts} failed on ")
    assert repr(DEFAULT_PHRASES[0]) in lines[0]

"""The example worker through LiveKit's CLI, and ``livekit-filler render`` for it, as a user runs them.

``python examples/worker.py console --text`` runs in a pseudo-terminal (LiveKit's text prompt
reads raw keys from a terminal) from the repository root, with ``OPENAI_BASE_URL`` pointing at
the local OpenAI server of :mod:`openai_server`: the test types the question and the child's
age and gender, reads the answer, and ends the console with Ctrl+C at the empty prompt. The
text console has no audio output, so it renders no filler (nobody could hear one). ``render``
runs as a subprocess too, and writes the very sounds the worker's ``openai.TTS()`` looks up.

How the console ends: Ctrl+C is the terminal's interrupt, SIGINT to the console's process
group, and LiveKit's console then shuts its worker down and exits 0. That needs the terminal
to be the console's controlling terminal, as for a program started from a shell: without one
(a process started in a new session with the pty only as its stdin) the prompt reads Ctrl+C
as a key and simply prompts again, and only a signal (SIGINT or SIGTERM) ends the console.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import signal
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from example_script import CHILD, FINAL_ANSWER, QUESTION, TASK_QUESTION, front_desk
from filler_harness import wait_until
from openai_server import OpenAIServer, serve

ROOT = Path(__file__).resolve().parent.parent
WORKER_FILLERS = ("Let me look up our programs.", "One moment while I check the program list.")
_ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="types into a pseudo-terminal, pacing keys by the child's /proc wait channel",
)


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with serve(OpenAIServer(front_desk)) as running:
        yield running


def _env(server: OpenAIServer) -> dict[str, str]:
    env = dict(os.environ)  # conftest.py's per-test cache directory (XDG_CACHE_HOME) included
    env.update(
        OPENAI_BASE_URL=server.url,
        OPENAI_API_KEY="test-key",
        TERM="xterm",
        COLUMNS="160",
        LINES="50",
        PYTHONUNBUFFERED="1",
    )
    return env


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin, as a shell
    gives a program it starts, so Ctrl+C there is SIGINT to the console's process group."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Console:
    """``examples/worker.py console --text`` in a pseudo-terminal."""

    def __init__(self, server: OpenAIServer) -> None:
        # the keyboard is a terminal (the prompt reads raw keys); the output a pipe, as when
        # it is logged: with a terminal there too, rich's live prompt redraws over the output
        master, slave = pty.openpty()
        out_r, out_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "examples/worker.py", "console", "--text"],
            stdin=slave,
            stdout=out_w,
            stderr=out_w,
            cwd=ROOT,
            env=_env(server),
            preexec_fn=_own_terminal,
        )
        os.close(slave)
        os.close(out_w)
        self.fd = master
        self.out = out_r
        self.raw = b""
        asyncio.get_running_loop().add_reader(out_r, self._read)

    def _read(self) -> None:
        data = b""
        try:
            data = os.read(self.out, 65536)
        except OSError:
            pass
        if not data:  # the child closed its output
            asyncio.get_running_loop().remove_reader(self.out)
        self.raw += data

    @property
    def text(self) -> str:
        return _ANSI.sub(b"", self.raw).decode(errors="replace")

    async def expect(self, needle: str, timeout: float = 30.0) -> None:
        try:
            await wait_until(lambda: needle in self.text, timeout)
        except TimeoutError:
            raise AssertionError(
                f"{needle!r} never shown; the console:\n{self.text[-3000:]}"
            ) from None

    async def expect_reply(self, reply: str, timeout: float = 30.0) -> None:
        """Wait for the agent's reply as the console prints it (after its log lines), then for
        the prompt to come back: keys typed before it are dropped."""
        await self.expect(f"Agent\n    {reply}", timeout)
        await asyncio.sleep(0.5)

    def _reading_keys(self) -> bool:
        """The console's main thread waits in a read of the terminal: LiveKit's prompt reads
        one key at a time and flushes input that arrives between two reads (TCSAFLUSH).
        Where the kernel hides wait channels ("0"), keys are paced by time instead."""
        try:
            wchan = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/wchan").read_text()
        except OSError:
            return False
        return wchan in ("wait_woken", "0")

    async def type(self, line: str) -> None:
        for ch in [*line, "\r"]:  # a key at a time, each once the prompt waits for it
            await wait_until(self._reading_keys, 30.0)
            await asyncio.sleep(0.03)
            await wait_until(self._reading_keys, 30.0)
            os.write(self.fd, ch.encode())
            await asyncio.sleep(0.03)

    async def end(self, timeout: float = 20.0) -> int:
        """Ctrl+C at the prompt: LiveKit's console shuts the worker down and exits."""
        os.write(self.fd, b"\x03")
        try:
            await wait_until(lambda: self.proc.poll() is not None, timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            asyncio.get_running_loop().remove_reader(self.out)
            os.close(self.out)
            os.close(self.fd)
        return self.proc.returncode


async def _console_call(server: OpenAIServer) -> str:
    """One console session through the thread's flow; returns what the terminal showed."""
    console = Console(server)
    try:
        await console.expect("filler audio cache opened", 60.0)
        await console.expect("no filler pre-render: the session has no audio output", 30.0)
        await console.type(QUESTION)
        await console.expect_reply(TASK_QUESTION)
        await console.type(CHILD)
        await console.expect_reply(FINAL_ANSWER)
    finally:
        code = await console.end()
    assert code == 0, f"the console exited with {code}:\n{console.text[-3000:]}"
    assert "Traceback" not in console.text, console.text
    return console.text


def _filler_speech(server: OpenAIServer) -> list[str]:
    return [t for t in server.spoken() if t in WORKER_FILLERS]


def _assert_no_filler_sent_to_the_model(server: OpenAIServer) -> None:
    chats = [json.dumps(b) for b in server.bodies("chat")]
    assert chats
    assert not [t for t in WORKER_FILLERS for body in chats if t in body]


async def test_worker_console_answers_through_the_agent_task_and_renders_no_filler(
    server: OpenAIServer,
) -> None:
    first = await _console_call(server)
    assert "get_programs" in first and "record_child_profile" in first
    _assert_no_filler_sent_to_the_model(server)
    # text mode: no audio output, so no filler is synthesized (nobody could hear it)
    assert _filler_speech(server) == [], server.spoken()


async def test_render_for_the_worker_writes_the_sounds_the_worker_looks_up(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livekit_filler.cli",
        "render",
        "--module",
        "examples.worker",
        "--tts",
        "openai",
        cwd=ROOT,
        env=_env(server),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(render.communicate(), 100)
    assert render.returncode == 0, err.decode()
    for text in WORKER_FILLERS:
        assert repr(text) in out.decode(), out.decode()
    assert sorted(_filler_speech(server)) == sorted(WORKER_FILLERS)

    # the worker's own TTS (examples/worker.py builds openai.TTS()) finds every one on disk
    from livekit.plugins import openai

    from livekit_filler.disk_store import FILE_FORMAT, default_cache_dir
    from livekit_filler.tts_identity import sound_key

    for name, value in _env(server).items():
        monkeypatch.setenv(name, value)
    tts = openai.TTS()
    try:
        directory = default_cache_dir() / f"v{FILE_FORMAT}"
        missing = [t for t in WORKER_FILLERS if not (directory / sound_key(tts, t)).is_dir()]
    finally:
        await tts.aclose()
    assert missing == [], sorted(p.name for p in directory.iterdir())

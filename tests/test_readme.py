"""The README's Quick start runs as pasted: it imports, and its agent plays a filler.

The block is taken from README.md itself (the first ``python`` block under "## Quick start"),
written to a file and imported as a user's agent module would be (``OPENAI_API_KEY`` set, as
the plugins need it only when the models are built). Its agent then runs in a real
``AgentSession`` on the testing kit, with the entrypoint's own ``FillerController.attach``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from filler_harness import settle

from livekit_filler import FillerController
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    make_session,
)

README = Path(__file__).resolve().parent.parent / "README.md"
QUESTION = "Which programs do you have?"


def quick_start() -> str:
    text = README.read_text()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block under ## Quick start"
    return match.group(1)


def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    path = tmp_path / "agent.py"
    path.write_text(quick_start())
    spec = importlib.util.spec_from_file_location("readme_agent", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "readme_agent", module)
    spec.loader.exec_module(module)
    return module


def test_the_quick_start_is_at_most_25_lines_and_attaches() -> None:
    code = quick_start()
    assert len(code.splitlines()) <= 25, code
    assert "@fillers(" in code and "FillerController.attach(session" in code
    assert max(len(line) for line in code.splitlines()) <= 100


async def test_the_quick_start_agent_plays_its_filler_and_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load(tmp_path, monkeypatch)
    fake = FakeLLM(
        {
            QUESTION: FakeResponse(tool_calls=[FakeToolCall("get_programs")]),
            "Swimming, judo and tennis.": FakeResponse(text="We have swimming, judo and tennis."),
        },
        default=None,
    )
    async with make_session(llm=fake, tts=FakeTTS(ttfb=0.05, seconds_per_char=0.02)) as session:
        rec = TimelineRecorder.install(session, filler_texts=["Let me look up the programs."])
        FillerController.attach(session)  # as the Quick start's entrypoint does
        await session.start(module.FrontDesk(instructions="You are a sports club's front desk."))
        await session.run(user_input=QUESTION)
        await settle(session)
    kinds = [(u.kind, u.text) for u in rec.utterances]
    assert ("filler", "Let me look up the programs.") in kinds, kinds
    assert kinds[-1] == ("speech", "We have swimming, judo and tennis."), kinds

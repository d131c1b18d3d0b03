"""``livekit-filler render`` renders what the named modules' agents can say (issue 24, item 4).

Beyond the tools' fillers (issue 22): every tool's ``busy_message`` (its decorator's, else its
section's, else the global one; ``""`` turns it off), listed with the tools that say it, and
the slow-answer pool when ``[slow_answer] enabled``, listed as said by ``(slow answer)``.

The decorator's phrases beat the tool's section, which beats the global pool; each layer
brings its own languages. What no agent of the module says (the global pool when every tool
has its own, a section the decorator overrides, a section of a tool no agent has) is billed
only with ``--all``. Each phrase is listed with the tools that say it and its characters.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONFIG = textwrap.dedent(
    """
    phrases = ["Global pool phrase."]
    followup_phrases = ["Global follow-up."]

    [languages.fr]
    phrases = ["Phrase globale."]

    [tools.look_up]
    phrases = ["Overridden section phrase."]
    [tools.look_up.languages.de]
    phrases = ["Ueberschriebene Phrase."]

    [tools.by_section]
    phrases = ["Section says this."]
    followup_phrases = ["Section follows up."]
    start_message = "Section starts."
    busy_message = "The section is busy, one moment."
    [tools.by_section.languages.fr]
    phrases = ["La section le dit."]

    [tools.no_agent_has_it]
    phrases = ["Nobody's phrase."]
    """
)

AGENTS = textwrap.dedent(
    """
    from livekit.agents import Agent, function_tool
    from livekit_filler import fillers

    class BaseDesk(Agent):
        @function_tool
        @fillers("Let me look.", "One second please.", failure_message="That failed.")
        async def look_up(self) -> str:
            "Look something up (the decorator's phrases beat its section)."
            return "done"

    class Desk(BaseDesk):
        def __init__(self) -> None:
            super().__init__(instructions="test")

        @function_tool
        async def by_section(self) -> str:
            "No decorator: its section gives it fillers."
            return "done"

        @function_tool
        async def no_fillers(self) -> str:
            "Neither decorated nor in a section."
            return "done"

        @function_tool
        @fillers("One second please.", busy_message="")
        async def look_again(self) -> str:
            "Shares a phrase with look_up."
            return "done"
    """
)

SAID = {
    "Let me look.": ("look_up",),
    "One second please.": ("look_up", "look_again"),
    "That failed.": ("look_up",),
    "Section starts.": ("by_section",),
    "Section says this.": ("by_section",),
    "La section le dit.": ("by_section",),
    "Section follows up.": ("by_section",),
    # busy acknowledgements: every tool, decorated or not (look_again turns its own off)
    "Sorry, just a few more seconds.": ("look_up", "no_fillers"),
    "The section is busy, one moment.": ("by_section",),
}
NEVER_SAID = (
    "Global pool phrase.",
    "Global follow-up.",
    "Phrase globale.",
    "Overridden section phrase.",
    "Ueberschriebene Phrase.",
    "Nobody's phrase.",
)


def render(tmp_path: Path, *args: str, config: str = CONFIG) -> subprocess.CompletedProcess[str]:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "filler.toml").write_text(config)
    (tmp_path / "desk_agents.py").write_text(AGENTS)
    command = [sys.executable, "-m", "livekit_filler.cli", "render", "--module", "desk_agents"]
    tts = ("--tts", "livekit_filler.testing:FakeTTS", "--cache-dir", str(tmp_path / "c"))
    return subprocess.run(
        [*command, *tts, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


LINE = re.compile(r"^  (?:rendered|cached) +\d+ ch  (?P<text>.+)  \((?P<tools>.*)\)$")


def listed(stdout: str) -> dict[str, str]:
    """Each listed phrase's line, by its text."""
    lines: dict[str, str] = {}
    for line in stdout.splitlines():
        if match := LINE.match(line):
            lines[ast.literal_eval(match["text"])] = line
    return lines


def test_render_bills_only_what_the_modules_agents_can_say(tmp_path: Path) -> None:
    result = render(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = listed(result.stdout)
    assert set(lines) == set(SAID), result.stdout
    for text, tools in SAID.items():
        assert lines[text].endswith(f"({', '.join(tools)})"), lines[text]
        assert f"{len(text):4d} ch" in lines[text], lines[text]
    billed = sum(len(t) for t in SAID)
    assert f"{billed} characters billed" in result.stdout, result.stdout
    assert "rendering 9 filler phrases (4 tools)" in result.stdout, result.stdout


@pytest.mark.parametrize("first", [False, True])
def test_render_all_adds_every_fixed_phrase_of_the_settings(tmp_path: Path, first: bool) -> None:
    if not first:  # after a plain render, --all bills only the phrases no agent says
        assert render(tmp_path).returncode == 0
    result = render(tmp_path, "--all")
    assert result.returncode == 0, result.stderr
    lines = listed(result.stdout)
    assert set(lines) == {*SAID, *NEVER_SAID}, result.stdout
    for text in NEVER_SAID:
        assert lines[text].endswith("((settings))"), lines[text]
    billed = sum(len(t) for t in NEVER_SAID) + (sum(len(t) for t in SAID) if first else 0)
    assert f"{billed} characters billed" in result.stdout, result.stdout


SLOW = ("Hmm, let me think about that.", "Un instant, je reflechis.")


@pytest.mark.parametrize("enabled", [True, False])
def test_render_lists_the_slow_answer_pool_when_it_is_enabled(
    tmp_path: Path, enabled: bool
) -> None:
    """The slow-answer pool (its languages too; never a template) is said by no tool: it is
    listed as ``(slow answer)``, and not rendered at all while the filler is off. A global
    ``busy_message = ""`` leaves only the section's acknowledgement."""
    slow = textwrap.dedent(
        f"""
        [slow_answer]
        enabled = {str(enabled).lower()}
        phrases = ["{SLOW[0]}", "Thinking about {{topic}}."]
        [slow_answer.languages.fr]
        phrases = ["{SLOW[1]}"]
        """
    )
    config = 'busy_message = ""\n' + CONFIG + slow
    result = render(tmp_path, config=config)
    assert result.returncode == 0, result.stderr
    lines = listed(result.stdout)
    said = {t: u for t, u in SAID.items() if t != "Sorry, just a few more seconds."}
    if enabled:
        said |= dict.fromkeys(SLOW, ("(slow answer)",))
    assert set(lines) == set(said), result.stdout
    for text, users in said.items():
        assert lines[text].endswith(f"({', '.join(users)})"), lines[text]
    assert "{topic}" not in result.stdout
    assert f"{sum(len(t) for t in said)} characters billed" in result.stdout, result.stdout
    # the slow answer is no tool; no_fillers says nothing with the global busy message off
    assert f"rendering {len(said)} filler phrases (3 tools)" in result.stdout, result.stdout

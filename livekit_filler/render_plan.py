"""What ``livekit-filler render`` renders: the phrases the named modules' agents can say.

A module's tools are its ``Agent`` subclasses' function tools (inherited ones included),
its module-level function tools, and its ``@fillers`` functions. Each tool that may get
fillers (decorated, or named by a ``[tools.NAME]`` section) speaks what
:func:`~livekit_filler.agent_phrases.spoken_by` resolves for it: the decorator's phrases
over its section's over the global pool, with the languages that layer enables. Every tool
(decorated or not) may also say its ``busy_message``, and with ``[slow_answer] enabled`` the
slow-answer pool is listed as said by ``(slow answer)``. Phrases a
worker never says (the global pool when every tool has its own, a section's phrases the
decorator overrides, another layer's languages) are left out, unless ``--all`` asks for
every fixed phrase of the settings too.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from livekit.agents import llm

from .agent_phrases import SLOW_ANSWER, function_tools, registered_tools, spoken_by, tool_rule
from .options import settings_texts, template_fields
from .settings import FillerSettings, ToolRule

__all__ = ["SETTINGS_ONLY", "PlannedPhrase", "module_tools", "plan"]

SETTINGS_ONLY = "(settings)"
"""What ``--all`` lists as the user of a phrase no tool of the modules says."""

Tool = tuple[str, ToolRule | None]


@dataclass(frozen=True)
class PlannedPhrase:
    """One phrase to render, and the tools that may say it."""

    text: str
    tools: tuple[str, ...]


def module_tools(module: ModuleType, settings: FillerSettings) -> list[Tool]:
    """``(tool name, rule)`` of every function tool of ``module``: each may say its
    ``busy_message``; those decorated or named by a section get fillers too."""
    tools: list[Any] = []
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == module.__name__:
            # an agent's tools, its base classes' included (an Agent collects them so)
            for cls in inspect.getmro(value):
                tools += list(vars(cls).values())
        else:
            tools.append(value)
    found: dict[tuple[str, int], Tool] = {}
    wrappers: set[int] = set()
    kinds = (llm.FunctionTool, llm.RawFunctionTool, llm.Toolset)
    for tool in function_tools(t for t in tools if isinstance(t, kinds)):
        rule = tool_rule(tool)
        wrappers.add(id(getattr(tool, "__wrapped__", tool)))
        found.setdefault((tool.info.name, id(rule)), (tool.info.name, rule))
    for registered in registered_tools(module.__name__):
        # a @fillers function no function tool of the module wraps (made a tool at run time)
        if id(registered.wrapper) not in wrappers:
            key = (registered.name, id(registered.rule))
            found.setdefault(key, (registered.name, registered.rule))
    return list(found.values())


def plan(
    settings: FillerSettings, tools: Sequence[Tool], *, everything: bool = False
) -> list[PlannedPhrase]:
    """The phrases ``tools`` (and the slow-answer filler) may say, in the order a caller may
    hear them, with who says each; with ``everything``, every other fixed phrase of the
    settings after them (the global and per-section busy messages included)."""
    users = {text: list(names) for text, names in spoken_by(settings, tools).items()}
    if everything:
        busy = [settings.busy_message, *(r.busy_message or "" for r in settings.tools.values())]
        for text in [*settings_texts(settings), *(b for b in busy if b.strip())]:
            if not template_fields(text):
                users.setdefault(text, [SETTINGS_ONLY])
    return [PlannedPhrase(text, tuple(names)) for text, names in users.items()]


def tool_names(phrases: Iterable[PlannedPhrase]) -> list[str]:
    """The tools that say any of ``phrases`` (``--all``'s settings-only marker and the slow
    answer left out)."""
    names = dict.fromkeys(
        n for p in phrases for n in p.tools if n not in (SETTINGS_ONLY, SLOW_ANSWER)
    )
    return list(names)

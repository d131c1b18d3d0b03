"""What ``livekit-filler render`` renders: the phrases the named modules' agents can say.

A module's tools are its ``Agent`` subclasses' function tools (inherited ones included),
its module-level function tools, and its ``@fillers`` functions. Each tool that may get
fillers (decorated, or named by a ``[tools.NAME]`` section) speaks what
:func:`~livekit_filler.agent_phrases.phrases_for` resolves for it: the decorator's phrases
over its section's over the global pool, with the languages that layer enables. Phrases a
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

from .agent_phrases import function_tools, phrases_for, registered_tools, tool_rule
from .options import settings_texts
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
    """``(tool name, rule)`` of every tool of ``module`` that may get fillers."""
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
        if rule is None and tool.info.name not in settings.tools:
            continue
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
    """The phrases ``tools`` may say, in the order a caller may hear them, with the tools
    that say each; with ``everything``, every other fixed phrase of the settings after them."""
    users: dict[str, list[str]] = {text: [] for text in phrases_for(settings, tools)}
    for name, rule in tools:
        for text in phrases_for(settings, [(name, rule)]):
            if name not in users[text]:
                users[text].append(name)
    if everything:
        for text in settings_texts(settings):
            users.setdefault(text, [SETTINGS_ONLY])
    return [PlannedPhrase(text, tuple(names)) for text, names in users.items()]


def tool_names(phrases: Iterable[PlannedPhrase]) -> list[str]:
    """The tools that say any of ``phrases`` (``--all``'s settings-only marker left out)."""
    names = dict.fromkeys(n for p in phrases for n in p.tools if n != SETTINGS_ONLY)
    return list(names)

"""What an agent may say as fillers, known before its first tool call.

``@fillers(...)`` leaves its validated :class:`~livekit_filler.settings.ToolRule` on the tool
(:data:`RULE_ATTRIBUTE`; ``@function_tool`` copies it onto the ``FunctionTool`` and onto every
bound copy) and in a process-wide registry (:func:`registered_tools`). When an agent becomes
active, the controller reads the rules of its tools, adds the ``[tools.NAME]`` sections of the
settings that name one of them, and pre-renders :func:`phrases_for` them: only what that agent
can say, the words a caller hears first rendered first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from livekit.agents import llm

from .options import FillerOptions, template_fields
from .settings import FillerSettings, ToolRule

__all__ = [
    "RULE_ATTRIBUTE",
    "RegisteredTool",
    "function_tools",
    "phrases_for",
    "register",
    "registered_tools",
    "tool_rule",
    "tools_of",
]

RULE_ATTRIBUTE = "__livekit_filler_rule__"
"""The attribute ``@fillers`` sets on its wrapper (copied onto the ``FunctionTool``)."""


@dataclass(frozen=True)
class RegisteredTool:
    """A function ``@fillers`` decorated: where it lives and its rule."""

    name: str
    """The function's name (the tool's name unless ``@function_tool(name=...)`` changed it)."""
    module: str
    qualname: str
    rule: ToolRule
    wrapper: Any
    """The decorator's wrapper function (what a ``FunctionTool`` wraps)."""


_registry: list[RegisteredTool] = []


def register(wrapper: Any, rule: ToolRule) -> None:
    """Record a decorated tool: mark its wrapper and add it to the registry."""
    setattr(wrapper, RULE_ATTRIBUTE, rule)
    _registry.append(
        RegisteredTool(
            name=getattr(wrapper, "__name__", ""),
            module=getattr(wrapper, "__module__", ""),
            qualname=getattr(wrapper, "__qualname__", ""),
            rule=rule,
            wrapper=wrapper,
        )
    )


def registered_tools(module: str | None = None) -> list[RegisteredTool]:
    """Every tool decorated in this process so far (those of ``module`` and its submodules)."""
    if module is None:
        return list(_registry)
    return [t for t in _registry if t.module == module or t.module.startswith(module + ".")]


def tool_rule(tool: object) -> ToolRule | None:
    """The ``@fillers`` rule a tool (a ``FunctionTool``, bound or not, or the wrapper) carries."""
    rule = getattr(tool, RULE_ATTRIBUTE, None)
    return rule if isinstance(rule, ToolRule) else None


def function_tools(
    tools: Iterable[llm.Tool | llm.Toolset],
) -> Iterator[llm.FunctionTool[Any, Any] | llm.RawFunctionTool[Any, Any]]:
    """The function tools among ``tools``, looking into toolsets."""
    for tool in tools:
        if isinstance(tool, (llm.FunctionTool, llm.RawFunctionTool)):
            yield tool
        elif isinstance(tool, llm.Toolset):
            yield from function_tools(tool.tools)


def tools_of(
    tools: Iterable[llm.Tool | llm.Toolset], settings: FillerSettings
) -> list[tuple[str, ToolRule | None]]:
    """``(name, rule)`` of every tool that may get fillers: decorated, or named by a section."""
    found: dict[str, ToolRule | None] = {}
    for tool in function_tools(tools):
        name = tool.info.name
        rule = tool_rule(tool)
        if rule is not None or name in settings.tools:
            found[name] = rule if rule is not None else found.get(name)
    return list(found.items())


def phrases_for(
    settings: FillerSettings, tools: Sequence[tuple[str, ToolRule | None]]
) -> list[str]:
    """The fixed texts fillers of ``tools`` may speak, in the order a caller may hear them.

    Start messages and first-filler phrases first (the first words of every tool), then the
    first phrases of other languages, then follow-ups (only for tools that may play more
    than one filler), then failure messages. Templates (``{club}``) are left out; so are
    phrases of a tool whose section is disabled, that plays a clip, or plays no filler.
    """
    first: list[str] = []
    languages: list[str] = []
    followups: list[str] = []
    failures: list[str] = []
    for name, rule in tools:
        options = FillerOptions.resolve(settings, name, rule)
        if not options.enabled:
            continue
        if options.start_message:
            first.append(options.start_message)
        if options.max_count > 0 and options.clip is None:
            first += options.pool.phrases
            languages += [p for pool in options.languages.values() for p in pool.phrases]
            if options.max_count > 1:
                followups += options.pool.followups
                followups += [p for pool in options.languages.values() for p in pool.followups]
        if options.failure_message:
            failures.append(options.failure_message)
    texts = dict.fromkeys([*first, *languages, *followups, *failures])
    return [t for t in texts if not template_fields(t)]

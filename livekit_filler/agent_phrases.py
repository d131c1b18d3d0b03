"""What an agent may say as fillers, known before its first tool call.

``@fillers(...)`` leaves its validated :class:`~livekit_filler.settings.ToolRule` on the tool
(:data:`RULE_ATTRIBUTE`; ``@function_tool`` copies it onto the ``FunctionTool`` and onto every
bound copy) and in a process-wide registry (:func:`registered_tools`). When an agent becomes
active, the controller reads the rules of its tools, adds the ``[tools.NAME]`` sections of the
settings that name one of them, and pre-renders :func:`phrases_for` them: only what that agent
can say, the words a caller hears first rendered first. That includes what the agent may say
beyond its tools' fillers: the slow-answer pool (when ``[slow_answer] enabled``) and each
tool's ``busy_message`` (any function tool may be acknowledged as busy, decorated or not).
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
    "SLOW_ANSWER",
    "RegisteredTool",
    "fills",
    "function_tools",
    "phrases_for",
    "register",
    "registered_tools",
    "spoken_by",
    "tool_rule",
    "tools_of",
]

SLOW_ANSWER = "(slow answer)"
"""Who says the slow-answer pool's phrases (:func:`spoken_by`): no tool, the turn itself."""

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
    """``(name, rule)`` of every function tool: any may say its ``busy_message``; only those
    decorated or named by a ``[tools.NAME]`` section get fillers (:func:`fills`)."""
    found: dict[str, ToolRule | None] = {}
    for tool in function_tools(tools):
        name = tool.info.name
        rule = tool_rule(tool)
        found[name] = rule if rule is not None else found.get(name)
    return list(found.items())


def fills(settings: FillerSettings, name: str, rule: ToolRule | None) -> bool:
    """Whether tool ``name`` gets fillers: decorated, or named by a ``[tools.NAME]`` section."""
    return rule is not None or name in settings.tools


def phrases_for(
    settings: FillerSettings, tools: Sequence[tuple[str, ToolRule | None]]
) -> list[str]:
    """The fixed texts an agent with ``tools`` may speak, in the order a caller may hear them.

    See :func:`spoken_by`; this is its texts.
    """
    return list(spoken_by(settings, tools))


def spoken_by(
    settings: FillerSettings, tools: Sequence[tuple[str, ToolRule | None]]
) -> dict[str, tuple[str, ...]]:
    """The fixed texts an agent with ``tools`` may speak, each with who says it (tool names,
    or :data:`SLOW_ANSWER`), in the order a caller may hear them.

    Start messages and first-filler phrases first (the first words of every tool), then the
    slow-answer pool (when ``[slow_answer] enabled`` and it plays no clip), then the first
    phrases of other languages (the slow-answer pool's included), then follow-ups (only for
    tools that may play more than one filler), then failure messages, then each tool's
    ``busy_message`` (its decorator's, else its section's, else the global one; ``""``: none).
    Templates (``{club}``) are left out; so are the filler phrases of a tool whose section is
    disabled, that plays a clip, plays no filler, or gets no fillers at all (neither
    decorated nor named by a section: only its busy message).
    """
    first: list[tuple[str, str]] = []
    languages: list[tuple[str, str]] = []
    followups: list[tuple[str, str]] = []
    failures: list[tuple[str, str]] = []
    busy: list[tuple[str, str]] = []
    for name, rule in tools:
        options = FillerOptions.resolve(settings, name, rule)
        if options.busy_message:  # said whatever the tool's fillers are (busy.py)
            busy.append((options.busy_message, name))
        if not options.enabled or not fills(settings, name, rule):
            continue
        if options.start_message:
            first.append((options.start_message, name))
        if options.max_count > 0 and options.clip is None:
            first += [(p, name) for p in options.pool.phrases]
            languages += [(p, name) for pool in options.languages.values() for p in pool.phrases]
            if options.max_count > 1:
                followups += [(p, name) for p in options.pool.followups]
                followups += [
                    (p, name) for pool in options.languages.values() for p in pool.followups
                ]
        if options.failure_message:
            failures.append((options.failure_message, name))
    slow = settings.slow_answer
    slow_first: list[tuple[str, str]] = []
    if settings.enabled and slow.enabled and slow.clip is None:
        slow_first = [(p, SLOW_ANSWER) for p in slow.phrases]
        languages = [
            *languages,
            *((p, SLOW_ANSWER) for lang in slow.languages.values() for p in lang.phrases),
        ]
    users: dict[str, tuple[str, ...]] = {}
    for text, who in [*first, *slow_first, *languages, *followups, *failures, *busy]:
        if template_fields(text):
            continue  # filled in per call: never rendered ahead (nor kept on disk)
        said_by = users.get(text, ())
        if who not in said_by:
            users[text] = (*said_by, who)
    return users

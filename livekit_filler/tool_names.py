"""Warn about config sections that name a tool no agent class defines."""

from __future__ import annotations

from livekit.agents import Agent
from livekit.agents.llm import FunctionTool, RawFunctionTool

from .log import logger
from .settings import FillerSettings

_warned: set[str] = set()


def known_tool_names() -> set[str]:
    """Names of the function tools of every ``Agent`` class defined in this process."""
    names: set[str] = set()
    pending: list[type[Agent]] = [Agent]
    seen: set[type[Agent]] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        for value in vars(cls).values():
            if isinstance(value, FunctionTool | RawFunctionTool):
                names.add(value.info.name)
    return names


def warn_unknown_tools(settings: FillerSettings) -> list[str]:
    """Log a warning (once per name) for each ``[tools.X]`` section no agent has a tool for."""
    if not settings.tools:
        return []
    unknown = sorted(set(settings.tools) - known_tool_names() - _warned)
    for name in unknown:
        _warned.add(name)
        logger.warning(
            "filler config names a tool that no agent defines",
            extra={"tool": name, "config_key": f"tools.{name}"},
        )
    return unknown

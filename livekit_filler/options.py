"""Per-call filler options: decorator arguments over the tool's config rule over global settings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from .settings import FillerSettings

OnAnswer = Literal["cut", "finish"]
_T = TypeVar("_T")


@dataclass(frozen=True)
class ToolFillerSpec:
    """What a ``@fillers(...)`` decoration asked for; ``None`` means "use the settings"."""

    phrases: tuple[str, ...] = ()
    delay: float | None = None
    interval: float | None = None
    max_count: int | None = None

    def __post_init__(self) -> None:
        for phrase in self.phrases:
            if not isinstance(phrase, str) or not phrase.strip():
                raise ValueError(f"fillers(): phrases must be non-empty strings, got {phrase!r}")
        _check_seconds("delay", self.delay, allow_zero=True)
        _check_seconds("interval", self.interval, allow_zero=False)
        if self.max_count is not None and (
            isinstance(self.max_count, bool)
            or not isinstance(self.max_count, int)
            or self.max_count < 0
        ):
            raise ValueError(
                f"fillers(): max_count must be an integer >= 0, got {self.max_count!r}"
            )


def _first(*values: _T | None) -> _T:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value given")


def _check_seconds(name: str, value: float | None, *, allow_zero: bool) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"fillers(): {name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"fillers(): {name} must be {bound} seconds, got {value!r}")


@dataclass(frozen=True)
class FillerOptions:
    """The resolved options one tool call plays its fillers with."""

    delay: float
    interval: float
    max_count: int
    phrases: tuple[str, ...]
    followup_phrases: tuple[str, ...]
    on_answer: OnAnswer
    allow_interruptions: bool

    @classmethod
    def resolve(
        cls, settings: FillerSettings, tool_name: str, spec: ToolFillerSpec | None = None
    ) -> FillerOptions:
        """Merge ``spec`` (decorator) over the tool's rule over the global ``settings``."""
        spec = spec or ToolFillerSpec()
        rule = settings.tools.get(tool_name)

        phrases: Sequence[str] = spec.phrases or (
            rule.phrases if rule is not None and rule.phrases else settings.phrases
        )
        followups: Sequence[str] = (
            rule.followup_phrases
            if rule is not None and rule.followup_phrases is not None
            else settings.followup_phrases
        )
        if spec.phrases and (rule is None or rule.followup_phrases is None):
            # phrases given on the decorator replace the whole pool: the tool's own words
            followups = ()
        return cls(
            delay=_first(spec.delay, rule.delay if rule else None, settings.delay),
            interval=_first(spec.interval, rule.interval if rule else None, settings.interval),
            max_count=_first(spec.max_count, rule.max_count if rule else None, settings.max_count),
            phrases=tuple(phrases),
            followup_phrases=tuple(followups),
            on_answer=settings.on_answer,
            allow_interruptions=settings.allow_interruptions,
        )

    def merged_with(self, other: FillerOptions) -> FillerOptions:
        """Options for a stream shared by parallel calls: the eagerest timing wins."""
        return FillerOptions(
            delay=min(self.delay, other.delay),
            interval=min(self.interval, other.interval),
            max_count=max(self.max_count, other.max_count),
            phrases=self.phrases,
            followup_phrases=self.followup_phrases,
            on_answer=self.on_answer,
            allow_interruptions=self.allow_interruptions,
        )

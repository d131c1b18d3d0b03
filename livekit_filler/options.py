"""Per-call filler options: decorator arguments over the tool's config rule over global settings."""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from .settings import FillerSettings, LanguagePhrases, ToolRule

OnAnswer = Literal["cut", "finish"]
_T = TypeVar("_T")


@dataclass(frozen=True)
class ToolFillerSpec:
    """What a ``@fillers(...)`` decoration asked for; ``None`` means "use the settings"."""

    phrases: tuple[str, ...] = ()
    delay: float | None = None
    interval: float | None = None
    max_count: int | None = None
    start_message: str | None = None
    start_message_before_run: bool = False
    failure_message: str | None = None

    def __post_init__(self) -> None:
        for name, text in (
            *(("phrases", p) for p in self.phrases),
            ("start_message", self.start_message),
            ("failure_message", self.failure_message),
        ):
            if text is not None and (not isinstance(text, str) or not text.strip()):
                raise ValueError(f"fillers(): {name} must be non-empty strings, got {text!r}")
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

    def texts(self) -> Iterable[str]:
        """Every text this spec may speak."""
        yield from self.phrases
        for text in (self.start_message, self.failure_message):
            if text is not None:
                yield text


def _check_seconds(name: str, value: float | None, *, allow_zero: bool) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"fillers(): {name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"fillers(): {name} must be {bound} seconds, got {value!r}")


def _first(*values: _T | None) -> _T:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value given")


def template_fields(text: str) -> set[str]:
    """The ``{name}`` fields of a phrase template (``"Checking the {club} schedule"``)."""
    return {
        name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(text) if name
    }


def fill(text: str, values: Mapping[str, object]) -> str | None:
    """Fill a template from the tool's arguments; None when a field has no value."""
    if not template_fields(text):
        return text
    try:
        return text.format_map(dict(values))
    except (KeyError, IndexError, AttributeError, ValueError):
        return None


@dataclass(frozen=True)
class Pool:
    """First-filler and follow-up phrases."""

    phrases: tuple[str, ...]
    followups: tuple[str, ...] = ()


@dataclass(frozen=True)
class FillerOptions:
    """The resolved options one tool call plays its fillers with."""

    delay: float
    interval: float
    max_count: int
    pool: Pool
    on_answer: OnAnswer
    allow_interruptions: bool
    languages: Mapping[str, Pool] = field(default_factory=dict)
    clip: str | None = None
    start_message: str | None = None
    start_message_before_run: bool = False
    failure_message: str | None = None

    @classmethod
    def resolve(
        cls, settings: FillerSettings, tool_name: str, spec: ToolFillerSpec | None = None
    ) -> FillerOptions:
        """Merge ``spec`` (decorator) over the tool's rule over the global ``settings``."""
        spec = spec or ToolFillerSpec()
        rule = settings.tools.get(tool_name) or ToolRule()
        if spec.phrases:
            # phrases given on the decorator are the tool's own words: they replace every pool
            pool = Pool(spec.phrases)
            languages: dict[str, Pool] = {}
        elif rule.phrases:
            # so are a config rule's phrases, with the rule's own follow-ups and languages
            pool = Pool(tuple(rule.phrases), tuple(rule.followup_phrases or ()))
            languages = {k: _pool(v) for k, v in (rule.languages or {}).items()}
        else:
            pool = Pool(
                tuple(settings.phrases),
                tuple(
                    rule.followup_phrases
                    if rule.followup_phrases is not None
                    else settings.followup_phrases
                ),
            )
            languages = {k: _pool(v) for k, v in settings.languages.items()}
            languages.update({k: _pool(v) for k, v in (rule.languages or {}).items()})
        return cls(
            delay=_first(spec.delay, rule.delay, settings.delay),
            interval=_first(spec.interval, rule.interval, settings.interval),
            max_count=_first(spec.max_count, rule.max_count, settings.max_count),
            pool=pool,
            on_answer=settings.on_answer,
            allow_interruptions=settings.allow_interruptions,
            languages=languages,
            clip=None if spec.phrases else (rule.clip or settings.clip),
            start_message=spec.start_message or rule.start_message,
            start_message_before_run=spec.start_message_before_run or rule.start_message_before_run,
            failure_message=spec.failure_message or rule.failure_message,
        )

    def pool_for(self, language: str | None) -> Pool:
        """The phrases for ``language`` ("fr-CA" falls back to "fr"), else the default pool."""
        if language:
            for code in (language, language.split("-")[0]):
                for key, pool in self.languages.items():
                    if key.lower() == code.lower():
                        return pool
        return self.pool

    def merged_with(self, other: FillerOptions) -> FillerOptions:
        """Options for a stream shared by parallel calls: the eagerest timing wins."""
        return FillerOptions(
            delay=min(self.delay, other.delay),
            interval=min(self.interval, other.interval),
            max_count=max(self.max_count, other.max_count),
            pool=self.pool,
            on_answer=self.on_answer,
            allow_interruptions=self.allow_interruptions,
            languages=self.languages,
            clip=self.clip,
        )


def _pool(phrases: LanguagePhrases) -> Pool:
    return Pool(tuple(phrases.phrases), tuple(phrases.followup_phrases))


def settings_texts(settings: FillerSettings) -> list[str]:
    """Every fixed (non-template) text the settings may speak, for pre-rendering."""
    texts = [*settings.phrases, *settings.followup_phrases]
    for lang in settings.languages.values():
        texts += [*lang.phrases, *lang.followup_phrases]
    for rule in settings.tools.values():
        texts += [*(rule.phrases or ()), *(rule.followup_phrases or ())]
        for lang in (rule.languages or {}).values():
            texts += [*lang.phrases, *lang.followup_phrases]
        texts += [t for t in (rule.start_message, rule.failure_message) if t]
    return [t for t in dict.fromkeys(texts) if not template_fields(t)]

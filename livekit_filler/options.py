"""The one option model: a tool's layers (decorator > config section > global) resolved per call.

A ``@fillers(...)`` decoration and a ``[tools.NAME]`` config section are both a
:class:`~livekit_filler.settings.ToolRule`, validated by the same pydantic model. A call's
:class:`FillerOptions` is the first value given by the decorator, then the tool's section,
then the global settings; parallel calls of one step :func:`combine` theirs.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from .errors import FillerConfigError
from .settings import FillerSettings, LanguagePhrases, ToolRule

OnAnswer = Literal["cut", "finish"]
Timing = Literal["adaptive", "fixed"]
_T = TypeVar("_T")


def decorator_rule(phrases: Sequence[object], **options: Any) -> ToolRule:
    """Validate ``@fillers(...)`` arguments into a :class:`ToolRule` (None = not given).

    Raises:
        FillerConfigError: a bad option, naming it and its value (a ``ValueError``).
    """
    # None is "not given"; False and 0 are values, which beat a config section's
    values = {
        k: list(v) if isinstance(v, tuple) else v for k, v in options.items() if v is not None
    }
    if phrases:
        values["phrases"] = list(phrases)
    try:
        # strict: True is not a delay, "2" is not a count
        return ToolRule.model_validate(values, strict=True)
    except ValidationError as e:
        raise FillerConfigError(
            *(
                f"fillers(): {'.'.join(str(p) for p in err['loc'][:1])} = {err['input']!r}: "
                f"{err['msg']}"
                for err in e.errors(include_url=False)
            )
        ) from None


def rule_texts(rule: ToolRule) -> list[str]:
    """Every text a rule may speak (phrases, follow-ups, languages, start and failure messages)."""
    texts = [*(rule.phrases or ()), *(rule.followup_phrases or ())]
    for lang in (rule.languages or {}).values():
        texts += [*lang.phrases, *lang.followup_phrases]
    texts += [t for t in (rule.start_message, rule.failure_message) if t]
    return texts


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

    def __add__(self, other: Pool) -> Pool:
        return Pool(_unique(self.phrases, other.phrases), _unique(self.followups, other.followups))


@dataclass(frozen=True)
class FillerOptions:
    """The resolved options one tool call plays its fillers with."""

    delay: float
    interval: float
    max_count: int
    pool: Pool
    on_answer: OnAnswer = "cut"
    allow_interruptions: bool = True
    languages: Mapping[str, Pool] = field(default_factory=dict)
    clip: str | None = None
    start_message: str | None = None
    start_message_before_run: bool = False
    failure_message: str | None = None
    timing: Timing = "fixed"
    """``"adaptive"``: timed by the tool's learned latency (see :mod:`livekit_filler.latency`)."""
    grace: float = 0.1
    fast_below: float = 0.5
    slow_after: float = 1.0
    finish_within: float = 0.3
    enabled: bool = True
    """False: this tool plays no filler (its decorator's or section's ``enabled``)."""
    busy_message: str | None = None
    """Said once when the caller speaks during the tool while it cannot be interrupted; None:
    off (an empty or blank message)."""

    @classmethod
    def resolve(
        cls, settings: FillerSettings, tool_name: str, decorator: ToolRule | None = None
    ) -> FillerOptions:
        """Resolve ``decorator`` over the tool's config section over the global ``settings``."""
        own = decorator or ToolRule()
        section = settings.tools.get(tool_name) or ToolRule()
        if own.phrases:
            # phrases given on the decorator are the tool's own words: they replace every pool
            pool = Pool(tuple(own.phrases), tuple(own.followup_phrases or ()))
            languages = _pools(own.languages)
        elif section.phrases:
            # so are a section's phrases, with the section's own follow-ups and languages
            pool = Pool(tuple(section.phrases), tuple(section.followup_phrases or ()))
            languages = _pools(section.languages)
        else:
            followups = _first(section.followup_phrases, settings.followup_phrases)
            pool = Pool(tuple(settings.phrases), tuple(followups))
            languages = {**_pools(settings.languages), **_pools(section.languages)}
        return cls(
            delay=_first(own.delay, section.delay, settings.delay),
            interval=_first(own.interval, section.interval, settings.interval),
            max_count=_first(own.max_count, section.max_count, settings.max_count),
            pool=pool,
            on_answer=settings.on_answer,
            allow_interruptions=settings.allow_interruptions,
            languages=languages,
            clip=None if own.phrases else _first(own.clip, section.clip, settings.clip, None),
            start_message=_first(own.start_message, section.start_message, None),
            start_message_before_run=_first(
                own.start_message_before_run, section.start_message_before_run, False
            ),
            failure_message=_first(own.failure_message, section.failure_message, None),
            timing=_first(own.timing, section.timing, settings.timing),
            grace=_first(own.grace, section.grace, settings.grace),
            fast_below=_first(own.fast_below, section.fast_below, settings.fast_below),
            slow_after=_first(own.slow_after, section.slow_after, settings.slow_after),
            finish_within=settings.finish_within,
            enabled=_first(own.enabled, section.enabled, True),
            busy_message=_first(
                own.busy_message, section.busy_message, settings.busy_message
            ).strip()
            or None,
        )

    def pool_for(self, language: str | None) -> Pool:
        """The phrases for ``language`` ("fr-CA" falls back to "fr"), else the default pool."""
        if language:
            for code in (language, language.split("-")[0]):
                for key, pool in self.languages.items():
                    if key.lower() == code.lower():
                        return pool
        return self.pool

    def texts(self) -> list[str]:
        """Every fixed (non-template) text these options may speak, first fillers first."""
        pools = [self.pool, *self.languages.values()]
        texts = [p for pool in pools for p in pool.phrases]
        texts += [p for pool in pools for p in pool.followups]
        texts += [t for t in (self.start_message, self.failure_message) if t]
        return [t for t in dict.fromkeys(texts) if not template_fields(t)]


def combine(options: Sequence[FillerOptions]) -> FillerOptions:
    """The options of a stream that parallel calls of one step share.

    The eagerest timing wins (shortest delay, interval and grace, most fillers; fixed timing
    when any call asks for it); every call's phrases may be spoken; the messages, clip and flags are the first call's that has one.
    Start and failure messages are still spoken per call, from each call's own options.
    """
    if not options:
        raise ValueError("combine() needs at least one FillerOptions")
    first, *rest = options
    if not rest:
        return first
    languages: dict[str, Pool] = {}
    for opts in options:
        for code, pool in opts.languages.items():
            languages[code] = languages[code] + pool if code in languages else pool
    pool = first.pool
    for opts in rest:
        pool = pool + opts.pool
    return FillerOptions(
        delay=min(o.delay for o in options),
        interval=min(o.interval for o in options),
        max_count=max(o.max_count for o in options),
        pool=pool,
        on_answer=first.on_answer,
        allow_interruptions=first.allow_interruptions,
        languages=languages,
        clip=_first(*(o.clip for o in options), None),
        start_message=_first(*(o.start_message for o in options), None),
        start_message_before_run=any(o.start_message_before_run for o in options),
        failure_message=_first(*(o.failure_message for o in options), None),
        timing="fixed" if any(o.timing == "fixed" for o in options) else "adaptive",
        grace=min(o.grace for o in options),
        fast_below=min(o.fast_below for o in options),
        slow_after=min(o.slow_after for o in options),
        finish_within=first.finish_within,
        enabled=any(o.enabled for o in options),
        busy_message=_first(*(o.busy_message for o in options), None),
    )


def settings_texts(settings: FillerSettings) -> list[str]:
    """Every fixed (non-template) text the settings may speak, for pre-rendering."""
    texts = [*settings.phrases, *settings.followup_phrases]
    for lang in settings.languages.values():
        texts += [*lang.phrases, *lang.followup_phrases]
    for rule in settings.tools.values():
        texts += rule_texts(rule)
    return [t for t in dict.fromkeys(texts) if not template_fields(t)]


def _first(*values: _T | None) -> _T:
    """The first value that is not None (the last argument is the default)."""
    for value in values[:-1]:
        if value is not None:
            return value
    return values[-1]  # type: ignore[return-value]


def _unique(a: Iterable[str], b: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))


def _pools(languages: Mapping[str, LanguagePhrases] | None) -> dict[str, Pool]:
    return {
        code: Pool(tuple(lang.phrases), tuple(lang.followup_phrases))
        for code, lang in (languages or {}).items()
    }

"""Filler settings: defaults in code, overridden by a TOML file, the environment and arguments.

Sources, highest priority first, deep-merged:

1. keyword arguments (``FillerSettings.load(delay=2)`` or ``FillerSettings(delay=2)``);
2. ``LIVEKIT_FILLER_*`` environment variables, nested with ``__``
   (``LIVEKIT_FILLER_TOOLS__GET_PROGRAMS__DELAY=2``; lists and tables must be JSON);
3. a TOML file: the ``config_file=`` argument of :meth:`FillerSettings.load`, else the path in
   ``LIVEKIT_FILLER_CONFIG_FILE``, else ``config/filler.toml`` relative to the working
   directory (skipped when absent);
4. the defaults below.

The library never reads a ``.env`` file; load one in the application if you want it.
Any invalid input raises :class:`~livekit_filler.errors.FillerConfigError`.

This module is the schema (the sections and their defaults); the value types are in
:mod:`.settings_fields`, the sources and the error messages naming them in
:mod:`.settings_sources`.
"""

from __future__ import annotations

import importlib
import logging
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from livekit.agents import NOT_GIVEN, tts as lk_tts
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .errors import FillerConfigError
from .settings_fields import (
    CacheDir,
    Clip,
    Count,
    LanguageCode,
    Phrase,
    PositiveSeconds,
    Seconds,
    Timing,
    ToolName,
    VoiceId,
)
from .settings_sources import (
    CONFIG_FILE_ENV,
    ENV_PREFIX,
    FillerTomlSource,
    describe_settings_error,
    describe_validation_error,
    prefixed_env,
    resolve_config_file,
    toml_sources,
    using_config_file,
    values_only,
)

__all__ = [
    "DEFAULT_FOLLOWUP_PHRASES",
    "DEFAULT_PHRASES",
    "FillerSettings",
    "LanguagePhrases",
    "SlowAnswerSettings",
    "ToolRule",
    "VoiceSettings",
]

logger = logging.getLogger("livekit_filler.settings")

DEFAULT_PHRASES: tuple[str, ...] = (
    "One moment, let me check that.",
    "Just a second while I look that up.",
    "Let me find that for you.",
)
DEFAULT_FOLLOWUP_PHRASES: tuple[str, ...] = (
    "Still checking, thanks for waiting.",
    "Almost there, thanks for your patience.",
)

DEFAULT_SLOW_ANSWER_PHRASES: tuple[str, ...] = (
    "Hmm, let me think about that.",
    "One second.",
    "Let me see.",
)
DEFAULT_BUSY_MESSAGE = "Sorry, just a few more seconds."


def _check_thresholds(fast_below: float | None, slow_after: float | None) -> None:
    if fast_below is not None and slow_after is not None and fast_below > slow_after:
        raise ValueError(
            f"fast_below ({fast_below}) must not be above slow_after ({slow_after}):"
            " a tool cannot be both fast and slow"
        )


# --- models ---------------------------------------------------------------------------


class LanguagePhrases(BaseModel):
    """Filler phrases for one language.

    Attributes:
        phrases: First-filler pool; at least one phrase.
        followup_phrases: Pool for the second filler onward; empty reuses ``phrases``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    phrases: list[Phrase] = Field(min_length=1)
    followup_phrases: list[Phrase] = Field(default_factory=list)


class ToolRule(BaseModel):
    """Per-tool overrides; ``None`` means "use the global setting".

    Attributes:
        phrases: First-filler pool for this tool.
        followup_phrases: Pool for this tool's second filler onward.
        delay: Seconds the tool must run before its first filler.
        interval: Seconds of silence between two fillers of one call.
        max_count: Most fillers per call.
        clip: Built-in clip name or audio file path played instead of speech.
        languages: Per-language phrase pools for this tool.
        start_message: Spoken as the tool starts.
        start_message_before_run: Hold the tool body until the start message has played.
        failure_message: Spoken when the tool raises.
        enabled: False turns fillers off for this tool; True (from a decorator) turns them
            on over a section's false. The global ``enabled = false`` turns off every tool.
        timing: ``"adaptive"`` or ``"fixed"`` for this tool (see :class:`FillerSettings`).
        grace: Seconds before the first filler when this tool is predicted slow.
        fast_below: This tool is fast when its recent calls (p90) returned within this.
        slow_after: This tool is slow when its recent calls (median) took at least this.
        busy_message: Said once per call when the caller speaks while this tool runs and its
            step cannot be interrupted; ``""`` turns it off for this tool (see
            :class:`FillerSettings`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    phrases: list[Phrase] | None = Field(default=None, min_length=1)
    followup_phrases: list[Phrase] | None = None
    delay: Seconds | None = None
    interval: PositiveSeconds | None = None
    max_count: Count | None = None
    clip: Clip | None = None
    languages: dict[LanguageCode, LanguagePhrases] | None = None
    start_message: Phrase | None = None
    start_message_before_run: bool | None = None
    failure_message: Phrase | None = None
    enabled: bool | None = None
    timing: Timing | None = None
    grace: Seconds | None = None
    fast_below: Seconds | None = None
    slow_after: Seconds | None = None
    busy_message: str | None = None

    @model_validator(mode="after")
    def _thresholds(self) -> ToolRule:
        _check_thresholds(self.fast_below, self.slow_after)
        return self


class VoiceSettings(BaseModel):
    """A TTS that renders fillers when the session has none (a realtime model's session).

    Pick the voice the realtime model speaks with: OpenAI's TTS voices share their names
    with its realtime voices (``alloy``, ``ash``, ``coral``, ``sage``, ``verse``...).

    Attributes:
        provider: The LiveKit plugin to build it with (``"openai"``: ``livekit.plugins.openai``,
            the ``examples`` extra; it reads ``OPENAI_API_KEY``).
        voice: The provider's voice name.
        model: The provider's TTS model.
        speed: Speaking rate (1.0 is normal).
        instructions: How to speak (tone, pace), for models that take it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["openai"] = "openai"
    voice: Annotated[str, Field(min_length=1)] = "alloy"
    model: Annotated[str, Field(min_length=1)] = "gpt-4o-mini-tts"
    speed: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    instructions: str | None = None

    def build(self) -> lk_tts.TTS[Any]:
        """Build the TTS (a ``livekit.plugins.openai.TTS``), importing the plugin only now.

        Raises:
            FillerConfigError: The plugin is not installed, or it refuses these options (for
                example no ``OPENAI_API_KEY``); the message names the ``voice`` setting.
        """
        try:
            openai = importlib.import_module("livekit.plugins.openai")
        except ImportError:
            raise FillerConfigError(
                f"voice.provider = {self.provider!r}: the filler voice needs the OpenAI plugin;"
                " install livekit-plugins-openai (pip install 'livekit-filler[examples]')"
            ) from None
        try:
            tts: lk_tts.TTS[Any] = openai.TTS(
                model=self.model,
                voice=self.voice,
                speed=self.speed,
                instructions=self.instructions or NOT_GIVEN,
            )
        except Exception as e:
            raise FillerConfigError(
                f"voice = {self.model_dump(exclude_none=True)!r}:"
                f" cannot build the {self.provider} filler voice: {e}"
            ) from None
        return tts


def _after(value: object) -> object:
    """``after``: a positive number of seconds, or ``"adaptive"``."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "adaptive":
            return "adaptive"
        try:
            value = float(text)
        except ValueError:
            raise ValueError('after must be a number of seconds above 0, or "adaptive"') from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError('after must be a number of seconds above 0, or "adaptive"')
    if not (math.isfinite(value) and value > 0):
        raise ValueError('after must be a number of seconds above 0, or "adaptive"')
    return float(value)


class SlowAnswerSettings(BaseModel):
    """A filler when the answer itself is slow: no tool runs, the LLM has not answered yet.

    Attributes:
        enabled: Off by default (turn-level fillers are a product choice).
        after: Seconds after the end of the user's turn with no answer before the filler
            speaks, or ``"adaptive"``: learned from this session's own reply leads, so it
            speaks only when a reply is later than usual.
        phrases: The pool (one phrase per slow answer, never the same twice in a row).
        clip: A built-in clip name or audio file path played instead of a phrase.
        languages: Per-language pools, keyed by code, as for tool fillers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    after: Annotated[float | Literal["adaptive"], BeforeValidator(_after)] = 1.2
    phrases: list[Phrase] = Field(default_factory=lambda: list(DEFAULT_SLOW_ANSWER_PHRASES))
    clip: Clip | None = None
    languages: dict[LanguageCode, LanguagePhrases] = Field(default_factory=dict)

    @field_validator("phrases")
    @classmethod
    def _phrases(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value and info.data.get("enabled"):
            raise ValueError("an enabled slow-answer filler needs at least one phrase")
        return value


# --- settings -------------------------------------------------------------------------


class FillerSettings(BaseSettings):
    """Everything that shapes filler speech, validated at load.

    Use :meth:`load` at start-up; ``FillerSettings(**kwargs)`` reads the same sources.
    Times are float seconds.

    Attributes:
        enabled: False turns all fillers off.
        delay: Seconds a tool must have run before its first filler.
        interval: Seconds of silence between two fillers of one tool call.
        max_count: Most fillers per tool call.
        phrases: First-filler pool.
        followup_phrases: Pool for the second filler onward; empty reuses ``phrases``.
        languages: Per-language phrase pools, keyed by code ("en", "fr", "es-MX").
        on_answer: ``"cut"`` stops a playing filler when the answer is ready; ``"finish"``
            lets it end first (the reply waits).
        allow_interruptions: Whether the user can interrupt a filler.
        prerender: Render the phrases an agent may say in the background when it becomes
            active (session start, hand-off, AgentTask), one at a time, after the session's
            own speech.
        disk_cache: Keep rendered filler audio on disk, so a fresh process (LiveKit runs
            each call in one) replays what an earlier call or ``livekit-filler render``
            synthesized; False keeps it in this process's memory only.
        cache_dir: The disk cache's directory; ``None`` is the per-user cache directory
            (``~/.cache/livekit-filler`` on Linux, from ``platformdirs``). It must not be a
            file.
        cache_max_mb: The disk cache's size bound in MiB; above it the least recently used
            sounds are evicted.
        memory_cache_mb: The bound in MiB of the sounds a process keeps in memory; above it
            the least recently used are dropped (read from disk or rendered again when next
            needed). Sounds playing and those of the agents holding the floor are kept.
        persist_templated: Write phrases filled with a tool's arguments (``"{name}"``) to the
            disk cache too. Off by default: such a sound speaks the caller's data (a name, an
            address) and would stay on disk after the call; on, a repeated value (a club, a
            city) plays without synthesis in later calls. Contextual (LLM-written) fillers are
            never written.
        project: Whose tool latencies these are: histories in a shared cache directory are
            kept per project, so two agents' ``lookup`` tools never share one. ``None`` is the
            directory of the program the process runs (the worker script).
        clip: Built-in clip name (e.g. ``"keyboard_typing"``) or .wav/.ogg/.mp3 file path.
        voice: A TTS for fillers in sessions without one (speech-to-speech models), e.g.
            ``voice = {provider = "openai", voice = "alloy"}``; built when a controller
            attaches, and only used when neither the agent nor the session has a TTS.
        voice_id: Names the sound of the session's TTS (else the filler voice) in the
            filler audio cache key. Needed for a TTS whose options cannot be read (its
            fillers are otherwise kept in memory for that TTS object only); for any other
            it is added to the key, so changing it renders every filler again. Give each
            voice its own name (``livekit_filler.voice_key(tts)`` shows the key).
        tools: Per-tool overrides, keyed by tool name.
        trace_text: Put what each filler said in its OpenTelemetry span (``lk.filler.text``);
            off by default, as traces often leave the machine.
        timing: ``"adaptive"`` (default) learns each tool's latency from its recent calls
            (kept beside the audio cache) and times fillers by it: a tool predicted slow
            speaks after ``grace``, one predicted fast stays silent unless it overruns, an
            unknown one waits ``delay``; phrases are fitted to the predicted wait.
            ``"fixed"`` always waits ``delay`` and ``interval``.
        grace: Seconds before the first filler of a tool predicted slow.
        fast_below: A tool whose recent calls (p90) returned within this many seconds is fast.
        slow_after: A tool whose recent calls (median) took at least this many seconds is slow.
        finish_within: The answer window before any reply has been timed: when the answer
            is ready, a playing filler with at most this many seconds left finishes; a longer
            one ends at a pause between words. Once replies are timed, the window is their
            learned lead (see docs/guide.md, "Natural timing").
        slow_answer: The filler for a slow answer with no tool running
            (:class:`SlowAnswerSettings`; off by default).
        busy_message: Said once per call when the caller speaks, and stops, while a tool
            whose step cannot be interrupted still runs; ``""`` turns it off
            (``[tools.X] busy_message`` overrides it per tool).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    enabled: bool = True
    delay: Seconds = 1.0
    interval: PositiveSeconds = 4.0
    max_count: Count = 3
    phrases: list[Phrase] = Field(default_factory=lambda: list(DEFAULT_PHRASES), min_length=1)
    followup_phrases: list[Phrase] = Field(default_factory=lambda: list(DEFAULT_FOLLOWUP_PHRASES))
    languages: dict[LanguageCode, LanguagePhrases] = Field(default_factory=dict)
    on_answer: Literal["cut", "finish"] = "cut"
    allow_interruptions: bool = True
    prerender: bool = True
    disk_cache: bool = True
    cache_dir: CacheDir | None = None
    cache_max_mb: Annotated[int, Field(ge=1)] = 256
    memory_cache_mb: Annotated[int, Field(ge=1)] = 64
    persist_templated: bool = False
    project: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    clip: Clip | None = None
    voice: VoiceSettings | None = None
    voice_id: VoiceId | None = None
    tools: dict[ToolName, ToolRule] = Field(default_factory=dict)
    trace_text: bool = False
    timing: Timing = "adaptive"
    grace: Seconds = 0.1
    fast_below: Seconds = 0.5
    slow_after: Seconds = 1.0
    finish_within: Seconds = 0.3
    slow_answer: SlowAnswerSettings = Field(default_factory=SlowAnswerSettings)
    busy_message: str = DEFAULT_BUSY_MESSAGE

    _NESTED_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"tools", "languages", "voice", "slow_answer"}
    )

    @model_validator(mode="after")
    def _thresholds(self) -> FillerSettings:
        _check_thresholds(self.fast_below, self.slow_after)
        return self

    def __init__(self, **values: Any) -> None:
        """Build settings from ``values``, the environment and the TOML file.

        Raises:
            FillerConfigError: Any input is invalid, or a named config file is missing.
        """
        if not values_only.get():
            _warn_unknown_env(type(self))
        sources: list[FillerTomlSource] = []
        token = toml_sources.set(sources)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            toml = sources[-1] if sources else None
            raise FillerConfigError(*describe_validation_error(exc, values, toml)) from None
        except SettingsError as exc:
            raise FillerConfigError(*describe_settings_error(exc)) from None
        finally:
            toml_sources.reset(token)

    @classmethod
    def load(cls, *, config_file: str | Path | None = None, **overrides: Any) -> FillerSettings:
        """Load settings at start-up: arguments > environment > TOML file > defaults.

        Args:
            config_file: TOML file to read instead of ``LIVEKIT_FILLER_CONFIG_FILE`` or
                ``config/filler.toml``. It must exist.
            **overrides: Field values that beat every other source.

        Returns:
            The validated, frozen settings.

        Raises:
            FillerConfigError: Any input is invalid, or a named config file is missing.
        """
        with using_config_file(Path(config_file) if config_file is not None else None):
            return cls(**overrides)

    @classmethod
    def from_values(cls, **values: Any) -> FillerSettings:
        """Build settings from ``values`` and the built-in defaults only: no env, no file.

        For tests, demos and code that configures fillers explicitly.

        Raises:
            FillerConfigError: Any value is invalid.
        """
        token = values_only.set(True)
        try:
            return cls(**values)
        finally:
            values_only.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read arguments, then ``LIVEKIT_FILLER_*`` variables, then the TOML file; no .env."""
        if values_only.get():
            return (init_settings,)
        path, named_by = resolve_config_file()
        if named_by is not None and not path.is_file():
            raise FillerConfigError(f"config file {str(path)!r} (from {named_by}) does not exist")
        toml = FillerTomlSource(settings_cls, toml_file=path)
        sources = toml_sources.get()
        if sources is not None:
            sources.append(toml)
        return init_settings, env_settings, toml


def _warn_unknown_env(settings_cls: type[FillerSettings]) -> None:
    """Log ``LIVEKIT_FILLER_*`` variables that match no setting (they would be ignored)."""
    fields = settings_cls.model_fields
    for key, (name, _value) in sorted(prefixed_env().items()):
        if key == CONFIG_FILE_ENV:
            continue
        first, nested, _rest = key.removeprefix(ENV_PREFIX).lower().partition("__")
        if first in fields and (not nested or first in settings_cls._NESTED_FIELDS):
            continue
        logger.warning(
            "ignoring environment variable %s: it matches no livekit-filler setting",
            name,
            extra={"env_var": name},
        )

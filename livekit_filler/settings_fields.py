"""The value types of the settings, each validated where it is read.

Phrases (not blank), tool names (identifiers), language codes, clips (a built-in clip name or
an existing audio file; :func:`resolve_clip` turns one into what LiveKit plays), seconds,
counts, the cache directory (not a file) and voice ids. A bad value raises a ``ValueError``
that :class:`~.settings.FillerSettings` reports as a
:class:`~livekit_filler.errors.FillerConfigError` naming the setting and its source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from livekit.agents import BuiltinAudioClip
from pydantic import AfterValidator, Field

__all__ = [
    "CacheDir",
    "Clip",
    "Count",
    "LanguageCode",
    "Phrase",
    "PositiveSeconds",
    "Seconds",
    "Timing",
    "ToolName",
    "VoiceId",
    "resolve_clip",
]

_CLIP_SUFFIXES = (".wav", ".ogg", ".mp3")
_LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")


# --- field validators -------------------------------------------------------------------


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("phrases must not be blank")
    return value


def _tool_name(value: str) -> str:
    if not value.isidentifier():
        raise ValueError("tool names must be Python identifiers")
    return value


def _language_code(value: str) -> str:
    if not _LANGUAGE_RE.fullmatch(value):
        raise ValueError('language codes look like "en", "fr" or "es-MX"')
    return value


def _builtin_clip(value: str) -> BuiltinAudioClip | None:
    return BuiltinAudioClip.__members__.get(value.upper())


def _clip(value: str) -> str:
    if _builtin_clip(value) is not None:
        return value
    if not value.lower().endswith(_CLIP_SUFFIXES):
        builtins = ", ".join(name.lower() for name in BuiltinAudioClip.__members__)
        raise ValueError(
            f"clip must be a built-in clip name ({builtins}) or a .wav/.ogg/.mp3 file path"
        )
    if not Path(value).expanduser().is_file():
        raise ValueError("clip file does not exist")
    return value


def _voice_id(value: str) -> str:
    if not value.strip() or value != value.strip():
        raise ValueError("voice_id must be a non-blank name without surrounding spaces")
    if not value.isprintable():
        raise ValueError("voice_id must be printable text (no newline or control character)")
    return value


def _cache_dir(value: Path) -> Path:
    path = value.expanduser()
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "" if candidate == path else f" ({str(candidate)!r})"
                raise ValueError(
                    f"cache_dir must be a directory, but {str(path)!r}{where} is a file"
                )
            break
    return path


def resolve_clip(clip: str) -> str | BuiltinAudioClip:
    """Turn a validated ``clip`` setting into what ``BackgroundAudioPlayer`` plays.

    Args:
        clip: A built-in clip name (any case) or an audio file path.

    Returns:
        The :class:`BuiltinAudioClip` member, or the expanded file path.
    """
    builtin = _builtin_clip(clip)
    return builtin if builtin is not None else str(Path(clip).expanduser())


Phrase = Annotated[str, AfterValidator(_non_blank)]
ToolName = Annotated[str, AfterValidator(_tool_name)]
LanguageCode = Annotated[str, AfterValidator(_language_code)]
Clip = Annotated[str, AfterValidator(_clip)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
CacheDir = Annotated[Path, AfterValidator(_cache_dir)]
VoiceId = Annotated[str, Field(max_length=200), AfterValidator(_voice_id)]
Timing = Literal["adaptive", "fixed"]

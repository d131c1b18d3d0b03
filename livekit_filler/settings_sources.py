"""Where settings come from, and error messages that name the source of each bad value.

The sources of :class:`~.settings.FillerSettings`: keyword arguments, ``LIVEKIT_FILLER_*``
environment variables (:func:`prefixed_env`) and a TOML file (:class:`FillerTomlSource`,
found by :func:`resolve_config_file`). A validation error is turned into one line per bad
value naming where it came from: the argument, the environment variable, or the file and key
(:func:`describe_validation_error`, :func:`describe_settings_error`); a malformed TOML file is
named with its line and column.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError, TomlConfigSettingsSource

from .errors import FillerConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "FillerTomlSource",
    "describe_settings_error",
    "describe_validation_error",
    "prefixed_env",
    "resolve_config_file",
    "toml_sources",
    "using_config_file",
    "values_only",
]

ENV_PREFIX = "LIVEKIT_FILLER_"
"""Prefix of every environment variable read by :class:`~.settings.FillerSettings`."""
CONFIG_FILE_ENV = "LIVEKIT_FILLER_CONFIG_FILE"
"""Environment variable naming the TOML file (it is not a setting itself)."""
DEFAULT_CONFIG_FILE = Path("config/filler.toml")
"""TOML file read when none is named, relative to the working directory; may be absent."""

_TOML_POSITION_RE = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


# --- source bookkeeping ---------------------------------------------------------------

# Set by FillerSettings.load(config_file=...) for the duration of one construction.
_config_file_arg: ContextVar[Path | None] = ContextVar("_config_file_arg", default=None)
# Set by FillerSettings.from_values(): arguments only, no environment and no file.
values_only: ContextVar[bool] = ContextVar("values_only", default=False)
# The TOML source built for the construction in progress, kept to name keys in errors.
toml_sources: ContextVar[list[FillerTomlSource] | None] = ContextVar("toml_sources", default=None)


class FillerTomlSource(TomlConfigSettingsSource):
    """``TomlConfigSettingsSource`` whose parse errors name the file and line."""

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path) -> None:
        self.display_path = str(toml_file)
        super().__init__(settings_cls, toml_file=toml_file)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            with file_path.open(mode="rb") as f:
                text = f.read().decode()
            data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FillerConfigError(_describe_toml_error(self.display_path, text, exc)) from None
        except UnicodeDecodeError as exc:
            raise FillerConfigError(f"{self.display_path}: not UTF-8 text ({exc.reason})") from None
        except OSError as exc:
            raise FillerConfigError(
                f"{self.display_path}: cannot read config file ({exc.strerror or exc})"
            ) from None
        return data


def _describe_toml_error(path: str, text: str, exc: tomllib.TOMLDecodeError) -> str:
    msg = str(exc)
    match = _TOML_POSITION_RE.match(msg)
    if match:
        return (
            f"{path}, line {match['line']}, column {match['col']}: malformed TOML: {match['msg']}"
        )
    # tomllib reports "(at end of document)" without a position: that is the last line.
    msg = msg.removesuffix(" (at end of document)")
    return f"{path}, line {max(len(text.splitlines()), 1)} (end of file): malformed TOML: {msg}"


def resolve_config_file() -> tuple[Path, str | None]:
    """Return the TOML path and who named it (``None`` for the optional default)."""
    arg = _config_file_arg.get()
    if arg is not None:
        return arg, "argument config_file"
    for name, value in os.environ.items():
        if name.upper() == CONFIG_FILE_ENV and value:
            return Path(value), name
    return DEFAULT_CONFIG_FILE, None


def prefixed_env() -> dict[str, tuple[str, str]]:
    """``LIVEKIT_FILLER_*`` variables keyed by upper-case name: ``(real name, value)``."""
    return {
        name.upper(): (name, value)
        for name, value in os.environ.items()
        if name.upper().startswith(ENV_PREFIX)
    }


def _has_path(data: Any, path: Sequence[str | int]) -> bool:
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "<root>"


def _env_var_for(path: Sequence[str | int]) -> str | None:
    """Name the environment variable that supplied the value at ``path``, if any."""
    env = prefixed_env()
    for end in range(len(path), 0, -1):
        head = path[:end]
        if any(isinstance(part, int) for part in head):
            continue
        key = ENV_PREFIX + "__".join(str(part) for part in head).upper()
        if key not in env:
            continue
        name, raw = env[key]
        rest = path[end:]
        if not rest:
            return name
        try:
            parsed = json.loads(raw)
        except ValueError:
            continue
        if _has_path(parsed, rest):
            return name
    return None


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_validation_error(
    exc: ValidationError, init_kwargs: Mapping[str, Any], toml: FillerTomlSource | None
) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(error["loc"])
        msg = error["msg"]
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
            msg = "invalid key: " + msg.removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            msg = "unknown setting"
        msg = msg.removeprefix("Value error, ")

        env_name = _env_var_for(loc)
        if _has_path(init_kwargs, loc):
            source = "argument"
        elif env_name is not None:
            source = env_name
            if error["type"] in ("list_type", "dict_type", "model_type") and isinstance(
                error["input"], str
            ):
                msg += " (lists and tables in environment variables must be JSON)"
        elif toml is not None and _has_path(toml.toml_data, loc):
            source = f"{toml.display_path}: {_dotted(loc)}"
        else:
            source = "argument"
        problems.append(f"{_dotted(loc)} = {_short_repr(error['input'])} (from {source}): {msg}")
    return problems


_SETTINGS_ERROR_FIELD_RE = re.compile(r'field "(?P<field>[^"]+)"')


def describe_settings_error(exc: SettingsError) -> list[str]:
    """Turn pydantic-settings' JSON parse failure into problems naming the variables."""
    match = _SETTINGS_ERROR_FIELD_RE.search(str(exc))
    problems = []
    if match:
        stem = ENV_PREFIX + match["field"].upper()
        for key, (name, raw) in sorted(prefixed_env().items()):
            if key != stem and not key.startswith(stem + "__"):
                continue
            try:
                json.loads(raw)
            except ValueError:
                path = key.removeprefix(ENV_PREFIX).lower().split("__")
                problems.append(
                    f"{_dotted(path)} = {_short_repr(raw)} (from {name}): not valid JSON;"
                    " lists and tables in environment variables must be JSON,"
                    """ e.g. '["One moment.", "Let me check."]'"""
                )
    return problems or [str(exc)]


@contextmanager
def using_config_file(path: Path | None) -> Iterator[None]:
    token = _config_file_arg.set(path)
    try:
        yield
    finally:
        _config_file_arg.reset(token)

"""What a TTS's options say about its sound, as one text that is the same in every process.

Pure: no LiveKit, no I/O. :func:`describe` turns a TTS's option object into canonical JSON:

- data is kept, recursively: dataclasses (by field), mappings, lists, tuples, sets (sorted),
  protobuf and proto-plus messages (by their set fields), enums (by value),
  ``str``, ``int``, ``bool`` and ``float`` (an integral float is written as an int, so
  ``speed=1`` and ``speed=1.0`` are one sound);
- ``None`` and "not given" sentinels (LiveKit's and OpenAI's ``NOT_GIVEN``), and empty
  containers, are dropped from dataclasses and mappings (they are ``null`` inside a list,
  where a position means something);
- anything else (clients, sessions, tokenizers, callables) is not data and is left out;
- credentials are never kept: a field or key whose name looks like one (:func:`is_secret_name`)
  or a string that looks like one (:func:`is_secret_value`) is left out.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "canonical",
    "canonical_options",
    "describe",
    "dumps",
    "is_secret_name",
    "is_secret_value",
]

MAX_DEPTH = 12
"""Nesting below this is left out (a cycle, or not options)."""

_SECRET_PARTS = frozenset(
    {
        "key",
        "apikey",
        "secret",
        "token",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "jwt",
        "bearer",
        "cookie",
        "signature",
        "sig",
    }
)
"""Words of a name (split at ``_``, ``-``, ``.`` and camelCase) that make it a secret."""
_SECRET_SUBSTRINGS = ("secret", "password", "passwd", "credential", "jwt", "bearer", "apikey")
"""Found anywhere in a lower-cased name (``clientsecret``, ``xiapikey``): a secret."""
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")
_SCHEME_VALUE_RE = re.compile(r"^\s*(bearer|basic|token|digest)\s+\S", re.IGNORECASE)
_JWT_RE = re.compile(r"^eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*$")
_API_KEY_RE = re.compile(r"^(sk|rk|pk|sess)[-_][A-Za-z0-9_-]{16,}$")
_PEM = "-----BEGIN "
NOT_SOUND = frozenset({"conn_options"})
"""Option fields that only shape the connection (LiveKit's ``APIConnectOptions``)."""
_NOT_GIVEN_TYPES = frozenset({"NotGiven", "Omit"})
"""Type names of "not given" sentinels: livekit.agents.types.NotGiven, openai's NotGiven."""


class _Omitted:
    """Marks a value that is left out."""


_OMIT: Any = _Omitted()


@functools.lru_cache(maxsize=1024)
def is_secret_name(name: str) -> bool:
    """True when a field or key called ``name`` may hold a credential (its value is dropped).

    ``api_key``, ``subscription_key``, ``api_secret``, ``auth_token``, ``jwt_token``,
    ``password``, ``Authorization``, ``credentials_info``... A word must match whole, so
    ``max_tokens`` or ``keywords`` are kept.
    """
    lowered = name.lower()
    if any(s in lowered for s in _SECRET_SUBSTRINGS):
        return True
    return any(word.lower() in _SECRET_PARTS for word in _WORD_RE.findall(name))


def is_secret_value(value: str) -> bool:
    """True when a string looks like a credential, whatever its field is called.

    An authorization header value (``Bearer ...``, ``Basic ...``), a JWT, an API-key-shaped
    token (``sk-...``), a PEM block, or a URL carrying a user name or password, or a query
    parameter named like a secret (``?token=...``, ``?api_key=...``, ``?sig=...``).
    """
    stripped = value.strip()
    if len(stripped) < 8:
        return False
    if " " in stripped and (_SCHEME_VALUE_RE.match(stripped) or _PEM in stripped):
        return True
    if stripped.startswith("eyJ") and _JWT_RE.match(stripped):
        return True
    if stripped[2:3] in ("-", "_") or stripped.startswith("sess"):
        if _API_KEY_RE.match(stripped):
            return True
    if _PEM in stripped:
        return True
    if "://" in stripped:
        try:
            url = urlsplit(stripped)
            has_user = url.username is not None or url.password is not None
        except ValueError:
            return True  # an unreadable URL: keep nothing of it
        if has_user:
            return True
        query = parse_qsl(url.query, keep_blank_values=True) + parse_qsl(url.fragment)
        return any(is_secret_name(k) or is_secret_value(v) for k, v in query)
    return False


def canonical(value: Any, _depth: int = 0) -> Any:
    """``value`` as JSON data that is equal in every process for equal options.

    Returns:
        A ``dict``, ``list``, ``str``, ``int``, ``float`` or ``bool``; or ``None`` for a value
        that is left out (not data, a secret, not given).
    """
    result = _canonical(value, _depth)
    return None if result is _OMIT else result


def canonical_options(options: object) -> dict[str, Any] | None:
    """The canonical data of a TTS's option object (a dataclass, a mapping, or a plain
    object's attributes); None when nothing of it is data (it says nothing of the sound)."""
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        data = _canonical(options, 0)
    elif isinstance(options, Mapping):
        data = _canonical(options, 0)
    else:
        fields = getattr(options, "__dict__", None)
        data = _mapping(fields.items(), 0) if isinstance(fields, dict) else _OMIT
    return data if isinstance(data, dict) and data else None


def describe(options: object) -> str | None:
    """:func:`canonical_options` as JSON text, keys sorted: equal for equal options in
    every process."""
    data = canonical_options(options)
    return None if data is None else dumps(data)


def dumps(data: Any) -> str:
    """Canonical data as compact JSON text with sorted keys."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str:  # the common cases first: this runs on every filler's cache lookup
        return _OMIT if is_secret_value(value) else value
    if kind is bool or kind is int:
        return value
    if kind is float:
        return _number(value)
    if depth > MAX_DEPTH or value is None or kind.__name__ in _NOT_GIVEN_TYPES:
        return _OMIT
    if isinstance(value, enum.Enum):
        return _canonical(value.value, depth + 1)
    if isinstance(value, bool | int):
        return value if isinstance(value, bool) else int(value)
    if isinstance(value, float):
        return _number(float(value))
    if isinstance(value, str):
        return _OMIT if is_secret_value(value) else str(value)
    if isinstance(value, bytes | bytearray):
        return {"bytes": value.hex()} if len(value) <= 256 else _OMIT
    if kind is dict:
        return _mapping(value.items(), depth)
    names = _dataclass_fields(kind)  # type: ignore[arg-type]  # types are hashable
    if names is not None:
        return _mapping([(name, getattr(value, name, None)) for name in names], depth)
    if isinstance(value, Mapping):
        return _mapping(value.items(), depth)
    if isinstance(value, list | tuple) or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)
    ):
        items = (_canonical(item, depth + 1) for item in value)
        return [None if item is _OMIT else item for item in items]
    if isinstance(value, set | frozenset):
        members = [m for m in (_canonical(v, depth + 1) for v in value) if m is not _OMIT]
        return sorted(members, key=lambda m: json.dumps(m, sort_keys=True))
    message = _message_fields(value)
    if message is not None:
        return _canonical(message, depth + 1)
    return _OMIT  # not data: a client, a session, a tokenizer, a callable...


@functools.lru_cache(maxsize=256)
def _dataclass_fields(kind: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type (None for any other type)."""
    if not dataclasses.is_dataclass(kind):
        return None
    return tuple(f.name for f in dataclasses.fields(kind))


def _mapping(items: Any, depth: int) -> Any:
    out: dict[str, Any] = {}
    for key, item in items:
        if type(key) is str:
            name = key
        else:
            name = _canonical(key, depth + 1)
            if name is _OMIT or isinstance(name, dict | list):
                continue
            name = str(name).lower() if isinstance(name, bool) else str(name)
        if name in NOT_SOUND or is_secret_name(name):
            continue
        data = _canonical(item, depth + 1)
        if data is _OMIT or data == {} or data == []:
            continue
        out[name] = data
    return out


def _number(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 2**53:
        return int(value)  # 1.0 and 1 are the same speed; -0.0 is 0
    return value  # repr is the shortest text that reads back as the same float


def _message_fields(value: Any) -> dict[str, Any] | None:
    """A protobuf or proto-plus message's set fields by name; None for anything else.

    Enum fields read as their numbers, repeated fields as sequences, maps as mappings,
    nested messages as messages (read again by :func:`_canonical`).
    """
    cls = type(value)
    message = value
    to_pb = getattr(cls, "pb", None)
    if callable(to_pb) and hasattr(cls, "meta") and not hasattr(value, "DESCRIPTOR"):
        try:
            message = to_pb(value)  # proto-plus: the protobuf message it wraps
        except Exception:
            return None
    list_fields = getattr(message, "ListFields", None)
    if not (hasattr(message, "DESCRIPTOR") and callable(list_fields)):
        return None
    try:
        return {field.name: item for field, item in list_fields()}
    except Exception:
        return None

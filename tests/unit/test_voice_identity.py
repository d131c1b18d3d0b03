"""The canonical description of a TTS's options: deep, stable, and without credentials."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from livekit.agents import NOT_GIVEN

from livekit_filler.voice_identity import (
    canonical,
    canonical_options,
    describe,
    is_secret_name,
    is_secret_value,
)


@dataclass
class _Prosody:
    rate: float | None = None
    pitch: str | None = None


class _Style(enum.Enum):
    CALM = "calm"
    LOUD = "loud"


@dataclass
class _Options:
    voice: str = "alloy"
    speed: float = 1.0
    prosody: Any = NOT_GIVEN
    emotion: list[str] = field(default_factory=list)
    style: _Style = _Style.CALM
    extra: dict[str, Any] = field(default_factory=dict)
    tokenizer: object = field(default_factory=object)
    api_key: str = "k-1"


def test_nested_values_are_part_of_the_description() -> None:
    base = describe(_Options())
    assert base is not None
    assert describe(_Options(prosody=_Prosody(rate=1.3))) != base
    assert describe(_Options(prosody=_Prosody(rate=1.3))) != describe(
        _Options(prosody=_Prosody(rate=1.2))
    )
    assert describe(_Options(emotion=["calm"])) != describe(_Options(emotion=["excited"]))
    assert describe(_Options(extra={"speed": 1.3})) != base
    assert describe(_Options(extra={"a": {"b": [1, 2]}})) != describe(
        _Options(extra={"a": {"b": [2, 1]}})
    )
    assert describe(_Options(style=_Style.LOUD)) != base


def test_equal_options_give_equal_text_whatever_the_order_or_the_object() -> None:
    assert describe(_Options(extra={"a": 1, "b": 2})) == describe(_Options(extra={"b": 2, "a": 1}))
    # clients, tokenizers and other objects are no part of the sound
    assert describe(_Options(tokenizer=object())) == describe(_Options())
    assert json.loads(describe(_Options()) or "") == {"voice": "alloy", "speed": 1, "style": "calm"}


def test_not_given_none_and_empty_are_one_and_the_same_absence() -> None:
    base = describe(_Options())
    assert describe(_Options(prosody=None)) == base
    assert describe(_Options(prosody=_Prosody())) == base  # a nested object with nothing set
    assert describe(_Options(extra={"x": None, "y": NOT_GIVEN})) == base
    # inside a list a position means something: None stays as null
    assert canonical([1, None, 2]) == [1, None, 2]


def test_floats_are_stable_and_an_integral_float_is_its_int() -> None:
    assert describe(_Options(speed=1)) == describe(_Options(speed=1.0))
    assert describe(_Options(speed=-0.0)) == describe(_Options(speed=0))
    assert canonical(0.1 + 0.2) == 0.30000000000000004  # repr round-trips, never rounded
    assert canonical(float("nan")) == "NaN" and canonical(float("inf")) == "Infinity"
    assert canonical(True) is True and canonical(1) == 1  # a bool stays a bool


def test_sets_are_sorted_and_enums_read_by_value() -> None:
    assert canonical({"b", "a", "c"}) == ["a", "b", "c"]

    class Encoding(enum.IntEnum):
        PCM = 7

    assert canonical(Encoding.PCM) == 7


def test_a_protobuf_message_is_read_by_its_fields() -> None:
    from google.protobuf import descriptor_pb2 as pb

    def field(name: str, kind: int) -> pb.FieldDescriptorProto:
        return pb.FieldDescriptorProto(name=name, number=3, type=kind)  # type: ignore[arg-type]

    string, boolean = pb.FieldDescriptorProto.TYPE_STRING, pb.FieldDescriptorProto.TYPE_BOOL
    assert canonical(field("Charon", string)) == {"name": "Charon", "number": 3, "type": 9}
    assert canonical(field("Charon", string)) != canonical(field("Aoede", string))
    assert canonical(field("Charon", string)) != canonical(field("Charon", boolean))
    # nested messages and repeated fields, read the same way in every process
    nested = pb.FileDescriptorProto(
        name="voice", dependency=["a", "b"], message_type=[pb.DescriptorProto(name="Kora")]
    )
    assert canonical(nested) == {
        "name": "voice",
        "dependency": ["a", "b"],
        "message_type": [{"name": "Kora"}],
    }
    assert describe({"voice": field("Charon", string)}) == describe(
        {"voice": field("Charon", string)}
    )


def test_options_with_no_data_say_nothing() -> None:
    @dataclass
    class OnlyObjects:
        client: object = field(default_factory=object)

    assert describe(OnlyObjects()) is None
    assert canonical_options(object()) is None
    assert canonical(lambda: 1) is None


def test_a_cycle_ends_at_the_depth_bound() -> None:
    loop: dict[str, Any] = {"voice": "x"}
    loop["self"] = loop
    assert describe(loop) is not None


# -- credentials: one test per pattern ---------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "subscription_key",
        "apiKey",
        "xi-api-key",
        "api_secret",
        "client_secret",
        "auth_token",
        "access_token",
        "jwt_token",
        "password",
        "db_passwd",
        "Authorization",
        "auth",
        "credentials_info",
        "credential",
        "bearer",
        "signature",
    ],
)
def test_a_field_named_like_a_secret_is_left_out(name: str) -> None:
    assert is_secret_name(name)
    assert describe({"voice": "alloy", name: "plain-looking-value"}) == '{"voice":"alloy"}'


@pytest.mark.parametrize(
    "name", ["max_tokens", "keywords", "monkey", "author", "voice_id", "tokenizer", "speaker"]
)
def test_a_field_that_only_contains_a_secret_word_is_kept(name: str) -> None:
    assert not is_secret_name(name)


def test_a_header_mapping_loses_its_authorization() -> None:
    headers = {"Authorization": "x", "X-Api-Key": "y", "X-Voice": "z"}
    assert canonical({"extra_headers": headers}) == {"extra_headers": {"X-Voice": "z"}}


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abcdef123456",
        "basic dXNlcjpwYXNz",
        "Token abcdef123456",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
        "sk-proj-abcdefghijklmnopqrstuvwx",
        "sk_live_abcdefghijklmnopqrstuvwx",
        "-----BEGIN PRIVATE KEY-----\nMIIE...",
        "https://user:pass@tts.example.com/v1",
        "https://user@tts.example.com/v1",
        "wss://tts.example.com/v1?token=abc123",
        "https://tts.example.com/v1?api_key=abc123&voice=x",
        "https://tts.example.com/v1?sig=abc123",
        "https://tts.example.com/v1#access_token=abc123",
    ],
)
def test_a_value_that_looks_like_a_secret_is_left_out(value: str) -> None:
    assert is_secret_value(value)
    assert describe({"voice": "alloy", "endpoint": value}) == '{"voice":"alloy"}'


@pytest.mark.parametrize(
    "value",
    [
        "en-US-Chirp3-HD-Charon",
        "hpp4J3VqNfWAUOO0d1Us",
        "f786b574-daa5-4673-aa0c-cbe3e8534c02",
        "https://api.cartesia.ai",
        "wss://api.upliftai.org/v1?voice=17",
        "Speak calmly, with a smile.",
        "skip-this-phrase",
    ],
)
def test_voice_names_ids_and_plain_urls_are_kept(value: str) -> None:
    assert not is_secret_value(value)
    assert describe({"voice": value}) == json.dumps({"voice": value}, separators=(",", ":"))

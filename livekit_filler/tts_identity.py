"""The voice a filler's audio is cached under: what the TTS's options say, or a name given.

A cached filler is replayed only to a TTS that sounds the same: the key holds the TTS class,
provider, model, sample rate and channels and the canonical description of its options
(:func:`~livekit_filler._livekit_private.tts_voice`; a ``FallbackAdapter`` by its primary,
a ``StreamAdapter`` by the TTS it wraps). A TTS whose options cannot be read is named by
the user (``voice_id``, :func:`name_voice`); without a name its sounds stay in memory, for
that TTS object only (a token of its own, never its ``id()``, which Python reuses).

The description is read again on every call, never cached per object: plugins change nested
options in place (``update_options`` of upliftai, rime, LiveKit inference's ``extra_kwargs``).
LiveKit inference's server-side ``fallback`` models cannot be told apart in its responses
(livekit-agents 1.8.9 reports no model per audio), so such a render is stored under the
primary's key; docs/guide.md says so.

A filler's sound key (:func:`sound_key`) is its voice's description plus its text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from livekit.agents import tts as lk_tts

from ._livekit_private import tts_voice_data, voice_source
from .voice_identity import dumps

__all__ = ["LOCAL_PREFIX", "CacheVoice", "cache_voice", "name_voice", "sound_key", "voice_key"]

logger = logging.getLogger("livekit_filler.voice")

LOCAL_PREFIX = "local-"
"""Keys of sounds whose voice could not be read: kept for this TTS object only, never saved."""

_names: weakref.WeakKeyDictionary[lk_tts.TTS[Any], str] = weakref.WeakKeyDictionary()
_tokens: weakref.WeakKeyDictionary[lk_tts.TTS[Any], str] = weakref.WeakKeyDictionary()
_lock = threading.Lock()  # THREAD executor: sessions of several event loops in one process


@dataclass(frozen=True)
class CacheVoice:
    """What a TTS's filler sounds are keyed by."""

    source: lk_tts.TTS[Any]
    """The TTS that renders them (a wrapper's primary or wrapped TTS)."""
    description: str
    """The canonical description (JSON text); for an unnamed unreadable TTS, its token."""
    persistent: bool
    """False for a TTS whose voice is unknown: its sounds are never shared or written."""


def name_voice(tts: lk_tts.TTS[Any], voice_id: str | None) -> None:
    """Name the sound of ``tts`` for the filler cache (None removes the name).

    The name is added to what the options say (changing it renders every filler again);
    for a TTS whose options cannot be read it is the whole voice, so give each voice its
    own name. ``FillerController.attach(voice_id=...)`` and ``livekit-filler render
    --voice-id`` call this.
    """
    with _lock:
        if voice_id is None:
            _names.pop(tts, None)
        else:
            _names[tts] = voice_id


def voice_key(tts: lk_tts.TTS[Any]) -> str | None:
    """The description filler sounds of ``tts`` are cached under, secrets removed.

    JSON text: the class, provider, model, sample rate and channels of the TTS that renders
    (a ``FallbackAdapter``'s primary, a ``StreamAdapter``'s wrapped TTS), its options
    (nested values included; no API key, secret or token) and the ``voice_id`` it was named
    with. Two TTSs with the same description share their cached fillers, on disk too.

    Returns:
        None when the voice cannot be read and the TTS was not named (``voice_id``): its
        sounds are then kept in memory for this TTS object only.
    """
    return _voice_key(tts, voice_source(tts))


def _voice_key(tts: lk_tts.TTS[Any], source: lk_tts.TTS[Any]) -> str | None:
    with _lock:
        name = _names.get(tts, _names.get(source))
    options = tts_voice_data(source)
    if options is None and name is None:
        return None
    description: dict[str, Any] = {
        "tts": f"{type(source).__module__}.{type(source).__qualname__}",
        "provider": source.provider,
        "model": source.model,
        "sample_rate": source.sample_rate,
        "num_channels": source.num_channels,
    }
    if options is not None:
        description["options"] = options
    if name is not None:
        description["voice_id"] = name
    return dumps(description)


def cache_voice(tts: lk_tts.TTS[Any]) -> CacheVoice:
    """What the sounds of ``tts`` are keyed by; a TTS of unknown voice gets a token of its
    own (one WARNING per such TTS object)."""
    source = voice_source(tts)
    key = _voice_key(tts, source)
    if key is not None:
        return CacheVoice(source, key, persistent=True)
    with _lock:
        token = _tokens.get(source)
        if token is None:
            token = _tokens[source] = secrets.token_hex(16)
            warn = True
        else:
            warn = False
    if warn:
        logger.warning(
            "cannot read the voice of this TTS: its filler audio stays in memory for this TTS"
            " object only; name its voice with voice_id (FillerController.attach(voice_id=...),"
            " the voice_id setting or LIVEKIT_FILLER_VOICE_ID) to cache it on disk",
            extra={"tts": type(source).__name__},
        )
    return CacheVoice(source, f"object {token}", persistent=False)


def sound_key(tts: lk_tts.TTS[Any], text: str) -> str:
    """A stable key for the sound of ``text`` spoken by ``tts``: same key, same audio.

    It hashes the text and the TTS's voice description
    (:func:`~livekit_filler.tts_identity.voice_key`: class, provider, model, sample rate,
    channels, every option that shapes the sound, the ``voice_id`` it was named with; no
    credentials). When the voice cannot be read and was not named, the key holds a token
    of this TTS object instead (never its ``id()``, which is reused), so two voices never
    share a sound (and such a sound is never written to disk).
    """
    voice = cache_voice(tts)
    digest = hashlib.sha256(json.dumps([voice.description, text]).encode()).hexdigest()[:32]
    return digest if voice.persistent else LOCAL_PREFIX + digest

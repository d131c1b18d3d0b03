"""Fillers said from code (``FillerController.say_filler``): asked of the floor like any
other, followed while they play, and cut when real speech, an answer or the user comes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from livekit.agents import Agent
from livekit.agents.voice import SpeechHandle

from .floor import Verdict, may_start
from .options import FillerOptions, settings_texts
from .phrases import PhrasePicker
from .settings import FillerSettings
from .sound_cache import SoundLease
from .speaker import FillerSpeaker

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class ManualFillers:
    """The fillers said from code that are still scheduled or playing (:attr:`handles`).

    Owned by the controller; the slow-answer filler and the busy message share
    :attr:`handles`, so an answer cuts theirs too.
    """

    def __init__(
        self,
        settings: FillerSettings,
        speaker: FillerSpeaker,
        *,
        current_agent: Callable[[], Agent | None],
        spawn: Spawn,
        picker: Callable[[], PhrasePicker],
        language: Callable[[], str | None],
    ) -> None:
        self._settings = settings
        self._speaker = speaker
        self._current_agent = current_agent
        self._spawn = spawn
        self._picker = picker
        self._language = language
        self.handles: set[SpeechHandle] = set()
        """The speech handles of the fillers said from code, until they end."""

    def say(self, text: str | None, *, for_agent: Agent | None) -> SpeechHandle | None:
        """Say ``text`` (None: a phrase of the settings) now, if the floor allows it."""
        agent = for_agent or self._current_agent()
        if agent is None:
            self._speaker.skip(Verdict.HANDOFF.value)
            return None
        verdict = may_start(self._speaker.floor(agent, asked=for_agent is not None))
        if verdict is not Verdict.SPEAK:
            self._speaker.skip(verdict.value)
            return None
        options = FillerOptions.resolve(self._settings, "")
        phrase = text or self._picker().pick(options.pool_for(self._language()), index=0, values={})
        if phrase is None:
            self._speaker.skip("no_phrase")
            return None
        # a text given in code may carry the caller's words: kept off disk unless it is one
        # of the settings' fixed phrases
        lease = (
            None
            if phrase in settings_texts(self._settings)
            else SoundLease(self._speaker.voice.cache)
        )
        handle = self._speaker.say(
            phrase, agent=agent, allow_interruptions=options.allow_interruptions, private=lease
        )
        if handle is None:
            if lease is not None:
                lease.release()
            return None
        self.handles.add(handle)
        self._spawn(
            self._follow(handle, agent, options.allow_interruptions, lease),
            "livekit_filler.say_filler",
        )
        return handle

    async def _follow(
        self,
        handle: SpeechHandle,
        agent: Agent,
        allow_interruptions: bool,
        lease: SoundLease | None,
    ) -> None:
        try:
            await self._speaker.follow(
                handle, agent=agent, allow_interruptions=allow_interruptions, tool=None
            )
        finally:
            self.handles.discard(handle)
            if lease is not None:
                lease.release()

    def cut(self, reason: str) -> None:
        """Cut every filler said from code (real speech, an answer or the caller comes)."""
        for handle in list(self.handles):
            self._speaker.cut(handle, reason=reason, tool=None)

"""Pre-render: the phrases of the agent holding the floor, rendered before its tool calls,
one at a time, each only once the session has been quiet for a moment."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Coroutine
from typing import Any

from livekit.agents import Agent, AgentSession, tts as lk_tts

from .agent_phrases import phrases_for, tools_of
from .filler_voice import FillerVoice
from .floor import may_prerender
from .log import logger
from .session_tts import needs_audio, tts_of
from .settings import FillerSettings
from .speaker import FillerSpeaker
from .tts_identity import sound_key

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]

PRERENDER_QUIET = 0.15
"""Seconds the session must have been quiet before a pre-render starts (see _wait_turn)."""
PRERENDER_POLL = 0.02
"""Seconds between two looks at the session while a pre-render waits for its turn."""


class Prerenderer:
    """Renders (or reads from disk) what the active agent may say, ahead of its calls.

    Owned by the controller; the agent's sounds stay pinned in memory while it holds the
    floor.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        settings: FillerSettings,
        speaker: FillerSpeaker,
        *,
        is_open: Callable[[], bool],
        current_agent: Callable[[], Agent | None],
        spawn: Spawn,
    ) -> None:
        self._session = session
        self._settings = settings
        self._speaker = speaker
        self._open = is_open
        self._current_agent = current_agent
        self._spawn = spawn
        self._said_no_audio = False
        self._prerender_queue: collections.deque[tuple[lk_tts.TTS[Any], str]] = collections.deque()
        self._prerender_task: asyncio.Task[None] | None = None
        self._pinned: list[str] = []
        """Sound keys of the active agent's phrases, kept in memory while it holds the floor."""

    @property
    def voice(self) -> FillerVoice:
        """Where the rendered sounds go (the speaker's, over the process-wide cache)."""
        return self._speaker.voice

    def start(self) -> None:
        """Attached to a running session: pre-render what its current agent may say."""
        agent = self._current_agent()
        if agent is not None:
            self.queue_agent(agent)

    def queue_agent(self, agent: Agent) -> None:
        """Queue the phrases ``agent`` may say, ahead of those of agents queued earlier.

        Sounds on disk are read first (no synthesis); the others are rendered one at a
        time, each once the session's own speech has been synthesized (:meth:`_wait_turn`).
        """
        if not self._settings.prerender or not self._settings.enabled or not self._open():
            return
        tts = tts_of(agent, self._session, self._speaker.filler_tts)
        if tts is None:
            return
        if not needs_audio(agent, self._session):
            # no audio output and no realtime model: fillers go out as text, nobody hears a
            # render (the console's text mode), so none is billed
            if not self._said_no_audio:
                self._said_no_audio = True
                logger.debug("no filler pre-render: the session has no audio output")
            return
        # the session's tools (AgentSession(tools=...)) are the agent's too
        tools = [*getattr(self._session, "tools", ()), *agent.tools]
        texts = phrases_for(self._settings, tools_of(tools, self._settings))
        cache = self.voice.cache
        # this agent's sounds stay in memory while it holds the floor (the memory bound
        # drops others first)
        self.pin([sound_key(tts, t) for t in texts])
        # the sounds already on disk (or in memory) first: reading them costs no synthesis
        ready = [t for t in texts if cache.contains(sound_key(tts, t))]
        missing = [t for t in texts if t not in ready]
        queued = [(tts, t) for t in [*ready, *missing]]
        self._prerender_queue = collections.deque(
            [*queued, *(item for item in self._prerender_queue if item not in queued)]
        )
        logger.debug(
            "pre-rendering the agent's filler phrases",
            extra={"agent": type(agent).__name__, "phrases": len(texts), "on_disk": len(ready)},
        )
        if self._prerender_task is None or self._prerender_task.done():
            self._prerender_task = self._spawn(self._run_prerender(), "livekit_filler.prerender")

    def pin(self, keys: list[str]) -> None:
        """Hold ``keys`` in the memory cache instead of the keys held so far."""
        cache = self.voice.cache
        for key in keys:
            cache.hold(key)
        for key in self._pinned:
            cache.release(key)
        self._pinned = keys

    async def _run_prerender(self) -> None:
        while self._prerender_queue and self._open():
            tts, text = self._prerender_queue.popleft()
            await self.voice.prerender(tts, [text], wait_turn=self._wait_turn)
            if self.voice.paused:  # a render failed: the rest waits for a later activation
                self._prerender_queue.clear()

    async def _wait_turn(self) -> bool:
        """True once the session's own speech has had the TTS first, for a moment; False
        when the controller closed meanwhile (no render may start then).

        A pre-render must never make the caller wait: with a provider that serves one
        request at a time, a render in flight would hold back the greeting or a reply.
        So a render starts only after the session has been quiet (no speech being
        prepared, nothing queued, no LLM or tool step, the user not speaking) for
        :data:`PRERENDER_QUIET` seconds; audio already playing is fine, it is synthesized.
        """
        loop = asyncio.get_running_loop()
        quiet_since: float | None = None
        while self._open():
            if self._session_quiet():
                now = loop.time()
                if quiet_since is None:
                    quiet_since = now
                elif now - quiet_since >= PRERENDER_QUIET:
                    return True
            else:
                quiet_since = None
            await asyncio.sleep(PRERENDER_POLL)
        return False

    def _session_quiet(self) -> bool:
        agent = self._current_agent()
        return agent is not None and may_prerender(self._speaker.floor(agent))

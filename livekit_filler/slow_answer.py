"""A filler when the answer itself is slow: a user turn ended, no tool runs, no audio yet.

LiveKit schedules the reply to a user turn at once and holds the floor for it while its LLM
thinks, so a filler said later would wait behind the reply. :class:`SlowAnswer` therefore
schedules the filler in the reply's own ``speech_created`` event, just before the reply is
queued, through the session's scheduler like every filler (out of the chat context and the
history, marked, gated, interruptible), but *held*: its audio waits
(:meth:`~livekit_filler.speaker.FillerSpeaker.say`'s ``hold``) until ``after`` seconds
have passed. The reply's LLM and TTS run meanwhile. The moment the reply's LLM gives its
first words or a tool call (watched on the agent's ``llm_node``, which is left otherwise
untouched), a held filler ends with no audio, so the reply is authorized at once; a filler
already sounding is cut at once. The pure part (the session's own reply leads, the
``"adaptive"`` delay, the "would it be cut in its first half?" check) is in
:mod:`.turn_leads`; the wrappers that watch a reply without changing it, in :mod:`.reply_watch`.

With LiveKit's preemptive generation the reply is created (``speech_created``) when the
caller stops speaking, before their turn is committed, and queued only at the commit, after
the agent's ``on_user_turn_completed``. A filler queued at its creation would be the current
speech at the commit: LiveKit interrupts it, or, not interruptible, skips the reply (the
answer is lost). So such a reply is only noted (its LLM is watched from then on) and its held
filler is queued once the wrapped ``on_user_turn_completed`` returns, just ahead of the reply,
still timed from the reply's creation; none when its words are already there. A filler
standing in a reply's place is interruptible whenever the reply is, so a caller's next turn
is never skipped because of it.

A realtime (speech-to-speech) model has no ``llm_node``: its reply is a generation the model
streams. With the model's server-side turn detection the model starts that generation by
itself (``generation_created`` on the agent's realtime session, then LiveKit's
``speech_created``), and it runs while its speech waits for the floor, so the same held
filler (in the filler voice) fills it, released by the generation's first message or tool
call: its two streams are relayed unchanged through a task that reads them as they come.
A reply LiveKit *requests* from a realtime model (its own turn detection, a text input) is
requested only once it holds the floor: a filler queued ahead would delay the request
itself, so none is said (skipped as ``requested_reply``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, llm
from livekit.agents.voice import SpeechHandle

from .floor import Verdict, may_start
from .latency import estimate_duration
from .log import logger
from .options import Pool
from .phrases import PhrasePicker
from .reply_watch import relayed, watched_hook, watched_node
from .session_tts import llm_of
from .settings import FillerSettings
from .settings_fields import resolve_clip
from .speaker import FillerSpeaker
from .turn_leads import TurnLeads

__all__ = ["SlowAnswer"]


@dataclass
class _Turn:
    """One user turn whose reply is awaited."""

    reply: SpeechHandle
    agent: Agent
    created_at: float
    output: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the reply's LLM gave words or a tool call (or ended)."""
    filler: SpeechHandle | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the held filler may sound (its audio flows)."""
    silent_reason: str = "answer_ready"
    """Why a held filler ends with no audio once ``output`` is set."""
    allow_interruptions: bool = True
    """The filler's: the fillers' setting, or the reply's own when it is interruptible."""
    committed: bool = True
    """It answers a user turn (False: a pipeline reply created outside a commit, so far)."""


Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class SlowAnswer:
    """Says one filler per user turn whose reply is slow (see the module docstring)."""

    def __init__(
        self,
        session: AgentSession[Any],
        speaker: FillerSpeaker,
        settings: FillerSettings,
        *,
        picker: Callable[[], PhrasePicker],
        language: Callable[[], str | None],
        spawn: Spawn,
        manual: set[SpeechHandle],
        tools_running: Callable[[], bool],
    ) -> None:
        self._session = session
        self._speaker = speaker
        self._conf = settings.slow_answer
        self._allow_interruptions = settings.allow_interruptions
        self._enabled = settings.enabled and self._conf.enabled
        self._picker = picker
        self._language = language
        self._spawn = spawn
        self._manual = manual
        self._tools_running = tools_running
        self._pool = Pool(tuple(self._conf.phrases))
        self._pools = {code: Pool(tuple(p.phrases)) for code, p in self._conf.languages.items()}
        self.leads = TurnLeads()
        """This session's reply leads (the adaptive delay learns from them)."""
        self._turn: _Turn | None = None
        self._heard = False
        self._stopped = False
        """The caller stopped speaking since the last reply was created (a realtime model's
        server-side turn detection starts its reply before their transcript comes)."""
        self._realtime: weakref.WeakSet[llm.RealtimeSession[Any]] = weakref.WeakSet()
        """The realtime sessions whose ``generation_created`` is listened to."""
        self._generation: llm.GenerationCreatedEvent | None = None
        """A generation announced in the emit running now, before its ``speech_created``."""
        self._awaiting: _Turn | None = None
        """A turn whose generation is announced in the emit running now, after it."""
        self._relays: set[asyncio.Task[None]] = set()
        self._clip: rtc.AudioFrame | None = None
        self._watched: weakref.WeakKeyDictionary[Agent, tuple[object, object]] = (
            weakref.WeakKeyDictionary()
        )
        self._pending: _Turn | None = None
        """A preemptive reply (created, not yet queued) waiting for its user turn's commit."""
        self._committing = False
        """A user turn is being committed: the next reply created is its reply."""
        self._filled: _Turn | None = None
        """The turn filled at the commit running now (LiveKit may still replace its reply)."""
        if self._enabled and self._conf.clip is not None:
            spawn(self._load_clip(self._conf.clip), "livekit_filler.slow_answer.clip")

    async def _load_clip(self, clip: str) -> None:
        self._clip = await self._speaker.voice.clip(resolve_clip(clip))

    # -- signals from the controller (synchronous, never raise) -----------------------------

    def heard(self) -> None:
        """The user's words were transcribed (final): the next reply answers a user turn."""
        self._heard = True
        self._watch_realtime()
        self._watch_current()

    def user_state_changed(self, old_state: str, new_state: str) -> None:
        """The caller started or stopped speaking (``user_state_changed``)."""
        if old_state == "speaking" and new_state != "speaking":
            self._stopped = True
        self._watch_realtime()  # before the model's turn detection starts a reply
        self._watch_current()  # before the turn is committed

    def reply_created(self, handle: SpeechHandle, *, user_initiated: bool, source: str) -> None:
        """A speech was created; if it is the reply to a user turn, fill it if it is slow.

        Called from ``speech_created``, which LiveKit emits just before it queues the reply:
        a filler said now is queued ahead of it.
        """
        if source != "generate_reply":
            return  # a say() (in on_user_turn_completed, say) is not the reply
        heard, stopped = self._heard, self._stopped
        self._heard = self._stopped = False
        if not self._enabled:
            return
        try:
            agent = self._session.current_agent
        except RuntimeError:
            return
        realtime = isinstance(llm_of(agent, self._session), llm.RealtimeModel)
        if realtime:
            self._watch_realtime()  # for the next turns, if no signal came before
        if user_initiated and not realtime:
            self._pipeline_reply(handle, agent)
            return
        if user_initiated:
            if not heard:
                return
            if realtime:
                # LiveKit asks the model for this reply only once it holds the floor: a
                # filler queued ahead of it would delay the request itself
                self._speaker.skip("requested_reply", kind="slow_answer")
                return
        elif not (realtime and (heard or stopped)):
            return  # a generation the model started for no user turn (a tool's reply)
        turn = _Turn(reply=handle, agent=agent, created_at=asyncio.get_running_loop().time())
        self._turn = turn
        handle.add_done_callback(lambda _: turn.output.set())
        self._start(turn, realtime=True)

    def _pipeline_reply(self, handle: SpeechHandle, agent: Agent) -> None:
        """A pipeline reply: the committed turn's is filled now (queued just ahead of it);
        one created outside a commit (a preemptive reply) waits for the commit."""
        committing, self._committing = self._committing, False
        filled, self._filled = self._filled, None
        pending, self._pending = self._pending, None
        now = asyncio.get_running_loop().time()
        if filled is not None:
            # LiveKit replaced the preemptive reply filled at this commit (its hook changed
            # the context): that filler ends silently, ahead of this reply's own
            filled.silent_reason = "replaced"
            filled.output.set()
        created_at = filled.created_at if filled is not None else now
        if pending is not None and _preemptive(pending.reply):
            created_at = min(created_at, pending.created_at)  # a newer attempt, same turn
        turn = _Turn(reply=handle, agent=agent, created_at=created_at, committed=committing)
        self._turn = turn
        handle.add_done_callback(lambda _: turn.output.set())
        if not self._watch(agent):
            return
        if committing:
            self._start(turn, realtime=False)
        else:
            self._pending = turn  # a preemptive reply: filled at its turn's commit, if any

    def _on_commit(self) -> None:
        """The agent's ``on_user_turn_completed`` returned: LiveKit now queues the turn's
        reply (the preemptive one), or creates it, with no await in between."""
        self._committing = True
        asyncio.get_running_loop().call_soon(self._end_commit)
        turn, self._pending = self._pending, None
        if turn is None or not _preemptive(turn.reply):
            return
        turn.committed = True
        if turn.output.is_set():
            return  # the preemptive reply's words are there: it sounds at once
        self._filled = turn
        self._start(turn, realtime=False)

    def _end_commit(self) -> None:
        self._committing = False
        self._filled = None

    def _start(self, turn: _Turn, *, realtime: bool) -> None:
        """Queue ``turn``'s held filler now (just ahead of its reply), if it may be said."""
        agent = turn.agent
        turn.allow_interruptions = self._allow_interruptions or turn.reply.allow_interruptions
        if self._tools_running():
            self._speaker.skip("busy", kind="slow_answer")
            return
        verdict = may_start(self._speaker.floor(agent))
        if verdict is not Verdict.SPEAK:
            self._speaker.skip(verdict.value, kind="slow_answer")
            return
        text = self._text()
        if text is None:
            self._speaker.skip("no_phrase", kind="slow_answer")
            return
        filler = self._speaker.say(
            text,
            agent=agent,
            allow_interruptions=turn.allow_interruptions,
            clip=self._clip,
            hold=lambda: self._hold(turn, text),
            kind="slow_answer",
        )
        if filler is not None:
            turn.filler = filler
            if realtime:
                self._await_generation(turn)
            self._spawn(self._follow(turn, filler), "livekit_filler.slow_answer")

    def tool_started(self) -> None:
        """A tool call started: the turn's reply now waits for the tool, so its lead is not a
        reply lead (and a held filler has already let the reply go: its LLM called the tool)."""
        if self._turn is not None:
            self._turn.output.set()
        self._turn = self._pending = None
        self._stopped = False  # what the caller said before belongs to the tool's step

    def reply_sounding(self, now: float) -> None:
        """Real speech started sounding: the awaited reply's lead is timed."""
        turn, self._turn = self._turn, None
        if turn is not None and turn.committed and self._session.current_speech is turn.reply:
            self.leads.record(now - turn.created_at)

    def close(self) -> None:
        """The controller detaches: give every watched agent its own ``llm_node`` back."""
        for agent, nodes in list(self._watched.items()):
            for name, node in zip(("llm_node", "on_user_turn_completed"), nodes, strict=True):
                if agent.__dict__.get(name) is node:
                    del agent.__dict__[name]
        self._watched.clear()
        self._pending = None
        for rt_session in list(self._realtime):
            rt_session.off("generation_created", self._on_generation)
        self._realtime.clear()
        if self._turn is not None:
            self._turn.output.set()  # a held filler lets the reply go
        # the relays run on to their generation's end: LiveKit reads the reply through them

    # -- the filler --------------------------------------------------------------------------

    def _text(self) -> str | None:
        if self._clip is not None:
            return ""
        pool = self._pool
        language = self._language()
        if language:
            for code in (language, language.split("-")[0]):
                for key, candidate in self._pools.items():
                    if key.lower() == code.lower():
                        pool = candidate
        return self._picker().pick(pool, index=0, values={})

    async def _hold(self, turn: _Turn, text: str) -> str | None:
        """Runs when LiveKit starts reading the filler's audio (the reply waits behind it):
        None once ``after`` passed with no answer; a reason to end it silently."""
        loop = asyncio.get_running_loop()
        due = turn.created_at + self.leads.after(self._conf.after)
        if not turn.output.is_set() and due > loop.time():
            try:
                await asyncio.wait_for(turn.output.wait(), due - loop.time())
            except asyncio.TimeoutError:
                pass
        if turn.output.is_set():
            return turn.silent_reason
        if self._tools_running():
            return "busy"
        if self._session.user_state == "speaking":
            return Verdict.USER_SPEAKING.value
        if self._clip is not None:
            duration = self._clip.duration
        else:
            known = self._speaker.duration_of(turn.agent, text)
            duration = known if known is not None else estimate_duration(text)
        if not self.leads.worth_it(loop.time() - turn.created_at, duration):
            return "no_fit"
        if turn.filler is not None:
            self._manual.add(turn.filler)  # cut like say_filler's: user, real speech, hand-off
        turn.released.set()
        return None

    async def _follow(self, turn: _Turn, filler: SpeechHandle) -> None:
        """Once it sounds, follow the filler to its end, cutting it at once when the reply's
        LLM answers (while held, LiveKit's own handling of the caller applies to it)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def _on_done(_: SpeechHandle) -> None:
            if not done.done():
                done.set_result(None)

        filler.add_done_callback(_on_done)
        released: asyncio.Future[Any] = asyncio.ensure_future(turn.released.wait())
        try:
            await asyncio.wait([released, done], return_when=asyncio.FIRST_COMPLETED)
        finally:
            released.cancel()
            filler.remove_done_callback(_on_done)
        if not turn.released.is_set():
            return
        follow = asyncio.ensure_future(
            self._speaker.follow(
                filler,
                agent=turn.agent,
                allow_interruptions=turn.allow_interruptions,
                tool=None,
            )
        )
        answered = asyncio.ensure_future(turn.output.wait())
        try:
            await asyncio.wait([follow, answered], return_when=asyncio.FIRST_COMPLETED)
            if answered.done() and not follow.done() and filler in self._manual:
                # the reply's words are on their way: its audio must not wait for ours
                self._speaker.cut(filler, reason="real_speech", tool=None)
            await follow
        finally:
            answered.cancel()
            follow.cancel()
            self._manual.discard(filler)

    # -- watching the reply's LLM ------------------------------------------------------------

    def _watch_current(self) -> None:
        """Watch the current pipeline agent before its user turn is committed."""
        if not self._enabled:
            return
        try:
            agent = self._session.current_agent
        except RuntimeError:
            return
        if not isinstance(llm_of(agent, self._session), llm.RealtimeModel):
            self._watch(agent)

    def _watch(self, agent: Agent) -> bool:
        """Watch ``agent``'s ``llm_node`` for a reply's first output and its
        ``on_user_turn_completed`` for a turn's commit (once per agent)."""
        if agent in self._watched:
            return True
        try:
            node = watched_node(agent.llm_node, self._on_output)
            hook = watched_hook(agent.on_user_turn_completed, self._on_commit)
            agent.__dict__.update(llm_node=node, on_user_turn_completed=hook)
        except Exception:  # an agent that cannot be watched: no slow-answer filler for it
            logger.debug("cannot watch the agent's llm_node", exc_info=True)
            return False
        self._watched[agent] = (node, hook)
        return True

    def _on_output(self) -> None:
        turn = self._turn
        if turn is not None:
            turn.output.set()

    # -- watching a realtime model's generation -----------------------------------------------

    def _watch_realtime(self) -> None:
        """Listen to the current agent's realtime session's ``generation_created`` (once per
        session: LiveKit makes one per agent activity)."""
        if not self._enabled:
            return
        try:
            agent = self._session.current_agent
            if not isinstance(llm_of(agent, self._session), llm.RealtimeModel):
                return
            rt_session = agent.realtime_llm_session
            if rt_session in self._realtime:
                return
            rt_session.on("generation_created", self._on_generation)
        except Exception:  # not running, no realtime session yet: the next signal retries
            logger.debug("cannot watch the realtime session", exc_info=True)
            return
        self._realtime.add(rt_session)

    def _on_generation(self, ev: llm.GenerationCreatedEvent) -> None:
        """The model started a generation. LiveKit's own listener (before or after this one,
        in the same emit) creates its speech: the two meet in the emit."""
        if ev.user_initiated:
            return  # a reply LiveKit requested (held fillers are never queued ahead of it)
        turn, self._awaiting = self._awaiting, None
        if turn is not None:
            self._relay(ev, turn)
            return
        self._generation = ev
        asyncio.get_running_loop().call_soon(self._forget_generation, ev)

    def _forget_generation(self, ev: llm.GenerationCreatedEvent) -> None:
        if self._generation is ev:
            self._generation = None

    def _await_generation(self, turn: _Turn) -> None:
        """Tie a realtime turn's held filler to its generation, announced in this emit."""
        ev, self._generation = self._generation, None
        if ev is not None:
            self._relay(ev, turn)
            return
        self._awaiting = turn
        asyncio.get_running_loop().call_soon(self._unwatched, turn)

    def _unwatched(self, turn: _Turn) -> None:
        """No generation was announced with the turn's speech: nothing would tell the held
        filler that the reply is ready, so it lets the reply go now."""
        if self._awaiting is turn:
            self._awaiting = None
            turn.silent_reason = "unwatched"
            turn.output.set()

    def _relay(self, ev: llm.GenerationCreatedEvent, turn: _Turn) -> None:
        """Relay the generation's message and tool-call streams to LiveKit through tasks
        that read them as they come, telling ``turn`` of the first item or their end."""
        try:
            ev.message_stream = relayed(ev.message_stream, turn.output.set, self._relays)
            ev.function_stream = relayed(ev.function_stream, turn.output.set, self._relays)
        except Exception:  # a frozen or foreign event: the held filler lets the reply go
            logger.debug("cannot watch the realtime generation", exc_info=True)
            turn.silent_reason = "unwatched"
            turn.output.set()


def _preemptive(reply: SpeechHandle) -> bool:
    """A reply created and not yet queued (LiveKit's preemptive generation), still alive."""
    return not (reply.scheduled or reply.done() or reply.interrupted)

"""State in a fleet: LiveKit's production shape, one fresh process per call, several at once.

Every figure comes from fresh ``python benchmarks/fleet.py child ...`` processes sharing one
per-user cache directory (``XDG_CACHE_HOME``), with library defaults unless said otherwise and
a FakeTTS (0.05 s to first byte, 0.06 s of audio per character).

* ``learning``: four processes at once, each calling its own 1.5 s tool three times; then a
  fifth process calls each tool once. A tool is known when its first filler comes after
  ``grace`` (0.1 s), not after ``delay`` (1.0 s). Anchor: the fifth process on an empty cache.
* ``slow storage``: every open/rename/replace/mkdir/scandir under the cache directory takes
  60 ms (a network volume; patched in the child process). A process with pre-renders and
  three tool calls, then a second process replaying the sounds from disk; the event loop's
  lag is sampled every 5 ms. Anchor: the same sessions without fillers.
* ``memory``: 2,000 distinct phrases rendered in one process; resident memory growth.
  Anchor: the memory bound off (``memory_cache_mb`` = 100,000: every sound kept).
* ``privacy``: a templated filler (``{name}``) called with a caller's name; new files in the
  cache directory. Anchor: ``persist_templated = true``.

    python benchmarks/fleet.py            # every part
    python benchmarks/fleet.py learning memory
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import header, table, verdict
from livekit.agents import Agent, RunContext, function_tool

HERE = Path(__file__).resolve().parent
TOOL_SECONDS = 1.5
SLOW_OP = 0.06
PHRASES = ("Let me look that up for you.", "One moment while I check.", "Still checking.")
TEMPLATE = "Let me pull up the file for {name}."
CALLER = "Jane Doe"


# -- child processes ---------------------------------------------------------------------------


def _agent(
    tools: list[str], seconds: float, phrases: tuple[str, ...] = (), *, decorated: bool = True
) -> Agent:
    from livekit_filler import fillers

    def make(name: str) -> Any:
        async def body(context: RunContext[Any], name: str = "") -> str:
            await asyncio.sleep(seconds)
            return "the result"

        fn = fillers(*phrases)(body) if decorated else body
        return function_tool(fn, name=name, description="A slow lookup.")

    return Agent(instructions="test", tools=[make(t) for t in tools])


def _script(arguments: dict[str, Any]) -> Any:
    from livekit.agents import llm

    from livekit_filler.testing import FakeResponse, FakeToolCall

    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        last = chat_ctx.items[-1]
        if isinstance(last, llm.FunctionCallOutput):
            return FakeResponse(text="Here it is.")
        if isinstance(last, llm.ChatMessage) and last.role == "user":
            return FakeResponse(tool_calls=[FakeToolCall(last.text_content or "", arguments)])
        return None

    return respond


async def _session(
    tools: list[str],
    calls: list[str],
    *,
    fillers_on: bool = True,
    settings: Any = None,
    arguments: dict[str, Any] | None = None,
    phrases: tuple[str, ...] = PHRASES,
    pause: float = 0.0,
    linger: float = 0.0,
) -> list[float]:
    """Run ``calls`` (tool names) in one session; the first filler's dwell of each call."""
    from livekit.agents.voice.events import SpeechCreatedEvent

    from livekit_filler import FillerController, FillerSettings, is_filler_speech
    from livekit_filler.testing import FakeLLM, FakeTTS, TimelineRecorder, make_session

    loop = asyncio.get_running_loop()
    dwells: list[float] = []
    created: list[tuple[Any, float]] = []

    def on_created(ev: SpeechCreatedEvent) -> None:
        created.append((ev.speech_handle, loop.time()))  # marked a filler after this event

    tts = FakeTTS(ttfb=0.05, seconds_per_char=0.06)
    async with make_session(llm=FakeLLM(_script(arguments or {}), default=None), tts=tts) as s:
        if fillers_on:
            FillerController.attach(s, settings=settings or FillerSettings.load())
        s.on("speech_created", on_created)
        TimelineRecorder.install(s)  # an audio output playing in real time: fillers are heard
        await s.start(_agent(tools, TOOL_SECONDS, phrases, decorated=fillers_on))
        await asyncio.sleep(pause)
        for tool in calls:
            created.clear()
            began = loop.time()
            await s.run(user_input=tool)
            fillers = [t for h, t in created if is_filler_speech(h)]
            dwells.append(fillers[0] - began if fillers else float("nan"))
        await asyncio.sleep(linger)  # renders under way complete
    return dwells


async def _lag_monitor(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.005)
        lags.append(max(0.0, loop.time() - before - 0.005))


def _slow_storage(root: str) -> None:
    """Make every file operation under ``root`` take :data:`SLOW_OP` seconds."""
    import builtins
    import io

    def slow(original: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if args and str(args[0]).startswith(root):
                time.sleep(SLOW_OP)
            return original(*args, **kwargs)

        return wrapped

    for name in ("open", "rename", "replace", "mkdir", "scandir"):
        setattr(os, name, slow(getattr(os, name)))
    builtins.open = slow(builtins.open)
    io.open = slow(io.open)


def _flush_function() -> Any:
    """The library's flush (a checkout before the background writer has none: a no-op)."""
    try:
        from livekit_filler.disk_writer import flush
    except ImportError:  # --library names a checkout that writes on the spot
        return lambda *args: True
    return flush


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def child(args: list[str]) -> dict[str, Any]:
    kind = args[0]
    from livekit_filler import FillerController, FillerSettings

    if kind == "learn":
        FillerController.prewarm(FillerSettings.load())
        await _session([args[1]], [args[1]] * 3)
        return {}
    if kind == "probe":
        tools = args[1:]
        return {"dwells": await _session(tools, tools)}
    if kind == "lag":
        fillers_on = args[1] == "fillers"
        from livekit_filler.disk_store import default_cache_dir

        _slow_storage(str(default_cache_dir()))
        # as a LiveKit 1.8 job process does after preloading (livekit.agents.ipc.
        # _preload_freeze): imports out of the cyclic GC, so a full collection of them
        # (80-90 ms here) does not land in one mode's window and read as lag
        gc.collect()
        gc.freeze()
        stop, lags = asyncio.Event(), list[float]()
        monitor = asyncio.create_task(_lag_monitor(stop, lags))
        # the greeting-time pre-renders, then three tool calls
        await _session(["lookup"], ["lookup"] * 3, fillers_on=fillers_on, pause=1.5)
        stop.set()
        await monitor
        from livekit_filler.sound_cache import shared_cache

        return {
            "max_ms": max(lags) * 1000,
            "p99_ms": sorted(lags)[int(len(lags) * 0.99)] * 1000,
            "chars": shared_cache().characters_rendered,
            "disk_loads": shared_cache().disk_loads,
        }
    if kind == "memory":
        from livekit_filler.filler_voice import FillerVoice
        from livekit_filler.process_state import open_disk_cache
        from livekit_filler.sound_cache import shared_cache

        flush = _flush_function()
        from livekit_filler.testing import FakeTTS

        settings = FillerSettings.load()
        open_disk_cache(settings)
        voice = FillerVoice(shared_cache())
        tts = FakeTTS(ttfb=0.0, seconds_per_char=0.06)
        await voice.prerender(tts, ["warm up"])
        base = _rss_mb()
        texts = [f"Distinct filler phrase number {n:04d} for this call." for n in range(2000)]
        await voice.prerender(tts, texts)
        grown = _rss_mb() - base
        await asyncio.to_thread(flush)
        return {
            "growth_mb": grown,
            "in_memory_mb": getattr(shared_cache(), "memory_bytes", float("nan")) / 2**20,
            "kept": len(shared_cache()),
        }
    if kind == "privacy":
        flush = _flush_function()

        settings = FillerSettings.load(phrases=["One moment please."])
        dwells = await _session(
            ["open_file"],
            ["open_file"],
            settings=settings,
            arguments={"name": args[1]},
            phrases=(TEMPLATE,),
            pause=1.0,
            linger=3.0,
        )
        await asyncio.to_thread(flush)
        return {"played": dwells[0] == dwells[0]}  # not NaN: the filler played
    raise SystemExit(f"unknown child {kind!r}")


# -- the parent ---------------------------------------------------------------------------------


LIBRARY: list[str] = []
"""A checkout whose ``livekit_filler`` the child processes import (``--library``)."""


def _spawn(machine: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    machine.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([*LIBRARY, str(HERE)])
    full = {**os.environ, "XDG_CACHE_HOME": str(machine), "PYTHONPATH": path, **env}
    return subprocess.Popen(
        [sys.executable, str(HERE / "fleet.py"), "child", *args],
        env=full,
        cwd=machine,  # no config/filler.toml: library defaults
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{err}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def learning(root: Path) -> bool:
    tools = [f"tool_{i}" for i in range(4)]
    machine = root / "learning"
    started = time.perf_counter()
    for proc in [_spawn(machine, "learn", t) for t in tools]:  # four at once
        _result(proc)
    learned = time.perf_counter() - started
    fifth = _result(_spawn(machine, "probe", *tools))["dwells"]
    anchor = _result(_spawn(root / "empty", "probe", *tools))["dwells"]
    known = sum(d < 0.5 for d in fifth)
    print(f"## learning: 4 processes at once, 3 calls each ({learned:.1f} s), then a fifth\n")
    print(
        table(
            ["tool", "fifth process: first filler after (s)", "anchor: empty cache (s)"],
            [[t, f"{d:.2f}", f"{a:.2f}"] for t, d, a in zip(tools, fifth, anchor, strict=True)],
        )
    )
    ok = bool(known == 4)
    print(f"\ntools known to the fifth process: {known}/4 (target 4/4) {verdict(ok)}\n")
    return ok


def slow_storage(root: Path) -> bool:
    rows, added = [], []
    figures: dict[str, list[dict[str, Any]]] = {}
    for mode in ("fillers", "plain"):
        machine = root / f"slow-{mode}"
        first = _result(_spawn(machine, "lag", mode))
        second = _result(_spawn(machine, "lag", mode))  # replays the sounds from disk
        figures[mode] = [first, second]
    for n, name in enumerate(("first process (renders)", "second process (replays)")):
        f, p = figures["fillers"][n], figures["plain"][n]
        added.append(f["max_ms"] - p["max_ms"])
        rows.append(
            [
                name,
                f"{f['max_ms']:.1f}",
                f"{p['max_ms']:.1f}",
                f"{added[-1]:+.1f}",
                f"{f['p99_ms']:.1f} / {p['p99_ms']:.1f}",
                f"{f['chars']} / {f['disk_loads']}",
            ]
        )
    print(f"## slow storage: {SLOW_OP * 1000:.0f} ms per file operation under the cache\n")
    print(
        table(
            [
                "process",
                "max lag, fillers (ms)",
                "max lag, no fillers (ms)",
                "added (ms)",
                "p99 fillers / none (ms)",
                "filler TTS chars / sounds read from disk",
            ],
            rows,
        )
    )
    ok = bool(max(added) <= 20.0)
    print(
        f"\nevent-loop lag added by fillers, max: {max(added):.1f} ms (target <= 20) "
        f"{verdict(ok)}\n"
    )
    return ok


def memory(root: Path) -> bool:
    bounded = _result(_spawn(root / "mem-default", "memory"))
    unbounded = _result(_spawn(root / "mem-off", "memory", LIVEKIT_FILLER_MEMORY_CACHE_MB="100000"))
    print("## memory: 2,000 distinct phrases rendered in one process\n")
    print(
        table(
            ["", "RSS growth (MB)", "audio kept in memory (MB)", "sounds kept"],
            [
                [
                    "defaults (memory_cache_mb = 64)",
                    f"{bounded['growth_mb']:.0f}",
                    f"{bounded['in_memory_mb']:.0f}",
                    bounded["kept"],
                ],
                [
                    "anchor: no bound",
                    f"{unbounded['growth_mb']:.0f}",
                    f"{unbounded['in_memory_mb']:.0f}",
                    unbounded["kept"],
                ],
            ],
        )
    )
    ok = bool(bounded["growth_mb"] <= 100)
    print(
        f"\nRSS growth with defaults: {bounded['growth_mb']:.0f} MB (target <= 100) {verdict(ok)}\n"
    )
    return ok


def privacy(root: Path) -> bool:
    counts = []
    for persist in ("false", "true"):
        machine = root / f"privacy-{persist}"
        cache = machine / "livekit-filler"
        # an earlier call (another caller) rendered the fixed phrase and wrote the history
        _result(_spawn(machine, "privacy", "John Roe", LIVEKIT_FILLER_PERSIST_TEMPLATED=persist))
        before = _files(cache)
        run = _result(_spawn(machine, "privacy", CALLER, LIVEKIT_FILLER_PERSIST_TEMPLATED=persist))
        assert run["played"], "the templated filler did not play"
        counts.append(len(_files(cache) - before))
    print(f"## privacy: a templated filler ({TEMPLATE!r}) called with name={CALLER!r}\n")
    print(
        table(
            ["", "new files in the cache directory"],
            [["defaults", counts[0]], ["anchor: persist_templated = true", counts[1]]],
        )
    )
    ok = bool(counts[0] == 0)
    print(f"\nnew files with defaults: {counts[0]} (target 0) {verdict(ok)}\n")
    return ok


PARTS = {"learning": learning, "slow_storage": slow_storage, "memory": memory, "privacy": privacy}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        import logging

        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(asyncio.run(child(sys.argv[2:]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", help=f"any of {', '.join(PARTS)} (default: all)")
    parser.add_argument(
        "--library",
        help="run the child processes on the livekit_filler of this checkout (a before/after)",
    )
    args = parser.parse_args()
    if args.library:
        LIBRARY.append(str(Path(args.library).resolve()))
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    header("State in a fleet: fresh processes sharing one cache directory")
    if LIBRARY:
        print(f"  child processes import livekit_filler from {LIBRARY[0]}\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        for part in args.parts or list(PARTS):
            results.append(PARTS[part](Path(tmp)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

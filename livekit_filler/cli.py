"""``livekit-filler render``: synthesize every filler a worker may say before any call.

LiveKit runs each call in a fresh process, so filler audio rendered during a call only helps
later calls through the disk cache. Run this at deploy time (a Dockerfile ``RUN`` line) and
no call ever synthesizes a filler::

    livekit-filler render --module agent --tts openai:voice=ash

It renders what the agents of the named modules can actually say (each tool's phrases, the
decorator's over its ``[tools.NAME]`` section's over the global pool of the settings, in the
languages that layer enables; see :mod:`livekit_filler.render_plan`), with the named TTS,
into the disk cache the settings name (``cache_dir``, else the per-user cache directory);
``--all`` (implied when no module is named) renders every other fixed phrase of the
settings too. It lists each phrase with the tools that say it and the characters billed.
Sounds already there cost nothing. The sound key holds the TTS's voice key
(``livekit_filler.voice_key``: class, model, sample rate and every option that shapes the
sound, no credentials), printed first: name the TTS exactly as the worker builds it. A TTS
whose options cannot be read must be named with ``--voice-id`` (and the same ``voice_id`` in
the worker).

``--tts`` is ``PLUGIN[:KEY=VALUE,...]`` (``livekit.plugins.PLUGIN.TTS(KEY=VALUE, ...)``,
values parsed as JSON when they can be, e.g. ``openai:voice=alloy,speed=1.1``) or
``MODULE:FACTORY``, a callable that takes no argument and returns a LiveKit TTS.
Exit status: 0 rendered; 1 a module, the TTS or the cache directory failed (one line on
stderr naming it); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from livekit import rtc
from livekit.agents import APIConnectOptions, tts as lk_tts
from livekit.agents.utils import combine_frames

from ._livekit_private import voice_source
from .disk_store import default_cache_dir
from .disk_writer import flush
from .errors import FillerConfigError
from .render_plan import module_tools, plan, tool_names
from .settings import FillerSettings, ToolRule
from .sound_cache import FillerAudioCache
from .tts_identity import LOCAL_PREFIX, name_voice, sound_key, voice_key

PROG = "livekit-filler"
RENDER_TIMEOUT = 60.0
"""Seconds one phrase may take to synthesize."""


class CliError(Exception):
    """A failure reported as one line on stderr, exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``livekit-filler`` console command."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser(
        "render",
        help="render every filler phrase a worker may say into the disk cache",
        description=(
            "Render the fixed filler phrases the agents of the named modules can say (with "
            "--all: every fixed phrase of the settings too) into the disk cache, so no call "
            "synthesizes a filler."
        ),
    )
    render.add_argument(
        "--module",
        "-m",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module (dotted name, or a .py file) whose agents' fillers to render; repeatable",
    )
    render.add_argument(
        "--all",
        action="store_true",
        dest="everything",
        help="also render every fixed phrase of the settings that no tool of the modules says"
        " (implied without --module)",
    )
    render.add_argument(
        "--tts",
        required=True,
        metavar="SPEC",
        help="the worker's TTS: PLUGIN[:KEY=VALUE,...] (e.g. openai:voice=ash) or MODULE:FACTORY",
    )
    render.add_argument(
        "--config", metavar="FILE", help="the settings file (default: as the worker finds it)"
    )
    render.add_argument(
        "--cache-dir", metavar="DIR", help="render into DIR instead of the settings' cache_dir"
    )
    render.add_argument(
        "--voice-id",
        metavar="NAME",
        help="name the TTS's sound in the cache key, as the worker's voice_id does "
        "(default: the voice_id setting)",
    )
    render.add_argument("--verbose", "-v", action="store_true", help="show library logs")
    args = parser.parse_args(argv)
    if not args.verbose:
        logging.disable(logging.CRITICAL)  # failures are reported as one line below
    else:
        logging.basicConfig(level=logging.INFO)
    try:
        return asyncio.run(
            _render(
                modules=args.module,
                everything=args.everything,
                tts_spec=args.tts,
                config=args.config,
                cache_dir=args.cache_dir,
                voice_id=args.voice_id,
            )
        )
    except (CliError, FillerConfigError) as e:
        print(f"{PROG} render: {_one_line(str(e))}", file=sys.stderr)
        return 1


async def _render(
    *,
    modules: Sequence[str],
    tts_spec: str,
    config: str | None,
    cache_dir: str | None,
    voice_id: str | None = None,
    everything: bool = False,
) -> int:
    overrides = {"voice_id": voice_id} if voice_id is not None else {}
    settings = FillerSettings.load(config_file=config or None, **overrides)
    directory = _directory(settings, cache_dir)
    # no module named: no agent to resolve, every fixed phrase of the settings
    phrases = plan(settings, _tools(modules, settings), everything=everything or not modules)
    texts = [p.text for p in phrases]
    cache = FillerAudioCache()
    cache.persist_to(directory, max_bytes=settings.cache_max_mb * 1024 * 1024)
    store = cache.stores[0]
    if not store.writable:
        raise CliError(f"cannot write to the cache directory {str(store.directory)!r}")
    tts = _build_tts(tts_spec)
    try:
        if settings.voice_id is not None:
            name_voice(tts, settings.voice_id)
        key_text = voice_key(tts)
        if key_text is None:
            raise CliError(
                f"the TTS {tts_spec} does not tell its voice, so its sounds cannot be keyed on "
                "disk: name it with --voice-id NAME and the same voice_id in the worker "
                "(FillerController.attach(voice_id=...), the voice_id setting or "
                "LIVEKIT_FILLER_VOICE_ID)"
            )
        print(
            f"rendering {len(texts)} filler phrases ({_count(tool_names(phrases), 'tool')}) "
            f"with {tts_spec} into {store.directory}"
        )
        print(f"voice key: {key_text}")
        billed = rendered = 0
        for phrase in phrases:
            text, users = phrase.text, ", ".join(phrase.tools)
            key = sound_key(tts, text)
            if key.startswith(LOCAL_PREFIX):  # voice_key said it is readable: never here
                raise CliError(f"the TTS {tts_spec} changed its voice while rendering")
            if cache.load(key):
                print(f"  cached      0 ch  {text!r}  ({users})")
                continue
            cache.put(key, await _synthesize(tts, tts_spec, text))
            flush(timeout=60.0)  # written by the background writer: wait for it here
            if not store.writable:
                raise CliError(f"cannot write to the cache directory {str(store.directory)!r}")
            billed += len(text)
            rendered += 1
            print(f"  rendered {len(text):4d} ch  {text!r}  ({users})")
        print(
            f"rendered {rendered} of {len(texts)} phrases ({len(texts) - rendered} already "
            f"cached): {billed} characters billed"
        )
    finally:
        await tts.aclose()
    return 0


def _directory(settings: FillerSettings, cache_dir: str | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if not settings.disk_cache:
        raise CliError("the disk cache is off (disk_cache = false); pass --cache-dir DIR")
    return settings.cache_dir if settings.cache_dir is not None else default_cache_dir()


def _import(name: str) -> ModuleType:
    try:
        if name.endswith(".py") or os.sep in name:
            path = Path(name).resolve()
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"not a Python file: {name}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` would
        return importlib.import_module(name)
    except (Exception, SystemExit) as e:
        raise CliError(f"cannot import module {name!r}: {type(e).__name__}: {e}") from None


def _tools(modules: Sequence[str], settings: FillerSettings) -> list[tuple[str, ToolRule | None]]:
    """``(tool name, rule)`` of every tool of ``modules``' agents that may get fillers."""
    return [tool for name in modules for tool in module_tools(_import(name), settings)]


def _build_tts(spec: str) -> lk_tts.TTS[Any]:
    head, sep, tail = spec.partition(":")
    factory_form = sep and "=" not in tail and tail.replace(".", "_").isidentifier()
    try:
        if factory_form:
            module = importlib.import_module(head)
            made = getattr(module, tail)()
        else:
            kwargs = dict(_option(item) for item in tail.split(",") if item.strip())
            plugin = importlib.import_module(f"livekit.plugins.{head}")
            made = plugin.TTS(**kwargs)
    except CliError:
        raise
    except (Exception, SystemExit) as e:
        raise CliError(f"cannot build the TTS {spec}: {type(e).__name__}: {e}") from None
    if not isinstance(made, lk_tts.TTS):
        raise CliError(f"--tts {spec} made a {type(made).__name__}, not a LiveKit TTS")
    return made


def _option(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip().isidentifier():
        raise CliError(f"--tts option {item!r} is not KEY=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


async def _synthesize(tts: lk_tts.TTS[Any], spec: str, text: str) -> rtc.AudioFrame:
    options = APIConnectOptions(max_retry=0, timeout=RENDER_TIMEOUT)
    tts = voice_source(tts)  # a FallbackAdapter's primary: never a fallback's voice
    frames: dict[str, list[rtc.AudioFrame]] = {}
    last = ""

    async def run() -> None:
        nonlocal last
        async with tts.synthesize(text, conn_options=options) as stream:
            async for event in stream:
                last = event.request_id
                frames.setdefault(last, []).append(event.frame)

    try:
        await asyncio.wait_for(run(), RENDER_TIMEOUT)
    except Exception as e:
        if isinstance(e, asyncio.TimeoutError):
            e = TimeoutError(f"no complete audio within {RENDER_TIMEOUT:.0f} s")
        raise CliError(f"the TTS {spec} failed on {text!r}: {type(e).__name__}: {e}") from None
    if not frames.get(last):
        raise CliError(f"the TTS {spec} returned no audio for {text!r}")
    return combine_frames(frames[last])  # only the last attempt: a restart drops the rest


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    raise SystemExit(main())

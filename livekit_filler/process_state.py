"""What the controllers of one process share: the disk cache of sounds, the learned tool
latencies, and the flush of both at a LiveKit job's end."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

from .disk_store import DiskStore, default_cache_dir
from .disk_writer import FLUSH_TIMEOUT, flush
from .latency import LatencyModel, shared_model
from .log import logger
from .settings import FillerSettings
from .sound_cache import shared_cache


def latency_model(settings: FillerSettings) -> LatencyModel:
    """The process-wide tool latency model controllers with these settings learn into: the
    history of their ``project`` (default: the program's directory) in their cache."""
    return shared_model(_latency_dir(settings), settings.project)


def _latency_dir(settings: FillerSettings) -> Path | None:
    """Where tool latencies persist: beside the audio cache (None: in memory only)."""
    if not getattr(settings, "disk_cache", True):
        return None
    if settings.cache_dir is not None:
        return Path(settings.cache_dir)
    try:
        return default_cache_dir()
    except Exception:  # no platformdirs, no home: keep the latencies in memory
        logger.debug("no cache directory for tool latencies", exc_info=True)
        return None


def open_disk_cache(settings: FillerSettings, *, wait: bool = True) -> int:
    """Open the disk cache the settings name in the process-wide audio cache (once), and
    bound its memory (``memory_cache_mb``).

    Args:
        settings: the settings.
        wait: False lists the directory in the background writer (on an event loop).

    Returns:
        How many sounds it holds; 0 when the disk cache or fillers are off (or not listed
        yet).

    Raises:
        FillerConfigError: ``cache_dir`` (or the default directory) is a file.
    """
    cache = shared_cache()
    cache.max_bytes = settings.memory_cache_mb * 1024 * 1024
    if not settings.disk_cache or not settings.enabled:
        return 0
    if settings.cache_dir is None:
        directory = default_cache_dir()
        # not checked when the settings were made: a file in its place fails here, at once
        # (a few stat calls; none once this process opened it, e.g. in the prewarm step)
        if all(store.root != directory for store in cache.stores):
            DiskStore(directory).check()
    else:
        directory = settings.cache_dir  # checked when the settings were made
    return cache.persist_to(directory, max_bytes=settings.cache_max_mb * 1024 * 1024, wait=wait)


_flushing_jobs: weakref.WeakSet[object] = weakref.WeakSet()


def flush_at_job_end() -> None:
    """In a LiveKit job, write what is pending when the job shuts down (bounded, off the loop);
    elsewhere the interpreter's exit does it (:mod:`.disk_writer`)."""
    try:
        from livekit.agents import get_job_context

        ctx = get_job_context()
    except Exception:  # not in a job (a test, a console session)
        return
    if ctx in _flushing_jobs:
        return
    _flushing_jobs.add(ctx)

    async def _flush() -> None:
        await asyncio.to_thread(flush, FLUSH_TIMEOUT)

    ctx.add_shutdown_callback(_flush)

"""What 1,000 cached sounds add to a fresh process's start, and to its first reads and write.

A disk cache of 1,000 sounds (1 s of 24 kHz audio each, 48 KB) is written once; then each
run is a new process (``python benchmarks/disk_startup.py --probe DIR``) that times opening
the cache as a worker's prewarm step does (``FillerController.prewarm``), against the same
process opening an empty cache. Each probe also times reading one sound on its first use and
the size scan a process does at its first write.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import header, median, percentile, table, verdict

TARGET_MS = 50.0


def _probe(root: str) -> None:
    from livekit_filler import FillerController, FillerSettings, shared_cache
    from livekit_filler.sound_cache import FillerAudioCache

    settings = FillerSettings.from_values(cache_dir=root)
    began = time.perf_counter()
    count = FillerController.prewarm(settings)
    opened = time.perf_counter() - began
    cache = shared_cache()
    store = cache.stores[0]
    first_key = next(iter(sorted(os.listdir(store.directory))), None)
    read = float("nan")
    if first_key is not None:
        began = time.perf_counter()
        assert cache.load(first_key)  # what a first use reads (in a worker thread, off the loop)
        read = time.perf_counter() - began
    began = time.perf_counter()
    store.enforce_bound()  # what a first write starts, in a background thread
    scan = time.perf_counter() - began
    assert isinstance(cache, FillerAudioCache)
    print(
        json.dumps(
            {
                "count": count,
                "open_ms": opened * 1000,
                "read_ms": read * 1000,
                "scan_ms": scan * 1000,
            }
        )
    )


def _fill(root: Path, sounds: int) -> None:
    from livekit import rtc

    from livekit_filler.disk_store import DiskStore

    store = DiskStore(root, max_bytes=1 << 40)
    store.open()
    samples = 24000
    for i in range(sounds):
        data = (i.to_bytes(2, "little") * samples)[: samples * 2]
        frame = rtc.AudioFrame(
            data=data, sample_rate=24000, num_channels=1, samples_per_channel=samples
        )
        store.write(f"{i:032x}", frame)


def _run(root: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--probe", str(root)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sounds", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        _probe(args.probe)
        return 0
    header(f"disk cache: a fresh process opening {args.sounds} cached sounds")
    with tempfile.TemporaryDirectory(prefix="filler-disk-") as tmp:
        full, empty = Path(tmp) / "full", Path(tmp) / "empty"
        began = time.perf_counter()
        _fill(full, args.sounds)
        print(f"wrote {args.sounds} sounds in {time.perf_counter() - began:.1f} s")
        runs: dict[str, list[dict[str, float]]] = {"empty": [], "full": []}
        for _ in range(args.runs):
            for name, root in (("empty", empty), ("full", full)):
                runs[name].append(_run(root))
    rows = []
    for results in runs.values():
        opened = [r["open_ms"] for r in results]
        reads = [r["read_ms"] for r in results if r["read_ms"] == r["read_ms"]]
        scans = [r["scan_ms"] for r in results]
        rows.append(
            [
                f"{int(results[0]['count'])} sounds",
                len(results),
                median(opened),
                percentile(opened, 95),
                median(reads) if reads else "-",
                median(scans),
            ]
        )
    print(
        table(
            [
                "cache",
                "processes",
                "open p50 ms",
                "open p95 ms",
                "first read p50 ms",
                "size scan p50 ms",
            ],
            rows,
        )
    )
    extra = percentile([r["open_ms"] for r in runs["full"]], 95) - median(
        [r["open_ms"] for r in runs["empty"]]
    )
    print()
    print(f"extra start-up cost of {args.sounds} sounds, p95: {extra:.2f} ms")
    print(f"target: <= {TARGET_MS:.0f} ms: {verdict(extra <= TARGET_MS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

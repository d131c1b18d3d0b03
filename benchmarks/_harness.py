"""Shared helpers for the benchmark scripts: quiet logs, statistics, tables, the command line.

Not a benchmark itself. Every script imports it as ``_harness`` (Python puts the script's own
directory first on ``sys.path``), so ``python benchmarks/<name>.py`` works from any directory.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def quiet_logs() -> None:
    """Keep LiveKit's INFO chatter out of the figures; warnings and errors still print."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def command() -> str:
    """The exact command that produced this output, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    return " ".join(["python", shlex.quote(shown), *map(shlex.quote, sys.argv[1:])])


def machine() -> str:
    """One line naming the machine, the date and the interpreter."""
    today = datetime.date.today().isoformat()
    return (
        f"{today}, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def header(title: str) -> None:
    """Print the benchmark's title, command and machine."""
    print(f"# {title}")
    print(f"$ {command()}")
    print(f"  {machine()}")
    print()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values."""
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(len(row))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def verdict(ok: bool) -> str:
    """``met`` or ``NOT MET``."""
    return "met" if ok else "NOT MET"

"""Draw scenario runs as a timeline PNG: who spoke when, where the caller heard nothing.

:func:`plot_runs` renders a list of :class:`~devtools.scenarios.ScenarioResult`
side by side, one row per run (scenario x approach), sharing one time axis:

- horizontal bars for the caller, the agent, its fillers and the sub-agent (an AgentTask),
  each in its own colour; a cut-off bar ends in a black tick;
- the dead air (nobody audible between the tool's start and the answer's first audio)
  shaded red, with its total next to the row label;
- the tool's span drawn as a thin bracket under the row;
- errors (exceptions and ERROR log records) written in red at the right of the row.

It needs matplotlib (in the ``dev`` dependency group) and uses its Agg backend, so it
works headless.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from devtools.scenarios import ScenarioResult
from livekit_filler.testing import Utterance

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["COLOURS", "MODE_TITLES", "plot_runs"]

logger = logging.getLogger("devtools.plot")

COLOURS: dict[str, str] = {
    "user": "#4c72b0",
    "agent": "#55a868",
    "filler": "#f0a030",
    "subagent": "#8172b2",
    "dead_air": "#e15759",
    "tool": "#555555",
    "error": "#c0392b",
}
"""Colour of each kind of bar (and of the dead-air shading, the tool bracket, errors)."""

MODE_TITLES: dict[str, str] = {
    "none": "no filler",
    "handmade": "hand-made filler",
    "with_filler": "RunContext.with_filler",
    "livekit_filler": "livekit-filler",
}
"""Short row titles for each mode."""

_SUBAGENT = "CollectAgeGender"
_BAR_HEIGHT = 0.56
_ROW_HEIGHT_INCHES = 0.62
_ERROR_ROOM = 2.6  # seconds of axis kept free at the right for error notes
_ERROR_WIDTH = 48  # characters per line of an error note


def _category(u: Utterance) -> str:
    if u.speaker == "user":
        return "user"
    if u.kind == "filler":
        return "filler"
    if u.agent == _SUBAGENT:
        return "subagent"
    return "agent"


def _dead_air_spans(result: ScenarioResult) -> list[tuple[float, float]]:
    """Silent stretches between the tool's start and the answer's first audio."""
    start, answer = result.marker("tool_start"), result.answer
    if start is None or answer is None or answer.start <= start:
        return []
    spans: list[tuple[float, float]] = []
    cursor = start
    audible = sorted(
        (max(u.start, start), min(u.end, answer.start))
        for u in result.utterances
        if u.end > start and u.start < answer.start
    )
    for s, e in audible:
        if s > cursor:
            spans.append((cursor, s))
        cursor = max(cursor, e)
    if answer.start > cursor:
        spans.append((cursor, answer.start))
    return [(s, e) for s, e in spans if e - s > 0.005]


def _error_text(errors: Sequence[str]) -> str:
    """The first error, wrapped on two lines, and how many more there are."""
    wrapped = textwrap.wrap(errors[0], _ERROR_WIDTH) or [""]
    lines = wrapped[:2]
    if len(wrapped) > 2:
        lines[-1] = lines[-1][: _ERROR_WIDTH - 1] + "…"
    if len(errors) > 1:
        lines.append(f"(+{len(errors) - 1} more)")
    return "⚠ " + "\n   ".join(lines)


def _short(text: str, width_s: float, seconds_per_char: float) -> str:
    """Text that fits in a bar ``width_s`` seconds wide, or "" if nothing useful fits."""
    room = int(width_s / seconds_per_char)
    if room < 6:
        return ""
    return text if len(text) <= room else text[: room - 1].rstrip() + "…"


def plot_runs(
    results: Sequence[ScenarioResult],
    path: Path | str,
    *,
    errors: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Render ``results`` as one timeline PNG, one row per run, top to bottom.

    Args:
        results: The runs, in the order to draw them.
        path: Where to write the PNG (parent directories are created).
        errors: Extra errors per run (e.g. ERROR log records), aligned with ``results``;
            each run's own ``errors`` are always shown.
        title: The figure's title.
        labels: Row labels, aligned with ``results``; default "scenario / approach".

    Returns:
        The path written.

    Raises:
        ValueError: If ``results`` is empty or ``errors``/``labels`` have another length.
        ImportError: If matplotlib is not installed.
    """
    if not results:
        raise ValueError("nothing to plot: results is empty")
    if errors is not None and len(errors) != len(results):
        raise ValueError(f"errors has {len(errors)} entries for {len(results)} results")
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"labels has {len(labels)} entries for {len(results)} results")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    path = Path(path)
    n = len(results)
    t_end = max((u.end for r in results for u in r.utterances), default=1.0)
    t_end = max(t_end, *(max((v[-1] for v in r.markers.values()), default=0.0) for r in results))
    t_end = t_end * 1.02 + 0.2
    if any(r.errors for r in results) or (errors is not None and any(errors)):
        t_end += _ERROR_ROOM
    width = max(12.0, min(22.0, 5.5 + t_end * 1.1))
    fig, ax = plt.subplots(figsize=(width, 1.5 + n * _ROW_HEIGHT_INCHES), dpi=110)

    previous_scenario: str | None = None
    labels_to_draw: list[tuple[Utterance, str, float]] = []
    for row, result in enumerate(results):
        y = n - 1 - row
        if previous_scenario is not None and result.scenario != previous_scenario:
            ax.axhline(y + 0.5, color="#999999", linewidth=0.8, linestyle="--")
        previous_scenario = result.scenario
        if row % 2 == 0:
            ax.axhspan(y - 0.5, y + 0.5, color="#f4f4f4", zorder=0)
        labels_to_draw.extend(_draw_row(ax, result, y))
        row_errors = [*result.errors, *(errors[row] if errors is not None else [])]
        if row_errors:
            last = max((u.end for u in result.utterances), default=0.0)
            ax.text(
                last + 0.1,
                y,
                _error_text(row_errors),
                va="center",
                ha="left",
                fontsize=7,
                color=COLOURS["error"],
                zorder=6,
            )

    ax.set_yticks(range(n))
    ax.set_yticklabels(
        [
            _row_label(r, labels[i] if labels is not None else None)
            for i, r in reversed(list(enumerate(results)))
        ],
        fontsize=8.5,
    )
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(0, t_end)
    ax.set_xlabel("seconds since the session started")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    legend = [
        Patch(color=COLOURS["user"], label="caller"),
        Patch(color=COLOURS["agent"], label="agent"),
        Patch(color=COLOURS["filler"], label="filler"),
        Patch(color=COLOURS["subagent"], label="sub-agent (AgentTask)"),
        Patch(color=COLOURS["dead_air"], alpha=0.25, label="dead air (tool start → answer)"),
        Line2D([], [], color=COLOURS["tool"], label="tool running"),
        Line2D(
            [], [], color=COLOURS["subagent"], marker="v", linestyle="", label="AgentTask starts"
        ),
        Line2D([], [], color="black", marker="|", linestyle="", markersize=9, label="cut off"),
    ]
    ax.legend(
        handles=legend,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=5,
        fontsize=8,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=11, y=0.995)
    fig.tight_layout()
    # seconds of axis per character of 7.5 pt text, now that the layout is known
    axis_inches = ax.get_position().width * fig.get_figwidth()
    seconds_per_char = t_end / axis_inches * (7.5 * 0.56 / 72)
    for u, category, row_y in labels_to_draw:
        _label_bar(ax, u, category, row_y, seconds_per_char)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    logger.debug("timeline written", extra={"path": str(path), "rows": n})
    return path


def _row_label(result: ScenarioResult, label: str | None) -> str:
    if label is not None:
        return label
    dead = result.dead_air
    dead_text = f"\ndead air {dead:.2f} s" if dead is not None else ""
    return f"{result.scenario} · {MODE_TITLES.get(result.mode, result.mode)}{dead_text}"


def _draw_row(ax: Axes, result: ScenarioResult, y: float) -> list[tuple[Utterance, str, float]]:
    """Draw one run's bars, dead air and tool bracket; return the bar labels to write."""
    labels: list[tuple[Utterance, str, float]] = []
    for s, e in _dead_air_spans(result):
        ax.broken_barh(
            [(s, e - s)],
            (y - 0.5, 1.0),
            facecolors=COLOURS["dead_air"],
            alpha=0.18,
            zorder=1,
        )
    tool_start = result.marker("tool_start")
    tool_end = result.marker("tool_end")
    if tool_start is not None and tool_end is not None:
        ty = y - _BAR_HEIGHT / 2 - 0.1
        ax.plot([tool_start, tool_end], [ty, ty], color=COLOURS["tool"], linewidth=1.2, zorder=2)
        for t in (tool_start, tool_end):
            ax.plot([t, t], [ty, ty + 0.08], color=COLOURS["tool"], linewidth=1.2, zorder=2)
        task = result.marker("task_start")
        if task is not None:
            ax.plot([task], [ty], marker="v", color=COLOURS["subagent"], markersize=4, zorder=2)
    for u in result.utterances:
        category = _category(u)
        width = max(u.end - u.start, 0.01)
        ax.broken_barh(
            [(u.start, width)],
            (y - _BAR_HEIGHT / 2, _BAR_HEIGHT),
            facecolors=COLOURS[category],
            edgecolors="white",
            linewidth=0.5,
            zorder=3,
        )
        if u.interrupted:
            ax.plot(
                [u.end, u.end],
                [y - _BAR_HEIGHT / 2, y + _BAR_HEIGHT / 2],
                color="black",
                linewidth=1.6,
                zorder=4,
            )
        labels.append((u, category, y))
    return labels


def _label_bar(ax: Axes, u: Utterance, category: str, y: float, seconds_per_char: float) -> None:
    """Write the utterance's text inside its bar, clipped to the bar."""
    from matplotlib.patches import Rectangle

    width = max(u.end - u.start, 0.01)
    text = _short(u.text or ("(sound)" if category == "user" else ""), width, seconds_per_char)
    if not text:
        return
    bar = Rectangle((u.start, y - _BAR_HEIGHT / 2), width, _BAR_HEIGHT, transform=ax.transData)
    label = ax.text(
        u.start + 0.03,
        y,
        text,
        va="center",
        ha="left",
        fontsize=7.5,
        color="white" if category in ("user", "subagent", "agent") else "black",
        clip_on=True,
        zorder=5,
    )
    label.set_clip_path(bar)

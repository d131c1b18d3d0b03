"""Mutation testing of the pure decision modules against the unit tier.

``python -m devtools.mutate`` (``scripts/mutate``) makes every single-operator mutant of
``livekit_filler/floor.py``, ``latency.py`` (with ``latency_files.py`` and ``reply_timer.py``,
split out of it) and ``options.py``, one at a time, and runs
``tests/unit`` against each (the module's own test file first, stopping at the first
failure). A mutant is **killed** when the unit tier fails (or times out), and **survives**
when it passes. It prints each survivor (line and change) and the kill rate per module and
in total; exit code 1 when the total is below ``--min`` (default 90 %).

The operators, one change per mutant (the issue's set): ``<``/``<=`` and ``>``/``>=``
swapped, ``==``/``!=`` swapped, ``and``/``or`` swapped, a ``not`` dropped, ``True``/``False``
flipped, ``+``/``-`` swapped (in expressions and ``+=``/``-=``). Docstrings and type
annotations are never mutated.

Each mutant runs in a scratch copy of the repository (the working tree is never touched):
pytest puts the copy's root first on ``sys.path`` (``pythonpath = ["tests", "."]``), so the
copy's ``livekit_filler`` shadows the editable install.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("floor", "latency", "latency_files", "reply_timer", "options")
SWAPS: dict[type[ast.AST], type[ast.AST]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
}
SYMBOLS = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.And: "and",
    ast.Or: "or",
    ast.Add: "+",
    ast.Sub: "-",
}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int
    line: int
    change: str
    function: str


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation or a docstring (never mutated)."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, ast.arg):
            mark(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            mark(node.returns)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            mark(node)  # docstrings and attribute docstrings
    return skip


def _points(tree: ast.AST) -> Iterator[tuple[ast.AST, int, str, str]]:
    """Every mutation point, in source order: (node, slot, description, enclosing function).

    ``node`` is the expression that changes (operators are shared singletons in a parsed
    tree, so a point is never an operator object); ``slot`` is the index of the operator in
    a comparison's chain (0 otherwise).
    """
    skip = _annotation_nodes(tree)
    functions: dict[int, str] = {}  # breadth first: an inner function's name wins
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                functions[id(node)] = fn.name
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        where = functions.get(id(node), "<module>")
        if isinstance(node, ast.Compare):
            for slot, op in enumerate(node.ops):
                if type(op) in SWAPS:
                    yield node, slot, f"{SYMBOLS[type(op)]} -> {SYMBOLS[SWAPS[type(op)]]}", where
        elif isinstance(node, ast.BoolOp | ast.BinOp | ast.AugAssign) and type(node.op) in SWAPS:
            kind = type(node.op)
            yield node, 0, f"{SYMBOLS[kind]} -> {SYMBOLS[SWAPS[kind]]}", where
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, 0, "drop not", where
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            yield node, 0, f"{node.value} -> {not node.value}", where


class _Apply(ast.NodeTransformer):
    """Apply one mutation point (``target`` node, ``slot``) to its tree."""

    def __init__(self, target: ast.AST, slot: int) -> None:
        self.target = target
        self.slot = slot

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        if node is not self.target:
            return node
        if isinstance(node, ast.Compare):
            ops = list(node.ops)
            ops[self.slot] = cast(ast.cmpop, SWAPS[type(ops[self.slot])]())
            node.ops = ops
        elif isinstance(node, ast.BoolOp | ast.BinOp | ast.AugAssign):
            node.op = cast(Any, SWAPS[type(node.op)]())
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        return node.operand if node is self.target else node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if node is self.target:
            return ast.copy_location(ast.Constant(value=not node.value), node)
        return node


def mutants(module: str) -> list[tuple[Mutant, str]]:
    """Every mutant of ``livekit_filler/<module>.py`` with its source."""
    source = (ROOT / "livekit_filler" / f"{module}.py").read_text()
    found = []
    for index in range(len(list(_points(ast.parse(source))))):
        tree = ast.parse(source)  # a fresh tree per mutant: the point is found by position
        node, slot, change, where = list(_points(tree))[index]
        mutated = _Apply(node, slot).visit(tree)
        line = int(getattr(node, "lineno", 0))
        source_of_mutant = ast.unparse(ast.fix_missing_locations(mutated))
        found.append((Mutant(module, index, line, change, where), source_of_mutant))
    return found


def _preload() -> None:
    """Import what every child needs but ``livekit_filler`` itself, once, before forking."""
    import livekit.agents  # noqa: F401
    import numpy  # noqa: F401
    import platformdirs  # noqa: F401
    import pydantic  # noqa: F401
    import pydantic_settings  # noqa: F401


def _scratch() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="livekit-filler-mutate-"))
    ignore = shutil.ignore_patterns(".venv*", ".git", "__pycache__", "out", "*.png", "*.wav")
    for name in ("livekit_filler", "tests", "devtools"):
        shutil.copytree(ROOT / name, directory / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", directory / "pyproject.toml")
    return directory


def _unit_args(directory: Path, module: str) -> list[str]:
    own = f"tests/unit/test_{module}.py"
    first = [own] if (directory / own).exists() else []
    # LiveKit, imported before the fork, brings anyio (a pytest plugin) in: no rewriting it
    quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    return ["-x", "-q", "-p", "no:cacheprovider", "-o", "timeout=30", *quiet, *first, "tests/unit"]


def _fork_unit(directory: Path, module: str, timeout: float) -> int:
    """Run the unit tier in ``directory`` in a forked child; returns the child's pid.

    The parent has imported LiveKit, pydantic and pytest once (not ``livekit_filler``), so a
    child only imports the scratch copy's package and runs: about a second per mutant.
    """
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        signal.alarm(int(timeout))
        os.chdir(directory)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        code = int(pytest.main(_unit_args(directory, module)))
    finally:
        os._exit(code)


def _run_all(todo: list[tuple[Mutant, str]], *, jobs: int, timeout: float) -> dict[Mutant, bool]:
    """Each mutant's survival (True: the unit tier passed on it), ``jobs`` at a time."""
    survived: dict[Mutant, bool] = {}
    running: dict[int, tuple[Mutant, Path]] = {}
    pending = list(todo)
    while pending or running:
        while pending and len(running) < jobs:
            mutant, source = pending.pop(0)
            directory = _scratch()
            (directory / "livekit_filler" / f"{mutant.module}.py").write_text(source)
            running[_fork_unit(directory, mutant.module, timeout)] = (mutant, directory)
        pid, status = os.wait()
        mutant, directory = running.pop(pid)
        shutil.rmtree(directory, ignore_errors=True)
        survived[mutant] = os.waitstatus_to_exitcode(status) == 0
        verdict = "SURVIVED" if survived[mutant] else "killed"
        _say(f"{len(survived)}/{len(todo)} {verdict} {mutant.module}.py:{mutant.line} "
             f"{mutant.function}: {mutant.change}")  # fmt: skip
    return survived


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    parser.add_argument("--min", type=float, default=90.0, help="lowest passing kill rate, %%")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per mutant")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    args = parser.parse_args(argv)
    args.modules = args.modules or list(MODULES)
    if unknown := sorted(set(args.modules) - set(MODULES)):
        parser.error(f"unknown modules {unknown}: choose from {', '.join(MODULES)}")

    todo = [m for module in args.modules for m in mutants(module)]
    if args.list:
        for mutant, _ in todo:
            _say(f"{mutant.module}.py:{mutant.line} {mutant.function}: {mutant.change}")
        _say(f"{len(todo)} mutants")
        return 0
    _preload()
    # the unmutated code must pass, or every mutant would look killed
    module = args.modules[0]
    source = (ROOT / "livekit_filler" / f"{module}.py").read_text()
    baseline = Mutant(module, -1, 0, "none (the unmutated code)", "")
    if _run_all([(baseline, source)], jobs=1, timeout=args.timeout)[baseline] is not True:
        sys.stderr.write("the unit tier fails on the unmutated code: fix it first\n")
        return 2

    started = time.monotonic()
    outcome = _run_all(todo, jobs=max(1, args.jobs), timeout=args.timeout)
    survived = [outcome[m] for m, _ in todo]
    total_killed = 0
    for module in args.modules:
        results = [(m, s) for (m, _), s in zip(todo, survived, strict=True) if m.module == module]
        killed = sum(not s for _, s in results)
        total_killed += killed
        for mutant, survives in results:
            if survives:
                _say(f"survived {module}.py:{mutant.line} {mutant.function}: {mutant.change}")
        rate = 100 * killed / len(results) if results else 100.0
        _say(f"{module}.py: {killed} of {len(results)} mutants killed ({rate:.1f} %)")
    rate = 100 * total_killed / len(todo) if todo else 100.0
    _say(
        f"total: {total_killed} of {len(todo)} mutants killed ({rate:.1f} %) by tests/unit, "
        f"in {time.monotonic() - started:.0f} s"
    )
    return 0 if rate >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())

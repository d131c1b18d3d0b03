"""conftest's retry policy, run on scratch test files in a child pytest.

One rerun at most, only for real-clock files, every rerun listed, and a run that needs more
than ``MAX_RERUNS`` fails even when every test passed on its rerun.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import MAX_RERUNS

FLAKY_ONCE = """
import pytest
seen = set()

@pytest.mark.parametrize("n", range({count}))
def test_fails_its_first_run(n):
    first = n not in seen
    seen.add(n)
    assert not first
"""


def _pytest(tmp_path: Path, name: str, count: int) -> subprocess.CompletedProcess[str]:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / name).write_text(FLAKY_ONCE.format(count=count))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name,
         "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_reruns_up_to_the_bound_pass_and_are_listed(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "test_faults.py", MAX_RERUNS)
    assert done.returncode == 0, done.stdout
    assert f"reruns: {MAX_RERUNS} (at most {MAX_RERUNS} allowed" in done.stdout
    assert done.stdout.count("  rerun: test_faults.py::test_fails_its_first_run") == MAX_RERUNS


def test_one_rerun_more_fails_the_run(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "test_faults.py", MAX_RERUNS + 1)
    assert done.returncode == 1, done.stdout
    assert f"{MAX_RERUNS + 1} passed" in done.stdout  # every test passed on its rerun
    assert "FAILED: too many" in done.stdout


def test_a_deterministic_file_never_reruns(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "test_settings.py", 1)
    assert done.returncode == 1, done.stdout
    assert "reruns: 0" in done.stdout and "1 failed" in done.stdout

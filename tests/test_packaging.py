"""The installed package is the library and its testing kit, nothing else.

The demo, the fuzzer, the thread scenarios and their picture and audio live in ``devtools/``,
which is not in the wheel. ``livekit_filler`` and ``livekit_filler.testing`` must not import
them, nor the example worker's model plugins, nor matplotlib: the imports are checked in a
fresh interpreter, so other tests' imports cannot hide one.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
MOVED = [
    "livekit_filler.demo",
    "livekit_filler.fuzz",
    "livekit_filler.plot",
    "livekit_filler.sound",
    "livekit_filler.testing.scenarios",
]
NOT_IMPORTED = ["devtools", "matplotlib", "livekit.plugins.openai", "livekit.plugins.silero"]


@pytest.mark.parametrize("module", MOVED)
def test_dev_tooling_is_not_in_the_package(module: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)


def test_the_library_and_testing_kit_import_no_dev_tooling() -> None:
    code = (
        "import json, sys\n"
        "import livekit_filler, livekit_filler.testing\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout)
    assert "livekit_filler.testing" in loaded
    leaked = [m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_IMPORTED)]
    assert not leaked


def test_the_wheel_holds_only_the_library_and_plugins_are_an_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["livekit_filler"]
    required = " ".join(project["project"]["dependencies"])
    assert "livekit-plugins" not in required
    assert "matplotlib" not in required
    examples = " ".join(project["project"]["optional-dependencies"]["examples"])
    assert "livekit-plugins-silero" in examples and "livekit-plugins-openai" in examples
    assert not (REPO / "livekit_filler" / "testing" / "scenarios.py").exists()
    assert (REPO / "devtools" / "__init__.py").exists()

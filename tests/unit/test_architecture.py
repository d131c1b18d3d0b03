"""The package's modules import one way: no module imports one that imports it back."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import livekit_filler

PACKAGE = Path(livekit_filler.__file__).parent


def _imports() -> dict[str, set[str]]:
    """Module name (relative to the package) -> package modules it imports, type-only too."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "__init__"
        package = parts[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(package[: len(package) - (node.level - 1)])
                module = [*base, *(node.module or "").split(".")] if node.module else base
                target = ".".join(m for m in module if m)
                for alias in node.names:
                    full = f"{target}.{alias.name}" if target else alias.name
                    deps.add(
                        full
                        if (PACKAGE / Path(*full.split("."))).with_suffix(".py").exists()
                        else target
                    )
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "livekit_filler."
            ):
                deps.add(node.module.removeprefix("livekit_filler."))  # type: ignore[union-attr]
        graph[name] = {d for d in deps if d and d != name}
    return graph


def test_no_import_cycle_in_the_package() -> None:
    graph = _imports()
    # a package __init__ re-exports its modules; cycles through it are not real cycles
    modules = {
        name: {d for d in deps if d not in ("__init__", "testing")}
        for name, deps in graph.items()
        if name not in ("__init__", "testing")
    }
    try:
        order = list(TopologicalSorter(modules).static_order())
    except CycleError as e:  # pragma: no cover - the failure message is the point
        raise AssertionError(f"import cycle: {e.args[1]}") from None
    assert order.index("floor") < order.index("speaker") < order.index("stream")
    assert order.index("stream") < order.index("controller") < order.index("decorator")


def test_the_floor_decision_and_the_options_import_no_session_machinery() -> None:
    graph = _imports()
    assert graph["floor"] == set()  # pure: floor_session reads the session
    assert graph["options"] <= {"settings", "errors"}
    assert "controller" not in graph["stream"] | graph["speaker"] | graph["metrics"]


def test_the_settings_and_latency_helpers_import_only_downward() -> None:
    graph = _imports()
    assert graph["settings_fields"] == set()  # value types: no schema, no sources
    assert graph["settings_sources"] <= {"errors"}
    assert graph["settings"] <= {"errors", "settings_fields", "settings_sources"}
    assert graph["latency_files"] == set()  # the files know nothing of the model
    assert graph["latency"] <= {"latency_files", "disk_writer", "log"}
    assert graph["reply_timer"] == {"latency"}


def test_the_sound_modules_import_one_way() -> None:
    """The voice front over the memory cache over the disk store and the render, never back."""
    graph = _imports()
    assert graph["render"] == set()
    assert graph["disk_store"] <= {"disk_writer", "errors", "log"}
    assert graph["sound_cache"] <= {"disk_store", "disk_writer", "render", "tts_identity"}
    assert "filler_voice" in graph["speaker"] and "filler_voice" not in graph["tts_identity"]


CONTROLLER_PARTS = ("tool_calls", "prerender", "manual_fillers", "session_events", "process_state")


def test_the_controllers_parts_are_imported_by_it_alone_and_never_import_it() -> None:
    graph = _imports()
    for part in CONTROLLER_PARTS:
        assert part in graph["controller"], f"the controller owns {part}"
        assert not {"controller", "decorator"} & graph[part], f"{part} imports the facade"
        importers = {name for name, deps in graph.items() if part in deps}
        # the event wiring drives the other parts; nothing below the controller knows them
        assert importers <= {"controller", "session_events"}, f"{part} imported by {importers}"
    for part in ("tool_calls", "prerender", "manual_fillers", "process_state"):
        assert not graph[part] & set(CONTROLLER_PARTS), f"{part} imports a sibling part"


def test_the_stream_timing_and_the_session_tts_import_no_session_machinery() -> None:
    """The stream's timing is pure over its dwell, the latency and the options; which TTS and
    model speak for an agent is asked of LiveKit's objects alone."""
    graph = _imports()
    assert graph["stream_timing"] <= {"dwell", "latency", "options"}
    assert "stream_timing" in graph["stream"]
    assert graph["session_tts"] == set()
    assert "session_tts" in graph["speaker"] and "speaker" not in graph["session_tts"]


def test_the_record_of_a_filler_imports_none_of_the_speakers_machinery() -> None:
    """Metrics, spans and events of a filler: told by the speaker, never asking it back."""
    graph = _imports()
    assert graph["filler_record"] <= {"events", "floor", "log", "metrics", "playing", "tracing"}
    assert "filler_record" in graph["speaker"]


def test_the_slow_answers_pure_parts_import_no_session_machinery() -> None:
    """Its reply leads are pure; its watch wraps LiveKit's objects, knowing no filler."""
    graph = _imports()
    assert graph["turn_leads"] <= {"latency"}
    assert graph["reply_watch"] == set()
    assert {"turn_leads", "reply_watch"} <= graph["slow_answer"]

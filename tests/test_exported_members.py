from __future__ import annotations

import livekit_filler
import livekit_filler.testing


def test_public_names_are_exactly_all_and_sorted() -> None:
    for module in (livekit_filler, livekit_filler.testing):
        public = {n for n in dir(module) if not n.startswith("_") and not _is_submodule(module, n)}
        assert set(module.__all__) - {"__version__"} == public, module.__name__
        assert module.__all__ == sorted(module.__all__), module.__name__


def test_what_event_handlers_receive_is_exported() -> None:
    assert livekit_filler.FillerEvent.__module__ == "livekit_filler.events"
    assert livekit_filler.FillerMetrics.__module__ == "livekit_filler.metrics"
    assert {v.value for v in livekit_filler.Verdict} >= {"speak", "busy", "handoff"}


def _is_submodule(module: object, name: str) -> bool:
    # submodules, and the `annotations` feature of `from __future__ import annotations`
    return type(getattr(module, name)).__name__ in {"module", "_Feature"}

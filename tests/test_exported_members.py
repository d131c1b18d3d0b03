from __future__ import annotations

import livekit_filler
import livekit_filler.testing


def test_public_names_are_exactly_all_and_sorted() -> None:
    for module in (livekit_filler, livekit_filler.testing):
        public = {n for n in dir(module) if not n.startswith("_") and not _is_submodule(module, n)}
        assert set(module.__all__) - {"__version__"} <= public
        assert module.__all__ == sorted(
            module.__all__, key=str.casefold
        ) or module.__all__ == sorted(module.__all__)


def _is_submodule(module: object, name: str) -> bool:
    return type(getattr(module, name)).__name__ == "module"

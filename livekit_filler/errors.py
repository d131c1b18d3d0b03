"""Exceptions raised by livekit-filler.

The exception tree::

    ValueError
     └── FillerConfigError   bad configuration (arguments, environment or TOML file)
"""

from __future__ import annotations

__all__ = ["FillerConfigError"]


class FillerConfigError(ValueError):
    """Raised when filler settings are invalid.

    The message names, for each problem, the dotted field path, the bad value and where it
    came from: an environment variable (``LIVEKIT_FILLER_DELAY``), a file and key
    (``config/filler.toml: tools.get_programs.delay``) or ``argument``. Several problems are
    listed one per line.

    Attributes:
        problems: One line per problem, in the order they were found.
    """

    problems: tuple[str, ...]

    def __init__(self, *problems: str) -> None:
        """Create the error from one or more problem descriptions."""
        super().__init__(*problems)
        self.problems = problems

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"invalid livekit-filler configuration: {self.problems[0]}"
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"invalid livekit-filler configuration ({len(self.problems)} problems):\n{lines}"

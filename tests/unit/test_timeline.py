"""The testing kit's pure timeline helpers."""

from __future__ import annotations

import math

from livekit_filler.testing import user_speaking_spans


def test_user_speaking_spans_pair_each_start_with_the_next_end() -> None:
    markers = {
        "user_speaking": [1.0, 1.2, 4.0, 9.0],  # 1.2: a repeated start inside a span
        "user_listening": [2.0, 5.0],
        "user_away": [6.0],
    }
    assert user_speaking_spans(markers) == [(1.0, 2.0), (4.0, 5.0), (9.0, math.inf)]


def test_no_user_state_is_no_span() -> None:
    assert user_speaking_spans({}) == []
    assert user_speaking_spans({"user_listening": [1.0]}) == []

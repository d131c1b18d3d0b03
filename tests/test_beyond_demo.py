"""The demo's rows beyond tools (devtools/beyond.py) show what they claim: one slow-answer
filler 1.2 s after the caller's turn, one acknowledgement after a sound during the booking,
none when the caller's words get LiveKit's own reply; no error, overlap or filler in the
history, and no answer later than without fillers by more than 50 ms."""

from __future__ import annotations

import asyncio

from devtools.beyond import BUSY, CASES, SLOW_PHRASES, run_case
from livekit_filler.testing import overlaps


async def test_the_beyond_tools_rows() -> None:
    runs = await asyncio.gather(*(run_case(c, filler=f) for c in CASES for f in (True, False)))
    results = {(r.case, r.filler): r for r in runs}
    for case in CASES:
        filled, plain = results[(case, True)], results[(case, False)]
        for r in (filled, plain):
            assert not r.errors, r.errors
            assert not overlaps(r.utterances, include_user=True), r.utterances
            assert r.in_history == 0
            assert r.answer is not None
        assert not plain.fillers
        assert filled.answer is not None and plain.answer is not None
        assert filled.answer - plain.answer <= 0.05, (case, filled.answer, plain.answer)
    slow = results[("slow_answer", True)]
    assert [u.text for u in slow.fillers] == list(SLOW_PHRASES)
    assert 1.2 <= slow.fillers[0].start - slow.trigger <= 1.5
    busy = results[("busy_sound", True)]
    assert [u.text for u in busy.fillers] == [BUSY]
    assert busy.fillers[0].start - busy.trigger <= 0.8
    assert not results[("still_there", True)].fillers

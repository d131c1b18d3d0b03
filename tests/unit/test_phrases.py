"""Phrase choice: pools, follow-ups, templates, no back-to-back repeats, repeatable with a seed."""

from __future__ import annotations

import itertools

from livekit_filler.options import Pool
from livekit_filler.phrases import PhrasePicker

POOL = Pool(("A", "B", "C"), ("Later",))


def test_the_first_filler_comes_from_phrases_and_later_ones_from_follow_ups() -> None:
    picker = PhrasePicker(seed=1)
    assert picker.pick(POOL, index=0, values={}) in POOL.phrases
    assert picker.pick(POOL, index=1, values={}) == "Later"
    assert picker.pick(Pool(("A",)), index=3, values={}) == "A"  # no follow-ups: phrases


def test_no_phrase_repeats_back_to_back() -> None:
    picker = PhrasePicker(seed=7)
    picks = [picker.pick(POOL, index=0, values={}) for _ in range(200)]
    assert all(a != b for a, b in itertools.pairwise(picks))
    assert set(picks) == set(POOL.phrases)


def test_a_single_phrase_may_repeat() -> None:
    picker = PhrasePicker(seed=0)
    assert [picker.pick(Pool(("Only",)), index=0, values={}) for _ in range(3)] == ["Only"] * 3


def test_a_seed_makes_choices_repeatable() -> None:
    def run(seed: int) -> list[str | None]:
        picker = PhrasePicker(seed=seed)
        return [picker.pick(POOL, index=0, values={}) for _ in range(20)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_templates_fill_from_values_and_unfillable_ones_are_skipped() -> None:
    pool = Pool(("Checking {club}.", "Checking {team}."), ("Still on {missing}.",))
    picker = PhrasePicker(seed=0)
    assert picker.pick(pool, index=0, values={"club": "Giants"}) == "Checking Giants."
    # an unfillable follow-up falls back to the first pool
    assert picker.pick(pool, index=1, values={"club": "Giants"}) == "Checking Giants."
    assert picker.pick(pool, index=0, values={}) is None
    assert picker.last == "Checking Giants."

"""The resettable sleep the filler stream dwells with (no real sleeping)."""

from __future__ import annotations

import asyncio

from livekit_filler._waker import Waker


async def test_wake_ends_a_sleep_with_no_timeout() -> None:
    waker = Waker()
    sleeper = asyncio.ensure_future(waker.sleep(None))
    await asyncio.sleep(0)
    assert not sleeper.done()
    waker.wake()
    await sleeper


async def test_a_zero_or_negative_timeout_returns_at_once() -> None:
    waker = Waker()
    await asyncio.wait_for(waker.sleep(0), timeout=1)
    await asyncio.wait_for(waker.sleep(-5), timeout=1)


async def test_wake_without_a_sleeper_is_a_no_op_and_is_not_remembered() -> None:
    waker = Waker()
    waker.wake()
    sleeper = asyncio.ensure_future(waker.sleep(None))
    await asyncio.sleep(0)
    assert not sleeper.done()  # the earlier wake() did not carry over
    waker.wake()
    await sleeper


async def test_a_cancelled_sleep_leaves_no_timer_behind() -> None:
    waker = Waker()
    sleeper = asyncio.ensure_future(waker.sleep(3600))
    await asyncio.sleep(0)
    sleeper.cancel()
    await asyncio.gather(sleeper, return_exceptions=True)
    waker.wake()  # no waiter left: nothing to do
    assert sleeper.cancelled()

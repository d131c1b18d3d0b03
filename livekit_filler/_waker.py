"""A resettable sleep: wait for a timeout or until someone says the situation changed."""

from __future__ import annotations

import asyncio


class Waker:
    """``await sleep(t)`` returns after ``t`` seconds or at the next ``wake()``, whichever first."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """End the pending sleep, if any."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def sleep(self, timeout: float | None) -> None:
        """Sleep for ``timeout`` seconds (forever when None) or until woken."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = (
            loop.call_later(max(timeout, 0.0), _resolve, waiter) if timeout is not None else None
        )
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if self._waiter is waiter:
                self._waiter = None


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

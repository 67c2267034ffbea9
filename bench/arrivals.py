"""When each benchmarked notification (or baseline activity) arrived, and a way to wait for one.

A dict of key -> time.perf_counter() that wakes the waiter of a key when it is set, so the
benchmark does not poll: polling cost the client CPU in proportion to the latency, which made a
slower contender look costlier in the client too.
"""

from __future__ import annotations

import asyncio


class Arrivals(dict[str, float]):
    def __init__(self) -> None:
        super().__init__()
        self._waiters: dict[str, asyncio.Future[None]] = {}

    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(key, value)
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    async def wait_for(self, key: str) -> float:
        if key not in self:
            waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
            if key not in self:  # set between the check and the registration
                await waiter
        return self[key]


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

"""The request-rate budget (``upload.max_requests_per_s``): at most so many requests per second.

Every request of the client takes a token of the run's :class:`RequestBudget` first (an upload
attempt inside its slot of the ``limiter``). Apart from the limiter: it bounds requests by time,
whatever they are, where the limiter bounds the uploads in flight by what the server takes. Time
is injectable (``clock``, ``sleep``): tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any


class RequestBudget:
    """At most ``rate_per_s`` requests per second, in the order asked (a GCRA / leaky bucket that
    admits ``burst`` requests at once). A request that waits keeps its place: ``take()`` reserves
    the next free instant, then sleeps until it."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        if not rate_per_s > 0 or burst < 1:
            raise ValueError("RequestBudget: rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self._interval = 1.0 / rate_per_s
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep or asyncio.sleep
        self._next = -math.inf  # the theoretical arrival time of the next request
        self.requests = 0
        self.waited_s = 0.0

    async def take(self) -> None:
        now = self._clock()
        at = max(self._next, now)
        self._next = at + self._interval
        self.requests += 1
        wait = at - self._tolerance - now
        if wait > 0:
            self.waited_s += wait
            await self._sleep(wait)

"""One poll scheduler that follows every execution of a run to a terminal status.

The cadence is per execution: the first poll comes ``interval_s`` after the upload, and every next
interval grows by half, up to ``max_interval_s``, with +-20 % jitter so that executions uploaded
together do not poll in lockstep. Polling is kept apart from the retry of each poll request: the
client retries a failed GET with its own policy; if it still fails, the poller logs it and polls
again later. A failed poll never changes an execution's state.

An execution that is not terminal ``timeout_s`` after it was uploaded is given up on: it stays
non-terminal in the state, and the run's outcome is ``incomplete`` (exit 3), not failed.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import formats
from .errors import ServiceError

POLL_PARALLELISM = 8  # GETs in flight at once


@dataclass(frozen=True, kw_only=True)
class PollCadence:
    interval_s: float = 1.0
    max_interval_s: float = 60.0
    growth: float = 1.5
    jitter: float = 0.2

    def next_interval(self, previous: float | None, rng: random.Random) -> float:
        """The base interval after ``previous`` (None for the first poll), with jitter applied."""
        base = self.interval_s if previous is None else min(previous * self.growth, self.max_interval_s)
        return base, base * (1 + rng.uniform(-self.jitter, self.jitter))


class ExecutionSource(Protocol):
    async def get_execution(self, datamart_id: str, import_id: str, execution_id: str) -> dict[str, Any]: ...


@dataclass
class _Tracked:
    execution_id: str
    key: Any
    deadline: float
    interval: float | None = None
    last_status: str | None = None


class Poller:
    """Polls tracked executions until each is terminal (or past its deadline).

    ``on_status(key, execution)`` is called when an execution's status changes (terminal included);
    ``on_poll_error(key, exc)`` when a poll request failed for good this round.
    """

    def __init__(
        self,
        client: ExecutionSource,
        datamart_id: str,
        import_id: str,
        *,
        cadence: PollCadence,
        timeout_s: float,
        on_status: Callable[[Any, dict[str, Any]], None],
        on_poll_error: Callable[[Any, Exception], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._datamart_id, self._import_id = datamart_id, import_id
        self._cadence, self._timeout_s = cadence, timeout_s
        self._on_status, self._on_poll_error = on_status, on_poll_error
        self._clock = clock
        self._rng = rng or random.Random()
        self._due: list[tuple[float, int, _Tracked]] = []  # heap of (due time, seq, tracked)
        self._seq = 0
        self._wakeup = asyncio.Event()
        self.timed_out: list[Any] = []

    @property
    def tracking(self) -> int:
        return len(self._due)

    def track(self, execution_id: str, key: Any, *, first_delay: float | None = None) -> None:
        """Follow ``execution_id``; ``key`` identifies it in callbacks (the batch number)."""
        now = self._clock()
        item = _Tracked(execution_id, key, deadline=now + self._timeout_s)
        base, delay = self._cadence.next_interval(None, self._rng)
        item.interval = base
        self._push(now + (delay if first_delay is None else first_delay), item)
        self._wakeup.set()

    def _push(self, due: float, item: _Tracked) -> None:
        self._seq += 1
        heapq.heappush(self._due, (due, self._seq, item))

    async def run(self, no_more_executions: asyncio.Event) -> None:
        """Poll until nothing is tracked and ``no_more_executions`` is set.

        At most ``POLL_PARALLELISM`` polls are in flight; each one that ends frees its slot for the
        next due execution at once, so one slow answer delays only its own execution, not a round.
        """
        in_flight: set[asyncio.Task] = set()
        finished: list[asyncio.Task] = []

        def on_done(task: asyncio.Task) -> None:
            in_flight.discard(task)
            finished.append(task)
            self._wakeup.set()

        def raise_crash() -> None:
            """A poll that crashed (not a ServiceError: a bug) fails the run; when several did, the
            first is raised and the others are retrieved (asyncio would log them)."""
            crashes = [t.exception() for t in finished if not t.cancelled() and t.exception() is not None]
            finished.clear()
            if crashes:
                raise crashes[0]

        try:
            while self._due or in_flight or not no_more_executions.is_set():
                raise_crash()
                now = self._clock()
                while self._due and self._due[0][0] <= now and len(in_flight) < POLL_PARALLELISM:
                    task = asyncio.create_task(self._poll_one(heapq.heappop(self._due)[2]))
                    in_flight.add(task)
                    task.add_done_callback(on_done)
                timeout = None  # a slot frees up, a new execution is tracked, or uploads end
                if self._due and len(in_flight) < POLL_PARALLELISM:
                    timeout = max(0.0, self._due[0][0] - now)
                await self._wait(timeout, no_more_executions)
            raise_crash()
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise_crash()  # a crash seen only now (the poller was cancelled) wins over the cancel

    async def _wait(self, timeout: float | None, no_more: asyncio.Event) -> None:
        """Sleep until ``timeout`` passes, a poll ends, a new execution is tracked, or uploads are over."""
        self._wakeup.clear()
        waiters = [asyncio.ensure_future(self._wakeup.wait())]
        if not no_more.is_set():
            waiters.append(asyncio.ensure_future(no_more.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _poll_one(self, item: _Tracked) -> None:
        try:
            execution = await self._client.get_execution(self._datamart_id, self._import_id, item.execution_id)
        except ServiceError as exc:
            if self._on_poll_error:
                self._on_poll_error(item.key, exc)
            self._reschedule(item)
            return
        status = execution.get("status")
        if status != item.last_status:
            item.last_status = status
            self._on_status(item.key, execution)
        if not formats.is_terminal(status):
            self._reschedule(item)

    def _reschedule(self, item: _Tracked) -> None:
        now = self._clock()
        if now >= item.deadline:
            self.timed_out.append(item.key)
            return
        base, delay = self._cadence.next_interval(item.interval, self._rng)
        item.interval = base
        self._push(min(now + delay, item.deadline), item)

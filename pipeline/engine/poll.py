"""One poll scheduler that follows every execution of a run to a terminal status.

The cadence is per execution: the first poll comes ``interval_s`` after the upload, and every next
interval grows by half, up to ``max_interval_s``, with +-20 % jitter so that executions uploaded
together do not poll in lockstep. Polling is kept apart from the retry of each poll request: the
client retries a failed GET with its own policy; if it still fails, the poller logs it and polls
again later. A failed poll never changes an execution's state (but see the 404s below).

An execution that is not terminal ``timeout_s`` after it was uploaded is given up on: it stays
non-terminal in the state, and the run's outcome is ``incomplete`` (exit 3), not failed.

Statuses are compared after ``formats.normalize_status`` (the server may answer ``succeeded``), and
callbacks see a known status in upper case. An unknown status (``DONE``) is warned about once per
distinct value and polled on. Two kinds of failed poll are not just polled again later:
- ``lost_after_404s`` 404 answers in a row for one execution: the server does not know it; it is
  reported ``LOST`` (a failure) and no longer polled;
- 401 or 403: the token is expired, revoked or lacks the right; ``Poller.run`` raises that ``ApiError``
  (the run stops, resumable) rather than polling on for hours.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline import formats
from pipeline.errors import ApiError, ServiceError

POLL_PARALLELISM = 8  # GETs in flight at once
AUTH_STATUSES = frozenset({401, 403})  # a poll answered so ends the run


@dataclass(frozen=True, kw_only=True)
class PollCadence:
    interval_s: float = 1.0
    max_interval_s: float = 60.0
    growth: float = 1.5
    jitter: float = 0.2

    def next_interval(self, previous: float | None, rng: random.Random) -> tuple[float, float]:
        """``(base, delay)`` of the poll after one whose base interval was ``previous`` (None for the
        first poll). ``base`` is the un-jittered interval: pass it back as ``previous`` next time, so
        the jitter never compounds. ``delay`` is ``base`` with +-``jitter`` applied: the seconds to
        wait before that poll."""
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
    last_status: str | None = None  # normalised (or None: no status seen yet / none sent)
    not_found: int = 0  # 404 answers in a row


class Poller:
    """Polls tracked executions until each is terminal (or past its deadline).

    ``on_status(key, execution)`` is called when an execution's status changes (terminal included),
    with a copy of the server's execution whose ``status`` is upper case when it is a known one;
    ``on_poll_error(key, exc)`` when a poll request failed for good this round (a 401/403 is raised
    instead); ``on_warning(message)`` once per distinct unknown status the server reports.
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
        on_warning: Callable[[str], None] | None = None,
        lost_after_404s: int = 5,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if lost_after_404s < 1:
            raise ValueError(f"lost_after_404s must be at least 1, not {lost_after_404s}")
        self._client = client
        self._datamart_id, self._import_id = datamart_id, import_id
        self._cadence, self._timeout_s = cadence, timeout_s
        self._on_status, self._on_poll_error, self._on_warning = on_status, on_poll_error, on_warning
        self._lost_after_404s = lost_after_404s
        self._unknown_seen: set[str] = set()  # unknown statuses already warned about (normalised)
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
        in_flight: set[asyncio.Task[None]] = set()
        finished: list[asyncio.Task[None]] = []

        def on_done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            finished.append(task)
            self._wakeup.set()

        def raise_crash() -> None:
            """A poll that raised fails the run: a bug (not a ServiceError), or a 401/403 answer. When
            several did, the first is raised and the others are retrieved (asyncio would log them)."""
            crashes = [exc for t in finished if not t.cancelled() and (exc := t.exception()) is not None]
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
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wakeup.wait())]
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
            if isinstance(exc, ApiError) and exc.status in AUTH_STATUSES:
                raise  # an expired or revoked token: polling on would fail for hours; the run stops
            item.not_found = item.not_found + 1 if isinstance(exc, ApiError) and exc.status == 404 else 0
            if self._on_poll_error:
                self._on_poll_error(item.key, exc)
            if item.not_found >= self._lost_after_404s:
                self._on_status(item.key, self._lost(item))
            else:
                self._reschedule(item)
            return
        item.not_found = 0
        raw = execution.get("status")
        status = formats.normalize_status(raw)
        known = formats.is_known(status)
        if not known:
            self._warn_unknown(status, raw, item)
        if status != item.last_status:
            item.last_status = status
            self._on_status(item.key, {**execution, "status": status} if known else execution)
        if not formats.is_terminal(status):
            self._reschedule(item)

    def _lost(self, item: _Tracked) -> dict[str, Any]:
        """The execution object reported for one the server answers 404 about, again and again."""
        message = f"the server answered 404 to {item.not_found} polls in a row: the execution is unknown to it"
        return {"id": item.execution_id, "status": formats.ExecutionStatus.LOST.value, "error": {"message": message}}

    def _warn_unknown(self, status: str | None, raw: object, item: _Tracked) -> None:
        """Warn once per distinct unknown status (``done`` and ``DONE`` are one; no status is one too)."""
        seen = status if status is not None else repr(raw)
        if seen in self._unknown_seen:
            return
        self._unknown_seen.add(seen)
        if self._on_warning:
            self._on_warning(
                f"the server reports an unknown execution status {raw!r} (execution {item.execution_id}): "
                "polling on until it becomes a known terminal status"
            )

    def _reschedule(self, item: _Tracked) -> None:
        now = self._clock()
        if now >= item.deadline:
            self.timed_out.append(item.key)
            return
        base, delay = self._cadence.next_interval(item.interval, self._rng)
        item.interval = base
        self._push(min(now + delay, item.deadline), item)

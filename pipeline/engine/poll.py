"""One poll scheduler that follows every execution of a run to a terminal status.

``Poller`` sends the polls and applies their answers. When each execution is polled is planned
apart: ``poll_plan`` (the cadence, per execution) from ``poll_estimates`` (what the executions of
the run already finished taught), over ``poll_schedule`` (what is tracked, and the heap of due
polls); many polls due together are answered by one walk of the import's executions
(``poll_listing``).

**Requests.** ``Poller.requests`` counts the GETs sent (one per ``get_execution`` call; the client's
own retries of one call are not seen here), ``Poller.listings`` the listing pages asked for.

Polling is kept apart from the retry of each poll request: the client retries a failed GET with its
own policy; if it still fails, the poller logs it and polls again later. A failed poll never changes an
execution's state (but see the 404s below).

An execution that is not terminal ``timeout_s`` after it was tracked is given up on: it stays
non-terminal in the state, and the run's outcome is ``incomplete`` (exit 3), not failed.

Statuses are compared after ``formats.normalize_status`` (the server may answer ``succeeded``), and
callbacks see a known status in upper case. An unknown status (``DONE``) is warned about once per
distinct value and polled on. Two kinds of failed GET are not just polled again later:
- ``lost_after_404s`` 404 answers in a row for one execution: the server does not know it; it is
  reported ``LOST`` (a failure) and no longer polled;
- 401 or 403: the token is expired, revoked or lacks the right; ``Poller.run`` raises that ``ApiError``
  (the run stops, resumable) rather than polling on for hours.
Each status change is applied once, whether a GET or a listing saw it first.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pipeline import formats
from pipeline.engine.poll_estimates import Estimates, epoch_seconds, positive_count, work_of
from pipeline.engine.poll_listing import LIST_RETRY_S, LIST_THRESHOLD, walk_listing
from pipeline.engine.poll_plan import Planner, PollCadence
from pipeline.engine.poll_schedule import Schedule, Tracked
from pipeline.errors import ApiError, ServiceError

POLL_PARALLELISM = 8  # requests in flight at once (GETs, and a listing walk takes one slot)
AUTH_STATUSES = frozenset({401, 403})  # a GET answered so ends the run
CLOCK_SLACK_S = 0.005  # a poll due this soon is due (the loop's timers fire within their clock's resolution)
END_FEW = 2 * POLL_PARALLELISM  # executions left that make the very end of a run (``poll_plan.END_FLOOR_S``)


class ExecutionSource(Protocol):
    async def get_execution(self, datamart_id: str, import_id: str, execution_id: str) -> dict[str, Any]: ...


def _rank(status: str | None) -> int:
    """How far on a status is: none 0, waiting or unknown 1, running 2, terminal 3."""
    if status is None:
        return 0
    if formats.is_terminal(status):
        return 3
    return 2 if status == formats.ExecutionStatus.RUNNING else 1


class Poller:
    """Polls tracked executions until each is terminal (or past its deadline).

    ``on_status(key, execution)`` is called when an execution's status changes (terminal included),
    with a copy of the server's execution whose ``status`` is upper case when it is a known one;
    ``on_poll_error(key, exc)`` when a GET failed for good this round (a 401/403 is raised instead);
    ``on_warning(message)`` once per distinct unknown status the server reports;
    ``on_listing_error(exc)`` when a listing failed (its executions are polled by GET).
    ``list_threshold``: more than this many executions due make a listing (``None``: never list).
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
        on_listing_error: Callable[[Exception], None] | None = None,
        lost_after_404s: int = 5,
        list_threshold: int | None = LIST_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if lost_after_404s < 1:
            raise ValueError(f"lost_after_404s must be at least 1, not {lost_after_404s}")
        if list_threshold is not None and list_threshold < 1:
            raise ValueError(f"list_threshold must be at least 1 (or None), not {list_threshold}")
        self._client = client
        lister = getattr(client, "list_executions", None)
        self._lister: Callable[..., Any] | None = lister if callable(lister) and list_threshold is not None else None
        self._datamart_id, self._import_id = datamart_id, import_id
        self._cadence, self._timeout_s = cadence, timeout_s
        self._on_status, self._on_poll_error, self._on_warning = on_status, on_poll_error, on_warning
        self._on_listing_error = on_listing_error
        self._lost_after_404s = lost_after_404s
        self._list_threshold = list_threshold or 0
        self._unknown_seen: set[str] = set()  # unknown statuses already warned about (normalised)
        self._clock = clock
        self._schedule = Schedule()
        self._estimates = Estimates()  # what finished executions taught
        self._planner = Planner(cadence, self._estimates, self._schedule, rng or random.Random(), end_few=END_FEW)
        self._wakeup = asyncio.Event()
        self._listing = False  # a listing walk is in flight
        self._list_retry_at = -math.inf
        self.timed_out: list[Any] = []
        self.requests = 0  # GETs sent
        self.listings = 0  # listing pages asked for

    @property
    def tracking(self) -> int:
        return self._schedule.live

    def track(
        self,
        execution_id: str,
        key: Any,
        *,
        first_delay: float | None = None,
        records: int | None = None,
        size: int | None = None,
        answer: Mapping[str, Any] | None = None,
    ) -> None:
        """Follow ``execution_id``; ``key`` identifies it in callbacks (the batch number). ``records``
        and ``size`` (bytes) of the uploaded file, when given, sharpen the expected end. ``answer``:
        the upload's answer, just received: its ``creation_date`` is the freshest server date a run
        sees (the polls' dates are older than their answers by up to a floor), so it sets the
        server's clock against ours to within a round trip from the first upload on. Before, an
        offset learned from polls alone put starts up to 0.26 s late, and expected ends with them."""
        now = self._clock()
        if answer is not None:
            self._estimates.observe(answer, now)
        item = Tracked(
            execution_id,
            key,
            deadline=now + self._timeout_s,
            tracked_at=now,
            records=positive_count(records),
            size=positive_count(size),
            last_poll=now,
            fixed_first=first_delay is not None,
        )
        if answer is not None:
            item.created = epoch_seconds(answer.get("creation_date"))
        self._schedule.add(item)
        due = now + first_delay if first_delay is not None else self._planner.plan(item, now)
        self._schedule.push(min(due, item.deadline), item)
        self._wakeup.set()

    # --- the run ---------------------------------------------------------------------------------

    async def run(self, no_more_executions: asyncio.Event) -> None:
        """Poll until nothing is tracked and ``no_more_executions`` is set.

        At most ``POLL_PARALLELISM`` requests are in flight; each one that ends frees its slot for the
        next due execution at once, so one slow answer delays only its own execution, not a round.
        """
        schedule = self._schedule
        in_flight: set[asyncio.Task[None]] = set()
        finished: list[asyncio.Task[None]] = []

        def on_done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            finished.append(task)
            self._wakeup.set()

        def start(coro: Any) -> None:
            task: asyncio.Task[None] = asyncio.create_task(coro)
            in_flight.add(task)
            task.add_done_callback(on_done)

        def raise_crash() -> None:
            """A poll that raised fails the run: a bug (not a ServiceError), or a 401/403 answer. When
            several did, the first is raised and the others are retrieved (asyncio would log them)."""
            crashes = [exc for t in finished if not t.cancelled() and (exc := t.exception()) is not None]
            finished.clear()
            if crashes:
                raise crashes[0]

        uploads_over = False  # (a run of polls begun after the uploads learns it on its first turn)
        try:
            while schedule.head() is not None or in_flight or not no_more_executions.is_set():
                raise_crash()
                now = self._clock()
                if not uploads_over and no_more_executions.is_set():
                    uploads_over = True
                    self._planner.uploads_over(now)
                soon = now + CLOCK_SLACK_S  # due (so no wait is ever shorter than the slack)
                if len(in_flight) < POLL_PARALLELISM and (listed := self._take_for_listing(soon)):
                    self._listing = True
                    start(self._list(listed))
                while (head := schedule.head()) is not None and head[0] <= soon and len(in_flight) < POLL_PARALLELISM:
                    start(self._poll_one(schedule.pop()))
                timeout = None  # a slot frees up, a new execution is tracked, or uploads end
                if (head := schedule.head()) is not None and len(in_flight) < POLL_PARALLELISM:
                    timeout = max(0.0, head[0] - now)
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

    def _reschedule(self, item: Tracked) -> None:
        now = self._clock()
        item.last_poll, item.fixed_first, item.polled = now, False, True
        if now >= item.deadline:
            self._schedule.drop(item)
            self.timed_out.append(item.key)
            return
        self._schedule.push(min(self._planner.plan(item, now), item.deadline), item)

    # --- one GET ---------------------------------------------------------------------------------

    async def _poll_one(self, item: Tracked) -> None:
        self.requests += 1
        sent = self._clock()
        try:
            execution = await self._client.get_execution(self._datamart_id, self._import_id, item.execution_id)
        except ServiceError as exc:
            if isinstance(exc, ApiError) and exc.status in AUTH_STATUSES:
                raise  # an expired or revoked token: polling on would fail for hours; the run stops
            if item.done:
                return  # a listing saw it end meanwhile
            item.not_found = item.not_found + 1 if isinstance(exc, ApiError) and exc.status == 404 else 0
            if self._on_poll_error:
                self._on_poll_error(item.key, exc)
            if item.not_found >= self._lost_after_404s:
                self._schedule.drop(item)
                self._on_status(item.key, self._lost(item))
            else:
                self._reschedule(item)
            return
        if item.done:
            return  # a listing saw it end meanwhile: applied once
        now = self._clock()
        self._estimates.observe(execution, now)
        item.not_found, item.get_next = 0, False
        self._apply(item, execution, now, listed=False)
        if formats.is_terminal(item.last_status):
            return  # done
        if (claim := item.claim) is not None and (item.started is not None or sent >= claim):
            item.claim = None  # it started (the claim is settled), or still waits when it would have run
            if item.started is None and item.last_status in formats.WAITING_STATUSES:
                self._planner.slot_freed(claim, now, skip=item)  # that slot went to another: the next in line
        self._reschedule(item)

    def _lost(self, item: Tracked) -> dict[str, Any]:
        """The execution object reported for one the server answers 404 about, again and again."""
        message = f"the server answered 404 to {item.not_found} polls in a row: the execution is unknown to it"
        return {"id": item.execution_id, "status": formats.ExecutionStatus.LOST.value, "error": {"message": message}}

    # --- answers (a GET's or a listing's) ---------------------------------------------------------

    def _apply(self, item: Tracked, execution: dict[str, Any], now: float, *, listed: bool) -> bool:
        """Apply an answer about ``item``; return whether it was news. From a listing, only a known
        status further on than the last one seen is news (a listing may lag)."""
        raw = execution.get("status")
        status = formats.normalize_status(raw)
        known = formats.is_known(status)
        news = not listed or (known and _rank(status) > _rank(item.last_status))
        if not news:
            if item.started is None:
                item.started = epoch_seconds(execution.get("start_date"))
            return False
        if not known:
            self._warn_unknown(status, raw, item)
        item.created = epoch_seconds(execution.get("creation_date")) or item.created
        item.started = epoch_seconds(execution.get("start_date")) or item.started
        item.lines = work_of(execution) or item.lines
        if not listed and item.started is None and status in formats.WAITING_STATUSES:
            item.not_started_at = now
        if status != item.last_status:
            item.last_status = status
            self._on_status(item.key, {**execution, "status": status} if known else execution)
        if formats.is_terminal(status):
            self._schedule.drop(item)
            if formats.is_success(status):
                self._learn(item, execution)
            ended = self._estimates.local(epoch_seconds(execution.get("end_date")))
            if ended is not None and self._estimates.known:  # the next in line starts after the smallest queueing
                self._planner.slot_freed(ended + self._estimates.pickup_s, now)
        return True

    def _learn(self, item: Tracked, execution: dict[str, Any]) -> None:
        if self._estimates.learn(execution, records=item.records, lines=item.lines, size=item.size):
            self._planner.replan(self._clock())

    def _warn_unknown(self, status: str | None, raw: object, item: Tracked) -> None:
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

    # --- listings (see ``poll_listing``) ---------------------------------------------------------

    def _take_for_listing(self, now: float) -> list[Tracked] | None:
        """The executions due within the next minimum interval, when one is due now, more than the
        threshold are, and a listing may be walked now (otherwise they stay where they are). Those
        whose last poll a listing answered, or did not, are left to their GET."""
        if self._lister is None or self._listing or now < self._list_retry_at:
            return None
        return self._schedule.take_due(now, now + self._cadence.floor_s, self._list_threshold)

    async def _list(self, due: list[Tracked]) -> None:
        """One walk of the import's executions for the ``due`` ones (every live one it shows is looked
        at: a terminal status ends it, news plans it again)."""
        lister = self._lister
        assert lister is not None
        began = self._clock()
        wanted = {item.execution_id for item in due}

        def on_page() -> None:
            self.listings += 1

        try:
            entries = await walk_listing(
                lister, self._datamart_id, self._import_id, wanted, polls=len(due), on_page=on_page
            )
        except ServiceError as exc:
            now = self._clock()
            self._list_retry_at = now + LIST_RETRY_S
            if self._on_listing_error:
                self._on_listing_error(exc)
            for item in due:
                if not item.done:
                    self._after_listing(item, now, began, shown=False)
            return
        finally:
            self._listing = False
        now = self._clock()
        answered: set[Tracked] = set()
        in_due = set(due)
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            self._estimates.observe(entry, now)
            if entry.get("id") is None:
                continue
            for item in self._schedule.of(str(entry["id"])):
                news = self._apply(item, entry, now, listed=True)
                if item.done:
                    continue
                if item in in_due:
                    answered.add(item)
                elif (
                    news and item.seq and self._estimates.known and not item.fixed_first
                ):  # planned again with the news
                    self._schedule.push(min(self._planner.plan(item, now), item.deadline), item)
        for item in due:
            if not item.done:
                self._after_listing(item, now, began, shown=item in answered)

    def _after_listing(self, item: Tracked, now: float, began: float, *, shown: bool) -> None:
        """Plan ``item`` after a walk that stood for its poll (and found it not terminal, or not at
        all). Its next poll is a GET either way: a listing may be stuck on an old status, or omit it."""
        item.get_next = True
        if shown:  # polled
            self._reschedule(item)
        else:  # due: a GET at once; not due yet when the walk began: at its time
            self._schedule.push(now if item.due <= began else item.due, item)

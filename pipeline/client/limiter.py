"""How many upload attempts are in flight: an adaptive limit and a shared pause.

Every upload ATTEMPT holds a slot of the run's :class:`UploadLimiter` while it runs (the retry
loop takes it around each attempt, see ``retry.call_with_retry``'s ``gate``; the time spent waiting
for it counts against neither the retry window nor the attempts). A slot is given while the
attempts in flight are fewer than the limit and no pause is on, to the waiting attempt of the
lowest ``order`` first (first come among equals). The engine gives each attempt its batch's number:
a batch refused with a 429 comes back after its ``Retry-After`` and goes before batches not tried
yet. Served in arrival order, it went after every batch queued meanwhile, last of the run: the run
then ended on a lone full-size upload instead of the plan's tail (throttled scenario, 2 uploads
accepted: the two upload lanes ended 0.5-0.7 s apart).

The limit moves between 1 and ``maximum`` (``upload.concurrency``):

- **start** at ``min(8, maximum)``: a small run is cut into about 10 batches
  (``reading/sizing.py``), most of which should go at once.
- **throttled** (an attempt answered 429 or 503): the server refused what it saw when the attempt
  arrived, so the limit drops to the attempts that were in flight when the refused one started,
  itself excluded (at least 1), and that concurrency becomes a *ceiling*. A server that accepts 2
  uploads at once refuses the 3rd, 4th, ... of a burst of 8: the limit is 2 as soon as the first
  of those refusals comes back, whatever the order of the answers. The refusal's ``Retry-After``
  (or, when it has none, the retry policy's jittered back-off over the throttled answers in a row)
  pauses new attempts of every worker until it is over; attempts in flight go on.
  **Hand-over**: while the pause lasts, an attempt that ends may hand its place to a waiting one,
  so the attempts in flight never rise above what they were when the pause began (nor above the
  limit): a server that caps uploads in flight sees no more than it accepted, and its link does not
  idle for a whole ``Retry-After`` each time one of the accepted uploads ends (against 2 accepted
  uploads of 1.6 s and ``Retry-After: 1``, that idling was 0.6 s of a 10 s run). A server that
  refuses by time rather than by count (a request-rate limit) refuses such a hand-over: the first
  time it does, hand-overs stop for the rest of the run (every later pause is strict), and that
  refusal extends the pause without lowering the limit (the count was not what it refused). This is the
  multiplicative decrease of AIMD (Chiu and Jain, 1989; TCP's congestion avoidance, RFC 5681), the
  factor read from the server's own count instead of a fixed x0.5.
- **grows** and **probes** ceilings as ``limit_adaptation`` says: +1 while the throughput measured
  over epochs grows with it, back by one when a +1 bought only latency, a ceiling probed again now
  and then.

With ``adaptive=False`` (``upload.adaptive = false``) the limit is ``maximum``, always; the
shared pause and the counters still work.

The limiter keeps a bounded timeline (``LimiterSample``: seconds since it started, limit, attempts
in flight, bytes completed so far): at most one sample per ``sample_s`` plus one at every change of
the limit and one each time the attempts in flight go from none to some or back, and at most
``max_samples`` (halved, and the interval doubled, when full). ``snapshot()``
returns it with the counters (throttled answers, pauses) as a :class:`LimiterSnapshot`.

Time is injectable (``clock``, ``call_later`` of the pause's end) and so is the jitter (``rng``):
tests run on a fake clock. The request-rate budget is ``request_budget``'s.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from pipeline.client.limit_adaptation import LimitAdaptation, Tuning
from pipeline.client.limiter_snapshot import LimiterSample, LimiterSnapshot
from pipeline.client.retry import RetryPolicy, next_delay
from pipeline.errors import ApiError

#: Answers that say "too much, come back later": the limit comes down and new attempts pause.
THROTTLE_STATUSES = frozenset({429, 503})
START_LIMIT = 8


class SlotsClosed(Exception):
    """The limiter was closed (the run stops sending): this attempt was not started."""


def is_throttled(exc: BaseException | None) -> bool:
    return isinstance(exc, ApiError) and exc.status in THROTTLE_STATUSES


class Slot:
    """One attempt's slot: ``async with limiter.slot(size):`` around the attempt. Leaving without an
    exception counts ``size`` bytes completed; a 429/503 lowers the limit and pauses; any other
    exception only frees the slot."""

    __slots__ = ("_limiter", "size", "order", "started", "concurrency", "generation", "probe", "handed_over")

    def __init__(self, limiter: UploadLimiter, size: int, order: int = 0) -> None:
        self._limiter = limiter
        self.size = size
        self.order = order  # waiting slots are given lowest first
        self.started = 0.0
        self.concurrency = 0  # attempts in flight when this one started, itself included
        self.generation = 0
        self.probe = False  # started while the limit was at or above a ceiling
        self.handed_over = False  # started during a pause, in the place of one that ended

    async def __aenter__(self) -> Slot:
        await self._limiter._acquire(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._limiter._release(self, exc)


class UploadLimiter:
    """The adaptive limit on upload attempts in flight (see the module docstring)."""

    def __init__(
        self,
        maximum: int,
        *,
        adaptive: bool = True,
        initial: int | None = None,
        pause_policy: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen)
        tuning: Tuning = Tuning(),  # noqa: B008 (frozen)
        clock: Callable[[], float] = time.monotonic,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if maximum < 1:
            raise ValueError("UploadLimiter: maximum must be >= 1")
        self.maximum, self.adaptive = maximum, adaptive
        start = maximum if not adaptive else (initial if initial is not None else START_LIMIT)
        self._limit = max(1, min(maximum, start))
        self._policy, self._tuning, self._clock = pause_policy, tuning, clock
        self._call_later = call_later
        self._rng = rng or random.Random()
        self._t0 = clock()
        self._in_flight = 0
        #: a heap of (order, arrival, slot, future): lowest order first, then first come
        self._waiters: list[tuple[int, int, Slot, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._closed = False
        self._paused_until = -math.inf
        self._held = 0  # during a pause: at most this many attempts in flight (hand-overs)
        self._hand_over = True  # until the server refuses a hand-over
        self._timer: Any = None
        self.throttled = 0
        self.pauses = 0
        self.peak_in_flight = 0  # the most attempts in flight at once (the timeline samples may miss it)
        self.bytes_done = 0
        self._streak = 0  # throttled answers since the last success
        self._generation = 0  # bumped at each change of the limit
        self._adaptation = LimitAdaptation(maximum, tuning, self._rng, self._t0, self._binds)
        # timeline
        #: told (old, new) when the limit changes (the run's live display and -v lines)
        self.on_limit: Callable[[int, int], None] | None = None
        self._timeline: list[LimiterSample] = []
        self._sample_every = tuning.sample_s
        self._sample(force=True)

    # --- what callers use ---------------------------------------------------------------------

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def slot(self, size: int, order: int = 0) -> Slot:
        """The slot of one attempt of a ``size``-byte upload (an async context manager); while
        attempts wait, the lowest ``order`` is given a slot first."""
        return Slot(self, size, order)

    def close(self) -> None:
        """No more attempts: those waiting raise :class:`SlotsClosed`; those in flight go on."""
        self._closed = True
        self._cancel_timer()
        waiters, self._waiters = self._waiters, []
        for *_, fut in waiters:
            if not fut.done():
                fut.set_exception(SlotsClosed())

    def snapshot(self) -> LimiterSnapshot:
        now = self._clock()
        return LimiterSnapshot(
            adaptive=self.adaptive,
            maximum=self.maximum,
            limit=self._limit,
            in_flight=self._in_flight,
            waiting=sum(not fut.done() for *_, fut in self._waiters),
            paused_s=max(0.0, self._paused_until - now),
            throttled=self.throttled,
            pauses=self.pauses,
            bytes_done=self.bytes_done,
            peak_in_flight=self.peak_in_flight,
            timeline=(*self._timeline, self._point(now)),
        )

    # --- slots --------------------------------------------------------------------------------

    def _paused(self, now: float) -> bool:
        return now < self._paused_until

    async def _acquire(self, slot: Slot) -> None:
        if self._closed:
            raise SlotsClosed()
        now = self._clock()
        if not self._waiters and self._in_flight < self._room(now):
            self._start(slot, now)
            return
        if not self._paused(now):
            self._adaptation.limited = True  # the limit binds: this epoch says something about it
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (slot.order, next(self._arrivals), slot, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(slot, None, completed=False)  # given, then cancelled: give it back
            else:
                self._forget(fut)
            raise

    def _forget(self, fut: asyncio.Future[None]) -> None:
        for i, (*_, waiting) in enumerate(self._waiters):
            if waiting is fut:
                self._waiters[i] = self._waiters[-1]
                self._waiters.pop()
                heapq.heapify(self._waiters)
                return

    def _start(self, slot: Slot, now: float) -> None:
        self._adaptation.integrate(now, self._in_flight)
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        slot.started, slot.concurrency, slot.generation = now, self._in_flight, self._generation
        slot.probe = self._limit >= self._adaptation.ceiling
        slot.handed_over = self._paused(now)
        self._sample()

    def _room(self, now: float) -> int:
        """How many attempts may be in flight now: the limit; during a pause, only as many as when
        it began (the places of those that end are handed over), or none once the server refused a
        hand-over."""
        if not self._paused(now):
            return self._limit
        return min(self._limit, self._held) if self._hand_over else 0

    def _grant(self) -> None:
        """Give free slots to the waiters, in order (during a pause, only handed-over places); when
        paused, wake up at the pause's end."""
        now = self._clock()
        paused = self._paused(now)
        if paused and self._waiters and self._timer is None:
            self._timer = self._schedule(self._paused_until - now, self._pause_over)
        room = self._room(now)
        while self._waiters and self._in_flight < room:
            *_, slot, fut = heapq.heappop(self._waiters)
            if fut.done():  # cancelled while waiting
                continue
            self._start(slot, now)
            fut.set_result(None)
        if not paused and any(not fut.done() for *_, fut in self._waiters):
            self._adaptation.limited = True  # waiting for a slot, not for a pause

    def _pause_over(self) -> None:
        self._timer = None
        self._new_epoch(self._clock())  # an epoch never spans a pause (its idle time is no measure)
        self._grant()
        self._sample()

    def _release(self, slot: Slot, exc: BaseException | None, *, completed: bool = True) -> None:
        now = self._clock()
        self._adaptation.integrate(now, self._in_flight)
        self._in_flight -= 1
        if exc is None and completed:
            self.bytes_done += slot.size
            self._streak = 0
            if slot.generation == self._generation:
                self._adaptation.completed(slot.size, now - slot.started)
            self._maybe_decide(now)
        elif is_throttled(exc):
            self.throttled += 1
            self._streak += 1
            if slot.handed_over:
                self._hand_over = False  # refused by time, not by count: strict pauses from now on
            elif self.adaptive:  # that concurrency is a ceiling: the limit goes just below it
                self._set_limit(self._adaptation.refused(slot.concurrency, slot.probe, now, self._limit), now)
            # the attempts the server is still taking: a refused one's place is not handed over
            self._held = min(self._held, self._in_flight) if self._paused(now) else self._in_flight
            self._pause(next_delay(self._policy, exc, self._streak - 1, self._rng), now)
        self._sample()
        self._grant()

    # --- the pause ----------------------------------------------------------------------------

    def _pause(self, delay: float, now: float) -> None:
        if delay <= 0 or self._closed:
            return
        until = now + delay
        if until <= self._paused_until:
            return
        if not self._paused(now):
            self.pauses += 1
        self._paused_until = until
        self._cancel_timer()
        self._timer = self._schedule(delay, self._pause_over)

    def _schedule(self, delay: float, callback: Callable[[], None]) -> Any:
        if self._call_later is not None:
            return self._call_later(delay, callback)
        return asyncio.get_running_loop().call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            cancel = getattr(self._timer, "cancel", None)
            if cancel is not None:
                cancel()
            self._timer = None

    # --- adaptation (``limit_adaptation`` decides, the limiter applies) --------------------------

    def _binds(self, now: float) -> bool:
        """Does the limit bind now: an attempt waits for a slot, not for a pause?"""
        return not self._paused(now) and any(not fut.done() for *_, fut in self._waiters)

    def _new_epoch(self, now: float) -> None:
        self._adaptation.new_epoch(now, self._in_flight)

    def _set_limit(self, limit: int, now: float) -> None:
        limit = max(1, min(self.maximum, limit))
        if limit != self._limit:
            old, self._limit = self._limit, limit
            self._generation += 1
            self._sample(force=True)
            if self.on_limit is not None:
                self.on_limit(old, limit)
        self._new_epoch(now)

    def _maybe_decide(self, now: float) -> None:
        """At the end of an epoch, the limit ``limit_adaptation`` decides."""
        if not self.adaptive:
            return
        limit = self._adaptation.decide(now, self._limit, self._in_flight)
        if limit is not None:
            self._set_limit(limit, now)

    # --- timeline -----------------------------------------------------------------------------

    def _point(self, now: float) -> LimiterSample:
        return LimiterSample(round(now - self._t0, 3), self._limit, self._in_flight, self.bytes_done)

    def _sample(self, *, force: bool = False) -> None:
        point = self._point(self._clock())
        timeline = self._timeline
        # the moments the link goes busy and idle are kept: the report's upload rate spans them
        edge = bool(timeline) and (point.in_flight == 0) != (timeline[-1].in_flight == 0)
        if not (force or edge) and timeline and point.t - timeline[-1].t < self._sample_every:
            return
        timeline.append(point)
        if len(timeline) > self._tuning.max_samples:
            last = timeline[-1]
            del timeline[1::2]  # every other point, the first kept
            if timeline[-1] is not last:
                timeline.append(last)
            self._sample_every *= 2

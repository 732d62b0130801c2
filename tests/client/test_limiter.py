"""The adaptive limit on upload attempts in flight, on a fake clock (no test waits for real time).

Uploads are simulated: a worker takes a slot, its attempt ends after a simulated duration (a
timer of the fake clock), the simulated server may refuse it (429 with ``Retry-After``) on arrival.
The clock only moves when the test advances it; timers (an attempt's end, a pause's end) fire in
order as it does.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable
from contextlib import asynccontextmanager

import pytest

from pipeline.client.limit_adaptation import Tuning
from pipeline.client.limiter import SlotsClosed, UploadLimiter
from pipeline.client.limiter_snapshot import LimiterSnapshot
from pipeline.client.request_budget import RequestBudget
from pipeline.client.retry import RetryPolicy, call_with_retry
from pipeline.errors import ApiError, TransportError

MB = 1_000_000


class FakeTime:
    """A monotonic clock that moves only when told, with ``call_later`` timers fired as it moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(callback)
        heapq.heappush(self._timers, (self.now + max(0.0, delay), next(self._seq), timer))
        return timer

    def next_timer(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    async def advance(self, seconds: float) -> None:
        """Move ``seconds`` on, firing the timers due on the way (each at its own time)."""
        target = self.now + seconds
        while (when := self.next_timer()) is not None and when <= target:
            _, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            timer.callback()
            await settle()
        self.now = target
        await settle()

    async def sleep(self, seconds: float) -> None:
        await self.advance(seconds)


class Timer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


async def settle() -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


def limiter(clock: FakeTime, maximum: int = 16, **kw) -> UploadLimiter:
    kw.setdefault("pause_policy", RetryPolicy(base_delay_s=1, max_delay_s=1))
    kw.setdefault("rng", random.Random(7))
    return UploadLimiter(maximum, clock=clock, call_later=clock.call_later, **kw)


class Attempt:
    """One attempt holding (or waiting for) a slot until the test ends it."""

    def __init__(self, lim: UploadLimiter, size: int = MB, order: int = 0) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.holding = False
        self.task = asyncio.create_task(self._run(lim, size, order))

    async def _run(self, lim: UploadLimiter, size: int, order: int) -> None:
        async with lim.slot(size, order):
            self.holding = True
            await self.done

    def succeed(self) -> None:
        self.done.set_result(None)

    def refuse(self, retry_after: float | None = 5.0, status: int = 429) -> None:
        self.done.set_exception(ApiError(status, "slow down", retry_after=retry_after))


async def attempts(lim: UploadLimiter, n: int) -> list[Attempt]:
    started = [Attempt(lim) for _ in range(n)]
    await settle()
    return started


async def finish(*tasks: Attempt) -> None:
    await settle()
    await asyncio.gather(*(a.task for a in tasks), return_exceptions=True)


# --- a simulated server ---------------------------------------------------------------------


class Server:
    """Simulated uploads: ``workers`` always want to send; an accepted upload lasts
    ``duration(concurrency)`` seconds; at most ``accepts`` at once (more are refused on arrival,
    0.01 s later, with ``Retry-After: retry_after``); ``accepts=None``: no cap."""

    def __init__(
        self,
        lim: UploadLimiter,
        clock: FakeTime,
        *,
        workers: int = 16,
        duration: Callable[[int], float] = lambda c: 1.0,
        accepts: int | None = None,
        retry_after: float = 1.0,
    ) -> None:
        self.lim, self.clock = lim, clock
        self.duration, self.accepts, self.retry_after = duration, accepts, retry_after
        self.active = 0
        self.refused = 0
        self.completed = 0
        self.tasks = [asyncio.create_task(self._worker()) for _ in range(workers)]

    async def _worker(self) -> None:
        while True:
            try:
                async with self.lim.slot(MB):
                    await self._attempt()
            except ApiError:
                pass

    async def _attempt(self) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.accepts is not None and self.active >= self.accepts:
            self.refused += 1
            self.clock.call_later(0.01, lambda: done.set_exception(ApiError(429, "busy", retry_after=self.retry_after)))
            await done
            return
        self.active += 1
        try:
            self.clock.call_later(self.duration(self.lim.in_flight), lambda: done.set_result(None))
            await done
            self.completed += 1
        finally:
            self.active -= 1

    async def run_for(self, seconds: float, step: float = 0.05) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            await self.clock.advance(min(step, end - self.clock.now))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def limits(snapshot: LimiterSnapshot, since: float = 0.0) -> list[int]:
    return [s.limit for s in snapshot.timeline if s.t >= since]


# --- start, bounds, slots -------------------------------------------------------------------


def test_starts_at_eight_within_the_bounds():
    clock = FakeTime()
    assert limiter(clock, 16).limit == 8  # a small run's ~8 batches all go at once
    assert limiter(clock, 3).limit == 3
    assert limiter(clock, 16, adaptive=False).limit == 16
    assert limiter(clock, 16, initial=40).limit == 16 and limiter(clock, 16, initial=0).limit == 1
    with pytest.raises(ValueError):
        UploadLimiter(0)


async def test_no_more_attempts_in_flight_than_the_limit_and_slots_go_in_order():
    clock = FakeTime()
    lim = limiter(clock, 16)
    started = await attempts(lim, 10)
    assert [a.holding for a in started] == [True] * 8 + [False] * 2
    assert lim.in_flight == 8 and lim.snapshot().waiting == 2
    started[0].succeed()
    await settle()
    assert [a.holding for a in started] == [True] * 9 + [False]  # the first waiting got it
    for a in started[1:]:
        if not a.done.done():
            a.succeed()
    await finish(*started)
    assert lim.in_flight == 0 and lim.bytes_done == 10 * MB


async def test_a_batch_back_from_its_retry_after_goes_before_later_batches():
    """Batch 3 was refused and waited its Retry-After while batches 4 and 5 queued: the next free
    place is batch 3's (lowest order first), then 4's, then 5's; among equal orders, first come."""
    clock = FakeTime()
    lim = limiter(clock, 2, adaptive=False)
    one, two = Attempt(lim, order=1), Attempt(lim, order=2)
    four, five = Attempt(lim, order=4), Attempt(lim, order=5)
    await settle()
    three = Attempt(lim, order=3)  # came back last
    await settle()
    assert [a.holding for a in (one, two, three, four, five)] == [True, True, False, False, False]
    one.succeed()
    await settle()
    assert three.holding and not four.holding and not five.holding
    two.succeed()
    await settle()
    assert four.holding and not five.holding
    three.succeed()
    await settle()
    assert five.holding
    for a in (four, five):
        a.succeed()
    await finish(one, two, three, four, five)
    assert lim.in_flight == 0 and lim.snapshot().waiting == 0


async def test_a_cancelled_waiter_does_not_keep_a_slot():
    clock = FakeTime()
    lim = limiter(clock, 1, adaptive=False)
    first, second, third = await attempts(lim, 3)
    second.task.cancel()
    await settle()
    first.succeed()
    await settle()
    assert third.holding and lim.in_flight == 1 and lim.snapshot().waiting == 0
    third.succeed()
    await finish(first, second, third)
    assert lim.in_flight == 0


async def test_close_refuses_the_waiting_and_lets_the_in_flight_end():
    clock = FakeTime()
    lim = limiter(clock, 1, adaptive=False)
    running, waiting = await attempts(lim, 2)
    lim.close()
    await settle()
    assert isinstance(waiting.task.exception(), SlotsClosed)
    assert running.holding and not running.task.done()
    running.succeed()
    await finish(running)
    assert running.task.exception() is None and lim.bytes_done == MB
    with pytest.raises(SlotsClosed):
        async with lim.slot(1):
            pass


# --- throttled answers: down, and a shared pause -----------------------------------------------


async def test_429s_bring_the_limit_down_to_what_the_server_accepted():
    """8 sent at once to a server that takes 2: the 3rd to 8th are refused, in whatever order the
    answers come back: the limit is 2 once the refusal of the 3rd is back."""
    clock = FakeTime()
    lim = limiter(clock, 16)
    changes: list[tuple[int, int]] = []
    lim.on_limit = lambda old, new: changes.append((old, new))
    started = await attempts(lim, 8)
    for a in reversed(started[2:]):  # the last sent answers first
        a.refuse(retry_after=1)
        await settle()
    assert lim.limit == 2
    assert changes and changes[0][0] == 8 and changes[-1][1] == 2  # the live display is told
    assert lim.snapshot().peak_in_flight == 8
    snap = lim.snapshot()
    assert (snap.throttled, snap.pauses) == (6, 1)  # overlapping refusals: one pause
    assert lim.in_flight == 2  # the accepted ones go on
    started[0].succeed()
    started[1].succeed()
    await finish(*started)


async def test_a_503_counts_as_throttled_and_other_errors_do_not():
    clock = FakeTime()
    lim = limiter(clock, 16)
    a, b, c = await attempts(lim, 3)
    b.done.set_exception(TransportError("reset", ambiguous=True))
    await settle()
    assert lim.limit == 8 and lim.snapshot().throttled == 0
    c.refuse(status=503, retry_after=None)
    await settle()
    assert lim.limit == 2 and lim.snapshot().throttled == 1  # c started third: 2 is what passed
    a.succeed()
    await finish(a, b, c)


async def test_the_pause_is_shared_and_in_flight_attempts_go_on():
    """A Retry-After holds back every worker's new attempts: only the place of an attempt that ends
    during the pause is handed over, so the attempts in flight never rise above what the server was
    taking when it refused."""
    clock = FakeTime()
    lim = limiter(clock, 16)
    a, b, c = await attempts(lim, 3)
    c.refuse(retry_after=5)
    await settle()
    assert lim.limit == 2 and lim.in_flight == 2
    other = Attempt(lim)  # a second worker's attempt: 2 in flight already, it waits
    await settle()
    assert not other.holding
    a.succeed()  # a's place is handed over
    await settle()
    assert other.holding and lim.in_flight == 2
    third = Attempt(lim)  # no place ended for it: it waits for the pause's end
    await clock.advance(4.9)
    assert not third.holding and lim.snapshot().paused_s == pytest.approx(0.1)
    b.succeed()  # ... or for a place
    await settle()
    assert third.holding and lim.in_flight == 2
    other.succeed()
    third.succeed()
    await finish(a, b, c, other, third)
    assert lim.snapshot().pauses == 1


async def test_a_refused_place_is_not_handed_over():
    clock = FakeTime()
    lim = limiter(clock, 16)
    a, b, c, d = await attempts(lim, 4)
    d.refuse(retry_after=5)  # 3 were being taken...
    await settle()
    c.refuse(retry_after=5)  # ... then only 2
    await settle()
    assert lim.limit == 2
    waiting = Attempt(lim)
    await settle()
    assert not waiting.holding and lim.in_flight == 2
    a.succeed()
    await settle()
    assert waiting.holding and lim.in_flight == 2
    b.succeed()
    waiting.succeed()
    await finish(a, b, c, d, waiting)


async def test_a_refused_hand_over_makes_every_later_pause_strict():
    """A server that refuses by time (a request-rate limit) refuses the hand-over too: the pause
    goes on, the limit stays (the count was not what it refused), and later pauses are strict."""
    clock = FakeTime()
    lim = limiter(clock, 16)
    a, b, c = await attempts(lim, 3)
    c.refuse(retry_after=5)
    await settle()
    handed = Attempt(lim)
    a.succeed()
    await settle()
    assert handed.holding
    handed.refuse(retry_after=5)
    await settle()
    assert lim.limit == 2 and lim.snapshot().throttled == 2
    strict = Attempt(lim)
    b.succeed()  # a place is free, but no more hand-overs
    await clock.advance(4.9)
    assert not strict.holding and lim.in_flight == 0
    await clock.advance(0.2)
    assert strict.holding
    strict.succeed()
    await finish(a, b, c, handed, strict)


async def test_a_server_that_takes_two_keeps_two_uploads_in_flight_through_its_retry_after():
    """16 workers, uploads of 0.5 s, a server that takes 2 and says Retry-After: 2: after the first
    burst's refusals, 2 stay in flight (the place of an upload that ends during the pause is handed
    over at once) instead of none until the pause ends."""
    clock = FakeTime()
    lim = limiter(clock, 16)
    server = Server(lim, clock, duration=lambda c: 0.5, accepts=2, retry_after=2.0)
    await server.run_for(10)
    await server.stop()
    assert server.refused == 6 and lim.limit == 2  # the first burst only
    assert server.completed >= 38  # 2 places x 10 s / 0.5 s = 40; strict pauses: 34


async def test_without_retry_after_the_pause_is_the_policy_delay():
    clock = FakeTime()
    lim = limiter(clock, 16, pause_policy=RetryPolicy(base_delay_s=3, max_delay_s=3))
    a, b = await attempts(lim, 2)
    b.refuse(retry_after=None)
    await settle()
    paused = lim.snapshot().paused_s
    assert 0 < paused <= 3  # full jitter: uniform(0, 3)
    a.succeed()
    await finish(a, b)


async def test_a_fixed_limit_stays_but_still_pauses():
    clock = FakeTime()
    lim = limiter(clock, 4, adaptive=False)
    started = await attempts(lim, 4)
    started[3].refuse(retry_after=2)
    await settle()
    assert lim.limit == 4 and lim.snapshot().throttled == 1 and lim.snapshot().paused_s == 2
    for a in started[:3]:
        a.succeed()
    await finish(*started)


async def test_the_limit_never_goes_below_one():
    clock = FakeTime()
    lim = limiter(clock, 16)
    server = Server(lim, clock, accepts=0, retry_after=0.5)  # refuses everything
    await server.run_for(60)
    await server.stop()
    assert lim.limit == 1 and min(limits(lim.snapshot())) == 1
    assert lim.snapshot().throttled == server.refused > 0


# --- growth -----------------------------------------------------------------------------------


async def test_grows_while_throughput_grows_with_it():
    """Each connection has its own bandwidth (an upload lasts 1 s whatever the others do): every
    +1 adds throughput, so the limit climbs to the maximum and stays there."""
    clock = FakeTime()
    lim = limiter(clock, 16)
    server = Server(lim, clock, workers=16, duration=lambda c: 1.0)
    await server.run_for(60)
    await server.stop()
    trace = limits(lim.snapshot())
    assert trace[0] == 8 and lim.limit == 16
    assert all(b >= a for a, b in itertools.pairwise(trace)), "no step back on a link that is not shared"
    assert max(trace) == 16


async def test_holds_when_throughput_is_flat():
    """One shared link (an upload lasts as many seconds as uploads are in flight): one more upload
    only makes each slower; the limit tries 9, goes back to 8, and tries 9 again only now and then."""
    clock = FakeTime()
    lim = limiter(clock, 16)
    server = Server(lim, clock, workers=16, duration=lambda c: float(c))
    await server.run_for(600)
    await server.stop()
    snap = lim.snapshot()
    trace = limits(snap)
    assert set(trace) <= {8, 9} and 9 in trace
    at_9 = sum(b.t - a.t for a, b in itertools.pairwise(snap.timeline) if a.limit == 9)
    assert at_9 < 0.2 * 600, f"{at_9:.0f} s of 600 at the probed level"
    assert snap.throttled == 0


async def test_a_server_that_takes_two_settles_at_two_and_probes_three_now_and_then():
    clock = FakeTime()
    lim = limiter(clock, 16)
    server = Server(lim, clock, workers=16, duration=lambda c: 1.0, accepts=2, retry_after=1)
    await server.run_for(2)
    assert lim.limit == 2  # at once: the first burst's refusals
    early = server.refused
    await server.run_for(598)
    await server.stop()
    snap = lim.snapshot()
    assert set(limits(snap, since=2)) <= {2, 3}
    at_2 = sum(b.t - a.t for a, b in itertools.pairwise(snap.timeline) if a.limit == 2 and a.t >= 2)
    assert at_2 > 0.95 * 598
    probes = server.refused - early
    assert 1 <= probes <= 8, "probes for 3 after 30 s, 60 s, 120 s, ... up to 300 s apart"
    assert snap.pauses >= probes
    assert server.completed > 1000  # two at a time, one second each, for ten minutes


async def test_grows_back_when_429s_stop():
    clock = FakeTime()
    lim = limiter(clock, 16)
    server = Server(lim, clock, workers=16, duration=lambda c: 1.0, accepts=2, retry_after=1)
    await server.run_for(100)
    assert lim.limit == 2
    server.accepts = None  # the server takes all it gets from now on
    await server.run_for(400)
    await server.stop()
    assert lim.limit == 16


# --- timeline and snapshot ------------------------------------------------------------------


async def test_the_timeline_is_bounded_and_keeps_its_ends():
    clock = FakeTime()
    lim = limiter(clock, 16, tuning=Tuning(max_samples=100))
    server = Server(lim, clock, workers=16, duration=lambda c: 0.5)
    await server.run_for(300, step=0.1)
    await server.stop()
    snap = lim.snapshot()
    assert len(snap.timeline) <= 101
    times = [s.t for s in snap.timeline]
    assert times[0] == 0 and times[-1] == pytest.approx(300, abs=0.2) and times == sorted(times)
    assert snap.timeline[-1].bytes_done == lim.bytes_done == server.completed * MB
    row = snap.to_dict()
    assert row["timeline"][0] == [0.0, 8, 0, 0] and row["maximum"] == 16 and row["adaptive"] is True


async def test_the_timeline_samples_at_most_four_times_a_second_plus_every_change():
    clock = FakeTime()
    lim = limiter(clock, 16)
    server = Server(lim, clock, workers=16, duration=lambda c: 0.05)  # thousands of attempts
    await server.run_for(10, step=0.05)
    await server.stop()
    snap = lim.snapshot()
    changes = sum(a.limit != b.limit for a, b in itertools.pairwise(snap.timeline))
    assert server.completed > 1000
    assert len(snap.timeline) <= 10 * 4 + 2 * changes + 2
    assert len(snap.timeline) <= 2001


async def test_the_moments_uploads_begin_and_end_are_kept_however_soon():
    """The report's upload rate spans the first attempt's start and the last one's end: uploads that
    began within ``sample_s`` of the first sample and ended 0.1 s after the previous one must not
    seem to have begun later nor ended at the next sample, seconds on."""
    from pipeline.engine.throughput import upload_rate

    clock = FakeTime()
    lim = limiter(clock, 4)
    started = await attempts(lim, 2)
    await clock.advance(1.0)
    started[0].succeed()
    await finish(started[0])
    await clock.advance(0.1)  # within sample_s of the last sample
    started[1].succeed()
    await finish(started[1])
    await clock.advance(5.0)
    (later,) = await attempts(lim, 1)  # another sample, much later (the end of the run)
    timeline = [[s.t, s.limit, s.in_flight, s.bytes_done] for s in lim.snapshot().timeline]
    assert [1.1, 4, 0, 2 * MB] in timeline
    assert upload_rate(timeline) == pytest.approx(2 / 1.1, rel=0.01)
    later.succeed()
    await finish(later)


# --- the request budget --------------------------------------------------------------------


async def test_the_request_budget_spaces_requests_in_order():
    clock = FakeTime()
    budget = RequestBudget(2.0, clock=clock, sleep=clock.sleep)
    admitted: list[tuple[int, float]] = []

    async def request(i: int) -> None:
        await budget.take()
        admitted.append((i, clock.now))

    for i in range(3):
        await request(i)
    assert admitted == [(0, 0.0), (1, 0.5), (2, 1.0)]
    await clock.advance(5)  # idle: no credit piles up beyond the burst
    await request(3)
    await request(4)
    assert admitted[3:] == [(3, 6.0), (4, 6.5)]
    assert budget.requests == 5 and budget.waited_s == pytest.approx(1.5)
    with pytest.raises(ValueError):
        RequestBudget(0)


# --- the retry window does not count the wait for a slot --------------------------------------


async def test_a_batch_that_waited_long_for_a_slot_is_not_given_up_after_one_429():
    """A long upload holds the only slot for 20 minutes; the batch waiting behind it then meets
    one 429: it is retried (the window is 15 minutes of attempts and back-offs, not of waiting)."""
    clock = FakeTime()
    lim = limiter(clock, 1, adaptive=False)
    holder = (await attempts(lim, 1))[0]
    tries: list[float] = []

    async def attempt(n: int) -> str:
        tries.append(clock.now)
        if n == 1:
            raise ApiError(429, "slow down", retry_after=1)
        return "created"

    def gate():
        return lim.slot(MB)

    policy = RetryPolicy(max_attempts=5, window_s=900)
    call = asyncio.create_task(
        call_with_retry(attempt, policy=policy, method="POST", path="/x", sleep=clock.sleep, clock=clock, gate=gate)
    )
    await clock.advance(1200)
    assert tries == []
    holder.succeed()  # from here on the call's own back-off sleep moves the clock
    assert await call == ("created", 2)
    assert tries == [1200.0, 1201.0]
    await finish(holder)


async def test_the_window_still_ends_a_throttling_that_outlasts_it():
    clock = FakeTime()
    lim = limiter(clock, 1, adaptive=False)

    async def attempt(n: int) -> str:
        raise ApiError(429, "slow down", retry_after=100)

    @asynccontextmanager
    async def gate():
        async with lim.slot(MB):
            yield

    policy = RetryPolicy(max_attempts=100, window_s=250)
    call = asyncio.create_task(
        call_with_retry(attempt, policy=policy, method="POST", path="/x", sleep=clock.sleep, clock=clock, gate=gate)
    )
    with pytest.raises(ApiError) as info:
        await call
    assert info.value.attempts == 3  # +0, +100, +200; +300 would be past 250 s of back-off

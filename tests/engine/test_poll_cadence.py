"""The poller's learned cadence and its listings, on a simulated platform in virtual time.

Each test runs on an event loop whose clock jumps to the next timer when nothing is ready: waiting a
minute costs nothing, and every time is exact. The poller's clock is the loop's clock; the simulated
platform dates its executions in epoch milliseconds, far from that clock, as a real server does.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from collections import Counter
from typing import Any

import pytest

from pipeline.client.answers import Page
from pipeline.engine.poll import Poller
from pipeline.engine.poll_estimates import RunTimeFit
from pipeline.engine.poll_plan import PollCadence
from pipeline.errors import ApiError, TransportError

EPOCH = 1_767_225_600.0  # the platform's dates are this far from the poller's clock


class _JumpSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> Any:
        events = super().select(0)
        if not events and timeout:  # nothing to do until the next timer: go there at once (a tiny
            self.now += max(timeout, 1e-6)  # timeout too, or the float clock would not move)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._jump = _JumpSelector()
        super().__init__(self._jump)

    def time(self) -> float:
        return self._jump.now


def run_virtual(main: Any) -> Any:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(asyncio.wait_for(main, timeout=24 * 3600))
    finally:
        loop.close()


class Platform:
    """The import's executions: ``slots`` run at once, first come first served; each waits ``pickup``
    at least, then runs ``base + rate * records`` seconds. Answers take ``latency`` (half each way)."""

    def __init__(self, *, slots=8, pickup=0.5, base=2.0, rate=0.001, latency=0.01, noise=0.0, seed=0, dates=True):
        self.now = asyncio.get_running_loop().time
        self.dates = dates  # False: answers without dates (nothing can be learned from them)
        self.lines = False  # True: answers carry parameters.number_of_lines
        self.slots = [0.0] * slots
        self.pickup, self.base, self.rate, self.latency, self.noise = pickup, base, rate, latency, noise
        self.rng = random.Random(seed)
        self.executions: dict[str, dict[str, float]] = {}
        self.gets: list[tuple[float, str]] = []

    def upload(self, records: int) -> str:
        t = self.now()
        slot = min(range(len(self.slots)), key=self.slots.__getitem__)
        start = max(t + self.pickup, self.slots[slot])
        run = (self.base + self.rate * records) * (1 + self.rng.uniform(-self.noise, self.noise))
        self.slots[slot] = start + run
        execution_id = f"e{len(self.executions)}"
        self.executions[execution_id] = {"created": t, "start": start, "end": start + run, "records": records}
        return execution_id

    def view(self, execution_id: str, t: float) -> dict[str, Any]:
        e = self.executions[execution_id]
        status = "PENDING" if t < e["start"] else "RUNNING" if t < e["end"] else "SUCCEEDED"

        def ms(s: float) -> int:
            return round((s + EPOCH) * 1000)

        answer: dict[str, Any] = {"id": execution_id, "status": status}
        if self.dates:
            answer["creation_date"] = ms(e["created"])
            answer["start_date"] = ms(e["start"]) if t >= e["start"] else None
            answer["end_date"] = ms(e["end"]) if t >= e["end"] else None
        if self.lines:
            answer["parameters"] = {"number_of_lines": int(e["records"])}
        return answer

    async def get_execution(self, datamart_id, import_id, execution_id):
        await asyncio.sleep(self.latency / 2)
        self.gets.append((self.now(), execution_id))
        answer = self.view(execution_id, self.now())
        await asyncio.sleep(self.latency / 2)
        return answer

    def last_end(self) -> float:
        return max(e["end"] for e in self.executions.values())


class ListingPlatform(Platform):
    """A platform that also lists the import's executions, newest first; ``omit`` are never listed,
    ``stale`` are listed with this status whatever theirs is; ``fail`` pages raise it."""

    def __init__(self, *, omit=(), stale=None, fail=None, **kw):
        super().__init__(**kw)
        self.omit, self.stale, self.fail = set(omit), stale or {}, fail
        self.pages: list[tuple[float, int]] = []

    async def list_executions(self, datamart_id, import_id, *, first_result=0, max_results=100):
        await asyncio.sleep(self.latency / 2)
        t = self.now()
        self.pages.append((t, first_result))
        if self.fail is not None:
            raise self.fail
        ids = [i for i in reversed(self.executions) if i not in self.omit]
        items = [self.view(i, t) for i in ids[first_result : first_result + max_results]]
        for item in items:
            if item["id"] in self.stale:
                item.update(status=self.stale[item["id"]], end_date=None)
        await asyncio.sleep(self.latency / 2)
        return Page(items, len(items), first_result, max_results, len(ids))


class Watch:
    """What the poller told: each status change, when."""

    def __init__(self):
        self.now = asyncio.get_running_loop().time
        self.changes: list[tuple[float, Any, str]] = []

    def __call__(self, key, execution):
        self.changes.append((self.now(), key, execution["status"]))

    def ended_at(self, key) -> float:
        (t,) = [t for t, k, s in self.changes if k == key and s in ("SUCCEEDED", "FAILED", "LOST")]
        return t


def make_poller(platform, watch, cadence=None, rng=None, **kw):
    return Poller(
        platform,
        "1",
        "9",
        cadence=cadence or PollCadence(),
        timeout_s=6 * 3600,
        on_status=watch,
        clock=asyncio.get_running_loop().time,
        rng=rng or random.Random(7),
        **kw,
    )


async def upload_all(platform, poller, records, every_s, no_more):
    for key, n in enumerate(records):
        poller.track(platform.upload(n), key, records=n)
        await asyncio.sleep(every_s)
    no_more.set()


async def a_run(platform, poller, records, every_s):
    """Upload ``records`` (one execution each) every ``every_s`` while polling; the poller's end time."""
    no_more = asyncio.Event()
    task = asyncio.create_task(poller.run(no_more))
    await upload_all(platform, poller, records, every_s, no_more)
    await task
    return platform.now()


# --- the fit ----------------------------------------------------------------------------------------


def test_the_fit_finds_base_and_rate_and_leans_early_when_work_does_not_vary():
    fit = RunTimeFit()
    for x in (1000, 5000, 9000):
        fit.add(x, 2 + 0.001 * x)
    assert fit.predict(3000) == pytest.approx(5.0) and fit.spread == pytest.approx(0, abs=1e-9)
    same = RunTimeFit()
    same.add(1000, 4.0)
    same.add(1000, 6.0)
    assert same.predict(1000) == 5.0 and same.predict(500) == 2.5 and same.predict(4000) == 5.0
    flat = RunTimeFit()
    flat.add(1000, 3.0)
    flat.add(5000, 1.0)  # longer with less work: no negative rate
    assert flat.predict(9000) == 2.0


# --- the learned cadence ------------------------------------------------------------------------------


def test_before_anything_finished_the_interval_grows_from_one_second_and_the_scout_s_from_the_floor():
    async def main():
        platform, watch = Platform(base=30, rate=0), Watch()
        poller = make_poller(platform, watch)
        await a_run(platform, poller, [1000, 1000], every_s=0)
        for execution, first in (("e0", 0.25), ("e1", 1.0)):  # the scout (the first tracked), the other
            times = [t for t, e in platform.gets if e == execution]
            gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
            for i, gap in enumerate(gaps[:6]):  # first, x 1.5, x 2.25 ... +-20 %
                assert 0.8 * first * 1.5**i - 0.02 <= gap <= 1.2 * first * 1.5**i + 0.02, (execution, gaps)

    run_virtual(main())


def test_the_scout_s_end_plans_the_others_a_second_sooner():
    async def main():
        results = {}
        for scout in (False, True):
            platform, watch = Platform(base=0.1, rate=0, pickup=0), Watch()
            poller = make_poller(platform, watch, PollCadence(scout=scout))
            start = platform.now()
            results[scout] = await a_run(platform, poller, [1000] * 3, every_s=0) - start
        assert results[False] >= 0.8 and results[True] <= 0.45, results  # every end was done at 0.1 s

    run_virtual(main())


def test_learned_cadence_polls_at_the_expected_end():
    async def main():
        platform, watch = Platform(), Watch()
        poller = make_poller(platform, watch)
        records = [5000 + 1000 * (i % 7) for i in range(30)]  # 7 to 13 s each
        ended = await a_run(platform, poller, records, every_s=3)
        late = {k: watch.ended_at(k) - platform.executions[f"e{k}"]["end"] for k in range(30)}
        polls = Counter(i for _, i in platform.gets)
        learned = range(4, 30)  # the first ones finish before anything is learned
        assert max(late[k] for k in learned) <= 0.4, late
        assert all(polls[f"e{k}"] <= 2 for k in learned), polls
        assert ended - platform.last_end() <= 0.4  # the run's end is noticed at once
        assert poller.requests == len(platform.gets) and poller.listings == 0
        legacy_polls = sum(polls[f"e{k}"] for k in range(2))
        assert legacy_polls >= 8  # the growing interval needed 4+ each, learning 1 or 2

    run_virtual(main())


@pytest.mark.parametrize("hint", ["records", "size", "lines"])
def test_the_work_of_an_execution_comes_from_a_hint_or_its_answers(hint):
    """Records or bytes given to track(), or parameters.number_of_lines in the answers: each makes
    the fit; 8 kinds of batch from 2,000 to 16,000 records (4 to 18 s)."""

    async def main():
        platform, watch = Platform(), Watch()
        platform.lines = hint == "lines"
        poller = make_poller(platform, watch)
        no_more = asyncio.Event()
        task = asyncio.create_task(poller.run(no_more))
        sizes = [2000 * (1 + (i * 3) % 8) for i in range(24)]
        for key, n in enumerate(sizes):
            hints = {"records": n} if hint == "records" else {"size": 120 * n} if hint == "size" else {}
            poller.track(platform.upload(n), key, **hints)
            await asyncio.sleep(3)
        no_more.set()
        await task
        late = [watch.ended_at(k) - platform.executions[f"e{k}"]["end"] for k in range(24)]
        assert max(late[6:]) <= 0.4, late
        assert platform.now() - platform.last_end() <= 0.4

    run_virtual(main())


def test_learned_cadence_follows_a_queue_that_builds_up():
    """Uploads come faster than two slots run them: executions wait up to minutes; each end is still
    noticed within a tenth of the run time (at least 0.5 s; jittered), the run's end at once; the growing
    interval alone (answers without dates: nothing learned) notices them tens of seconds late."""

    async def one_run(dates):
        platform, watch = Platform(slots=2, base=4, rate=0.0005, noise=0.05, dates=dates), Watch()
        poller = make_poller(platform, watch)
        records = [10_000] * 39 + [2000]  # the last batch is smaller
        ended = await a_run(platform, poller, records, every_s=1)
        late = []
        for k in range(40):
            e = platform.executions[f"e{k}"]
            late.append((watch.ended_at(k) - e["end"]) / max(0.5, 0.1 * (e["end"] - e["start"])))
        return late, ended - platform.last_end(), poller.requests

    async def main():
        late, end_late, requests = await one_run(dates=True)
        blind_late, blind_end_late, blind_requests = await one_run(dates=False)
        # the first two finish before anything is learned; a tenth of the run time, +-20 % jitter
        assert max(late[2:]) <= 1.2, late
        assert end_late <= 0.5 and blind_end_late > 10
        assert sum(blind_late) > 20 * sum(late)
        assert requests <= 1.5 * blind_requests  # polls while queued are spaced by the run time, then
        # by a tenth of their age: a little more than the growing interval, never flat out

    run_virtual(main())


def test_a_lone_execution_waits_for_nothing_learned_but_a_second_run_of_polls_uses_it():
    async def main():
        platform, watch = Platform(base=20, rate=0), Watch()
        poller = make_poller(platform, watch)
        await a_run(platform, poller, [1000], every_s=0)
        first = len(platform.gets)
        more = asyncio.Event()
        more.set()
        task = asyncio.create_task(poller.run(more))  # a copy tracked after a reconciliation
        poller.track(platform.upload(1000), 1, records=1000)
        await task
        assert len(platform.gets) - first == 1  # polled once, at its expected end
        assert watch.ended_at(1) - platform.executions["e1"]["end"] <= 0.6

    run_virtual(main())


def test_when_the_uploads_are_over_an_execution_expected_done_is_polled_at_once():
    """On a platform that runs executions at once, the last one is polled as soon as the uploads are
    over, not after the floor between polls (its upload's answer was no poll); the ones before it
    waited that floor, while more uploads could still come."""

    async def main():
        platform, watch = Platform(pickup=0.0, base=0.0, rate=0.0), Watch()
        poller = make_poller(platform, watch)
        no_more = asyncio.Event()
        task = asyncio.create_task(poller.run(no_more))
        uploaded = []
        for key in range(6):
            if key:
                await asyncio.sleep(1.0)
            uploaded.append(platform.now())
            poller.track(platform.upload(1000), key, records=1000)
        no_more.set()
        await task
        first_get: dict[str, float] = {}
        for t, execution_id in platform.gets:
            first_get.setdefault(execution_id, t)
        waits = [first_get[f"e{k}"] - uploaded[k] for k in range(6)]
        assert waits[5] < 0.05, waits  # half a round trip
        assert all(w >= 0.25 for w in waits[:5]), waits
        assert Counter(i for _, i in platform.gets)["e5"] == 1

    run_virtual(main())


def test_when_the_uploads_are_over_the_last_execution_is_polled_at_its_expected_end():
    """The last execution, expected to end 20 ms after its upload, is polled then (its end seen
    within a round trip), not a floor between polls after its upload; one GET is enough."""

    async def main():
        platform, watch = Platform(pickup=0.0, base=0.02, rate=0.0), Watch()
        poller = make_poller(platform, watch)
        no_more = asyncio.Event()
        task = asyncio.create_task(poller.run(no_more))
        for key in range(6):
            if key:
                await asyncio.sleep(1.0)
            poller.track(platform.upload(1000), key, records=1000)
        no_more.set()
        await task
        seen_late = watch.ended_at(5) - platform.executions["e5"]["end"]
        assert 0 <= seen_late < 0.02, seen_late
        assert Counter(i for _, i in platform.gets)["e5"] == 1

    run_virtual(main())


async def two_slots_after_four_learnt():
    """Two slots, 20 ms per execution, and a run of polls that has seen four of them end, one a second."""
    platform, watch = Platform(slots=2, pickup=0.0, base=0.02, rate=0.0), Watch()
    poller = make_poller(platform, watch)
    no_more = asyncio.Event()
    task = asyncio.create_task(poller.run(no_more))
    for key in range(4):  # learnt: 20 ms each
        poller.track(platform.upload(1000), key, records=1000)
        await asyncio.sleep(1.0)
    return platform, watch, poller, no_more, task


def test_when_the_uploads_are_over_the_last_executions_queued_are_seen_done_at_their_end():
    """Two slots, 20 ms per execution: of the last four uploads, two wait for a slot. Each end is
    seen within a round trip (one poll each inside the floor, aimed at its expected end), not a
    floor between polls (0.25 s) after the poll that found it waiting or running."""

    async def main():
        platform, watch, poller, no_more, task = await two_slots_after_four_learnt()
        for key in range(4, 8):
            poller.track(platform.upload(1000), key, records=1000)
        no_more.set()
        await task
        late = [watch.ended_at(k) - platform.executions[f"e{k}"]["end"] for k in range(4, 8)]
        assert max(late) < 0.02, late
        assert platform.now() - platform.last_end() < 0.02
        assert len(platform.gets) <= 4 + 2 * 4, platform.gets

    run_virtual(main())


def test_a_run_of_polls_started_after_the_uploads_also_aims_at_the_ends():
    """The same four last executions, tracked after a first run of polls and followed by a second
    one told at once that the uploads are over (as after a stop or a reconciliation)."""

    async def main():
        platform, watch, poller, no_more, task = await two_slots_after_four_learnt()
        no_more.set()
        await task
        for key in range(4, 8):
            poller.track(platform.upload(1000), key, records=1000)
        await poller.run(no_more)
        late = [watch.ended_at(k) - platform.executions[f"e{k}"]["end"] for k in range(4, 8)]
        assert max(late) < 0.02, late

    run_virtual(main())


@pytest.mark.parametrize("seed", range(8))
def test_the_end_of_a_run_of_few_large_executions_is_seen_soon(seed):
    """Four slots, 1 s + 10 us/record, 2 % noise: four small executions (learnt: all alike), then
    four four times larger, the last upload at 3.07 s (a plan fitted to 4 slots). The run's last end
    is seen within 0.1 s: the upload answers' creation dates set the server's clock (a start is not
    placed a quarter of a second late), and at the very end polls in the fit's band come 50 ms
    apart, not a floor (0.25 s). Before, it was seen up to 0.25 s late (3 seeds of 8)."""

    async def main():
        platform, watch = Platform(slots=4, pickup=0.0, base=1.0, rate=1e-5, noise=0.02, seed=seed), Watch()
        poller = make_poller(platform, watch, rng=random.Random(seed))
        no_more = asyncio.Event()
        task = asyncio.create_task(poller.run(no_more))
        plan = [(0.56, 48_000), (0.70, 48_000), (0.85, 48_000), (0.91, 48_000)]
        plan += [(2.12, 192_000), (2.41, 192_000), (2.66, 192_000), (3.07, 188_000)]
        t = 0.0
        for key, (at, records) in enumerate(plan):
            await asyncio.sleep(at - t)
            t = at
            execution_id = platform.upload(records)
            poller.track(execution_id, key, records=records, answer=platform.view(execution_id, platform.now()))
        no_more.set()
        await task
        assert platform.now() - platform.last_end() < 0.1
        assert len(platform.gets) <= 45, len(platform.gets)

    run_virtual(main())


def test_many_tracked_at_the_end_of_the_uploads_are_still_read_in_listings():
    async def main():
        platform, watch = ListingPlatform(pickup=0.0, base=0.0, rate=0.0), Watch()
        poller = make_poller(platform, watch, cadence=flat())
        no_more = asyncio.Event()
        task = asyncio.create_task(poller.run(no_more))
        for key in range(3):  # learnt: executions end at once
            poller.track(platform.upload(1000), key, records=1000)
            await asyncio.sleep(1.0)
        for key in range(3, 43):  # then a stream of uploads, one every 5 ms
            poller.track(platform.upload(1000), key, records=1000)
            await asyncio.sleep(0.005)
        no_more.set()
        await task
        assert all(watch.ended_at(k) for k in range(43))
        gets_of_the_stream = [i for _, i in platform.gets if int(i[1:]) >= 3]
        assert len(gets_of_the_stream) <= 10 and platform.pages, (len(gets_of_the_stream), platform.pages)

    run_virtual(main())


# --- listings -------------------------------------------------------------------------------------


def flat(**kw):
    """No jitter and no scout: executions tracked together are due together."""
    return PollCadence(jitter=0.0, scout=False, **kw)


def test_many_due_together_are_answered_by_one_listing_page():
    async def main():
        platform, watch = ListingPlatform(slots=50, base=0.2, rate=0, pickup=0), Watch()
        poller = make_poller(platform, watch, flat())
        no_more = asyncio.Event()
        for key in range(20):
            poller.track(platform.upload(100), key)
        no_more.set()
        await poller.run(no_more)
        assert poller.listings == 1 and poller.requests == 0 and platform.gets == []
        assert sorted(k for _, k, s in watch.changes if s == "SUCCEEDED") == list(range(20))
        assert len(watch.changes) == 20  # each status once

    run_virtual(main())


def test_eight_due_are_polled_by_get_and_the_threshold_is_a_parameter():
    async def main():
        platform, watch = ListingPlatform(slots=50, base=0.2, rate=0, pickup=0), Watch()
        poller = make_poller(platform, watch, flat())
        for key in range(8):
            poller.track(platform.upload(100), key)
        done = asyncio.Event()
        done.set()
        await poller.run(done)
        assert poller.listings == 0 and poller.requests == 8
        never = make_poller(platform, watch, flat(), list_threshold=None)
        for key in range(20):
            never.track(platform.upload(100), 100 + key)
        await never.run(done)
        assert never.listings == 0 and never.requests == 20

    run_virtual(main())


def test_an_execution_a_listing_omits_is_polled_by_get_and_never_lost():
    async def main():
        platform, watch = ListingPlatform(omit={"e3"}, slots=50, base=30, rate=0, pickup=0), Watch()
        poller = make_poller(platform, watch, flat(interval_s=1, max_interval_s=4))
        for key in range(20):
            poller.track(platform.upload(100), key)
        done = asyncio.Event()
        done.set()
        await poller.run(done)
        assert [s for _, k, s in watch.changes if k == 3][-1] == "SUCCEEDED"
        assert all(s != "LOST" for _, _, s in watch.changes)
        gets = Counter(i for _, i in platform.gets)
        assert gets["e3"] >= 10  # polled by GET all along (more than lost_after_404s times)
        # every other execution: at most every other poll by GET, and ended once
        assert all(gets[f"e{k}"] <= 8 for k in range(20) if k != 3)
        assert Counter(k for _, k, s in watch.changes if s == "SUCCEEDED") == {k: 1 for k in range(20)}
        assert poller.listings == len(platform.pages) and poller.requests == len(platform.gets)
        # a walk that did not see e3 asked for the page after the last one (an empty page), never more
        assert max(first for _, first in platform.pages) == 19

    run_virtual(main())


def test_a_listing_ends_executions_a_get_is_still_asking_about_once():
    async def main():
        platform, watch = ListingPlatform(slots=50, base=0.5, rate=0, pickup=0), Watch()
        release = asyncio.Event()
        e0_answered = asyncio.Event()

        async def slow_for_e0(datamart_id, import_id, execution_id):
            assert execution_id == "e0"
            await release.wait()
            e0_answered.set()
            return platform.view(execution_id, platform.now())

        platform.get_execution = slow_for_e0
        poller = make_poller(platform, watch, flat())
        poller.track(platform.upload(100), 0, first_delay=0)  # its GET hangs
        for key in range(1, 12):
            poller.track(platform.upload(100), key)
        done = asyncio.Event()
        done.set()
        task = asyncio.create_task(poller.run(done))
        while not any(k == 0 and s == "SUCCEEDED" for _, k, s in watch.changes):
            await asyncio.sleep(0.1)  # the listings see e0 end while its GET hangs
        release.set()
        await task
        for key in range(12):  # each change once: e0's from the listing, not again from its GET
            assert [s for _, k, s in watch.changes if k == key] == ["SUCCEEDED"]
        assert poller.requests == 1 and poller.listings == 1 and e0_answered.is_set()

    run_virtual(main())


def test_a_listing_never_sets_a_status_back_and_a_stale_one_is_followed_by_a_get():
    async def main():
        stale = {f"e{i}": "PENDING" for i in range(12)}
        platform = ListingPlatform(stale=stale, slots=50, base=2.5, rate=0, pickup=0)
        watch = Watch()
        poller = make_poller(platform, watch, flat(interval_s=1, max_interval_s=1))
        for key in range(12):
            poller.track(platform.upload(100), key)
        done = asyncio.Event()
        done.set()
        await poller.run(done)
        for key in range(12):  # PENDING from the first listing, later ones are not applied again
            assert [s for _, k, s in watch.changes if k == key] == ["PENDING", "RUNNING", "SUCCEEDED"]
            end = platform.executions[f"e{key}"]["end"]
            assert watch.ended_at(key) - end <= 2.1  # a listing stuck on PENDING costs one interval
        assert poller.listings == 2 and poller.requests == 24  # listing, GET, listing, GET

    run_virtual(main())


def test_a_failed_listing_falls_back_to_gets_and_is_reported():
    async def main():
        refused = ApiError(403, "listing forbidden", method="GET", path="/v1/.../executions")
        platform, watch = ListingPlatform(fail=refused, slots=50, base=0.2, rate=0, pickup=0), Watch()
        errors = []
        poller = make_poller(platform, watch, flat(), on_listing_error=errors.append)
        for key in range(12):
            poller.track(platform.upload(100), key)
        done = asyncio.Event()
        done.set()
        await poller.run(done)
        assert errors == [refused] and poller.listings == 1 and poller.requests == 12
        assert len([s for _, _, s in watch.changes if s == "SUCCEEDED"]) == 12

    run_virtual(main())


def test_404s_to_gets_still_make_an_execution_lost_with_listings_about():
    async def main():
        platform, watch = ListingPlatform(omit={"e0"}, slots=50, base=30, rate=0, pickup=0), Watch()
        plain_get = platform.get_execution

        async def unknown_e0(datamart_id, import_id, execution_id):
            if execution_id == "e0":
                platform.gets.append((platform.now(), execution_id))
                raise ApiError(404, "execution not found")
            return await plain_get(datamart_id, import_id, execution_id)

        platform.get_execution = unknown_e0
        poller = make_poller(platform, watch, flat(interval_s=1, max_interval_s=2))
        for key in range(12):
            poller.track(platform.upload(100), key)
        done = asyncio.Event()
        done.set()
        await poller.run(done)
        assert [s for _, k, s in watch.changes if k == 0] == ["LOST"]
        assert Counter(i for _, i in platform.gets)["e0"] == 5

    run_virtual(main())


def test_counts_include_failed_requests():
    async def main():
        platform, watch = Platform(base=0.5, rate=0, pickup=0), Watch()
        plain_get = platform.get_execution
        failures = [TransportError("reset"), TransportError("reset")]

        async def flaky(datamart_id, import_id, execution_id):
            if failures:
                raise failures.pop()
            return await plain_get(datamart_id, import_id, execution_id)

        platform.get_execution = flaky
        poller = make_poller(platform, watch, PollCadence(interval_s=0.2, max_interval_s=0.2))
        await a_run(platform, poller, [100], every_s=0)
        assert poller.requests == len(platform.gets) + 2 and poller.listings == 0

    run_virtual(main())

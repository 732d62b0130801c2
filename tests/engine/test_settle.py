"""Settler: uploads whose answer was lost, looked up by file name over a window (fake lister and clock)."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.client.answers import Page, Scan, Walk
from pipeline.engine.settle import FIRST_LOOK_S, GROWTH, MAX_LOOK_INTERVAL_S, Settler
from pipeline.errors import ApiError, TransportError

from ..helpers import batch_state

WINDOW = 10.0


def execution(eid: str, name: str | None, where: str = "parameters") -> dict:
    return {"id": eid, "status": "PENDING", where: {"input_file_name": name}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay
        await asyncio.sleep(0)  # let the test (and cancellation) in; no real wait


class Lister:
    """``scan_executions`` answering from a script (a Scan or an exception per look; the last repeats)."""

    def __init__(self, *answers, clock: Clock | None = None, takes_s: float = 0.0) -> None:
        self.answers = list(answers)
        self.calls: list[tuple] = []
        self.clock, self.takes_s = clock, takes_s

    async def scan_executions(self, datamart_id, import_id, *, wanted=None, max_pages=1000) -> Scan:
        self.calls.append((datamart_id, import_id, set(wanted) if wanted is not None else None, max_pages))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if self.clock is not None:
            self.clock.now += self.takes_s
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Outcomes:
    def __init__(self) -> None:
        self.found: list[tuple] = []
        self.resent: list = []
        self.unknowable: list[tuple] = []
        self.lookup_errors: list = []

    def kwargs(self) -> dict:
        return {
            "on_found": lambda item, exe: self.found.append((item, exe)),
            "on_resend": self.resent.append,
            "on_unknowable": lambda item, reason, final: self.unknowable.append((item, reason)),
            "on_lookup_error": self.lookup_errors.append,
        }

    @property
    def decisions(self) -> int:
        return len(self.found) + len(self.resent) + len(self.unknowable)


def make(lister: Lister, clock: Clock, out: Outcomes, **kw) -> Settler:
    return Settler(
        lister, "dm1", "imp1", window_s=WINDOW, max_pages=7, clock=clock, sleep=clock.sleep, **out.kwargs(), **kw
    )


async def looks(settler: Settler, clock: Clock, times: int, step: float = 1.0) -> None:
    for _ in range(times):
        clock.now += step
        await settler.look_once()


MINE = batch_state(1).filename
OTHER = execution("99", "someone-else.ndjson")


# --- found ----------------------------------------------------------------------------------------


async def test_found_on_the_third_look_despite_list_lag():
    clock, out = Clock(), Outcomes()
    mine = execution("7", MINE)
    lister = Lister(Scan([], True, 1), Scan([OTHER], True, 1), Scan([OTHER, mine], True, 1))
    settler = make(lister, clock, out)
    state = batch_state(1)
    settler.add(None, state)
    assert settler.busy
    await looks(settler, clock, 2)
    assert out.decisions == 0 and settler.busy  # not listed yet: nothing decided inside the window
    await looks(settler, clock, 1)
    ((item, exe),) = out.found
    assert item.state is state and item.batch is None and exe is mine
    assert not settler.busy and out.resent == [] and out.unknowable == []
    await looks(settler, clock, 3, step=WINDOW)  # settled: never looked up (or decided) again
    assert len(lister.calls) == 3 and len(out.found) == 1


async def test_the_lookup_asks_for_the_pending_names_with_the_page_cap():
    clock, out = Clock(), Outcomes()
    lister = Lister(Scan([], True, 1))
    settler = make(lister, clock, out)
    settler.add(None, batch_state(1))
    settler.add(None, batch_state(2))
    await settler.look_once()
    assert lister.calls == [("dm1", "imp1", {"run-000001.ndjson", "run-000002.ndjson"}, 7)]


async def test_found_by_the_name_in_result_and_the_first_listed_wins():
    clock, out = Clock(), Outcomes()
    first, second = execution("20", MINE, where="result"), execution("10", MINE)
    settler = make(Lister(Scan([first, second], True, 1)), clock, out)
    settler.add(None, batch_state(1))
    await settler.look_once()
    assert [exe for _, exe in out.found] == [first]


async def test_each_batch_is_decided_on_its_own():
    clock, out = Clock(), Outcomes()
    one, two = batch_state(1), batch_state(2)
    lister = Lister(Scan([OTHER], True, 1), Scan([OTHER, execution("5", two.filename)], True, 1))
    settler = make(lister, clock, out)
    settler.add(None, one)
    await looks(settler, clock, 1, step=5)
    settler.add(None, two)  # its window ends 5 s after the first's
    await looks(settler, clock, 1, step=5.5)  # the first's window is over, the second is listed
    assert [item.state for item, _ in out.found] == [two]
    assert [item.state for item in out.resent] == [one]
    assert not settler.busy


# --- window over ----------------------------------------------------------------------------------


@pytest.mark.parametrize("listed", [[OTHER], []], ids=["other-executions", "empty-list"])
async def test_never_found_window_over_complete_listing_resends_once(listed):
    clock, out = Clock(), Outcomes()
    settler = make(Lister(Scan(listed, True, 1)), clock, out)
    state = batch_state(1)
    settler.add("the batch", state)  # type: ignore[arg-type]  # kept to send it again
    await looks(settler, clock, 9)  # +9 s: still inside the window
    assert out.decisions == 0
    await looks(settler, clock, 1)  # +10 s: the window is over
    (item,) = out.resent
    assert item.state is state and item.batch == "the batch"
    await looks(settler, clock, 3)
    assert len(out.resent) == 1 and out.found == [] and out.unknowable == [] and not settler.busy


async def test_a_listing_that_started_inside_the_window_does_not_decide():
    # the look starts at +9.5 and ends after the window: it could have missed a late listing
    clock, out = Clock(), Outcomes()
    lister = Lister(Scan([OTHER], True, 1), clock=clock, takes_s=1.0)
    settler = make(lister, clock, out)
    settler.add(None, batch_state(1))
    clock.now += 9.5
    await settler.look_once()
    assert clock.now - 100 > WINDOW and out.decisions == 0
    await settler.look_once()  # starts at +10.5: after the window
    assert len(out.resent) == 1


# --- cannot know ----------------------------------------------------------------------------------


async def test_incomplete_listings_make_it_unknowable():
    # a server that ignores first_result (or caps the walk): what was not seen may exist
    clock, out = Clock(), Outcomes()
    settler = make(Lister(Scan([OTHER], False, 2)), clock, out)
    state = batch_state(1)
    settler.add(None, state)
    await looks(settler, clock, 10)
    ((item, reason),) = out.unknowable
    assert item.state is state
    assert "could not be walked to its end" in reason and "2 pages" in reason
    assert out.resent == [] and out.found == []


async def test_a_server_that_does_not_echo_names_makes_it_unknowable():
    clock, out = Clock(), Outcomes()
    unnamed = [execution("1", None), {"id": "2", "status": "RUNNING", "parameters": {}, "result": None}]
    settler = make(Lister(Scan(unnamed, True, 1)), clock, out)
    settler.add(None, batch_state(1))
    await looks(settler, clock, 1)
    assert settler.names_echoed is False and out.decisions == 0
    await looks(settler, clock, 9)
    ((_, reason),) = out.unknowable
    assert "input_file_name" in reason and "file names" in reason
    assert out.resent == []


async def test_lookup_errors_past_the_deadline_make_it_unknowable():
    clock, out = Clock(), Outcomes()
    failure = TransportError("connection failed (reset)")
    settler = make(Lister(failure), clock, out)
    settler.add(None, batch_state(1))
    await looks(settler, clock, 9)
    assert out.decisions == 0 and out.lookup_errors == [failure] * 9  # inside the window: try again
    await looks(settler, clock, 1)
    ((_, reason),) = out.unknowable
    assert "could not be read" in reason and "reset" in reason
    assert out.resent == [] and not settler.busy


async def test_a_lookup_error_then_a_sighting_is_found():
    clock, out = Clock(), Outcomes()
    mine = execution("3", MINE)
    settler = make(Lister(ApiError(502, "bad gateway"), Scan([mine], True, 1)), clock, out)
    settler.add(None, batch_state(1))
    await looks(settler, clock, 2)
    assert [exe for _, exe in out.found] == [mine] and len(out.lookup_errors) == 1


async def test_lookup_error_without_a_callback_is_still_handled():
    clock, out = Clock(), Outcomes()
    kwargs = out.kwargs()
    del kwargs["on_lookup_error"]
    settler = Settler(
        Lister(ApiError(500, "x")), "dm1", "imp1", window_s=WINDOW, max_pages=7, clock=clock, sleep=clock.sleep,
        **kwargs,
    )  # fmt: skip
    settler.add(None, batch_state(1))
    await looks(settler, clock, 1, step=WINDOW)
    assert len(out.unknowable) == 1


# --- does the server echo file names? -------------------------------------------------------------


def test_saw_upload_answer_detects_an_echoing_server_and_the_first_answer_wins():
    settler = make(Lister(Scan([], True, 1)), Clock(), Outcomes())
    assert settler.names_echoed is None
    settler.saw_upload_answer(MINE, execution("1", MINE))
    assert settler.names_echoed is True
    settler.saw_upload_answer("run-000002.ndjson", execution("2", None))
    assert settler.names_echoed is True


def test_saw_upload_answer_detects_a_server_that_does_not_echo():
    settler = make(Lister(Scan([], True, 1)), Clock(), Outcomes())
    settler.saw_upload_answer(MINE, execution("1", None))
    assert settler.names_echoed is False
    settler2 = make(Lister(Scan([], True, 1)), Clock(), Outcomes())
    settler2.saw_upload_answer(MINE, execution("1", "another-name.ndjson"))  # echoes, but not what was sent
    assert settler2.names_echoed is False


async def test_an_upload_answer_without_names_makes_a_complete_empty_listing_unknowable():
    clock, out = Clock(), Outcomes()
    settler = make(Lister(Scan([], True, 1)), clock, out)
    settler.saw_upload_answer("run-000009.ndjson", execution("9", None))
    settler.add(None, batch_state(1))
    await looks(settler, clock, 1, step=WINDOW)
    assert out.resent == [] and len(out.unknowable) == 1


async def test_a_listing_with_names_overrides_a_nameless_upload_answer():
    clock, out = Clock(), Outcomes()
    settler = make(Lister(Scan([OTHER], True, 1)), clock, out)
    settler.saw_upload_answer("run-000009.ndjson", execution("9", None))
    settler.add(None, batch_state(1))
    await looks(settler, clock, 1)
    assert settler.names_echoed is True
    await looks(settler, clock, 1, step=WINDOW)
    assert len(out.resent) == 1 and out.unknowable == []


# --- busy / drop_all ------------------------------------------------------------------------------


async def test_busy_and_drop_all():
    clock, out = Clock(), Outcomes()
    lister = Lister(Scan([], True, 1))
    settler = make(lister, clock, out)
    assert not settler.busy and settler.drop_all() == []
    one, two = batch_state(1), batch_state(2)
    settler.add("b1", one)  # type: ignore[arg-type]
    settler.add(None, two)
    assert settler.busy
    left = settler.drop_all()
    assert sorted((u.state.number, u.batch) for u in left) == [(1, "b1"), (2, None)]
    assert all(u.deadline == clock.now + WINDOW for u in left)
    assert not settler.busy
    await looks(settler, clock, 2, step=WINDOW)
    assert lister.calls == [] and out.decisions == 0  # nothing left to look up or decide


# --- the loop -------------------------------------------------------------------------------------


async def test_run_waits_idle_then_looks_with_growing_intervals_up_to_the_deadline():
    clock = Clock()
    done = asyncio.Event()
    lister = Lister(Scan([OTHER], True, 1))
    settler = Settler(
        lister, "dm1", "imp1", window_s=WINDOW, max_pages=7, clock=clock, sleep=clock.sleep,
        on_found=lambda item, exe: None, on_resend=lambda item: done.set(),
        on_unknowable=lambda item, reason, final: done.set(),
    )  # fmt: skip
    task = asyncio.create_task(settler.run())
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        assert lister.calls == [] and clock.slept == []  # idle: nothing pending, no look, no wait
        settler.add(None, batch_state(1))
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert clock.slept[0] == FIRST_LOOK_S
    assert clock.slept[1] == pytest.approx(FIRST_LOOK_S * GROWTH)
    assert max(clock.slept) <= MAX_LOOK_INTERVAL_S
    assert sum(clock.slept) == pytest.approx(WINDOW)  # the last wait ends on the deadline, not past it
    assert len(lister.calls) == len(clock.slept) and not settler.busy


async def test_a_short_window_still_gets_ten_looks():
    # a listing that omits entries at random must be asked often enough within the window
    clock = Clock()
    done = asyncio.Event()
    lister = Lister(Scan([OTHER], True, 1))
    settler = Settler(
        lister, "dm1", "imp1", window_s=2.0, max_pages=7, clock=clock, sleep=clock.sleep,
        on_found=lambda item, exe: None, on_resend=lambda item: done.set(),
        on_unknowable=lambda item, reason, final: done.set(),
    )  # fmt: skip
    task = asyncio.create_task(settler.run())
    try:
        settler.add(None, batch_state(1))
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(lister.calls) >= 10 and max(clock.slept) <= 0.2


# --- a lister that walks page by page -------------------------------------------------------------


class PagedLister:
    """``walk_executions`` over fixed pages (as ``ApiClient``): the settler keeps the executions of
    the batches it settles, never the pages, and stops as soon as it saw every one."""

    def __init__(self, pages: list[list[dict]]) -> None:
        self.pages = pages
        self.asked: list[int] = []

    async def _page(self, first: int) -> Page:
        self.asked.append(first)
        offset = 0
        for items in self.pages:
            if offset == first:
                return Page(items, len(items), first, 2)
            offset += len(items)
        return Page([], 0, first, 2)

    def walk_executions(self, datamart_id, import_id, *, max_pages: int) -> Walk:
        return Walk(self._page, max_pages=max_pages)

    async def scan_executions(self, *args, **kwargs) -> Scan:
        raise AssertionError("never asked for the whole list")


def others(n: int) -> list[dict]:
    return [execution(str(1000 + n * 2 + i), f"other-{n}-{i}.ndjson") for i in range(2)]


async def test_a_paged_walk_stops_once_every_pending_batch_is_seen():
    clock, out = Clock(), Outcomes()
    one, two = batch_state(1), batch_state(2)
    first_of_two, second_of_two = execution("21", two.filename), execution("22", two.filename)
    pages = [others(0), [execution("11", one.filename), first_of_two], [second_of_two, OTHER], *map(others, range(5))]
    lister = PagedLister(pages)
    settler = make(lister, clock, out)
    settler.add(None, one)
    settler.add(None, two)
    await settler.look_once()
    assert lister.asked == [0, 2]  # both seen on the second page: the rest of the list is not read
    assert {item.state.number: exe["id"] for item, exe in out.found} == {1: "11", 2: "21"}  # first listed wins
    assert settler.names_echoed is True and not settler.busy


async def test_a_paged_walk_to_the_end_without_a_sighting_resends_after_the_window():
    clock, out = Clock(), Outcomes()
    lister = PagedLister([others(0), others(1)])
    settler = make(lister, clock, out)
    settler.add(None, batch_state(1))
    await looks(settler, clock, 1, step=WINDOW + 1)
    assert lister.asked == [0, 2, 4] and [item.state.number for item in out.resent] == [1]


async def test_a_paged_walk_cut_by_the_page_cap_makes_it_unknowable():
    clock, out = Clock(), Outcomes()
    lister = PagedLister([others(n) for n in range(20)])
    settler = make(lister, clock, out)  # max_pages=7
    settler.add(None, batch_state(1))
    await looks(settler, clock, 1, step=WINDOW + 1)
    ((_, reason),) = out.unknowable
    assert len(lister.asked) == 7 and "could not be walked to its end (7 pages read)" in reason


async def test_a_paged_walk_that_fails_midway_is_a_lookup_error():
    clock, out = Clock(), Outcomes()
    lister = PagedLister([others(0), others(1)])
    real = lister._page

    async def page(first: int) -> Page:
        if first:
            raise TransportError("reset", ambiguous=False)
        return await real(first)

    lister._page = page  # type: ignore[method-assign]
    settler = make(lister, clock, out)
    settler.add(None, batch_state(1))
    await looks(settler, clock, 1, step=WINDOW + 1)
    assert len(out.lookup_errors) == 1 and "could not be read" in out.unknowable[0][1]

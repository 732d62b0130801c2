"""The poll scheduler: cadence, terminal detection, failed polls, deadlines (no real waiting)."""

import asyncio
import gc
import random

import pytest

from pipeline.engine.poll import Poller
from pipeline.engine.poll_plan import PollCadence
from pipeline.errors import ApiError, TransportError


def test_cadence_grows_by_half_up_to_the_maximum_with_bounded_jitter():
    cadence = PollCadence(interval_s=2, max_interval_s=10, jitter=0.2)
    rng = random.Random(1)
    bases, delays, previous = [], [], None
    for _ in range(7):
        previous, delay = cadence.next_interval(previous, rng)
        bases.append(previous)
        delays.append(delay)
    assert bases == [2, 3, 4.5, 6.75, 10, 10, 10]
    assert all(0.8 * b <= d <= 1.2 * b for b, d in zip(bases, delays, strict=True))
    assert len(set(delays)) == len(delays)  # jittered


class FakeExecutions:
    """Answers get_execution from a script of statuses (or exceptions) per execution id."""

    def __init__(self, scripts):
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.calls = []

    async def get_execution(self, datamart_id, import_id, execution_id):
        self.calls.append(execution_id)
        step = self.scripts[execution_id].pop(0)
        if isinstance(step, Exception):
            raise step
        return {"id": execution_id, "status": step}


def _poller(source, *, timeout_s=60, **callbacks):
    """A poller with no waiting between polls, on datamart 1, import 9."""
    cadence = PollCadence(interval_s=0, max_interval_s=0)
    return Poller(source, "1", "9", cadence=cadence, timeout_s=timeout_s, **callbacks)


async def _run(poller, source_done=True):
    done = asyncio.Event()
    if source_done:
        done.set()
    await asyncio.wait_for(poller.run(done), timeout=5)


async def test_follows_each_execution_to_a_terminal_status_and_reports_changes_once():
    source = FakeExecutions({"e1": ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"], "e2": ["LOST"]})
    seen = []
    poller = _poller(source, on_status=lambda key, ex: seen.append((key, ex["status"])))
    poller.track("e1", 1)
    poller.track("e2", 2)
    await _run(poller)
    assert seen.count((1, "RUNNING")) == 1
    assert (1, "SUCCEEDED") in seen and (2, "LOST") in seen
    assert source.calls.count("e1") == 4 and source.calls.count("e2") == 1
    assert poller.timed_out == []


async def test_requests_are_counted_and_a_source_that_cannot_list_is_polled_by_get_only():
    source = FakeExecutions({f"e{i}": ["RUNNING", TransportError("reset"), "SUCCEEDED"] for i in range(20)})
    poller = _poller(source, on_status=lambda key, ex: None)
    for i in range(20):
        poller.track(f"e{i}", i)
    await _run(poller)
    assert poller.requests == len(source.calls) == 60 and poller.listings == 0


async def test_a_failed_poll_is_retried_and_never_fails_the_execution():
    source = FakeExecutions({"e1": [TransportError("reset"), TransportError("reset"), "SUCCEEDED"]})
    seen, errors = [], []
    poller = _poller(
        source, on_status=lambda key, ex: seen.append(ex["status"]), on_poll_error=lambda key, exc: errors.append(key)
    )
    poller.track("e1", 1)
    await _run(poller)
    assert seen == ["SUCCEEDED"] and errors == [1, 1]


async def test_an_execution_past_its_deadline_is_given_up_not_failed():
    now = [0.0]
    source = FakeExecutions({"e1": ["RUNNING"] * 100})
    seen = []

    def clock():
        now[0] += 1.0  # every look at the clock advances it: the deadline comes quickly
        return now[0]

    poller = _poller(source, timeout_s=5, on_status=lambda key, ex: seen.append(ex["status"]), clock=clock)
    poller.track("e1", 7)
    await _run(poller)
    assert poller.timed_out == [7]
    assert seen == ["RUNNING"]


async def test_waits_for_executions_tracked_later_until_told_there_are_no_more():
    source = FakeExecutions({"e1": ["SUCCEEDED"]})
    seen = []
    poller = _poller(source, on_status=lambda key, ex: seen.append(key))
    no_more = asyncio.Event()
    task = asyncio.create_task(poller.run(no_more))
    await asyncio.sleep(0)
    assert not task.done()
    poller.track("e1", 1)
    no_more.set()
    await asyncio.wait_for(task, timeout=5)
    assert seen == [1]


class SlowFirstPoll(FakeExecutions):
    """``e0``'s first poll hangs until ``release`` is set; the others answer at once."""

    def __init__(self, scripts):
        super().__init__(scripts)
        self.release = asyncio.Event()

    async def get_execution(self, datamart_id, import_id, execution_id):
        if execution_id == "e0" and not self.release.is_set():
            await self.release.wait()
        return await super().get_execution(datamart_id, import_id, execution_id)


async def test_a_slow_poll_holds_up_only_its_own_execution():
    others = {f"e{i}": ["RUNNING", "SUCCEEDED"] for i in range(1, 20)}
    source = SlowFirstPoll({"e0": ["SUCCEEDED"], **others})
    done_keys = []

    def on_status(key, ex):
        if ex["status"] == "SUCCEEDED":
            done_keys.append(key)
            if len(done_keys) == len(others):  # every other execution finished while e0 hung
                source.release.set()

    poller = _poller(source, on_status=on_status)
    for i in range(20):
        poller.track(f"e{i}", i)
    await _run(poller)
    assert sorted(done_keys[:-1]) == list(range(1, 20)) and done_keys[-1] == 0


async def test_a_poll_that_crashes_fails_the_run():
    source = FakeExecutions({"e1": [ValueError("a bug, not a service error")]})
    poller = _poller(source, on_status=lambda key, ex: None)
    poller.track("e1", 1)
    with pytest.raises(ValueError, match="a bug"):
        await _run(poller)


async def test_two_polls_crashing_together_raise_one_and_leave_none_unretrieved():
    unhandled = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: unhandled.append(context))
    source = FakeExecutions({"e1": [ValueError("one")], "e2": [ValueError("two")]})
    poller = _poller(source, on_status=lambda key, ex: None)
    poller.track("e1", 1)
    poller.track("e2", 2)
    with pytest.raises(ValueError):
        await _run(poller)
    gc.collect()  # an exception never retrieved is reported when its task is collected
    await asyncio.sleep(0)
    assert unhandled == []


class CrashThenHang(FakeExecutions):
    """``e1``'s poll crashes (and says so first); every other poll hangs."""

    def __init__(self):
        super().__init__({})
        self.crashed = asyncio.Event()

    async def get_execution(self, datamart_id, import_id, execution_id):
        if execution_id == "e1":
            self.crashed.set()
            raise ValueError("a bug in e1's poll")
        await asyncio.Event().wait()


async def test_a_crash_is_not_lost_when_the_poller_is_cancelled_right_after_it():
    source = CrashThenHang()
    poller = _poller(source, on_status=lambda key, ex: None)
    poller.track("e1", 1)
    poller.track("e2", 2)
    no_more = asyncio.Event()
    no_more.set()
    task = asyncio.create_task(poller.run(no_more))
    await source.crashed.wait()
    task.cancel()  # a stop request lands before the poller looked at the crash
    (result,) = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(result, ValueError)


# --- statuses in any case, unknown statuses, 404s, revoked tokens ------------------------------------


def not_found() -> ApiError:
    return ApiError(404, "execution not found", method="GET", path="/v1/.../executions/e1")


async def test_terminal_statuses_in_any_case_end_polling_and_are_reported_upper_case():
    source = FakeExecutions({"e1": ["pending", "Running", "succeeded"], "e2": ["Failed"], "e3": [" Success "]})
    seen = []
    poller = _poller(source, on_status=lambda key, ex: seen.append((key, ex["status"])))
    for i in (1, 2, 3):
        poller.track(f"e{i}", i)
    await _run(poller)
    assert sorted(seen) == [(1, "PENDING"), (1, "RUNNING"), (1, "SUCCEEDED"), (2, "FAILED"), (3, "SUCCESS")]
    assert source.calls.count("e1") == 3 and source.calls.count("e2") == 1 and source.calls.count("e3") == 1


async def test_a_status_spelled_differently_is_not_a_change():
    source = FakeExecutions({"e1": ["RUNNING", "running", "Running", "SUCCEEDED"]})
    seen = []
    poller = _poller(source, on_status=lambda key, ex: seen.append(ex["status"]))
    poller.track("e1", 1)
    await _run(poller)
    assert seen == ["RUNNING", "SUCCEEDED"] and len(source.calls) == 4


async def test_an_unknown_status_warns_once_and_is_polled_on():
    source = FakeExecutions({"e1": ["DONE", "DONE", "DONE", "SUCCEEDED"]})
    seen, warnings = [], []
    poller = _poller(source, on_status=lambda key, ex: seen.append(ex["status"]), on_warning=warnings.append)
    poller.track("e1", 1)
    await _run(poller)
    assert warnings == [
        "the server reports an unknown execution status 'DONE' (execution e1): "
        "polling on until it becomes a known terminal status"
    ]
    assert seen == ["DONE", "SUCCEEDED"] and len(source.calls) == 4


async def test_unknown_statuses_warn_once_per_distinct_value_across_executions():
    source = FakeExecutions({"e1": ["DONE", "SUCCEEDED"], "e2": ["done", "IN_PROGRESS", "in_progress", "FAILED"]})
    seen, warnings = {}, []
    poller = _poller(
        source,
        on_status=lambda key, ex: seen.setdefault(key, []).append(ex["status"]),
        on_warning=warnings.append,
    )
    poller.track("e1", 1)
    poller.track("e2", 2)
    await _run(poller)
    assert len(warnings) == 2  # "done" is the DONE already warned about
    assert "status 'DONE' (execution e1)" in warnings[0] and "status 'IN_PROGRESS' (execution e2)" in warnings[1]
    assert seen[1] == ["DONE", "SUCCEEDED"]
    assert seen[2] == ["done", "IN_PROGRESS", "FAILED"]  # an unknown status is passed on as spelled


async def test_consecutive_404s_mark_the_execution_lost_and_stop_polling_it():
    source = FakeExecutions({"e1": [not_found()] * 5 + ["SUCCEEDED"]})
    seen, errors = [], []
    poller = _poller(
        source, on_status=lambda key, ex: seen.append((key, ex)), on_poll_error=lambda key, exc: errors.append(key)
    )
    poller.track("e1", 4)
    await _run(poller)
    message = "the server answered 404 to 5 polls in a row: the execution is unknown to it"
    assert seen == [(4, {"id": "e1", "status": "LOST", "error": {"message": message}})]
    assert len(source.calls) == 5 and errors == [4] * 5
    assert poller.timed_out == []


async def test_a_non_404_answer_resets_the_404_count():
    script = [not_found()] * 2 + ["RUNNING"] + [not_found()] * 4 + [ApiError(503, "busy")] + [not_found()] * 4
    source = FakeExecutions({"e1": script + ["SUCCEEDED"], "e2": [not_found()] * 4 + ["RUNNING"] + [not_found()] * 5})
    seen = []
    poller = _poller(source, on_status=lambda key, ex: seen.append((key, ex["status"])))
    poller.track("e1", 1)
    poller.track("e2", 2)
    await _run(poller)
    assert [s for k, s in seen if k == 1] == ["RUNNING", "SUCCEEDED"]  # never 5 in a row
    assert source.calls.count("e1") == len(script) + 1
    assert [s for k, s in seen if k == 2] == ["RUNNING", "LOST"]  # 5 in a row after the reset
    assert source.calls.count("e2") == 10


def test_lost_after_404s_must_be_positive():
    with pytest.raises(ValueError, match="lost_after_404s"):
        _poller(FakeExecutions({}), on_status=lambda key, ex: None, lost_after_404s=0)


@pytest.mark.parametrize("status", [401, 403])
async def test_an_auth_answer_ends_the_run_with_that_error(status):
    refused = ApiError(status, "token revoked", method="GET", path="/v1/.../executions/e1")
    source = FakeExecutions({"e1": ["RUNNING", refused, "SUCCEEDED"], "e2": ["RUNNING"] * 50})
    errors = []
    poller = _poller(source, on_status=lambda key, ex: None, on_poll_error=lambda key, exc: errors.append(exc))
    poller.track("e1", 1)
    poller.track("e2", 2)
    with pytest.raises(ApiError) as raised:
        await _run(poller)
    assert raised.value is refused
    assert source.calls.count("e1") == 2 and errors == []

"""Pure parts of the API client: retry policy, classification, answer decoding, multipart bodies."""

from __future__ import annotations

import dataclasses
import random
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from pipeline.client.answers import Scan, all_pages, scan_pages
from pipeline.client.api import Page, decode_ok, input_file_names
from pipeline.client.multipart import MultipartBody, SizeGuard, check_filename
from pipeline.client.retry import (
    RetryPolicy,
    RetryReason,
    call_with_retry,
    error_from_answer,
    is_ambiguous,
    is_retryable,
    is_safe_to_resend,
    next_delay,
    parse_retry_after,
)
from pipeline.errors import ApiError, TransportError, UsageError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


# --- RetryPolicy --------------------------------------------------------------------------------


def test_policy_defaults_frozen_kw_only():
    p = RetryPolicy()
    assert (p.max_attempts, p.base_delay_s, p.max_delay_s, p.max_retry_after_s) == (8, 0.5, 30, 120)
    assert p.window_s is None  # no time bound unless asked
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_attempts = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[misc]
    assert p.replace(max_attempts=2).max_attempts == 2 and p.max_attempts == 8


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_delay_s": -1}, {"max_retry_after_s": -0.1}, {"window_s": -1}]
)
def test_policy_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_policy_accepts_a_zero_window():
    assert RetryPolicy(window_s=0).window_s == 0


# --- Retry-After --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2", 2.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=42), usegmt=True), 42.0),
        (format_datetime(NOW - timedelta(seconds=42), usegmt=True), 0.0),
        ("Fri, 02 Jan 2026 03:05:05 GMT", 60.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now=NOW) == expected


def http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


def test_retry_after_date_is_read_against_the_servers_date_header():
    # the server's clock is one hour ahead of ours: its Retry-After date is 2 s after its own now
    server_now = datetime.now(UTC) + timedelta(hours=1)
    err = error_from_answer(
        503,
        b"busy",
        http_date(server_now + timedelta(seconds=2)),
        method="POST",
        path="/p",
        date=http_date(server_now),
    )
    assert err.retry_after == 2.0


def test_retry_after_date_with_a_server_clock_behind_ours():
    server_now = datetime.now(UTC) - timedelta(hours=1)
    err = error_from_answer(
        429, b"", http_date(server_now + timedelta(seconds=5)), method="GET", path="/p", date=http_date(server_now)
    )
    assert err.retry_after == 5.0  # not 0: the date is in the server's future


def test_retry_after_date_without_a_date_header_uses_our_clock():
    err = error_from_answer(
        503, b"", http_date(datetime.now(UTC) + timedelta(hours=1, seconds=2)), method="GET", path="/p"
    )
    assert 3590 < err.retry_after <= 3602  # the long wait: there is no server clock to read it against
    assert next_delay(RetryPolicy(), err, 0, MaxRng()) == 120  # ... which the policy caps


@pytest.mark.parametrize("date", ["not a date", "", "Mon, 99 Foo 2026 99:99:99 GMT"])
def test_an_unreadable_date_header_falls_back_to_our_clock(date):
    when = datetime.now(UTC) + timedelta(seconds=30)
    err = error_from_answer(503, b"", http_date(when), method="GET", path="/p", date=date)
    assert 25 < err.retry_after <= 30


def test_retry_after_seconds_ignore_the_date_header():
    date = http_date(datetime.now(UTC) + timedelta(hours=1))
    assert error_from_answer(429, b"", "7", method="GET", path="/p", date=date).retry_after == 7.0


# --- delays -------------------------------------------------------------------------------------


class MaxRng(random.Random):
    """uniform(a, b) -> b: shows the cap of the full-jitter window."""

    def uniform(self, a, b):
        return b


def test_full_jitter_window_grows_and_is_capped():
    p = RetryPolicy(base_delay_s=0.5, max_delay_s=3)
    caps = [next_delay(p, None, n, MaxRng()) for n in range(6)]
    assert caps == [0.5, 1.0, 2.0, 3, 3, 3]
    rng = random.Random(7)
    delays = [next_delay(p, None, 10, rng) for _ in range(200)]
    assert all(0 <= d <= 3 for d in delays) and min(delays) < 0.5 and max(delays) > 2.5  # FULL jitter


def test_retry_after_replaces_jitter_and_is_capped():
    p = RetryPolicy(max_retry_after_s=10)
    assert next_delay(p, ApiError(429, "slow", retry_after=4.5), 0, MaxRng()) == 4.5
    assert next_delay(p, ApiError(503, "x", retry_after=0.0), 5, MaxRng()) == 0.0
    assert next_delay(p, ApiError(503, "x", retry_after=900), 0, MaxRng()) == 10
    assert next_delay(p, ApiError(503, "x"), 0, MaxRng()) == 0.5


# --- classification -----------------------------------------------------------------------------

RETRYABLE = [408, 429, 500, 502, 503, 504, 599]
FINAL = [400, 401, 403, 404, 409, 413, 415, 422]


@pytest.mark.parametrize("status", RETRYABLE + FINAL)
def test_status_classification(status):
    exc = ApiError(status, "x")
    assert is_retryable(exc) == (status in RETRYABLE)
    # 503 is a refusal before any work (as 429): not ambiguous; every other 5xx may hide a creation
    assert is_ambiguous(exc) == (status >= 500 and status != 503)
    assert is_safe_to_resend(exc) == (status in (408, 429, 503))


@pytest.mark.parametrize("status", [200, 201, 204])
def test_a_2xx_error_envelope_is_ambiguous_and_retryable(status):
    # the answer contradicts itself: the execution may exist, so it is retryable (for a GET) and
    # ambiguous (an upload must not send it again blindly)
    exc = ApiError(status, "internal error", error_code="INTERNAL")
    assert is_retryable(exc) and is_ambiguous(exc) and not is_safe_to_resend(exc)


def test_decoded_error_envelope_in_a_2xx_classifies_as_ambiguous():
    body = b'{"status":"error","error":"internal","error_code":"INTERNAL"}'
    with pytest.raises(ApiError) as info:
        decode_ok(body, status=200, method="POST", path="/p")
    assert info.value.status == 200 and info.value.error_code == "INTERNAL" and is_ambiguous(info.value)


def test_transport_classification():
    refused = TransportError("refused", ambiguous=False)
    reset = TransportError("reset", ambiguous=True)
    assert is_retryable(refused) and is_retryable(reset)
    assert not is_ambiguous(refused) and is_ambiguous(reset)
    assert is_safe_to_resend(refused) and not is_safe_to_resend(reset)
    assert not is_retryable(ValueError("bug"))


# --- the retry loop ---------------------------------------------------------------------------


async def test_call_with_retry_counts_attempts_and_reports_events():
    slept, events = [], []
    failures = [TransportError("reset"), ApiError(429, "slow", retry_after=2.0)]

    async def attempt(n):
        if failures:
            raise failures.pop(0)
        return f"ok after {n}"

    async def sleep(d):
        slept.append(d)

    result, tries = await call_with_retry(
        attempt,
        policy=RetryPolicy(base_delay_s=1),
        method="GET",
        path="/x",
        rng=MaxRng(),
        sleep=sleep,
        on_retry=events.append,
    )
    assert (result, tries) == ("ok after 3", 3)
    assert slept == [1, 2.0]
    assert [(e.method, e.path, e.attempt, e.delay_s, e.reason, e.kind) for e in events] == [
        ("GET", "/x", 1, 1, "reset", RetryReason.BAD_ANSWER),
        ("GET", "/x", 2, 2.0, "HTTP 429", RetryReason.THROTTLED),
    ]


async def test_call_with_retry_gives_up_and_records_attempts():
    calls = []

    async def attempt(n):
        calls.append(n)
        raise ApiError(500, "boom") if n < 3 else ApiError(404, "gone")

    async def sleep(d):
        pass

    with pytest.raises(ApiError) as info:
        await call_with_retry(attempt, policy=RetryPolicy(), method="GET", path="/x", sleep=sleep)
    assert calls == [1, 2, 3] and info.value.status == 404 and info.value.attempts == 3


async def test_call_with_retry_reports_attempts_when_the_policy_is_spent():
    calls, slept = [], []

    async def attempt(n):
        calls.append(n)
        raise ApiError(503, "busy")

    async def sleep(d):
        slept.append(d)

    with pytest.raises(ApiError) as info:
        await call_with_retry(
            attempt, policy=RetryPolicy(max_attempts=3, base_delay_s=1), method="GET", path="/x", rng=MaxRng(),
            sleep=sleep,
        )  # fmt: skip
    assert calls == [1, 2, 3] and info.value.attempts == 3
    assert slept == [1, 2]  # no wait after the last try


async def test_call_with_retry_final_error_on_first_try_reports_one_attempt():
    async def attempt(n):
        raise ApiError(401, "bad token")

    with pytest.raises(ApiError) as info:
        await call_with_retry(attempt, policy=RetryPolicy(), method="GET", path="/x")
    assert info.value.attempts == 1


async def test_call_with_retry_should_retry_decides():
    calls = []

    async def attempt(n):
        calls.append(n)
        raise ApiError(500, "boom")

    async def sleep(d):
        pass

    with pytest.raises(ApiError) as info:
        await call_with_retry(
            attempt, policy=RetryPolicy(), method="POST", path="/x", should_retry=lambda e: False, sleep=sleep
        )
    assert calls == [1] and info.value.attempts == 1


class FakeClock:
    """A monotonic clock that only moves when told (by the fake sleep or an attempt)."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay


async def test_window_stops_retrying_when_the_next_try_would_start_after_it():
    clock, calls = FakeClock(), []

    async def attempt(n):
        calls.append((n, clock.now))
        clock.now += 0.5  # each try takes half a second
        raise TransportError("refused", ambiguous=False)

    policy = RetryPolicy(max_attempts=100, base_delay_s=1, max_delay_s=100, window_s=10)
    with pytest.raises(TransportError) as info:
        await call_with_retry(
            attempt, policy=policy, method="GET", path="/x", rng=MaxRng(), sleep=clock.sleep, clock=clock
        )
    # tries start at +0, +1.5 (0.5 + 1), +4 (2 + 2), +8.5 (4.5 + 4); the next would start at +17 (9 + 8)
    assert [t - 1000 for _, t in calls] == [0, 1.5, 4, 8.5]
    assert clock.slept == [1, 2, 4] and info.value.attempts == 4
    assert all(t - 1000 <= policy.window_s for _, t in calls)


async def test_window_ends_at_once_when_retry_after_outlasts_it():
    clock, events = FakeClock(), []

    async def attempt(n):
        raise ApiError(429, "slow down", retry_after=60)

    policy = RetryPolicy(window_s=30)
    with pytest.raises(ApiError) as info:
        await call_with_retry(
            attempt, policy=policy, method="POST", path="/x", sleep=clock.sleep, clock=clock, on_retry=events.append
        )
    assert info.value.attempts == 1 and clock.slept == [] and events == []


async def test_window_lets_a_late_success_through():
    clock = FakeClock()

    async def attempt(n):
        if n < 3:
            raise ApiError(503, "busy", retry_after=4)
        return "ok"

    result = await call_with_retry(
        attempt, policy=RetryPolicy(window_s=8), method="GET", path="/x", sleep=clock.sleep, clock=clock
    )
    assert result == ("ok", 3) and clock.slept == [4, 4]  # the third try starts at +8: still inside


async def test_time_spent_entering_the_gate_is_outside_the_window():
    """An upload that waited 20 minutes for a slot (the gate) and then met one 429 is retried: the
    window counts attempts and back-off sleeps only."""
    clock, entered = FakeClock(), []

    @asynccontextmanager
    async def gate():
        entered.append(clock.now)
        if len(entered) == 1:
            clock.now += 1200  # waiting for a slot
        yield

    async def attempt(n):
        if n == 1:
            raise ApiError(429, "slow down", retry_after=1)
        return "created"

    result = await call_with_retry(
        attempt, policy=RetryPolicy(window_s=900), method="POST", path="/x", sleep=clock.sleep, clock=clock, gate=gate
    )
    assert result == ("created", 2) and entered == [1000, 2201]


async def test_time_spent_inside_the_gated_attempt_still_counts():
    clock = FakeClock()

    @asynccontextmanager
    async def gate():
        yield

    async def attempt(n):
        clock.now += 1200  # the attempt itself is slow
        raise ApiError(429, "slow down", retry_after=1)

    with pytest.raises(ApiError) as info:
        await call_with_retry(
            attempt, policy=RetryPolicy(window_s=900), method="POST", path="/x", sleep=clock.sleep, clock=clock,
            gate=gate,
        )  # fmt: skip
    assert info.value.attempts == 1


async def test_an_error_entering_the_gate_ends_the_loop_as_it_is():
    class Closed(Exception):
        pass

    @asynccontextmanager
    async def gate():
        raise Closed()
        yield

    async def attempt(n):
        raise AssertionError("never attempted")

    with pytest.raises(Closed):
        await call_with_retry(attempt, policy=RetryPolicy(), method="POST", path="/x", gate=gate)


async def test_without_a_window_only_max_attempts_bounds_the_loop():
    clock = FakeClock()

    async def attempt(n):
        clock.now += 1000
        raise ApiError(503, "busy", retry_after=100)

    with pytest.raises(ApiError) as info:
        await call_with_retry(
            attempt, policy=RetryPolicy(max_attempts=5), method="GET", path="/x", sleep=clock.sleep, clock=clock
        )
    assert info.value.attempts == 5 and clock.slept == [100] * 4


async def test_a_failing_on_retry_callback_does_not_break_the_loop():
    clock = FakeClock()

    async def attempt(n):
        if n == 1:
            raise ApiError(503, "busy", retry_after=0)
        return n

    def on_retry(event):
        raise RuntimeError("progress display broke")

    result = await call_with_retry(
        attempt, policy=RetryPolicy(), method="GET", path="/x", sleep=clock.sleep, clock=clock, on_retry=on_retry
    )
    assert result == (2, 2)


async def test_call_with_retry_does_not_catch_bugs():
    async def attempt(n):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await call_with_retry(attempt, policy=RetryPolicy(), method="GET", path="/x")


# --- answers ------------------------------------------------------------------------------------


def test_decode_object_keeps_unknown_fields():
    body = b'{"status":"ok","data":{"id":"7","name":"n","new_field":[1]}}'
    assert decode_ok(body, status=200, method="GET", path="/p") == {"id": "7", "name": "n", "new_field": [1]}


def test_decode_list_page():
    body = b'{"status":"ok","data":[{"id":1},{"id":2}],"count":2,"first_result":10,"max_results":2,"total":30}'
    assert decode_ok(body, status=200, method="GET", path="/p") == Page([{"id": 1}, {"id": 2}], 2, 10, 2, 30)


def test_decode_list_without_meta_uses_request_params():
    page = decode_ok(b'{"status":"ok","data":[]}', status=200, method="GET", path="/p", params={
        "first_result": 5, "max_results": 50})  # fmt: skip
    assert page == Page([], 0, 5, 50, None)


def test_decode_tolerates_missing_envelope_and_empty_body():
    assert decode_ok(b'{"id":"1"}', status=201, method="POST", path="/p") == {"id": "1"}
    assert decode_ok(b"", status=204, method="DELETE", path="/p") is None


def test_decode_non_json_success_is_transport_error():
    with pytest.raises(TransportError) as info:
        decode_ok(b"<html>" + b"x" * 500, status=200, method="GET", path="/p")
    assert info.value.ambiguous and "not JSON" in str(info.value) and len(str(info.value)) < 300


def test_error_envelope():
    body = b'{"status":"error","error":"Unknown import","error_id":"e-1","error_code":"NOT_FOUND","x":1}'
    err = error_from_answer(404, body, None, method="GET", path="/p")
    assert (err.status, err.message, err.error_id, err.error_code) == (404, "Unknown import", "e-1", "NOT_FOUND")
    assert str(err) == "GET /p -> HTTP 404 NOT_FOUND: Unknown import (error_id e-1)"


def test_error_non_json_body_first_200_chars():
    err = error_from_answer(502, b"<html>" + b"y" * 1000, "3", method="POST", path="/p")
    assert err.message == ("<html>" + "y" * 1000)[:200] and err.retry_after == 3.0 and err.error_id is None


def test_input_file_names():
    assert input_file_names({"parameters": {"input_file_name": "a"}, "result": None}) == {"a"}
    assert input_file_names({"parameters": {}, "result": {"input_file_name": "b"}}) == {"b"}
    assert input_file_names(None) == set()


# --- listing walks (no trust in order, total or offsets) ----------------------------------------


class Listing:
    """A list server: ``cap`` items at most per page, optionally ignoring ``first_result``."""

    def __init__(self, n, *, cap=None, ignore_first=False, total=False):
        self.items = [{"id": str(i)} for i in range(n)]
        self.cap, self.ignore_first, self.total = cap, ignore_first, total
        self.asked: list[int] = []

    async def __call__(self, first):
        self.asked.append(first)
        start = 0 if self.ignore_first else first
        size = min(self.cap or PAGE, PAGE)
        items = self.items[start : start + size]
        return Page(items, len(items), first, PAGE, len(self.items) if self.total else None)


PAGE = 4


def ids(scan):
    return [i["id"] for i in scan.items]


async def test_scan_a_short_page_without_total_does_not_end_the_walk():
    listing = Listing(10, cap=3)  # pages capped at 3 (below the 4 asked), nothing says so
    scan = await scan_pages(listing, PAGE, max_pages=50)
    assert ids(scan) == [str(i) for i in range(10)] and scan.complete
    assert listing.asked == [0, 3, 6, 9, 10]  # the empty page ends it


async def test_scan_does_not_stop_at_total():
    # a total may lag behind the list: only the empty page after the last one proves the end
    listing = Listing(8, total=True)
    scan = await scan_pages(listing, PAGE, max_pages=50)
    assert scan == Scan(listing.items, True, 3)


async def test_scan_an_empty_list_is_complete():
    assert await scan_pages(Listing(0), PAGE, max_pages=5) == Scan([], True, 1)


async def test_scan_a_server_that_ignores_first_result_is_not_complete():
    listing = Listing(10, ignore_first=True)
    scan = await scan_pages(listing, PAGE, max_pages=50)
    assert ids(scan) == ["0", "1", "2", "3"] and not scan.complete and scan.pages == 2


async def test_scan_a_short_list_from_a_server_that_ignores_first_result_is_not_proven_complete():
    # a short page repeated could be the whole list, or a capped page of a longer one: not proven
    listing = Listing(3, ignore_first=True)
    scan = await scan_pages(listing, PAGE, max_pages=50)
    assert ids(scan) == ["0", "1", "2"] and not scan.complete


async def test_scan_a_capped_list_from_a_server_that_ignores_first_result_is_not_complete():
    # pages capped at 3 AND first_result ignored: the same 3 items come back; 7 more exist
    listing = Listing(10, cap=3, ignore_first=True)
    scan = await scan_pages(listing, PAGE, max_pages=50)
    assert len(scan.items) == 3
    assert not scan.complete  # else a settle window would resend a file that arrived


async def test_scan_is_capped_and_then_not_complete():
    scan = await scan_pages(Listing(100), PAGE, max_pages=3)
    assert len(scan.items) == 12 and scan.pages == 3 and not scan.complete


async def test_scan_stops_when_enough_was_found():
    listing = Listing(100)
    scan = await scan_pages(listing, PAGE, max_pages=50, enough=lambda items: any(i["id"] == "5" for i in items))
    assert scan.pages == 2 and len(scan.items) == 8 and not scan.complete  # not a proof of the end


async def test_scan_keeps_only_new_items_of_an_overlapping_page():
    pages = {0: [{"id": "a"}, {"id": "b"}], 2: [{"id": "b"}, {"id": "c"}], 4: []}  # an insert shifted the list

    async def fetch(first):
        return Page(pages[first], len(pages[first]), first, 2, None)

    scan = await scan_pages(fetch, 2, max_pages=10)
    assert ids(scan) == ["a", "b", "c"] and scan.complete


async def test_all_pages_never_loops_on_a_server_that_ignores_first_result():
    listing = Listing(10, ignore_first=True)
    assert [i["id"] async for i in all_pages(listing, PAGE)] == ["0", "1", "2", "3"]
    assert len(listing.asked) == 2


async def test_all_pages_goes_on_after_a_short_page_and_is_capped():
    assert len([i async for i in all_pages(Listing(10, cap=3), PAGE)]) == 10
    assert len([i async for i in all_pages(Listing(100), PAGE, max_pages=2)]) == 8


# --- multipart ----------------------------------------------------------------------------------


async def agen(*chunks):
    for c in chunks:
        yield c


async def test_multipart_body_is_exact():
    mp = MultipartBody(
        filename="b-1.ndjson", content_type="application/x-ndjson", type_value="application/x-ndjson", boundary="BND"
    )
    body = b"".join([c async for c in mp.stream(agen(b'{"a":1}\n', b"", b'{"a":2}\n'))])
    assert body == (
        b"--BND\r\n"
        b'Content-Disposition: form-data; name="type"\r\n\r\n'
        b"application/x-ndjson\r\n"
        b"--BND\r\n"
        b'Content-Disposition: form-data; name="file"; filename="b-1.ndjson"\r\n'
        b"Content-Type: application/x-ndjson\r\n\r\n"
        b'{"a":1}\n{"a":2}\n'
        b"\r\n--BND--\r\n"
    )
    assert mp.length(16) == len(body)
    assert mp.content_type == "multipart/form-data; boundary=BND"
    assert MultipartBody(filename="f", content_type="text/csv", type_value="t").boundary != mp.boundary


@pytest.mark.parametrize("name", ["", " a", 'a"b', "a\\b", "a/b", "a\r\nb", "a\x00"])
def test_bad_filenames(name):
    with pytest.raises(UsageError):
        check_filename(name)


async def test_size_guard():
    assert [c async for c in SizeGuard(4).wrap(agen(b"ab", b"cd"))] == [b"ab", b"cd"]
    with pytest.raises(UsageError, match="longer"):
        _ = [c async for c in SizeGuard(3).wrap(agen(b"ab", b"cd"))]
    with pytest.raises(UsageError, match="announced size 5"):
        _ = [c async for c in SizeGuard(5).wrap(agen(b"ab", b"cd"))]

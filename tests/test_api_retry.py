"""Pure parts of the API client: retry policy, classification, answer decoding, multipart bodies."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from pipeline.api import Page, decode_ok, input_file_names
from pipeline.errors import ApiError, TransportError, UsageError
from pipeline.multipart import MultipartBody, SizeGuard, check_filename
from pipeline.retry import (
    RetryEvent,
    RetryPolicy,
    call_with_retry,
    error_from_answer,
    is_ambiguous,
    is_retryable,
    is_safe_to_resend,
    next_delay,
    parse_retry_after,
    wait_generator,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


# --- RetryPolicy --------------------------------------------------------------------------------


def test_policy_defaults_frozen_kw_only():
    p = RetryPolicy()
    assert (p.max_attempts, p.base_delay_s, p.max_delay_s, p.max_retry_after_s) == (8, 0.5, 30, 300)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_attempts = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[misc]
    assert p.replace(max_attempts=2).max_attempts == 2 and p.max_attempts == 8


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay_s": -1}, {"max_retry_after_s": -0.1}])
def test_policy_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


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


def test_wait_generator_receives_exceptions_by_send():
    recorded = []
    gen = wait_generator(RetryPolicy(base_delay_s=1, max_delay_s=100), MaxRng(), recorded.append)
    assert gen.send(None) is None  # backoff primes it
    assert gen.send(TransportError("reset")) == 1
    assert gen.send(ApiError(429, "slow", retry_after=7)) == 7
    assert gen.send(ApiError(500, "boom")) == 4  # the exponent counts every retry
    assert recorded == [1, 7, 4]


# --- classification -----------------------------------------------------------------------------

RETRYABLE = [408, 429, 500, 502, 503, 504, 599]
FINAL = [400, 401, 403, 404, 409, 413, 415, 422]


@pytest.mark.parametrize("status", RETRYABLE + FINAL)
def test_status_classification(status):
    exc = ApiError(status, "x")
    assert is_retryable(exc) == (status in RETRYABLE)
    assert is_ambiguous(exc) == (status >= 500)
    assert is_safe_to_resend(exc) == (status in (408, 429, 503))


def test_transport_classification():
    refused = TransportError("refused", ambiguous=False)
    reset = TransportError("reset", ambiguous=True)
    assert is_retryable(refused) and is_retryable(reset)
    assert not is_ambiguous(refused) and is_ambiguous(reset)
    assert is_safe_to_resend(refused) and not is_safe_to_resend(reset)
    assert not is_retryable(ValueError("bug"))


# --- the backoff loop ---------------------------------------------------------------------------


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
    assert events == [RetryEvent("GET", "/x", 1, 1, "reset"), RetryEvent("GET", "/x", 2, 2.0, "HTTP 429")]


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
    assert str(err) == "GET /p -> HTTP 404: Unknown import (error_id e-1)"


def test_error_non_json_body_first_200_chars():
    err = error_from_answer(502, b"<html>" + b"y" * 1000, "3", method="POST", path="/p")
    assert err.message == ("<html>" + "y" * 1000)[:200] and err.retry_after == 3.0 and err.error_id is None


def test_input_file_names():
    assert input_file_names({"parameters": {"input_file_name": "a"}, "result": None}) == {"a"}
    assert input_file_names({"parameters": {}, "result": {"input_file_name": "b"}}) == {"b"}
    assert input_file_names(None) == set()


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

"""What the retry loop tells its listener: how long a request has been failing, and the class of
its failure (the log's "retrying" line and the metrics' retries by reason)."""

from __future__ import annotations

import socket

import pytest

from pipeline.client.api import ApiClient
from pipeline.client.retry import (
    RetryEvent,
    RetryPolicy,
    RetryReason,
    call_with_retry,
    describe,
    is_connection_refused,
    retry_reason,
)
from pipeline.errors import ApiError, TransportError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_failing_s_counts_attempts_and_waits_from_the_first_try():
    clock, events = Clock(), []

    async def attempt(n):
        clock.t += 2.0  # each attempt takes 2 s
        if n < 4:
            raise ApiError(503, "down")
        return n

    async def sleep(delay):
        clock.t += delay

    policy = RetryPolicy(max_attempts=5, base_delay_s=1, max_delay_s=1)
    result = await call_with_retry(
        attempt, policy=policy, method="GET", path="/x", sleep=sleep, clock=clock, on_retry=events.append
    )
    assert result == (4, 4)
    assert [e.attempt for e in events] == [1, 2, 3]
    # failing_s: 2 s of the first attempt; then + the wait and the next attempt each time
    waits = [e.delay_s for e in events]
    assert events[0].failing_s == pytest.approx(2.0)
    assert events[1].failing_s == pytest.approx(4.0 + waits[0])
    assert events[2].failing_s == pytest.approx(6.0 + waits[0] + waits[1])
    assert {e.kind for e in events} == {RetryReason.UNAVAILABLE}


@pytest.mark.parametrize(
    "error, reason",
    [
        (ApiError(429, "slow"), RetryReason.THROTTLED),
        (ApiError(503, "down"), RetryReason.UNAVAILABLE),
        (ApiError(502, "gateway"), RetryReason.SERVER_ERROR),
        (ApiError(408, "late"), RetryReason.REQUEST_TIMEOUT),
        (ApiError(200, "error envelope"), RetryReason.BAD_ANSWER),
        (TransportError("timed out after 300s"), RetryReason.TIMEOUT),
        (TransportError("connection failed (ServerDisconnectedError: x)"), RetryReason.CONNECTION_LOST),
        (TransportError("connect timed out (x)"), RetryReason.CONNECT_TIMEOUT),
        (TransportError("HTTP 200 answer is not JSON: 'x'"), RetryReason.BAD_ANSWER),
        (ValueError("x"), RetryReason.OTHER),
    ],
)
def test_retry_reason_is_one_of_a_few_classes(error, reason):
    assert retry_reason(error) == reason


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once it is closed


async def test_a_refused_connection_is_said_so(fast_retry):
    events: list[RetryEvent] = []
    url = f"http://127.0.0.1:{_closed_port()}"
    policy = fast_retry.replace(max_attempts=3)
    async with ApiClient(url, "token-for-a-closed-port", timeout_s=5, retry=policy, on_retry=events.append) as api:
        with pytest.raises(TransportError) as info:
            await api.get_import("1000", "1")
    assert len(events) == 2 and all(e.kind == RetryReason.CONNECT for e in events)
    assert all(is_connection_refused(e.reason) for e in events), events[0].reason
    assert is_connection_refused(describe(info.value))
    assert not is_connection_refused("HTTP 503") and not is_connection_refused("cannot connect (DNS: x)")

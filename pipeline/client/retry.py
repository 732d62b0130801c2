"""Retry policy of the API client: which failures are retried, and how long to wait.

The loop (``call_with_retry``) is a plain loop that fits on one screen (it used to be the
``backoff`` library's decorator, with a 65-line adapter of closures around it). Each wait is

- the server's ``Retry-After`` (seconds, or an HTTP date read against the answer's own ``Date``
  header so that a server clock ahead of ours does not make us wait an hour; capped by
  ``max_retry_after_s``) when the failure carries one, otherwise
- a FULL-jitter exponential delay: ``uniform(0, min(max_delay_s, base_delay_s * 2**n))``.

A policy bounds the tries (``max_attempts``) and, optionally, the time (``window_s``): a transient
failure that outlasts the window ends the loop, and the caller decides what that means (an upload
stays unsent, so that ``resume`` sends it once the service is back). The window counts the time
spent in attempts and in the back-off sleeps between them, not the time spent waiting at the
loop's ``gate`` (an upload's slot of the adaptive limiter, a token of the request budget: see
``limiter.py``): a batch that waited 20 minutes for a slot, then met one 429, is not given up.

What is retried (``is_retryable``): connection errors and timeouts (``TransportError``), HTTP 408,
429 and every 5xx. Any other 4xx is final.

What is *ambiguous* (``is_ambiguous``): a failure after which the server may have acted on the
request: a ``TransportError`` flagged ambiguous (the request was, or may have been, sent) and any
5xx. A POST that creates something is only retried blindly when the failure is not ambiguous
(``is_safe_to_resend``); the upload settles ambiguity by a lookup (see ``api.py``).
"""

from __future__ import annotations

import asyncio
import errno
import math
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, TypeVar

import aiohttp
import orjson

from pipeline.errors import ApiError, ServiceError, TransportError

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a request is retried.

    ``max_attempts`` counts every try, the first included (1 disables retries).
    """

    max_attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0
    window_s: float | None = None  # no new try starts later than this after the first (gate waits excluded)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if self.window_s is not None and self.window_s < 0:
            raise ValueError("RetryPolicy.window_s must be >= 0")
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0")

    def replace(self, **changes: Any) -> RetryPolicy:
        return replace(self, **changes)


class RetryReason(StrEnum):
    """What kind of failure is retried: few values, so that metrics can count retries by it
    (``reason`` of a ``RetryEvent`` is the text for people, this is the class)."""

    CONNECT = "connect"  # no connection could be opened (refused, unreachable, DNS): nothing sent
    CONNECT_TIMEOUT = "connect_timeout"
    TIMEOUT = "timeout"  # no answer in time once the request was sent
    CONNECTION_LOST = "connection_lost"  # the connection broke after the request was sent
    BAD_ANSWER = "bad_answer"  # an answer that cannot be read, or a 2xx whose envelope says error
    THROTTLED = "throttled"  # 429
    UNAVAILABLE = "unavailable"  # 503
    SERVER_ERROR = "server_error"  # another 5xx
    REQUEST_TIMEOUT = "request_timeout"  # 408
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Told to ``on_retry`` after a failed attempt, before waiting ``delay_s`` for the next one.

    ``failing_s`` is how long the request has been failing: since its first attempt started, the
    waits at the loop's gate excluded (what a log says after "retrying" when it exceeds a few
    seconds: the default verbosity says nothing of a retry that succeeds at once)."""

    method: str
    path: str
    attempt: int  # the attempt that just failed (1-based)
    delay_s: float
    reason: str
    failing_s: float = 0.0
    kind: RetryReason = RetryReason.OTHER


# --- classification (pure) ----------------------------------------------------------------------


def is_retryable(exc: BaseException) -> bool:
    """Connection errors, timeouts, unreadable answers, 408, 429, 5xx and a 2xx that carries an
    error envelope are worth another try."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, ApiError):
        return exc.status in RETRY_STATUSES or 500 <= exc.status <= 599 or 200 <= exc.status <= 299
    return False


def is_ambiguous(exc: BaseException) -> bool:
    """True when the server may have acted on the request despite the failure: a transport
    failure once the request may have been sent, a 5xx (a gateway's 504 in front of a backend that
    goes on), and a 2xx whose envelope says "error" (the answer contradicts itself). A 503 is not:
    the service said it is unavailable, it refused the request before doing any work (as 429)."""
    if isinstance(exc, TransportError):
        return exc.ambiguous
    if isinstance(exc, ApiError):
        return (500 <= exc.status <= 599 and exc.status != 503) or 200 <= exc.status <= 299
    return False


def is_safe_to_resend(exc: BaseException) -> bool:
    """Retry predicate of a non-idempotent POST: only failures where nothing was created.

    408 (the server gave up waiting for the request), 429 and 503 (throttled / unavailable:
    refused before any work) and a connection that could not even be opened.
    """
    if isinstance(exc, TransportError):
        return not exc.ambiguous
    if isinstance(exc, ApiError):
        return exc.status in (408, 429, 503)
    return False


def transport_error(
    exc: BaseException, *, method: str, path: str, timeout_s: float, stalled: bool = False
) -> TransportError:
    """A ``TransportError`` for an aiohttp/asyncio failure.

    Failing to connect is not ambiguous (nothing was sent); any later failure is. ``stalled``: the
    request was an upload, whose ``timeout_s`` is a time without progress (``client.progress``).
    """
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.os_error.errno == errno.ECONNREFUSED:
            detail = f"{_REFUSED}: {detail}"[:300]
        return TransportError(f"{_CANNOT_CONNECT} ({detail})", method=method, path=path, ambiguous=False)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError(f"{_CONNECT_TIMED_OUT} ({detail})", method=method, path=path, ambiguous=False)
    if isinstance(exc, asyncio.TimeoutError):
        what = f"{timeout_s:g}s without progress" if stalled else f"{timeout_s:g}s"
        return TransportError(f"{_TIMED_OUT} {what}", method=method, path=path, ambiguous=True)
    return TransportError(f"{_CONNECTION_FAILED} ({detail})", method=method, path=path, ambiguous=True)


# the openings of the messages ``transport_error`` writes: ``retry_reason`` classifies by them
_CANNOT_CONNECT = "cannot connect"
_CONNECT_TIMED_OUT = "connect timed out"
_TIMED_OUT = "timed out after"
_CONNECTION_FAILED = "connection failed"
_REFUSED = "connection refused"
_TRANSPORT_REASONS = {
    _CANNOT_CONNECT: RetryReason.CONNECT,
    _CONNECT_TIMED_OUT: RetryReason.CONNECT_TIMEOUT,
    _TIMED_OUT: RetryReason.TIMEOUT,
    _CONNECTION_FAILED: RetryReason.CONNECTION_LOST,
}


def retry_reason(exc: BaseException) -> RetryReason:
    """The class of a failure, for counting retries by reason."""
    if isinstance(exc, ApiError):
        if exc.status == 429:
            return RetryReason.THROTTLED
        if exc.status == 503:
            return RetryReason.UNAVAILABLE
        if exc.status == 408:
            return RetryReason.REQUEST_TIMEOUT
        if 500 <= exc.status <= 599:
            return RetryReason.SERVER_ERROR
        if 200 <= exc.status <= 299:
            return RetryReason.BAD_ANSWER
        return RetryReason.OTHER
    if isinstance(exc, TransportError):
        for opening, reason in _TRANSPORT_REASONS.items():
            if exc.message.startswith(opening):
                return reason
        return RetryReason.BAD_ANSWER  # the other transport errors are answers that cannot be read
    return RetryReason.OTHER


def is_connection_refused(reason: str) -> bool:
    """Whether a ``describe`` text says the server refused the connection (ECONNREFUSED)."""
    return reason.startswith(f"{_CANNOT_CONNECT} ({_REFUSED}")


#: What a request can raise when the network or the server's answer fails.
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def error_from_answer(
    status: int, body: bytes, retry_after: str | None, *, method: str, path: str, date: str | None = None
) -> ApiError:
    """An ``ApiError`` from an error answer: the error envelope's fields when present, else text."""
    text = body.decode("utf-8", "replace")
    message = text.strip()[:200] or "(empty body)"
    error_id = error_code = None
    try:
        doc = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        raw = doc.get("error") or doc.get("message")
        if raw:
            message = (raw if isinstance(raw, str) else orjson.dumps(raw).decode())[:1000]
        error_id = str(doc["error_id"]) if doc.get("error_id") else None
        error_code = str(doc["error_code"]) if doc.get("error_code") else None
    return ApiError(
        status,
        message,
        method=method,
        path=path,
        error_id=error_id,
        error_code=error_code,
        retry_after=parse_retry_after(retry_after, now=_server_now(date)),
    )


def _server_now(date: str | None) -> datetime | None:
    """The server's clock from an answer's ``Date`` header: an HTTP-date ``Retry-After`` is a time
    on the server's clock, so the wait is that time minus the server's now, not ours."""
    if not date:
        return None
    try:
        when = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):  # an unreadable date raises (never returns None)
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def describe(exc: BaseException) -> str:
    """A short reason for logs and ``RetryEvent.reason`` (never holds the token)."""
    if isinstance(exc, ApiError):
        code = f" {exc.error_code}" if exc.error_code else ""
        return f"HTTP {exc.status}{code}"
    if isinstance(exc, TransportError):
        return exc.message[:200]
    return type(exc).__name__


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds (fractions tolerated) or an
    HTTP date. ``None`` when absent or unreadable; never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def next_delay(policy: RetryPolicy, exc: BaseException | None, retry_number: int, rng: random.Random) -> float:
    """Delay before retry number ``retry_number`` (0-based) after failure ``exc``."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return min(max(0.0, float(retry_after)), policy.max_retry_after_s)
    cap = min(policy.max_delay_s, policy.base_delay_s * 2.0 ** min(retry_number, 60))
    return rng.uniform(0.0, cap)


# --- the loop -----------------------------------------------------------------------------------


async def call_with_retry(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    method: str,
    path: str,
    should_retry: Callable[[BaseException], bool] = is_retryable,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    gate: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
) -> tuple[T, int]:
    """Run ``attempt(n)`` (n = 1, 2, ...) until it succeeds, fails for good, or the policy is spent.

    Only ``ServiceError`` is retried, and only when ``should_retry`` says so, at most
    ``policy.max_attempts`` tries and, when ``policy.window_s`` is set, only while the next try
    would start within that many seconds of the first, not counting the time spent entering the
    ``gate``. Returns the result and the number of attempts made; the error that ends the loop
    gets ``attempts`` set on it. ``sleep`` replaces ``asyncio.sleep`` between attempts and
    ``clock`` the monotonic clock (tests).

    ``gate()``, when given, is entered around each attempt (``async with gate(): attempt(n)``): an
    upload's slot. Its exit sees the attempt's error before the loop does (the limiter reads a 429
    there); an exception raised by entering it (``SlotsClosed``) ends the loop as it is.
    """
    rng = rng or random.Random()
    wait = sleep or asyncio.sleep
    started = clock()
    gated = 0.0  # seconds spent entering the gate: not part of the window
    tries = 0

    async def once() -> T:
        nonlocal gated
        if gate is None:
            return await attempt(tries)
        asked = clock()
        async with gate():
            gated += clock() - asked
            return await attempt(tries)

    while True:
        tries += 1
        try:
            return await once(), tries
        except ServiceError as exc:
            delay = next_delay(policy, exc, tries - 1, rng)
            spent = tries >= policy.max_attempts or (
                policy.window_s is not None and clock() + delay - started - gated > policy.window_s
            )
            if spent or not should_retry(exc):
                exc.attempts = tries  # read by the engine's recorder
                raise
            if on_retry is not None:
                try:
                    failing = clock() - started - gated
                    on_retry(RetryEvent(method, path, tries, delay, describe(exc), failing, retry_reason(exc)))
                except Exception:  # a progress callback must not break the request
                    pass
            await wait(delay)

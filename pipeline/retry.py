"""Retry policy of the API client: which failures are retried, and how long to wait.

The loop itself is the ``backoff`` library's (``backoff.on_exception``); this module gives it
a wait generator that receives each failure through ``.send(exc)`` (backoff 2.x) and yields

- the server's ``Retry-After`` (seconds or HTTP date, capped by ``max_retry_after_s``) when the
  failure carries one, otherwise
- a FULL-jitter exponential delay: ``uniform(0, min(max_delay_s, base_delay_s * 2**n))``.

``jitter=None`` is passed to the decorator so that this generator alone owns the jitter.

What is retried (``is_retryable``): connection errors and timeouts (``TransportError``), HTTP 408,
429 and every 5xx. Any other 4xx is final.

What is *ambiguous* (``is_ambiguous``): a failure after which the server may have acted on the
request: a ``TransportError`` flagged ambiguous (the request was, or may have been, sent) and any
5xx. A POST that creates something is only retried blindly when the failure is not ambiguous
(``is_safe_to_resend``); the upload settles ambiguity by a lookup (see ``api.py``).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import backoff
import orjson

from .errors import ApiError, ServiceError, TransportError

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
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0")

    def replace(self, **changes: Any) -> RetryPolicy:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Told to ``on_retry`` after a failed attempt, before waiting ``delay_s`` for the next one."""

    method: str
    path: str
    attempt: int  # the attempt that just failed (1-based)
    delay_s: float
    reason: str


# --- classification (pure) ----------------------------------------------------------------------


def is_retryable(exc: BaseException) -> bool:
    """Connection errors, timeouts, unreadable answers, 408, 429 and 5xx are worth another try."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, ApiError):
        return exc.status in RETRY_STATUSES or 500 <= exc.status <= 599
    return False


def is_ambiguous(exc: BaseException) -> bool:
    """True when the server may have acted on the request despite the failure."""
    if isinstance(exc, TransportError):
        return exc.ambiguous
    if isinstance(exc, ApiError):
        return 500 <= exc.status <= 599
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


def transport_error(exc: BaseException, *, method: str, path: str, timeout_s: float) -> TransportError:
    """A ``TransportError`` for an aiohttp/asyncio failure.

    Failing to connect is not ambiguous (nothing was sent); any later failure is.
    """
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"cannot connect ({detail})", method=method, path=path, ambiguous=False)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError(f"connect timed out ({detail})", method=method, path=path, ambiguous=False)
    if isinstance(exc, asyncio.TimeoutError):
        return TransportError(f"timed out after {timeout_s:g}s", method=method, path=path, ambiguous=True)
    return TransportError(f"connection failed ({detail})", method=method, path=path, ambiguous=True)


#: What a request can raise when the network or the server's answer fails.
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def error_from_answer(status: int, body: bytes, retry_after: str | None, *, method: str, path: str) -> ApiError:
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
        retry_after=parse_retry_after(retry_after),
    )


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
    if when is None:
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


def wait_generator(
    policy: RetryPolicy, rng: random.Random, record: Callable[[float], None] | None = None
) -> Generator[float | None, BaseException | None, None]:
    """A backoff 2.x wait generator: primed with ``send(None)``, then ``send(exc)`` per failure."""
    exc = yield None
    n = 0
    while True:
        delay = next_delay(policy, exc, n, rng)
        n += 1
        if record is not None:
            record(delay)
        exc = yield delay


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
) -> tuple[T, int]:
    """Run ``attempt(n)`` (n = 1, 2, ...) under ``policy`` with ``backoff.on_exception``.

    Only ``ServiceError`` is retried, and only when ``should_retry`` says so. Returns the result
    and the number of attempts made. The error that ends the loop gets ``attempts`` set on it.
    ``sleep`` replaces ``asyncio.sleep`` between attempts (tests); backoff then waits 0 s.
    """
    rng = rng or random.Random()
    tries = 0
    last_delay = 0.0

    def record(delay: float) -> None:
        nonlocal last_delay
        last_delay = delay

    def wait_gen() -> Generator[float | None, BaseException | None, None]:
        gen = wait_generator(policy, rng, record)
        value = next(gen)
        while True:
            exc = yield value
            delay = gen.send(exc)
            value = 0.0 if (sleep is not None and exc is not None) else delay

    async def target() -> T:
        nonlocal tries
        tries += 1
        return await attempt(tries)

    async def on_backoff(details: dict[str, Any]) -> None:
        if on_retry is not None:
            event = RetryEvent(method, path, details["tries"], last_delay, describe(details["exception"]))
            try:
                on_retry(event)
            except Exception:  # a progress callback must not break the request
                pass
        if sleep is not None:
            await sleep(last_delay)

    def on_giveup(details: dict[str, Any]) -> None:
        exc = details.get("exception")
        if exc is not None:
            exc.attempts = details["tries"]

    decorated = backoff.on_exception(
        wait_gen,
        ServiceError,
        max_tries=policy.max_attempts,
        jitter=None,
        giveup=lambda e: not should_retry(e),
        on_backoff=on_backoff,
        on_giveup=on_giveup,
        logger=None,
    )(target)
    result = await decorated()
    return result, tries

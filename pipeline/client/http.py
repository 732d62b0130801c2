"""The HTTP plumbing every API call goes through: one session, one attempt, the retry loop.

``Requester`` owns the aiohttp session (the token goes in its default headers and nowhere else),
sends one request and decodes its answer or raises (``send``), runs attempts under the retry policy
(``with_retry``) and cleans every error it raises of the token and of terminal control sequences
(``clean``). :class:`pipeline.client.api.ApiClient` (the endpoints),
:class:`pipeline.client.uploads.Uploader` and :func:`pipeline.client.downloads.download_data_file`
are built on it. With a request budget (``upload.max_requests_per_s``), a request takes a token of
it before it goes out (``take_token``: in ``send``, or in an upload's gate, see ``uploads.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import aiohttp
import orjson

from pipeline.api_token import check_token
from pipeline.client.answers import decode_ok
from pipeline.client.progress import BodyProgress
from pipeline.client.redact import Redactor, safe_text
from pipeline.client.request_budget import RequestBudget
from pipeline.client.retry import (
    NETWORK_ERRORS,
    RetryEvent,
    RetryPolicy,
    call_with_retry,
    error_from_answer,
    is_retryable,
    transport_error,
)
from pipeline.errors import ApiError, ServiceError, TransportError, UsageError

log = logging.getLogger("pipeline.client.api")  # the client's one logger, as before the split
T = TypeVar("T")


@contextlib.asynccontextmanager
async def _deadline(progress: BodyProgress | None) -> AsyncIterator[None]:
    """An upload's deadline, moved by its body's progress; nothing for other requests (aiohttp's)."""
    if progress is None:
        yield
        return
    async with asyncio.timeout(None) as timeout:
        progress.start(timeout)
        yield


class Requester:
    """One client's connection to the API. ``open()`` before the first request, ``aclose()`` after.

    ``sleep`` and ``rng`` replace ``asyncio.sleep`` and the jitter's randomness (tests).
    ``connector_limit`` caps open connections (0: no cap, so N parallel uploads never queue).
    ``budget`` (a :class:`~pipeline.client.request_budget.RequestBudget`) rations the requests per second.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float,
        retry: RetryPolicy,
        on_retry: Callable[[RetryEvent], None] | None,
        connector_limit: int,
        sleep: Callable[[float], Awaitable[Any]] | None,
        rng: random.Random | None,
        budget: RequestBudget | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"API base URL must start with http:// or https:// (got {base_url!r})")
        if not token:
            raise UsageError("API token is empty")
        self.base_url = base_url.rstrip("/")
        check_token(token)
        self._token = token
        self._redactor = Redactor(token)
        self.timeout_s = timeout_s
        self.retry = retry
        self.on_retry = on_retry
        self._connector_limit = connector_limit
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.budget = budget
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"Requester(base_url={self.base_url!r})"

    def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._connector_limit, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Authorization": self._token, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=min(self.timeout_s, 60)),
            raise_for_status=False,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ApiClient is not open: use 'async with ApiClient(...) as api'")
        return self._session

    def clean(self, exc: ServiceError) -> ServiceError:
        """A server may echo the token back in an error message, whole or truncated (aiohttp's own
        "Got more than 8190 bytes" answer quotes the start of a long header): any 8-character piece
        of it is redacted, as are terminal control sequences."""
        text = safe_text(self._redactor.clean(str(exc)))
        if text != str(exc):
            exc.args = (text,)
            if isinstance(exc, ApiError | TransportError):  # the errors that carry a ``message``
                exc.message = safe_text(self._redactor.clean(exc.message))
        return exc

    def refusal(self, resp: aiohttp.ClientResponse, body: bytes, *, method: str, path: str) -> ApiError:
        """The ``ApiError`` of a non-2xx answer (its envelope, ``Retry-After`` and ``Date``)."""
        headers = resp.headers
        retry_after, date = headers.get("Retry-After"), headers.get("Date")
        return error_from_answer(resp.status, body, retry_after, method=method, path=path, date=date)

    async def take_token(self) -> None:
        """Wait for a token of the request budget (at once without one)."""
        if self.budget is not None:
            await self.budget.take()

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        progress: BodyProgress | None = None,
        budgeted: bool = False,
    ) -> Any:
        """One attempt: send, read the whole answer, decode it or raise.

        A request is given ``timeout_s`` in all. An upload passes the ``progress`` of its body
        instead: then ``timeout_s`` is the time it may go without progress (``client.progress``),
        so a 100 MB upload over a slow but moving link is not an error and a stalled one is told
        after ``timeout_s``. No aiohttp read timeout: it would start once the body is in the
        kernel's send buffer, which on a slow link still holds seconds of data.
        ``budgeted``: the caller took this request's token already (an upload, in its gate).
        """
        if not budgeted:
            await self.take_token()
        timeout_s = timeout_s or self.timeout_s
        total = None if progress is not None else timeout_s
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=min(timeout_s, 60))
        if json_body is not None:
            data = orjson.dumps(json_body)
            headers = {**(headers or {}), "Content-Type": "application/json"}
        stalled = progress is not None
        try:
            async with _deadline(progress):
                async with self.session.request(
                    method, self.base_url + path, params=params, data=data, headers=headers, timeout=timeout
                ) as resp:
                    try:
                        body = await resp.read()
                    except NETWORK_ERRORS as exc:
                        raise transport_error(
                            exc, method=method, path=path, timeout_s=timeout_s, stalled=stalled
                        ) from exc
                    if 200 <= resp.status < 300:
                        return decode_ok(body, status=resp.status, method=method, path=path, params=params)
                    raise self.refusal(resp, body, method=method, path=path)
        except ServiceError as exc:
            self.clean(exc)
            raise
        except NETWORK_ERRORS as exc:
            err = transport_error(exc, method=method, path=path, timeout_s=timeout_s, stalled=stalled)
            raise self.clean(err) from exc
        finally:
            if progress is not None:
                progress.close()

    async def with_retry(
        self,
        attempt: Callable[[int], Awaitable[T]],
        method: str,
        path: str,
        should_retry: Callable[[BaseException], bool] = is_retryable,
        gate: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    ) -> tuple[T, int]:
        """``attempt(n)`` under the client's retry policy: its result and the number of tries.
        ``gate`` is entered around each attempt, its waits outside the retry window (see
        ``retry.call_with_retry``)."""

        def on_retry(event: RetryEvent) -> None:
            log.debug(
                "retry %s %s after attempt %d in %.2fs: %s",
                event.method,
                event.path,
                event.attempt,
                event.delay_s,
                event.reason,
            )
            if self.on_retry is not None:
                self.on_retry(event)

        return await call_with_retry(
            attempt,
            policy=self.retry,
            method=method,
            path=path,
            should_retry=should_retry,
            rng=self._rng,
            sleep=self._sleep,
            on_retry=on_retry,
            gate=gate,
        )

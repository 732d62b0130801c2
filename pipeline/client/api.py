"""HTTP client of the mediarithmics document-import API (``/v1/datamarts/{id}/document_imports``).

    async with ApiClient("https://api.mediarithmics.com", token) as api:
        imp = await api.create_import(1234, document_type="USER_PROFILE",
                                      mime_type="APPLICATION_X_NDJSON", encoding="utf-8", name="nightly")
        res = await api.upload(1234, imp["id"], chunks=batch_chunks, size=batch.size,
                               filename="nightly-000001.ndjson", mime_type="APPLICATION_X_NDJSON")
        res.execution["id"]

Answers are unwrapped from their envelope (``{"status": "ok", "data": ...}``, see
:mod:`pipeline.client.answers`): one object comes back as a ``dict`` (unknown fields kept), a list as a
``Page``. Failures raise ``ApiError`` (the
server answered 3xx/4xx/5xx) or ``TransportError`` (no usable answer); both carry ``method``,
``path`` and, once retries are over, ``attempts``. The token is never part of a message or repr.

Retries (see ``retry.py``): GET, PUT and DELETE retry every retryable failure; ``create_import``
(a POST) only failures where nothing was created (408/429/503, connection refused); ``upload``
retries every retryable failure but, after an AMBIGUOUS one (a transport failure once the request
may have been sent, or a 5xx), first looks the filename up in the import's executions and returns
the execution it finds instead of sending the file again. A ``form="raw"`` upload carries no file
name, so it cannot be looked up: it is sent again and ``UploadResult.possible_duplicate`` is set.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import quote

import aiohttp
import orjson

from pipeline.client.answers import Page, Scan, all_pages, as_page, decode_ok, input_file_names, scan_pages
from pipeline.client.multipart import FileTransfers, Id, UploadResult
from pipeline.client.redact import Redactor, safe_text
from pipeline.client.retry import (
    NETWORK_ERRORS,
    RetryEvent,
    RetryPolicy,
    call_with_retry,
    error_from_answer,
    is_ambiguous,
    is_retryable,
    is_safe_to_resend,
    transport_error,
)
from pipeline.config import check_token
from pipeline.errors import ApiError, ServiceError, TransportError, UsageError

__all__ = ["ApiClient", "Page", "RetryEvent", "RetryPolicy", "UploadResult", "decode_ok", "input_file_names"]

log = logging.getLogger(__name__)
JSON_TIMEOUT_S = 60.0  # most a JSON request (not an upload or a download) may take
MIN_UPLOAD_RATE = 50_000  # bytes/s: an upload's deadline allows its body to go out at least this fast
LOOKUP_PAGE_SIZE = 100
T = TypeVar("T")
JsonObject = dict[str, Any]


# --- the client ---------------------------------------------------------------------------------


class ApiClient(FileTransfers):
    """Async client of the document-import API. Use as ``async with ApiClient(...) as api``.

    ``sleep`` and ``rng`` replace ``asyncio.sleep`` and the jitter's randomness (tests).
    ``connector_limit`` caps open connections (0: no cap, so N parallel uploads never queue).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 300,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen, so a shared default is safe)
        on_retry: Callable[[RetryEvent], None] | None = None,
        connector_limit: int = 0,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        rng: random.Random | None = None,
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
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> ApiClient:
        connector = aiohttp.TCPConnector(limit=self._connector_limit, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Authorization": self._token, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=min(self.timeout_s, 60)),
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- plumbing -------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return self._redactor.clean(text)

    def _clean(self, exc: ServiceError) -> ServiceError:
        """A server may echo the token back in an error message, whole or truncated (aiohttp's own
        "Got more than 8190 bytes" answer quotes the start of a long header): any 8-character piece
        of it is redacted, as are terminal control sequences."""
        text = safe_text(self._redact(str(exc)))
        if text != str(exc):
            exc.args = (text,)
            if isinstance(exc, ApiError | TransportError):  # the errors that carry a ``message``
                exc.message = safe_text(self._redact(exc.message))
        return exc

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ApiClient is not open: use 'async with ApiClient(...) as api'")
        return self._session

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        body_bytes: int = 0,
    ) -> Any:
        """One attempt: send, read the whole answer, decode it or raise.

        The deadline grows with the body (``body_bytes``): a 100 MB upload over a slow but moving
        link is not an error; one that does not move for ``timeout_s`` (no answer byte) is.
        """
        timeout_s = timeout_s or self.timeout_s
        total = timeout_s + body_bytes / MIN_UPLOAD_RATE
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=min(timeout_s, 60), sock_read=timeout_s)
        if json_body is not None:
            data = orjson.dumps(json_body)
            headers = {**(headers or {}), "Content-Type": "application/json"}
        try:
            async with self.session.request(
                method, self.base_url + path, params=params, data=data, headers=headers, timeout=timeout
            ) as resp:
                try:
                    body = await resp.read()
                except NETWORK_ERRORS as exc:
                    raise transport_error(exc, method=method, path=path, timeout_s=total) from exc
                if 200 <= resp.status < 300:
                    return decode_ok(body, status=resp.status, method=method, path=path, params=params)
                raise error_from_answer(
                    resp.status,
                    body,
                    resp.headers.get("Retry-After"),
                    method=method,
                    path=path,
                    date=resp.headers.get("Date"),
                )
        except ServiceError as exc:
            self._clean(exc)
            raise
        except NETWORK_ERRORS as exc:
            err = transport_error(exc, method=method, path=path, timeout_s=total)
            raise self._clean(err) from exc

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        should_retry: Callable[[BaseException], bool] = is_retryable,
        retry: bool = True,
    ) -> Any:
        async def attempt(_: int) -> Any:
            # small JSON exchanges: a shorter timeout than a 100 MB upload's, so that one stuck poll or
            # listing does not hold the poller (or a lookup) for the upload timeout
            return await self._send(
                method, path, params=params, json_body=json_body, timeout_s=min(self.timeout_s, JSON_TIMEOUT_S)
            )

        if not retry:
            return await attempt(1)
        result, _ = await self._with_retry(attempt, method, path, should_retry)
        return result

    async def _object(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        should_retry: Callable[[BaseException], bool] = is_retryable,
    ) -> JsonObject:
        """``_call`` for an endpoint that answers one object. The object is returned as decoded, not
        checked: a server that answers something else (an empty body: ``None``) is passed through,
        as before the annotations, for the caller to notice."""
        return cast(JsonObject, await self._call(method, path, json_body=json_body, should_retry=should_retry))

    async def _with_retry(
        self,
        attempt: Callable[[int], Awaitable[T]],
        method: str,
        path: str,
        should_retry: Callable[[BaseException], bool] = is_retryable,
    ) -> tuple[T, int]:
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
        )

    @staticmethod
    def _imports_path(datamart_id: Id, import_id: Id | None = None) -> str:
        path = f"/v1/datamarts/{quote(str(datamart_id), safe='')}/document_imports"
        return path if import_id is None else f"{path}/{quote(str(import_id), safe='')}"

    def _executions_path(self, datamart_id: Id, import_id: Id, execution_id: Id | None = None) -> str:
        path = self._imports_path(datamart_id, import_id) + "/executions"
        return path if execution_id is None else f"{path}/{quote(str(execution_id), safe='')}"

    # --- document imports -----------------------------------------------------------------------

    async def create_import(
        self,
        datamart_id: Id,
        *,
        document_type: str,
        mime_type: str,
        encoding: str,
        name: str,
        priority: str | None = None,
    ) -> dict[str, Any]:
        """POST a new document import. Retried only when nothing can have been created."""
        body: dict[str, Any] = {
            "document_type": document_type,
            "mime_type": mime_type,
            "encoding": encoding,
            "name": name,
        }
        if priority is not None:
            body["priority"] = priority
        return await self._object(
            "POST", self._imports_path(datamart_id), json_body=body, should_retry=is_safe_to_resend
        )

    async def get_import(self, datamart_id: Id, import_id: Id) -> dict[str, Any]:
        return await self._object("GET", self._imports_path(datamart_id, import_id))

    async def list_imports(
        self, datamart_id: Id, *, first_result: int = 0, max_results: int = 100, keywords: str | None = None
    ) -> Page:
        params: dict[str, Any] = {"first_result": first_result, "max_results": max_results}
        if keywords:
            params["keywords"] = keywords
        return as_page(await self._call("GET", self._imports_path(datamart_id), params=params), params)

    async def iter_imports(
        self, datamart_id: Id, *, keywords: str | None = None, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        async def fetch(first: int) -> Page:
            return await self.list_imports(datamart_id, first_result=first, max_results=page_size, keywords=keywords)

        async for item in all_pages(fetch, page_size):
            yield item

    async def update_import(self, datamart_id: Id, import_id: Id, changes: dict[str, Any]) -> dict[str, Any]:
        return await self._object("PUT", self._imports_path(datamart_id, import_id), json_body=changes)

    async def delete_import(self, datamart_id: Id, import_id: Id) -> None:
        """DELETE an import. A 404 after an ambiguous failed attempt means it is already gone."""
        method, path = "DELETE", self._imports_path(datamart_id, import_id)
        ambiguous = False

        async def attempt(_: int) -> None:
            nonlocal ambiguous
            try:
                await self._send(method, path)
            except ApiError as exc:
                if exc.status == 404 and ambiguous:
                    return None
                ambiguous = ambiguous or is_ambiguous(exc)
                raise
            except TransportError as exc:
                ambiguous = ambiguous or exc.ambiguous
                raise

        await self._with_retry(attempt, method, path)

    # --- executions -----------------------------------------------------------------------------

    async def list_executions(
        self, datamart_id: Id, import_id: Id, *, first_result: int = 0, max_results: int = 100
    ) -> Page:
        return await self._list_executions(datamart_id, import_id, first_result, max_results, retry=True)

    async def _list_executions(
        self, datamart_id: Id, import_id: Id, first_result: int, max_results: int, *, retry: bool
    ) -> Page:
        params = {"first_result": first_result, "max_results": max_results}
        path = self._executions_path(datamart_id, import_id)
        return as_page(await self._call("GET", path, params=params, retry=retry), params)

    async def iter_executions(
        self, datamart_id: Id, import_id: Id, *, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        async def fetch(first: int) -> Page:
            return await self.list_executions(datamart_id, import_id, first_result=first, max_results=page_size)

        async for item in all_pages(fetch, page_size):
            yield item

    async def get_execution(self, datamart_id: Id, import_id: Id, execution_id: Id) -> dict[str, Any]:
        return await self._object("GET", self._executions_path(datamart_id, import_id, execution_id))

    async def cancel_execution(self, datamart_id: Id, import_id: Id, execution_id: Id) -> dict[str, Any]:
        """Ask to cancel a PENDING execution (re-sending a cancel is harmless, so it is retried)."""
        path = self._executions_path(datamart_id, import_id, execution_id) + "/action"
        return await self._object("POST", path, json_body={"action": "CANCEL"})

    async def scan_executions(
        self,
        datamart_id: Id,
        import_id: Id,
        *,
        wanted: set[str] | None = None,
        max_pages: int = 1000,
        page_size: int = LOOKUP_PAGE_SIZE,
    ) -> Scan:
        """Walk the import's executions (see :func:`answers.scan_pages`: no trust in order, clocks,
        ``total`` or offsets). With ``wanted``, stop once every one of those file names was seen."""

        async def fetch(first: int) -> Page:
            return await self.list_executions(datamart_id, import_id, first_result=first, max_results=page_size)

        def enough(items: list[Any]) -> bool:
            found = set().union(*(input_file_names(e) for e in items))
            return wanted is not None and wanted <= found

        return await scan_pages(fetch, page_size, max_pages=max_pages, enough=enough if wanted else None)

    async def find_execution_by_filename(
        self, datamart_id: Id, import_id: Id, filename: str, *, max_pages: int = 1000
    ) -> dict[str, Any] | None:
        """The first execution listed whose ``input_file_name`` is ``filename``, or ``None`` (which
        proves nothing when the server does not echo file names: see ``Settler``)."""
        scan = await self.scan_executions(datamart_id, import_id, wanted={filename}, max_pages=max_pages)
        return next((e for e in scan.items if filename in input_file_names(e)), None)

"""HTTP client of the mediarithmics document-import API (``/v1/datamarts/{id}/document_imports``).

    async with ApiClient("https://api.mediarithmics.com", token) as api:
        imp = await api.create_import(1234, document_type="USER_PROFILE",
                                      mime_type="APPLICATION_X_NDJSON", encoding="utf-8", name="nightly")
        res = await api.upload(1234, imp["id"], chunks=batch_chunks, size=batch.size,
                               filename="nightly-000001.ndjson", mime_type="APPLICATION_X_NDJSON")
        res.execution["id"]

Answers are unwrapped from their envelope (``{"status": "ok", "data": ...}``, see
:mod:`pipeline.client.answers`): one object comes back as a ``dict`` (unknown fields kept), a list
as a ``Page``. Failures raise ``ApiError`` (the server answered 3xx/4xx/5xx) or ``TransportError``
(no usable answer); both carry ``method``, ``path`` and, once retries are over, ``attempts``. The
token is never part of a message or repr.

Retries (see :mod:`pipeline.client.retry`): GET, PUT and DELETE retry every retryable failure;
``create_import`` (a POST) only failures where nothing was created (408/429/503, connection
refused); ``upload`` (see :mod:`pipeline.client.uploads`) the same, and raises ``UploadUnsettled``
at once after an AMBIGUOUS failure (a transport failure once the request may have been sent, or a
5xx other than 503): the file is never sent again by the client, the run settles it by a lookup.

Optional (default: none, every upload goes at once, no rate budget): a ``limiter``
(:class:`~pipeline.client.limiter.UploadLimiter`: the upload attempts in flight, adaptive; a 429/503
pauses new ones) and a ``budget`` (:class:`~pipeline.client.request_budget.RequestBudget`: the requests
per second of every call of this client).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import aiohttp

from pipeline.client import downloads
from pipeline.client.answers import (
    Page,
    Scan,
    Walk,
    all_pages,
    as_page,
    decode_ok,
    input_file_names,
    scan_pages,
)
from pipeline.client.http import Requester
from pipeline.client.limiter import UploadLimiter
from pipeline.client.outcomes import UploadResult
from pipeline.client.paths import Id, executions_path, imports_path
from pipeline.client.request_budget import RequestBudget
from pipeline.client.retry import RetryEvent, RetryPolicy, is_ambiguous, is_retryable, is_safe_to_resend
from pipeline.client.uploads import ChunkSource, Uploader
from pipeline.errors import ApiError, TransportError

__all__ = [
    "LOOKUP_PAGE_SIZE",
    "ApiClient",
    "Page",
    "RetryEvent",
    "RetryPolicy",
    "UploadResult",
    "decode_ok",
    "input_file_names",
]

JSON_TIMEOUT_S = 60.0  # most a JSON request (not an upload or a download) may take
LOOKUP_PAGE_SIZE = 100
JsonObject = dict[str, Any]


# --- the client ---------------------------------------------------------------------------------


class ApiClient:
    """Async client of the document-import API. Use as ``async with ApiClient(...) as api``.

    ``sleep`` and ``rng`` replace ``asyncio.sleep`` and the jitter's randomness (tests).
    ``connector_limit`` caps open connections (0: no cap, so N parallel uploads never queue).
    The HTTP plumbing is a :class:`~pipeline.client.http.Requester`; uploads are delegated to an
    :class:`~pipeline.client.uploads.Uploader` over it, downloads to :mod:`pipeline.client.downloads`.
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
        limiter: UploadLimiter | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        self._http = Requester(
            base_url,
            token,
            timeout_s=timeout_s,
            retry=retry,
            on_retry=on_retry,
            connector_limit=connector_limit,
            sleep=sleep,
            rng=rng,
            budget=budget,
        )
        self._uploads = Uploader(self._http, limiter)

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> ApiClient:
        self._http.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def timeout_s(self) -> float:
        return self._http.timeout_s

    @property
    def retry(self) -> RetryPolicy:
        return self._http.retry

    @property
    def on_retry(self) -> Callable[[RetryEvent], None] | None:
        return self._http.on_retry

    @property
    def limiter(self) -> UploadLimiter | None:
        """The limit on upload attempts in flight (``None``: none)."""
        return self._uploads.limiter

    @property
    def budget(self) -> RequestBudget | None:
        """The request-rate budget (``None``: none)."""
        return self._http.budget

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open aiohttp session (``RuntimeError`` outside ``async with``)."""
        return self._http.session

    # --- plumbing -------------------------------------------------------------------------------

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
            timeout_s = min(self._http.timeout_s, JSON_TIMEOUT_S)
            return await self._http.send(method, path, params=params, json_body=json_body, timeout_s=timeout_s)

        if not retry:
            return await attempt(1)
        result, _ = await self._http.with_retry(attempt, method, path, should_retry)
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

    # --- files ----------------------------------------------------------------------------------

    async def upload(
        self,
        datamart_id: Id,
        import_id: Id,
        *,
        chunks: ChunkSource,
        size: int,
        filename: str,
        mime_type: str,
        form: str = "multipart",
        on_attempt: Callable[[int], None] | None = None,
        order: int = 0,
    ) -> UploadResult:
        """Upload one file, creating one execution. ``chunks()`` is called for every attempt.

        The body is streamed with an explicit ``Content-Length`` (never chunked). ``on_attempt(n)``
        is told before the n-th send. Failures where nothing was created (429, 503, connection
        refused, 408) are retried under the client's policy; when it is spent, the last error is
        raised with ``attempts`` set on it. A failure that may have created the execution raises
        :class:`~pipeline.client.outcomes.UploadUnsettled` at once: it is never re-sent here.
        ``order``: while attempts wait for a slot of the limiter, the lowest goes first.
        """
        return await self._uploads.upload(
            datamart_id,
            import_id,
            chunks=chunks,
            size=size,
            filename=filename,
            mime_type=mime_type,
            form=form,
            on_attempt=on_attempt,
            order=order,
        )

    def download_data_file(self, uri: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """Stream a platform file (``error_file_uri``, ``input_file_uri``). Opening is retried;
        a failure in the middle of the stream raises ``TransportError``."""
        return downloads.download_data_file(self._http, uri, chunk_size=chunk_size)

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
        return await self._object("POST", imports_path(datamart_id), json_body=body, should_retry=is_safe_to_resend)

    async def get_import(self, datamart_id: Id, import_id: Id) -> dict[str, Any]:
        return await self._object("GET", imports_path(datamart_id, import_id))

    async def list_imports(
        self, datamart_id: Id, *, first_result: int = 0, max_results: int = 100, keywords: str | None = None
    ) -> Page:
        params: dict[str, Any] = {"first_result": first_result, "max_results": max_results}
        if keywords:
            params["keywords"] = keywords
        return as_page(await self._call("GET", imports_path(datamart_id), params=params), params)

    async def iter_imports(
        self, datamart_id: Id, *, keywords: str | None = None, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        async def fetch(first: int) -> Page:
            return await self.list_imports(datamart_id, first_result=first, max_results=page_size, keywords=keywords)

        async for item in all_pages(fetch, page_size):
            yield item

    async def update_import(self, datamart_id: Id, import_id: Id, changes: dict[str, Any]) -> dict[str, Any]:
        return await self._object("PUT", imports_path(datamart_id, import_id), json_body=changes)

    async def delete_import(self, datamart_id: Id, import_id: Id) -> None:
        """DELETE an import. A 404 after an ambiguous failed attempt means it is already gone."""
        method, path = "DELETE", imports_path(datamart_id, import_id)
        ambiguous = False

        async def attempt(_: int) -> None:
            nonlocal ambiguous
            try:
                await self._http.send(method, path)
            except ApiError as exc:
                if exc.status == 404 and ambiguous:
                    return None
                ambiguous = ambiguous or is_ambiguous(exc)
                raise
            except TransportError as exc:
                ambiguous = ambiguous or exc.ambiguous
                raise

        await self._http.with_retry(attempt, method, path)

    # --- executions -----------------------------------------------------------------------------

    async def list_executions(
        self, datamart_id: Id, import_id: Id, *, first_result: int = 0, max_results: int = 100
    ) -> Page:
        return await self._list_executions(datamart_id, import_id, first_result, max_results, retry=True)

    async def _list_executions(
        self, datamart_id: Id, import_id: Id, first_result: int, max_results: int, *, retry: bool
    ) -> Page:
        params = {"first_result": first_result, "max_results": max_results}
        path = executions_path(datamart_id, import_id)
        return as_page(await self._call("GET", path, params=params, retry=retry), params)

    async def iter_executions(
        self, datamart_id: Id, import_id: Id, *, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        async def fetch(first: int) -> Page:
            return await self.list_executions(datamart_id, import_id, first_result=first, max_results=page_size)

        async for item in all_pages(fetch, page_size):
            yield item

    async def get_execution(self, datamart_id: Id, import_id: Id, execution_id: Id) -> dict[str, Any]:
        return await self._object("GET", executions_path(datamart_id, import_id, execution_id))

    async def cancel_execution(self, datamart_id: Id, import_id: Id, execution_id: Id) -> dict[str, Any]:
        """Ask to cancel a PENDING execution (re-sending a cancel is harmless, so it is retried)."""
        path = executions_path(datamart_id, import_id, execution_id) + "/action"
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

        found: set[str] = set()
        named = 0  # items whose names are in ``found``: each page adds its own (no pass over all)

        def enough(items: list[Any]) -> bool:
            nonlocal named
            for e in items[named:]:
                found.update(input_file_names(e))
            named = len(items)
            return wanted is not None and wanted <= found

        return await scan_pages(fetch, page_size, max_pages=max_pages, enough=enough if wanted else None)

    def walk_executions(
        self, datamart_id: Id, import_id: Id, *, max_pages: int = 1000, page_size: int = LOOKUP_PAGE_SIZE
    ) -> Walk:
        """The import's executions, page by page, holding none but the ids seen (see :class:`answers.Walk`):
        what the settler and the reconciliation walk, so a listing of 20,000 executions is never held."""

        async def fetch(first: int) -> Page:
            return await self.list_executions(datamart_id, import_id, first_result=first, max_results=page_size)

        return Walk(fetch, max_pages=max_pages)

    async def find_execution_by_filename(
        self, datamart_id: Id, import_id: Id, filename: str, *, max_pages: int = 1000
    ) -> dict[str, Any] | None:
        """The first execution listed whose ``input_file_name`` is ``filename``, or ``None`` (which
        proves nothing when the server does not echo file names: see ``Settler``)."""
        scan = await self.scan_executions(datamart_id, import_id, wanted={filename}, max_pages=max_pages)
        return next((e for e in scan.items if filename in input_file_names(e)), None)

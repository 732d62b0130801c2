"""The API's answers, decoded: pure functions, no I/O (used by :mod:`pipeline.client.api`).

An answer's envelope (``{"status": "ok", "data": ..., "count": ..., "total": ...}``) is unwrapped:
one object comes back as it is, a list as a :class:`Page`; an ``error`` envelope raises. Lists
are walked page by page until the server's ``total`` (or a short page) says they are over.
Executions are matched to uploads by the file name they report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from pipeline.client.retry import error_from_answer
from pipeline.errors import TransportError


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list answer. ``total`` is ``None`` when the server did not send it."""

    items: list[Any]
    count: int
    first_result: int
    max_results: int
    total: int | None = None


# --- pure answer decoding -----------------------------------------------------------------------


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def decode_ok(body: bytes, *, status: int, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
    """Unwrap a 2xx answer: envelope data, a ``Page`` for lists, ``None`` for an empty body."""
    if not body.strip():
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:200].decode("utf-8", "replace")
        raise TransportError(f"HTTP {status} answer is not JSON: {text!r}", method=method, path=path) from None
    if isinstance(doc, dict) and doc.get("status") == "error":
        raise error_from_answer(status, body, None, method=method, path=path)
    meta: dict[str, Any] = {}
    if isinstance(doc, dict) and "data" in doc:
        meta, doc = doc, doc["data"]
    if not isinstance(doc, list):
        return doc
    params = params or {}
    return Page(
        items=doc,
        count=_int(meta.get("count"), len(doc)),
        first_result=_int(meta.get("first_result"), _int(params.get("first_result"), 0)),
        max_results=_int(meta.get("max_results"), _int(params.get("max_results"), len(doc))),
        total=_int(meta["total"], len(doc)) if meta.get("total") is not None else None,
    )


def input_file_names(execution: Any) -> set[str]:
    """The uploaded file's name(s) as an execution reports it (``parameters`` and ``result``)."""
    names = set()
    if isinstance(execution, dict):
        for part in ("parameters", "result"):
            sub = execution.get(part)
            if isinstance(sub, dict) and sub.get("input_file_name"):
                names.add(str(sub["input_file_name"]))
    return names


def creation_ms(execution: dict[str, Any]) -> int | None:
    value = execution.get("creation_date")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


# --- pagination helpers -------------------------------------------------------------------------


def as_page(value: Any, params: dict[str, Any]) -> Page:
    if isinstance(value, Page):
        return value
    if value is None:
        value = []
    if isinstance(value, list):
        return Page(value, len(value), params["first_result"], params["max_results"], None)
    raise TransportError(f"expected a list answer, got {type(value).__name__}", method="GET")


def last_page(page: Page, next_first: int, page_size: int) -> bool:
    if not page.items:
        return True
    if page.total is not None:
        return next_first >= page.total
    # a server may cap the page below what was asked: compare with the size it says it used
    return len(page.items) < (page.max_results or page_size)


@dataclass(frozen=True, slots=True)
class Scan:
    """What one walk through a list found.

    ``complete`` is true only when the walk reached the list's end in a way that proves it: an empty
    page. A walk cut by the page cap, or by a server that kept answering the same items (one that
    ignores ``first_result``), is not complete: what it did not find may still exist.
    """

    items: list[Any]
    complete: bool
    pages: int


def _item_id(item: Any) -> Any:
    return item.get("id") if isinstance(item, dict) else None


class Walk:
    """One walk through a list, page by page, without trusting its order, its pagination or its
    ``total``: iterate it (``async for fresh in walk``) for the items each page adds; once the
    iteration is over, ``complete`` and ``pages`` say how the walk ended (as :class:`Scan` does).

    Nothing but the ids seen is kept: a caller that needs a few items of a long list (the run's own
    executions among thousands) holds those, not every page (a listing of 20,000 executions is
    some 70 MB of decoded objects). A caller that stops iterating early leaves the walk incomplete.

    Only an empty page ends a walk as complete: not ``total`` (it may lag behind the list), not a
    page shorter than asked (some servers cap pages below ``max_results`` and say so nowhere). The
    first page answered again at a later offset (a server that ignores ``first_result``) or
    ``max_pages`` end it as incomplete. Items seen already are skipped: a newest-first list that
    grows while it is walked shifts its items towards later pages. An honest server costs one
    request more than its ``total`` would: the empty page.
    """

    __slots__ = ("_fetch", "_max_pages", "complete", "pages")

    def __init__(self, fetch: Callable[[int], Awaitable[Page]], *, max_pages: int) -> None:
        self._fetch, self._max_pages = fetch, max_pages
        self.complete = False
        self.pages = 0

    def __aiter__(self) -> AsyncIterator[list[Any]]:
        return self._walk()

    async def _walk(self) -> AsyncIterator[list[Any]]:
        seen: set[Any] = set()
        first = 0
        first_ids: list[Any] = []
        while self.pages < self._max_pages:
            page = await self._fetch(first)
            self.pages += 1
            if not page.items:
                self.complete = True
                return
            ids = [_item_id(i) for i in page.items]
            if first and ids == first_ids:  # the first page again: the server ignores the offset
                return
            first_ids = first_ids or ids
            fresh = [i for i, ident in zip(page.items, ids, strict=True) if ident is None or ident not in seen]
            seen.update(ids)  # a page of items seen already: the list grew at its head meanwhile
            first += len(page.items)
            yield fresh


class ScanWalk:
    """A walk over what one scan found, for a client that can only scan a whole list at once: its
    items come as one page; ``complete`` and ``pages`` are the scan's."""

    __slots__ = ("_scan", "complete", "pages")

    def __init__(self, scan: Callable[[], Awaitable[Scan]]) -> None:
        self._scan = scan
        self.complete = False
        self.pages = 0

    def __aiter__(self) -> AsyncIterator[list[Any]]:
        return self._walk()

    async def _walk(self) -> AsyncIterator[list[Any]]:
        scan = await self._scan()
        self.complete, self.pages = scan.complete, scan.pages
        if scan.items:
            yield scan.items


class PageWalk(Protocol):
    """What walks a list: :class:`Walk`, :class:`ScanWalk`."""

    complete: bool
    pages: int

    def __aiter__(self) -> AsyncIterator[list[Any]]: ...


async def scan_pages(
    fetch: Callable[[int], Awaitable[Page]],
    page_size: int,
    *,
    max_pages: int,
    enough: Callable[[list[Any]], bool] | None = None,
) -> Scan:
    """Every item of a list, walked as :class:`Walk` does, held in one :class:`Scan`; ``enough(items)``
    (the caller found what it looks for) ends the walk early, as incomplete."""
    walk = Walk(fetch, max_pages=max_pages)
    items: list[Any] = []
    async for fresh in walk:
        items.extend(fresh)
        if enough is not None and enough(items):
            return Scan(items, False, walk.pages)
    return Scan(items, walk.complete, walk.pages)


async def all_pages(
    fetch: Callable[[int], Awaitable[Page]], page_size: int, max_pages: int = 100_000
) -> AsyncIterator[Any]:
    """Every item of a list, page by page, with the stops of :class:`Walk` (never loops on a server
    that ignores ``first_result``)."""
    async for fresh in Walk(fetch, max_pages=max_pages):
        for item in fresh:
            yield item

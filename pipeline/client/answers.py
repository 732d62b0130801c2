"""The API's answers, decoded: pure functions, no I/O (used by :mod:`pipeline.client.api`).

An answer's envelope (``{"status": "ok", "data": ..., "count": ..., "total": ...}``) is unwrapped:
one object comes back as it is, a list as a :class:`Page`; an ``error`` envelope raises. Lists
are walked page by page until the server's ``total`` (or a short page) says they are over.
Executions are matched to uploads by the file name they report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

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


async def scan_pages(
    fetch: Callable[[int], Awaitable[Page]],
    page_size: int,
    *,
    max_pages: int,
    enough: Callable[[list[Any]], bool] | None = None,
) -> Scan:
    """Walk a list page by page without trusting its order, its pagination or its ``total``.

    Only an empty page ends a walk as complete: not ``total`` (it may lag behind the list), not a
    page shorter than asked (some servers cap pages below ``max_results`` and say so nowhere). The
    first page answered again at a later offset (a server that ignores ``first_result``),
    ``max_pages``, or ``enough(items)`` (the caller found what it looks for) end it as incomplete.
    Items seen already are skipped: a newest-first list that grows while it is walked shifts its
    items towards later pages. An honest server costs one request more than its ``total`` would:
    the empty page.
    """
    items: list[Any] = []
    seen: set[Any] = set()
    first = pages = 0
    first_ids: list[Any] = []
    while pages < max_pages:
        page = await fetch(first)
        pages += 1
        if not page.items:
            return Scan(items, True, pages)
        ids = [_item_id(i) for i in page.items]
        if first and ids == first_ids:  # the first page again: the server ignores the offset
            return Scan(items, False, pages)
        first_ids = first_ids or ids
        fresh = [i for i in page.items if _item_id(i) is None or _item_id(i) not in seen]
        items.extend(fresh)  # a page of items seen already: the list grew at its head meanwhile
        seen.update(_item_id(i) for i in fresh)
        first += len(page.items)
        if enough is not None and enough(items):
            return Scan(items, False, pages)
    return Scan(items, False, pages)


async def all_pages(
    fetch: Callable[[int], Awaitable[Page]], page_size: int, max_pages: int = 100_000
) -> AsyncIterator[Any]:
    """Every item of a list, page by page, with the stops of :func:`scan_pages` (never loops on a
    server that ignores ``first_result``)."""
    seen: set[Any] = set()
    first = 0
    first_ids: list[Any] = []
    for _ in range(max_pages):
        page = await fetch(first)
        ids = [_item_id(i) for i in page.items]
        if not page.items or (first and ids == first_ids):
            return
        first_ids = first_ids or ids
        for item in page.items:
            if _item_id(item) is None or _item_id(item) not in seen:
                seen.add(_item_id(item))
                yield item
        first += len(page.items)

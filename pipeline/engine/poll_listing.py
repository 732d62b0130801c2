"""One walk of an import's executions, standing for many due polls at once.

Apart from the poller because it is one request pattern with its own limits (pages, their size,
when the walk may stop); the poller decides when a walk is worth it and applies what it shows.

When more than ``LIST_THRESHOLD`` (8) executions are due within the next minimum interval (one of
them now), and the client can list the import's executions (``list_executions``, as ``ApiClient``
can; a test double without it polls by GET only), one walk of the listing answers them instead of
one GET each. Eight because ``POLL_PARALLELISM`` GETs go out together: up to eight due polls take
one round trip anyway, so a listing would save little and add a page's bytes; past eight, GETs queue
behind each other and the listing both saves requests and notices the ends sooner. A walk (see
``answers.scan_pages``: no trust in order, ``total`` or offsets) stops as soon as it has seen every
execution it stands for, and after at most one page per ``LIST_PAGE_WORTH`` (4) of them, so it never
costs more than a quarter of the GETs it replaces. A listing can only bring good news: a known status
it shows that is further on than the one last seen (waiting < running < terminal) is applied as a
GET's would be (the callback, the end of polling, the learning), for any tracked execution it shows;
an older or unknown one is ignored (a listing may lag). An execution the walk stood for and did not
show is polled by GET (at once if it was due): a listing may omit entries, and its absence is never a
reason to call an execution lost. One it showed not terminal counts as polled, but its next poll is a
GET (a listing answers at most every other poll of an execution), so a listing stuck on old statuses
delays an end by one interval at most. A listing that fails falls back to GETs (and none is walked for
``LIST_RETRY_S`` seconds), is told to ``on_listing_error``, and never stops the run by itself (the GETs
that follow meet a refused token if there is one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pipeline.client.answers import Page, as_page, scan_pages

LIST_THRESHOLD = 8  # a listing when more than this many executions are due (see the module docstring)
LIST_PAGE_SIZE = 100  # executions asked for per listing page
LIST_PAGE_WORTH = 4  # a walk takes at most one page per this many due executions
LIST_RETRY_S = 10.0  # after a failed listing, GETs only for this long


async def walk_listing(
    lister: Callable[..., Any],
    datamart_id: str,
    import_id: str,
    wanted: set[str],
    *,
    polls: int,
    on_page: Callable[[], None],
) -> list[Any]:
    """The entries of the import's executions that one walk for the ``wanted`` ids showed: it stops
    once it has shown all of them, or after one page per ``LIST_PAGE_WORTH`` of the ``polls`` it
    stands for (``on_page`` is told before each page is asked for). A failed page raises its
    ``ServiceError``."""
    shown: set[str] = set()
    looked = 0

    async def fetch(first: int) -> Page:
        on_page()
        params = {"first_result": first, "max_results": LIST_PAGE_SIZE}
        return as_page(await lister(datamart_id, import_id, **params), params)

    def enough(items: list[Any]) -> bool:
        nonlocal looked
        shown.update(str(e["id"]) for e in items[looked:] if isinstance(e, dict) and e.get("id") is not None)
        looked = len(items)
        return wanted <= shown

    pages = max(1, math.ceil(polls / LIST_PAGE_WORTH))
    scan = await scan_pages(fetch, LIST_PAGE_SIZE, max_pages=pages, enough=enough)
    return scan.items

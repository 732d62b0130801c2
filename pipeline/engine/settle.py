"""Settling uploads whose answer was lost: look the file name up over a window, never by one look.

A server may create an execution after the client gave up (a gateway's 504 in front of a slow
backend, a timeout before a slow creation completed), and its execution list may lag behind its
creations or leave entries out. So a batch whose upload ended ambiguously is handed to the
``Settler``, which lists the import's executions with a growing interval while the upload workers
go on with other batches, and decides for each batch:

- **found**: an execution carries the batch's file name: the batch is uploaded (``on_found``);
- **window over**: ``window_s`` passed and a complete listing that started after the window's end
  still does not show it: the upload did not arrive; it is sent again, marked (``on_resend``);
- **cannot know**: the server does not echo file names, or its listing cannot be walked to the end
  (pages cap, or it ignores ``first_result``): sending again could import the records twice, so
  the batch is left unsettled (``on_unknowable``, final: no later lookup of this server can tell
  either, the report lists it to be checked by hand); a listing that could not be read at all (an
  outage) leaves it unsettled for ``resume`` to look up again (not final).

Listings are walked without trusting their order, clocks, ``total`` or offsets (see
``answers.Walk``), page by page: only the executions of the batches being settled are kept, not the
import's whole list (``executions_walk``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.client.answers import PageWalk, Scan, ScanWalk, input_file_names
from pipeline.engine.state import BatchState
from pipeline.errors import ServiceError
from pipeline.reading.batch import Batch

FIRST_LOOK_S = 0.5  # first listing this long after the failure
MAX_LOOK_INTERVAL_S = 5.0
GROWTH = 1.5
#: at least this many listings per window: a listing that leaves entries out at random (each one
#: with probability p) hides a created execution from all of them with probability p**10 only
LOOKS_PER_WINDOW = 10


class ExecutionLister(Protocol):
    """What lists an import's executions. A client that also has ``walk_executions(datamart_id,
    import_id, *, max_pages) -> answers.Walk`` is walked page by page (see ``executions_walk``)."""

    async def scan_executions(
        self, datamart_id: Any, import_id: Any, *, wanted: set[str] | None = ..., max_pages: int = ...
    ) -> Scan: ...


def executions_walk(
    client: ExecutionLister, datamart_id: Any, import_id: Any, *, max_pages: int, wanted: set[str] | None = None
) -> PageWalk:
    """A walk through the import's executions, page by page when the client can (``walk_executions``),
    else one ``scan_executions`` (the whole list at once; ``wanted`` lets it stop early)."""
    walker = getattr(client, "walk_executions", None)
    if walker is not None:
        walk: PageWalk = walker(datamart_id, import_id, max_pages=max_pages)
        return walk
    return ScanWalk(lambda: client.scan_executions(datamart_id, import_id, wanted=wanted, max_pages=max_pages))


@dataclass
class Unsettled:
    """A batch whose upload may have created an execution; ``batch`` is kept to send it again."""

    batch: Batch | None  # None when settling a batch known only from the journal (resume)
    state: BatchState
    deadline: float


class Settler:
    """Batches whose upload may have created its execution, looked up until settled."""

    def __init__(
        self,
        client: ExecutionLister,
        datamart_id: str,
        import_id: str,
        *,
        window_s: float,
        max_pages: int,
        on_found: Callable[[Unsettled, dict[str, Any]], None],
        on_resend: Callable[[Unsettled], None],
        on_unknowable: Callable[[Unsettled, str, bool], None],  # (item, reason, final)
        on_lookup_error: Callable[[ServiceError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._datamart_id, self._import_id = datamart_id, import_id
        self.window_s, self.max_pages = window_s, max_pages
        self._on_found, self._on_resend, self._on_unknowable = on_found, on_resend, on_unknowable
        self._on_lookup_error = on_lookup_error
        self._clock, self._sleep = clock, sleep
        self._pending: dict[str, Unsettled] = {}
        self._added = asyncio.Event()
        self.names_echoed: bool | None = None  # does the server report input_file_name? None: not known yet

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def add(self, batch: Batch | None, state: BatchState) -> None:
        self._pending[state.filename] = Unsettled(batch, state, self._clock() + self.window_s)
        self._added.set()

    def saw_upload_answer(self, filename: str, execution: dict[str, Any]) -> None:
        """A clear upload answer tells whether the server echoes the file names it was sent."""
        if self.names_echoed is None:
            self.names_echoed = filename in input_file_names(execution)

    def drop_all(self) -> list[Unsettled]:
        """Stop settling (the run stops): what was still unsettled, for the caller to release."""
        left = list(self._pending.values())
        self._pending.clear()
        return left

    async def run(self) -> None:
        """Settle forever (the caller cancels this task once the run no longer needs it)."""
        cap = min(MAX_LOOK_INTERVAL_S, self.window_s / LOOKS_PER_WINDOW)
        first = min(FIRST_LOOK_S, cap)
        interval = first
        while True:
            if not self._pending:
                self._added.clear()
                await self._added.wait()
                interval = first
            await self._sleep(min(interval, self._time_to_next_deadline()))
            interval = min(interval * GROWTH, cap)
            await self.look_once()

    def _time_to_next_deadline(self) -> float:
        now = self._clock()
        return max(0.0, min((u.deadline - now for u in self._pending.values()), default=0.0))

    async def look_once(self) -> None:
        """One listing of the import's executions, and the decisions it allows."""
        if not self._pending:
            return
        started = self._clock()
        wanted = set(self._pending)
        walk = executions_walk(
            self._client, self._datamart_id, self._import_id, wanted=wanted, max_pages=self.max_pages
        )
        found: dict[str, dict[str, Any]] = {}  # the first execution listed with a pending name
        named = listed = False
        try:
            async for page in walk:
                for execution in page:
                    listed = True
                    names = input_file_names(execution)
                    named = named or bool(names)
                    for name in names:
                        if name in self._pending and name not in found:
                            found[name] = execution
                if wanted <= found.keys():
                    break  # every batch looked for is seen: the rest of the list cannot change that
        except ServiceError as exc:
            if self._on_lookup_error is not None:
                self._on_lookup_error(exc)
            for name, item in list(self._pending.items()):
                if item.deadline <= started:  # the window is over and the list cannot be read
                    del self._pending[name]
                    self._on_unknowable(item, f"the import's execution list could not be read ({exc})", False)
            return
        if named:
            self.names_echoed = True
        elif listed and self.names_echoed is None:
            self.names_echoed = False
        for name, item in list(self._pending.items()):
            execution = found.get(name)
            if execution is not None:
                del self._pending[name]
                self._on_found(item, execution)
            elif item.deadline <= started:
                del self._pending[name]
                reason = self._why_unknowable(walk)
                if reason is None:
                    self._on_resend(item)
                else:
                    self._on_unknowable(item, reason, True)

    def _why_unknowable(self, scan: PageWalk) -> str | None:
        if self.names_echoed is False:
            return "the server does not report the file names of its executions (input_file_name)"
        if not scan.complete:
            return f"the import's execution list could not be walked to its end ({scan.pages} pages read)"
        return None

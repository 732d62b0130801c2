"""The reconciliation at the end of every run and resume: one execution per uploaded file, or a report.

Settling (``settle.py``) makes duplicates rare, not impossible: an execution may appear after its
settle window ended and the batch was sent again. So once the uploads are over, the import's
executions are listed, grouped by the run's file names, and for each file with two or more:

- the oldest is kept (the batch follows it); every newer copy still ``PENDING`` is canceled (the
  API allows it only then), so its records are never imported;
- a newer copy that is already running or done cannot be canceled: it is reported as a duplicate
  with the batch's file and lines, and the outcome says so.

A batch that was sent again is marked a *possible* duplicate until a complete listing, one that
shows every execution the run knows by its file name, shows a single execution for it. The
reconciliation runs twice: once the uploads are over (a late copy still PENDING can be canceled),
and once every execution has ended (a copy created while the run polled is seen). A copy created
after the run ended cannot be seen by it: the settle window is the horizon (``status`` looks
again later).

The listing is walked page by page (``settle.executions_walk``): of the import's executions, only the
id, status and creation date of those named after the run's files are kept, not every page.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from pipeline import formats
from pipeline.client.answers import PageWalk, Scan, creation_ms, input_file_names
from pipeline.engine.recorder import Recorder
from pipeline.engine.settle import executions_walk
from pipeline.engine.state import UPLOADED, BatchState, RunState
from pipeline.errors import ApiError


class ReconcileClient(Protocol):
    """What the reconciliation needs of the client (``walk_executions`` too, when it has it: see
    ``settle.executions_walk``)."""

    async def scan_executions(
        self, datamart_id: Any, import_id: Any, *, wanted: set[str] | None = ..., max_pages: int = ...
    ) -> Scan: ...

    async def cancel_execution(self, datamart_id: Any, import_id: Any, execution_id: Any) -> dict[str, Any]: ...


class Copy(NamedTuple):
    """What the reconciliation keeps of one listed execution of a run's file."""

    created_ms: int
    id: str
    status: str | None

    @classmethod
    def of(cls, execution: dict[str, Any]) -> Copy:
        status = formats.normalize_status(execution.get("status"))
        return cls(creation_ms(execution) or 0, str(execution.get("id")), sys.intern(status) if status else None)

    def age(self) -> tuple[int, int, str]:
        """Sort key, oldest first: creation date, then the id (numeric ids grow with time)."""
        return (self.created_ms, int(self.id) if self.id.isdigit() else 0, self.id)

    def execution(self) -> dict[str, Any]:
        """As the recorder takes an execution object."""
        return {"id": self.id, "status": self.status, "creation_date": self.created_ms or None}


def _candidates(state: RunState) -> dict[str, BatchState]:
    """The run's batches that may have an execution on the server."""
    return {
        b.filename: b for b in state.batches.values() if b.upload == UPLOADED or b.ambiguous or b.possible_duplicate
    }


async def _copies_by_name(walk: PageWalk, mine: dict[str, BatchState]) -> dict[str, list[Copy]]:
    """Every listed execution of the run's files, by file name (the batch's own string, not the
    listing's); everything else on the pages is let go page by page."""
    by_name: dict[str, list[Copy]] = {}
    async for page in walk:
        for execution in page:
            for name in input_file_names(execution):
                batch = mine.get(name)
                if batch is not None:
                    by_name.setdefault(batch.filename, []).append(Copy.of(execution))
    return by_name


async def reconcile(
    client: ReconcileClient,
    datamart_id: str,
    import_id: str,
    state: RunState,
    record: Recorder,
    *,
    names_echoed: bool | None,
    max_pages: int,
    warn: Callable[[str], None],
) -> None:
    mine = _candidates(state)
    if not mine:
        return
    walk = executions_walk(client, datamart_id, import_id, max_pages=max_pages)
    by_name = await _copies_by_name(walk, mine)
    known = {name for name, b in mine.items() if b.upload == UPLOADED}
    missing = known - by_name.keys()  # executions this run knows that the listing does not show
    echoed = names_echoed is not False and (names_echoed is True or bool(by_name))
    certain = walk.complete and echoed and not missing
    if not certain:
        warn(_why_uncertain(walk, echoed, len(missing)))
    for name, batch in sorted(mine.items(), key=lambda kv: kv[1].number):
        copies = by_name.get(name)
        if not copies:
            if batch.possible_duplicate or batch.duplicates:
                record.reconciled(batch, duplicates=[], canceled=[], certain=certain)
            continue
        if len(copies) > 1:
            copies.sort(key=Copy.age)
        if batch.upload != UPLOADED:  # left unsettled, but it did arrive
            record.track(record.found_by_name(batch, copies[0].execution()), batch.number)
        if len(copies) == 1:
            if batch.possible_duplicate or batch.duplicates:
                record.reconciled(batch, duplicates=[], canceled=[], certain=certain)
            continue
        await _keep_oldest(client, datamart_id, import_id, batch, copies, record, certain=certain)


async def _keep_oldest(
    client: ReconcileClient,
    datamart_id: str,
    import_id: str,
    batch: BatchState,
    copies: list[Copy],
    record: Recorder,
    *,
    certain: bool,
) -> None:
    keep, newer = copies[0], copies[1:]
    canceled: list[str] = []
    duplicates: list[str] = []
    for copy in newer:
        if copy.status == "PENDING":
            try:
                await client.cancel_execution(datamart_id, import_id, copy.id)
            except ApiError:  # it started meanwhile (EXECUTION_NOT_PENDING) or the cancel was refused
                duplicates.append(copy.id)
            else:
                canceled.append(copy.id)
        else:
            duplicates.append(copy.id)
    if batch.execution_id != keep.id:
        record.switch_execution(batch, keep.execution())
    record.reconciled(batch, duplicates=duplicates, canceled=canceled, certain=certain)


def _why_uncertain(walk: PageWalk, echoed: bool, missing: int) -> str:
    if not walk.complete:
        why = f"the import's execution list could not be walked to its end ({walk.pages} pages read)"
    elif not echoed:
        why = "the server does not report the file names of its executions"
    elif missing:
        why = f"the import's execution list does not show {missing} execution(s) this run knows (it lags or omits)"
    else:
        why = "the execution list gave no proof"
    return f"duplicates cannot be ruled out: {why}; batches sent again stay marked as possible duplicates"

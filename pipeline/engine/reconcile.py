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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pipeline import formats
from pipeline.client.answers import Scan, creation_ms, input_file_names
from pipeline.engine.recorder import Recorder
from pipeline.engine.state import UPLOADED, BatchState, RunState
from pipeline.errors import ApiError


class ReconcileClient(Protocol):
    async def scan_executions(
        self, datamart_id: Any, import_id: Any, *, wanted: set[str] | None = ..., max_pages: int = ...
    ) -> Scan: ...

    async def cancel_execution(self, datamart_id: Any, import_id: Any, execution_id: Any) -> dict[str, Any]: ...


def _age(execution: dict[str, Any]) -> tuple[int, int, str]:
    """Sort key, oldest first: creation date, then the id (numeric ids grow with time)."""
    ident = str(execution.get("id"))
    return (creation_ms(execution) or 0, int(ident) if ident.isdigit() else 0, ident)


def _candidates(state: RunState) -> dict[str, BatchState]:
    """The run's batches that may have an execution on the server."""
    return {
        b.filename: b for b in state.batches.values() if b.upload == UPLOADED or b.ambiguous or b.possible_duplicate
    }


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
    scan = await client.scan_executions(datamart_id, import_id, max_pages=max_pages)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for execution in scan.items:
        for name in input_file_names(execution) & mine.keys():
            by_name.setdefault(name, []).append(execution)
    known = {name for name, b in mine.items() if b.upload == UPLOADED}
    missing = known - by_name.keys()  # executions this run knows that the listing does not show
    echoed = names_echoed is not False and (names_echoed is True or bool(by_name))
    certain = scan.complete and echoed and not missing
    if not certain:
        warn(_why_uncertain(scan, echoed, len(missing)))
    for name, batch in sorted(mine.items(), key=lambda kv: kv[1].number):
        copies = sorted(by_name.get(name, []), key=_age)
        if copies and batch.upload != UPLOADED:  # left unsettled, but it did arrive
            record.track(record.found_by_name(batch, copies[0]), batch.number)
        if len(copies) <= 1:
            if batch.possible_duplicate or batch.duplicates:
                record.reconciled(batch, duplicates=[], canceled=[], certain=certain)
            continue
        await _keep_oldest(client, datamart_id, import_id, batch, copies, record, certain=certain)


async def _keep_oldest(
    client: ReconcileClient,
    datamart_id: str,
    import_id: str,
    batch: BatchState,
    copies: list[dict[str, Any]],
    record: Recorder,
    *,
    certain: bool,
) -> None:
    keep, newer = copies[0], copies[1:]
    canceled: list[str] = []
    duplicates: list[str] = []
    for copy in newer:
        copy_id = str(copy.get("id"))
        if formats.normalize_status(copy.get("status")) == "PENDING":
            try:
                await client.cancel_execution(datamart_id, import_id, copy_id)
            except ApiError:  # it started meanwhile (EXECUTION_NOT_PENDING) or the cancel was refused
                duplicates.append(copy_id)
            else:
                canceled.append(copy_id)
        else:
            duplicates.append(copy_id)
    if batch.execution_id != str(keep.get("id")):
        record.switch_execution(batch, keep)
    record.reconciled(batch, duplicates=duplicates, canceled=canceled, certain=certain)


def _why_uncertain(scan: Scan, echoed: bool, missing: int) -> str:
    if not scan.complete:
        why = f"the import's execution list could not be walked to its end ({scan.pages} pages read)"
    elif not echoed:
        why = "the server does not report the file names of its executions"
    elif missing:
        why = f"the import's execution list does not show {missing} execution(s) this run knows (it lags or omits)"
    else:
        why = "the execution list gave no proof"
    return f"duplicates cannot be ruled out: {why}; batches sent again stay marked as possible duplicates"

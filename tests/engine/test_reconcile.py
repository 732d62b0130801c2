"""reconcile: one execution per uploaded file at the end of a run, or a report (fake client, real recorder)."""

from __future__ import annotations

import pytest

from pipeline.client.answers import Page, Scan, Walk
from pipeline.config import Config
from pipeline.engine.journal import Journal, read_journal
from pipeline.engine.reconcile import Copy, _copies_by_name, reconcile
from pipeline.engine.recorder import Recorder
from pipeline.engine.state import PLANNED, UPLOAD_FAILED, UPLOADED, BatchState, RunState, replay
from pipeline.errors import ApiError

from ..helpers import batch_state

DM, IMP = "dm1", "imp1"


def batch(number: int, *, execution_id: str | None = "100", upload: str = UPLOADED, **kw) -> BatchState:
    return batch_state(number, upload=upload, execution_id=execution_id, **kw)


def exe(eid: str, name: str | None, created: int, status: str = "PENDING") -> dict:
    return {"id": eid, "status": status, "creation_date": created, "parameters": {"input_file_name": name}}


NAME = "run-000001.ndjson"


class Client:
    def __init__(self, scan: Scan, refuse: dict[str, Exception] | None = None) -> None:
        self.scan, self.refuse = scan, refuse or {}
        self.scans: list[tuple] = []
        self.canceled: list[str] = []

    async def scan_executions(self, datamart_id, import_id, *, wanted=None, max_pages=1000) -> Scan:
        self.scans.append((datamart_id, import_id, wanted, max_pages))
        return self.scan

    async def cancel_execution(self, datamart_id, import_id, execution_id) -> dict:
        assert (datamart_id, import_id) == (DM, IMP)
        if execution_id in self.refuse:
            raise self.refuse[execution_id]
        self.canceled.append(execution_id)
        return {"id": execution_id, "status": "CANCELED"}


class Run:
    """A run state, a journal in tmp_path and a real Recorder; what it emitted, tracked, warned."""

    def __init__(self, tmp_path, *batches: BatchState) -> None:
        self.dir = tmp_path
        self.state = RunState(run_id="run")
        self.state.batches = {b.number: b for b in batches}
        self.journal = Journal(tmp_path)
        self.emitted: list[tuple[str, dict]] = []
        self.record = Recorder(self.state, self.journal, Config(), lambda e, f: self.emitted.append((e, f)))
        self.tracked: list[tuple] = []
        self.record.track = lambda execution_id, key: self.tracked.append((execution_id, key))
        self.warnings: list[str] = []

    async def reconcile(self, client: Client, *, names_echoed: bool | None = True) -> None:
        await reconcile(
            client, DM, IMP, self.state, self.record, names_echoed=names_echoed, max_pages=9, warn=self.warnings.append
        )

    def journal_batches(self) -> None:
        """What the run journaled before (the batch descriptions and ids), so that replay can rebuild it."""
        for b in self.state.batches.values():
            self.journal.append("upload_started", batch=b.describe(), read_at=None)
            if b.execution_id:
                self.journal.append("uploaded", batch=b.number, execution_id=b.execution_id, attempts=1)

    def replayed(self) -> RunState:
        return replay("run", read_journal(self.dir))

    def events(self, kind: str) -> list[dict]:
        return [e for e in read_journal(self.dir) if e["event"] == kind]


@pytest.fixture
def run_factory(tmp_path):
    runs: list[Run] = []

    def make(*batches: BatchState) -> Run:
        runs.append(Run(tmp_path, *batches))
        return runs[-1]

    yield make
    for r in runs:
        r.journal.close()


# --- two executions of one file -------------------------------------------------------------------


async def test_a_newer_pending_copy_is_canceled_and_the_batch_keeps_the_oldest(run_factory):
    b = batch(1, execution_id="100")
    run = run_factory(b)
    client = Client(Scan([exe("200", NAME, 2000), exe("100", NAME, 1000)], True, 1))  # newest first
    await run.reconcile(client)
    assert client.canceled == ["200"]
    assert b.execution_id == "100" and b.canceled_duplicates == ["200"] and b.duplicates == []
    assert not b.possible_duplicate and run.warnings == [] and run.tracked == []
    assert run.events("uploaded") == []  # no switch: it already followed the oldest
    (ev,) = run.events("reconciled")
    assert (ev["batch"], ev["canceled"], ev["duplicates"], ev["possible_duplicate"]) == (1, ["200"], [], False)
    assert ("duplicates", {"batch": 1, "duplicates": [], "canceled": ["200"]}) in run.emitted
    assert client.scans == [(DM, IMP, None, 9)]  # one walk of the whole list, with the page cap


async def test_a_batch_that_followed_the_newer_copy_switches_to_the_oldest(run_factory):
    b = batch(1, execution_id="200")
    run = run_factory(b)
    run.journal_batches()
    oldest = exe("100", NAME, 1000, status="running")
    client = Client(Scan([exe("200", NAME, 2000), oldest], True, 1))
    await run.reconcile(client)
    assert client.canceled == ["200"]
    assert b.execution_id == "100" and b.status == "RUNNING" and b.canceled_duplicates == ["200"]
    assert run.tracked == [("100", 1)]  # the poller follows the kept one
    assert run.events("uploaded")[-1]["execution_id"] == "100"
    again = run.replayed().batches[1]  # what resume would rebuild
    assert (again.execution_id, again.canceled_duplicates, again.possible_duplicate) == ("100", ["200"], False)
    (ev,) = run.events("reconciled")
    assert ev["canceled"] == ["200"] and not ev["possible_duplicate"]


async def test_the_oldest_is_chosen_by_creation_date_then_numeric_id_not_list_order(run_factory):
    b = batch(1, execution_id="9")
    run = run_factory(b)
    copies = [exe("10", NAME, 1000), exe("9", NAME, 1000), exe("3", NAME, 5000)]  # "9" < "10" numerically
    client = Client(Scan(copies, True, 1))
    await run.reconcile(client)
    assert b.execution_id == "9" and sorted(client.canceled) == ["10", "3"]


async def test_a_newer_running_copy_is_reported_as_a_duplicate(run_factory):
    b = batch(1, execution_id="100")
    run = run_factory(b)
    run.journal_batches()
    client = Client(Scan([exe("200", NAME, 2000, status="RUNNING"), exe("100", NAME, 1000)], True, 1))
    await run.reconcile(client)
    assert client.canceled == []  # cannot be canceled once running: not even tried
    assert b.duplicates == ["200"] and b.canceled_duplicates == [] and b.possible_duplicate
    assert b.execution_id == "100"
    (ev,) = run.events("reconciled")
    assert ev["duplicates"] == ["200"] and ev["possible_duplicate"] is True
    assert run.state.duplicated() == [b]
    again = run.replayed()
    assert again.batches[1].duplicates == ["200"] and again.batches[1].possible_duplicate
    assert [x.number for x in again.duplicated()] == [1]


async def test_a_refused_cancel_makes_a_duplicate(run_factory):
    b = batch(1, execution_id="100")
    run = run_factory(b)
    refused = ApiError(400, "execution is not pending", error_code="EXECUTION_NOT_PENDING")
    client = Client(Scan([exe("200", NAME, 2000), exe("100", NAME, 1000)], True, 1), refuse={"200": refused})
    await run.reconcile(client)  # the copy started between the listing and the cancel
    assert b.duplicates == ["200"] and b.canceled_duplicates == [] and b.possible_duplicate
    (ev,) = run.events("reconciled")
    assert ev["duplicates"] == ["200"] and ev["canceled"] == []


async def test_three_copies_one_canceled_one_duplicate(run_factory):
    b = batch(1, execution_id="100")
    run = run_factory(b)
    copies = [exe("300", NAME, 3000), exe("200", NAME, 2000, status="SUCCEEDED"), exe("100", NAME, 1000)]
    client = Client(Scan(copies, True, 1))
    await run.reconcile(client)
    assert client.canceled == ["300"] and b.canceled_duplicates == ["300"] and b.duplicates == ["200"]


async def test_only_the_runs_own_files_are_touched(run_factory):
    b = batch(1, execution_id="100")
    run = run_factory(b)
    foreign = [exe("501", "other-run-000001.ndjson", 5000), exe("500", "other-run-000001.ndjson", 4000)]
    client = Client(Scan([*foreign, exe("100", NAME, 1000)], True, 1))
    await run.reconcile(client)
    assert client.canceled == [] and b.duplicates == [] and run.events("reconciled") == []


# --- possible duplicates (sent again after a settle window) ---------------------------------------


async def test_a_single_execution_in_a_complete_listing_clears_the_flag(run_factory):
    b = batch(1, execution_id="100", possible_duplicate=True, resent=1)
    run = run_factory(b)
    client = Client(Scan([exe("100", NAME, 1000), exe("7", "run-000002.ndjson", 900)], True, 1))
    await run.reconcile(client)
    assert not b.possible_duplicate and run.warnings == [] and client.canceled == []
    (ev,) = run.events("reconciled")
    assert ev["possible_duplicate"] is False and ev["duplicates"] == []
    assert run.state.duplicated() == []


async def test_an_incomplete_listing_keeps_the_flag_and_warns(run_factory):
    b = batch(1, execution_id="100", possible_duplicate=True)
    run = run_factory(b)
    client = Client(Scan([exe("100", NAME, 1000)], False, 9))  # the page cap, or first_result ignored
    await run.reconcile(client)
    assert b.possible_duplicate
    (warning,) = run.warnings
    assert "duplicates cannot be ruled out" in warning and "could not be walked to its end (9 pages" in warning
    (ev,) = run.events("reconciled")
    assert ev["possible_duplicate"] is True


@pytest.mark.parametrize("names_echoed", [False, None])
async def test_a_server_without_file_names_keeps_the_flag_and_warns(run_factory, names_echoed):
    b = batch(1, execution_id="100", possible_duplicate=True)
    run = run_factory(b)
    client = Client(Scan([exe("100", None, 1000), exe("101", None, 1100)], True, 1))
    await run.reconcile(client, names_echoed=names_echoed)
    assert b.possible_duplicate and client.canceled == []
    (warning,) = run.warnings
    assert "does not report the file names" in warning


async def test_the_settlers_word_that_names_are_not_echoed_wins(run_factory):
    # names in the listing, but the settler saw upload answers without them: still uncertain
    b = batch(1, execution_id="100", possible_duplicate=True)
    run = run_factory(b)
    await run.reconcile(Client(Scan([exe("100", NAME, 1000)], True, 1)), names_echoed=False)
    assert b.possible_duplicate and len(run.warnings) == 1


async def test_a_batch_without_possible_duplicate_and_a_single_execution_is_left_alone(run_factory):
    b = batch(1, execution_id="100")
    run = run_factory(b)
    await run.reconcile(Client(Scan([exe("100", NAME, 1000)], True, 1)))
    assert run.events("reconciled") == [] and run.emitted == [] and not b.possible_duplicate


# --- batches left unsettled, and nothing to do ----------------------------------------------------


async def test_an_unsettled_batch_that_did_arrive_is_found_by_name(run_factory):
    b = batch(1, execution_id=None, upload=UPLOAD_FAILED, ambiguous=True)
    run = run_factory(b)
    await run.reconcile(Client(Scan([exe("100", NAME, 1000, status="SUCCEEDED")], True, 1)))
    assert b.upload == UPLOADED and b.execution_id == "100" and b.recovered and not b.ambiguous
    assert b.status == "SUCCEEDED" and run.tracked == [("100", 1)]
    (ev,) = run.events("uploaded")
    assert ev["execution_id"] == "100" and ev["recovered"] is True


async def test_an_unsettled_batch_that_arrived_twice_keeps_the_oldest(run_factory):
    b = batch(1, execution_id=None, upload=UPLOAD_FAILED, ambiguous=True)
    run = run_factory(b)
    client = Client(Scan([exe("200", NAME, 2000), exe("100", NAME, 1000)], True, 1))
    await run.reconcile(client)
    assert b.execution_id == "100" and client.canceled == ["200"] and b.canceled_duplicates == ["200"]


async def test_no_candidate_no_listing(run_factory):
    run = run_factory(batch(1, execution_id=None, upload=PLANNED), batch(2, execution_id=None, upload=UPLOAD_FAILED))
    client = Client(Scan([exe("100", NAME, 1000), exe("101", NAME, 1100)], True, 1))
    await run.reconcile(client)
    assert client.scans == [] and client.canceled == [] and run.warnings == []


async def test_an_incomplete_listing_with_two_copies_keeps_the_flag(run_factory):
    # the walk was cut (page cap, first_result ignored): a third copy may exist beyond it
    b = batch(1, execution_id="100", possible_duplicate=True)
    run = run_factory(b)
    client = Client(Scan([exe("200", NAME, 2000), exe("100", NAME, 1000)], False, 9))
    await run.reconcile(client)
    assert client.canceled == ["200"] and len(run.warnings) == 1
    assert b.possible_duplicate  # fails: cleared, against "marked until a complete listing shows one"


# --- walked page by page --------------------------------------------------------------------------


class PagedClient(Client):
    """A client that can walk the listing page by page (``walk_executions``, as ``ApiClient``): the
    reconciliation then never asks for the whole list at once."""

    def __init__(self, pages: list[list[dict]], *, repeat_first: bool = False, **kw) -> None:
        super().__init__(Scan([], True, 0), **kw)
        self.pages, self.repeat_first = pages, repeat_first
        self.asked: list[int] = []
        self.walks: list[int] = []

    async def _page(self, first: int) -> Page:
        self.asked.append(first)
        if self.repeat_first:
            return Page(self.pages[0], len(self.pages[0]), first, 2)
        offset = 0
        for items in self.pages:
            if offset == first:
                return Page(items, len(items), first, 2)
            offset += len(items)
        return Page([], 0, first, 2)

    def walk_executions(self, datamart_id, import_id, *, max_pages: int) -> Walk:
        assert (datamart_id, import_id) == (DM, IMP)
        self.walks.append(max_pages)
        return Walk(self._page, max_pages=max_pages)

    async def scan_executions(self, *args, **kwargs) -> Scan:
        raise AssertionError("a client that walks page by page is never asked for the whole list")


async def test_a_listing_walked_page_by_page_keeps_the_oldest_and_proves_single_copies(run_factory):
    one = batch(1, execution_id="200", possible_duplicate=True)
    two = batch(2, execution_id="300", possible_duplicate=True)
    run = run_factory(one, two)
    pages = [
        [exe("300", two.filename, 3000, "RUNNING"), exe("200", NAME, 2000)],
        [exe("7", "someone-else.ndjson", 1500), exe("100", NAME, 1000, "RUNNING")],
        [exe("300", two.filename, 3000, "RUNNING")],  # seen already (the list grew at its head): once
    ]
    client = PagedClient(pages)
    await run.reconcile(client)
    assert client.walks == [9] and client.asked == [0, 2, 4, 5]  # to the empty page: complete
    assert one.execution_id == "100" and run.tracked == [("100", 1)]
    assert client.canceled == ["200"] and one.canceled_duplicates == ["200"] and one.duplicates == []
    assert not two.possible_duplicate and two.duplicates == [] and run.warnings == []  # one copy, proven


async def test_a_walk_that_meets_the_first_page_again_is_not_complete(run_factory):
    b = batch(1, execution_id="100", possible_duplicate=True)
    run = run_factory(b)
    client = PagedClient([[exe("100", NAME, 1000), exe("5", "x.ndjson", 900)]], repeat_first=True)
    await run.reconcile(client)
    assert client.asked == [0, 2] and b.possible_duplicate
    (warning,) = run.warnings
    assert "could not be walked to its end (2 pages read)" in warning


async def test_a_walk_is_cut_at_the_page_cap(run_factory):
    b = batch(1, execution_id="100", possible_duplicate=True)
    run = run_factory(b)
    pages = [[exe(str(i), f"x{i}.ndjson", i), exe(str(i + 50), f"y{i}.ndjson", i)] for i in range(12)]
    client = PagedClient([*pages, [exe("100", NAME, 1000)]])
    await run.reconcile(client)
    assert len(client.asked) == 9 and b.possible_duplicate and "(9 pages read)" in run.warnings[0]


async def test_the_reconciliation_keeps_the_runs_copies_not_the_pages():
    # what is kept of a listing: the run's own files' copies, as small records; the pages go
    many = {f"run-{n:06d}.ndjson": batch(n, execution_id=str(n)) for n in range(1, 4)}
    pages = [[exe(str(n), f"run-{n:06d}.ndjson", n, "SUCCEEDED") | {"junk": "x" * 1000}] for n in range(1, 4)]
    pages.append([exe("9", "someone-else.ndjson", 9) | {"junk": "y" * 1000}])
    by_name = await _copies_by_name(Walk(PagedClient(pages)._page, max_pages=10), many)
    assert by_name == {name: [Copy(n, str(n), "SUCCEEDED")] for n, name in enumerate(many, start=1)}
    assert all(name is many[name].filename for name in by_name)  # the batch's own string

"""Journal replay and the report built from the run state (pure, no server)."""

import os
import stat

from pipeline.engine.journal import Journal, read_journal
from pipeline.engine.state import BatchState, FileCounts, RunState, replay
from pipeline.reporting.atomic_json import write_json_atomically
from pipeline.reporting.report import build_report, outcome_of
from pipeline.reporting.summary import plain_summary, summary_details, summary_rows


def _batch(n, **kw):
    desc = dict(
        number=n,
        path="in.ndjson",
        first_line=1 + 10 * (n - 1),
        last_line=10 * n,
        records=10,
        byte_start=0,
        byte_end=100,
        size=100,
        digest=f"d{n}",
        filename=f"run-{n:06d}.ndjson",
    )
    return desc | kw


def test_journal_replay_rebuilds_the_state_and_skips_a_torn_line(tmp_path):
    with Journal(tmp_path) as journal:
        journal.append("run_started", run_id="r1", started_at=100.0, target="http://127.0.0.1:1")
        journal.append("import", id="9", name="n", document_type="USER_ACTIVITY", mime_type="APPLICATION_X_NDJSON")
        journal.append("upload_started", batch=_batch(1))
        journal.append("uploaded", batch=1, execution_id="e1", attempts=2, recovered=False)
        journal.append("upload_started", batch=_batch(2))
        journal.append(
            "execution_finished",
            batch=1,
            execution={
                "id": "e1",
                "status": "SUCCEEDED",
                "start_date": 1000,
                "end_date": 2000,
                "result": {"total_success": 10, "total_failure": 0, "error_file_uri": None},
                "error": None,
            },
        )
    with open(tmp_path / "journal.ndjson", "ab") as fh:
        fh.write(b'{"event": "uploaded", "batch": 2, "execu')  # power loss mid-write
    assert stat.S_IMODE(os.stat(tmp_path / "journal.ndjson").st_mode) == 0o600
    state = replay("r1", read_journal(tmp_path))
    assert state.document_import["id"] == "9"
    b1, b2 = state.batches[1], state.batches[2]
    assert (b1.upload, b1.execution_id, b1.status, b1.total_success, b1.attempts) == (
        "uploaded",
        "e1",
        "SUCCEEDED",
        10,
        2,
    )
    assert b1.started_at == 1.0 and b1.finished_at == 2.0
    assert (b2.upload, b2.execution_id) == ("uploading", None)


def _state(*batches, rejected=0, reading_done=True):
    state = RunState(run_id="r", started_at=10.0, finished_at=12.0, reading_done=reading_done)
    for b in batches:
        state.batches[b.number] = b
    state.files = {
        "in.ndjson": FileCounts("in.ndjson", bytes=300, records=sum(b.records for b in batches), rejected=rejected)
    }
    return state


def test_all_accepted_is_exit_0():
    b = BatchState(
        **_batch(1), upload="uploaded", execution_id="e1", status="SUCCEEDED", total_success=10, total_failure=0
    )
    report = build_report(_state(b), rejects_path=None, run_dir=None)
    assert (report["outcome"], report["exit_code"]) == ("succeeded", 0)
    assert report["records"] == {
        "read": 10,
        "rejected": 0,
        "sent": 10,
        "succeeded": 10,
        "failed": 0,
        "not_delivered": 0,
        "pending": 0,
        "unsent": 0,
        "unsettled": 0,
        "duplicated": 0,
        "possibly_duplicated": 0,
    }
    entry = report["executions"][0]
    assert entry["source"] == {
        "path": "in.ndjson",
        "first_line": 1,
        "last_line": 10,
        "line_count": 10,
        "byte_start": 0,
        "byte_end": 100,
    }
    assert "succeeded" in plain_summary(report) and summary_details(report) == []


def test_rejects_server_failures_and_lost_executions_are_exit_1_and_listed_for_a_rerun():
    ok = BatchState(
        **_batch(1), upload="uploaded", execution_id="e1", status="SUCCEEDED", total_success=8, total_failure=2
    )
    lost = BatchState(**_batch(2), upload="uploaded", execution_id="e2", status="LOST")
    refused = BatchState(**_batch(3), upload="upload_failed", error="HTTP 400: bad")
    report = build_report(_state(ok, lost, refused, rejected=3), rejects_path=None, run_dir=None)
    assert report["exit_code"] == 1
    assert report["records"]["failed"] == 2 + 10 + 10 and report["records"]["not_delivered"] == 20
    assert [x["batch"] for x in report["not_delivered"]] == [2, 3]
    details = summary_details(report)
    assert "not delivered: batch 2 (in.ndjson lines 11-20, 10 records): LOST" in details


def test_unknown_outcomes_are_exit_3_never_failed():
    running = BatchState(**_batch(1), upload="uploaded", execution_id="e1", status="RUNNING")
    state = _state(running)
    assert outcome_of(state) == ("incomplete", 3)
    state.interrupted = True
    assert outcome_of(state) == ("interrupted", 3)
    report = build_report(state, rejects_path=None, run_dir=None)
    assert report["records"]["failed"] == 0 and report["records"]["pending"] == 10


def test_a_run_stopped_while_reading_counts_what_it_planned_and_tells_processing_from_unsent():
    running = BatchState(**_batch(1), upload="uploaded", execution_id="e1", status="RUNNING")
    planned = BatchState(**_batch(2))
    state = _state(running, planned, reading_done=False)
    state.files = {}  # the files' counts come only when reading finishes
    state.interrupted = True
    report = build_report(state, rejects_path=None, run_dir=None)
    counts = report["records"]
    assert (counts["read"], counts["sent"], counts["pending"], counts["unsent"]) == (20, 10, 10, 10)
    rows = dict(summary_rows(report))
    assert rows["  still processing"] == "10" and rows["  not sent yet"] == "10"


def test_reports_are_written_whole_and_private(tmp_path):
    target = tmp_path / "sub" / "report.json"
    write_json_atomically(target, {"a": 1})
    assert target.read_text().strip().startswith("{")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_a_wall_clock_stepped_back_during_the_run_gives_no_negative_duration():
    """The run ended "before" it started (an NTP step back): the report says 0 s, never less."""
    b = BatchState(
        **_batch(1), upload="uploaded", execution_id="e1", status="SUCCEEDED", total_success=10, total_failure=0
    )
    state = _state(b)
    state.started_at, state.finished_at = 1_000.0, 400.0
    report = build_report(state, rejects_path=None, run_dir=None)
    assert report["duration_s"] == 0.0 and report["outcome"] == "succeeded"
    assert "-" not in plain_summary(report).split("duration")[1].split("\n")[0]


def test_an_execution_succeeded_without_counters_is_warned_about_not_read_as_0_succeeded():
    counted = BatchState(
        **_batch(1), upload="uploaded", execution_id="e1", status="SUCCEEDED", total_success=10, total_failure=0
    )
    bare = BatchState(**_batch(2), upload="uploaded", execution_id="e2", status="SUCCEEDED")  # no result counters
    report = build_report(_state(counted, bare), rejects_path=None, run_dir=None)
    assert report["records"]["succeeded"] == 10
    assert any(
        "1 execution(s) ended SUCCEEDED without result counters (first: batch 2, execution e2)" in w
        for w in report["warnings"]
    ), report["warnings"]


def test_unsettled_batches_no_lookup_can_settle_end_exit_4_the_others_exit_3():
    """Exit 3 means a resume may make progress; a batch whose fate no lookup of the server can ever
    tell (``unknowable``, journaled) is listed to be checked by hand (exit 4), or a scheduler that
    resumes on 3 would loop."""
    ok = BatchState(
        **_batch(1), upload="uploaded", execution_id="e1", status="SUCCEEDED", total_success=10, total_failure=0
    )
    lost_answer = BatchState(**_batch(2), upload="upload_failed", ambiguous=True)
    assert outcome_of(_state(ok, lost_answer)) == ("incomplete", 3)  # the list could not be read: resume
    lost_answer.unknowable = "the server does not report the file names of its executions (input_file_name)"
    report = build_report(_state(ok, lost_answer), rejects_path=None, run_dir=None)
    assert (report["outcome"], report["exit_code"]) == ("completed_with_unknowns", 4)
    [entry] = report["unsettled"]
    assert entry["final"] and entry["reason"] == lost_answer.unknowable
    assert "no lookup of this server can tell: check it on the platform" in "\n".join(summary_details(report))
    another = BatchState(**_batch(3), upload="upload_failed", ambiguous=True)  # still to be looked up
    assert outcome_of(_state(ok, lost_answer, another)) == ("incomplete", 3)


def test_an_unknowable_batch_is_replayed_from_the_journal(tmp_path):
    with Journal(tmp_path) as journal:
        journal.append("run_started", run_id="r1", started_at=100.0, target="http://127.0.0.1:1")
        journal.append("upload_started", batch=_batch(1))
        journal.append("upload_failed", batch=1, error="lost", ambiguous=True, attempts=1)
        journal.append("unknowable", batch=1, reason="no file names")
    state = replay("r1", read_journal(tmp_path))
    assert state.batches[1].unknowable == "no file names" and state.batches[1].ambiguous


def test_the_journal_s_table_names_every_kind_it_holds():
    from pipeline.engine import journal
    from pipeline.engine.events import JournalKind

    assert [k.value for k in JournalKind if f"``{k.value}``" not in (journal.__doc__ or "")] == []

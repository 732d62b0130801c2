"""What keeps a run of 20,000 batches small and linear: the journal read in one pass, compact batch
states, the report written in pieces, timestamps formatted fast (pure, no server)."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime

import orjson
import pytest

from pipeline.engine.journal import Journal, check_run_dir, load_run
from pipeline.engine.state import BatchState, RunState, apply_execution
from pipeline.errors import InputError
from pipeline.reporting import atomic_json
from pipeline.reporting.atomic_json import json_chunks, write_json_atomically
from pipeline.reporting.report import build_report, iso

from ..helpers import batch_state


def _journal(tmp_path, batches: int = 3, *, finished: bool = True) -> None:
    with Journal(tmp_path) as journal:
        journal.append("run_started", run_id="r1", started_at=100.0, target="http://127.0.0.1:1", inputs=[])
        for n in range(1, batches + 1):
            journal.append("upload_started", batch=batch_state(n, execution_id=None).describe(), read_at=100.5)
            journal.append("uploaded", batch=n, execution_id=f"e{n}", attempts=1)
            execution = {"id": f"e{n}", "status": "SUCCEEDED", "result": {"total_success": 10}}
            journal.append("execution_finished", batch=n, execution=execution)
        if finished:
            journal.append("run_finished", outcome="succeeded", exit_code=0)


def test_load_run_folds_the_journal_in_one_pass_and_keeps_no_event(tmp_path):
    _journal(tmp_path)
    run = load_run(tmp_path)
    assert run.run_id == "r1" and run.started["event"] == "run_started"
    assert run.last["event"] == "run_finished" and run.boundary["outcome"] == "succeeded"
    assert not hasattr(run, "_events")
    state = run.state()
    assert state.run_id == "r1" and state.finished_outcome == "succeeded" and len(state.batches) == 3
    again = run.state()  # a second caller gets a state of its own
    assert again is not state and again.batches.keys() == state.batches.keys()
    assert [e["event"] for e in run.events][:2] == ["run_started", "upload_started"]  # read again on demand


def test_the_last_boundary_of_a_resumed_run_is_its_last_start(tmp_path):
    _journal(tmp_path, 1)
    with Journal(tmp_path) as journal:
        journal.append("run_started", run_id="r1", started_at=200.0, resumed=True)
        journal.append("uploaded", batch=1, execution_id="e1", attempts=1)
    run = load_run(tmp_path)
    assert run.boundary["event"] == "run_started" and run.boundary["started_at"] == 200.0
    assert run.started["started_at"] == 100.0 and run.last["event"] == "uploaded"


def test_a_directory_that_is_not_a_run_is_refused_before_the_journal_is_read(tmp_path):
    with pytest.raises(InputError, match="not a run directory"):
        check_run_dir(tmp_path)
    with Journal(tmp_path) as journal:
        journal.append("uploaded", batch=1, execution_id="e1")
    with pytest.raises(InputError, match="does not record a run start"):
        check_run_dir(tmp_path)
    with pytest.raises(InputError, match="does not record a run start"):
        load_run(tmp_path)


def test_a_batch_state_is_compact_and_shares_its_path_and_status():
    one, two = batch_state(1, path="".join(["in", ".ndjson"])), batch_state(2, path="".join(["in", ".", "ndjson"]))
    assert not hasattr(one, "__dict__") and one.path is two.path
    apply_execution(one, {"status": "".join(["SUCC", "EEDED"])})
    apply_execution(two, {"status": "".join(["SUCCEE", "DED"])})
    assert one.status is two.status
    with pytest.raises(AttributeError):
        one.unknown_field = 1  # type: ignore[attr-defined]
    assert sys.getsizeof(one) < 400


@pytest.mark.parametrize(
    "data",
    [
        {},
        [],
        {"a": []},
        {"a": {}},
        {"a": 1, "b": None, "c": "x\ny", "d": {"e": [1, {"f": []}]}},
        {"long": [{"i": i, "nested": {"l": [i, "s"]}, "e": []} for i in range(1000)], "after": [1, 2]},
        {"exactly": list(range(atomic_json.CHUNK_ITEMS)), "more": list(range(atomic_json.CHUNK_ITEMS + 1))},
        [1, 2, 3],
        "text",
    ],
)
def test_the_report_json_is_written_in_pieces_as_orjson_writes_it_whole(tmp_path, data):
    whole = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    assert b"".join(json_chunks(data)) + b"\n" == whole
    write_json_atomically(tmp_path / "r.json", data)
    assert (tmp_path / "r.json").read_bytes() == whole


def test_a_large_report_is_never_serialised_whole(tmp_path, monkeypatch):
    state = RunState(run_id="r")
    state.batches = {n: batch_state(n, execution_id=str(n), upload="uploaded") for n in range(1, 2001)}
    report = build_report(state, rejects_path=None, run_dir=tmp_path)
    largest = 0
    real_dumps = orjson.dumps

    def dumps(value, *args, **kwargs):
        nonlocal largest
        out = real_dumps(value, *args, **kwargs)
        largest = max(largest, len(out))
        return out

    monkeypatch.setattr(atomic_json.orjson, "dumps", dumps)
    write_json_atomically(tmp_path / "report.json", report)
    size = (tmp_path / "report.json").stat().st_size
    assert largest < size / 5, "the executions go out a few hundred at a time"
    assert orjson.loads((tmp_path / "report.json").read_bytes()) == orjson.loads(real_dumps(report))


def test_iso_is_what_datetime_writes():
    def reference(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    rng = random.Random(7)
    values = [rng.uniform(0, 4e9) for _ in range(20_000)] + [rng.uniform(1.7e9, 1.8e9) for _ in range(20_000)]
    values += [0.0, 1.0, 1.0005, 1.0004999, 0.9999995, 1796121763.9999995, 1796121763.0005, -1.5]
    assert [iso(v) for v in values] == [reference(v) for v in values]
    assert iso(None) is None


def test_a_batch_state_is_built_from_its_journal_description():
    desc = batch_state(4).describe()
    assert BatchState(**desc).describe() == desc

"""The end of reading adds the files' warnings to the run's: it does not replace them."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config
from pipeline.engine.journal import Journal, read_journal
from pipeline.engine.recorder import Recorder
from pipeline.engine.rundir import RejectsFile
from pipeline.engine.state import RunState, apply_event, replay
from pipeline.reading.batch import FileStats


def _finish_reading_an_empty_file(recorder: Recorder, journal: Journal, tmp_path: Path) -> None:
    """The end of reading of one empty file (its warning: "no records in it"), journal closed."""
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    rejects = RejectsFile(tmp_path / "rejects.ndjson")
    recorder.reading_finished({empty: FileStats(empty)}, rejects)
    rejects.close()
    journal.close()


def test_a_warning_given_before_reading_ends_stays_in_the_state_and_the_journal(tmp_path: Path) -> None:
    state = RunState(run_id="r")
    state.warnings.append("input a.ndjson changed since the run started")  # e.g. told by resume
    journal = Journal(tmp_path)
    emitted: list[tuple[object, dict]] = []
    recorder = Recorder(state, journal, Config(), lambda e, f: emitted.append((e, f)))
    _finish_reading_an_empty_file(recorder, journal, tmp_path)

    assert state.warnings[0] == "input a.ndjson changed since the run started"
    assert any("no records in it" in w for w in state.warnings)
    replayed = replay("r", read_journal(tmp_path))
    assert replayed.warnings == state.warnings
    # replaying onto a state that already holds a warning keeps it too, once
    twice = RunState(run_id="r")
    twice.warnings.append(state.warnings[1])
    for event in read_journal(tmp_path):
        apply_event(twice, event)
    assert twice.warnings.count(state.warnings[1]) == 1


def test_each_warning_is_told_once_whether_given_before_reading_ends_or_found_by_it(tmp_path: Path) -> None:
    """A resume's note (in the state, not told yet), a warning of the run told as it happens, and a
    file's warning found at the end of reading: each told to the listeners once."""
    state = RunState(run_id="r")
    state.warnings.append("input a.ndjson changed since the run started")
    journal = Journal(tmp_path)
    told: list[str] = []
    recorder = Recorder(state, journal, Config(), lambda e, f: told.append(f["message"]) if e == "warning" else None)
    recorder.warn("42 input files, 42 of them under half a batch")
    recorder.warn("42 input files, 42 of them under half a batch")  # the same again: kept and told once
    _finish_reading_an_empty_file(recorder, journal, tmp_path)

    assert len(state.warnings) == 3 and sorted(told) == sorted(state.warnings)
    assert told[:2] == ["input a.ndjson changed since the run started", "42 input files, 42 of them under half a batch"]

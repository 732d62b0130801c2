"""The journal cannot lie: every append is whole and fsynced, or it raises LocalError and leaves no trace."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import orjson
import pytest

from pipeline.engine import journal as journal_module
from pipeline.engine.journal import JOURNAL_NAME, Journal, read_journal
from pipeline.errors import LocalError, PipelineError

REAL_WRITE = os.write


def _lines(run_dir: Path) -> list[bytes]:
    return (run_dir / JOURNAL_NAME).read_bytes().splitlines(keepends=True)


def test_short_writes_are_continued_until_the_line_is_whole(tmp_path, monkeypatch):
    calls = []

    def short_write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return REAL_WRITE(fd, bytes(data[:7]))  # the kernel may write less than asked

    with Journal(tmp_path) as journal:
        journal.append("run_started", run_id="r1", note="x" * 100)
        monkeypatch.setattr(journal_module.os, "write", short_write)
        journal.append("import", id="9", name="a name long enough to need many short writes")
        monkeypatch.undo()
        journal.append("run_finished", outcome="succeeded", exit_code=0)
    assert len(calls) > 5
    lines = _lines(tmp_path)
    assert len(lines) == 3 and all(line.endswith(b"\n") for line in lines)
    events = [orjson.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["run_started", "import", "run_finished"]
    assert events[1]["name"] == "a name long enough to need many short writes"


def test_a_full_disk_mid_line_leaves_the_journal_as_it_was_and_raises_local_error(tmp_path, monkeypatch):
    state = {"n": 0}

    def write_then_fail(fd: int, data: bytes) -> int:
        state["n"] += 1
        if state["n"] == 1:
            return REAL_WRITE(fd, bytes(data[:10]))  # half a line reaches the file...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ...then the disk is full

    with Journal(tmp_path) as journal:
        journal.append("run_started", run_id="r1")
        before = (tmp_path / JOURNAL_NAME).read_bytes()
        monkeypatch.setattr(journal_module.os, "write", write_then_fail)
        with pytest.raises(LocalError) as info:
            journal.append("uploaded", batch=1, execution_id="e1")
        assert (tmp_path / JOURNAL_NAME).read_bytes() == before  # no torn line left behind
        monkeypatch.undo()
        journal.append("uploaded", batch=1, execution_id="e1")  # space came back: the journal goes on
    exc = info.value
    assert isinstance(exc, PipelineError) and exc.errno == errno.ENOSPC
    assert str(exc) == f"cannot write the run journal {tmp_path / JOURNAL_NAME}: No space left on device"
    assert exc.path == str(tmp_path / JOURNAL_NAME) and exc.reason == "No space left on device"
    assert [e["event"] for e in read_journal(tmp_path)] == ["run_started", "uploaded"]
    assert all(line.endswith(b"\n") for line in _lines(tmp_path))


@pytest.mark.parametrize("code", [errno.EIO, errno.EDQUOT])
def test_a_failed_fsync_takes_the_event_back(tmp_path, monkeypatch, code):
    with Journal(tmp_path) as journal:
        journal.append("run_started", run_id="r1")
        before = (tmp_path / JOURNAL_NAME).read_bytes()
        real_fsync = os.fsync
        failing = {"on": True}

        def fsync(fd: int) -> None:
            if failing.pop("on", False):
                raise OSError(code, os.strerror(code))
            real_fsync(fd)

        monkeypatch.setattr(journal_module.os, "fsync", fsync)
        with pytest.raises(LocalError, match=os.strerror(code)):
            journal.append("uploaded", batch=1, execution_id="e1")
    assert (tmp_path / JOURNAL_NAME).read_bytes() == before  # not durable, so not there


def test_a_write_of_nothing_is_an_error_not_an_endless_loop(tmp_path, monkeypatch):
    with Journal(tmp_path) as journal:
        monkeypatch.setattr(journal_module.os, "write", lambda fd, data: 0)
        with pytest.raises(LocalError, match="the write stopped after 0 of"):
            journal.append("run_started", run_id="r1")
    assert (tmp_path / JOURNAL_NAME).read_bytes() == b""


def test_when_even_the_cut_fails_the_next_event_starts_on_a_line_of_its_own(tmp_path, monkeypatch):
    state = {"n": 0}

    def write_then_fail(fd: int, data: bytes) -> int:
        state["n"] += 1
        if state["n"] == 1:
            return REAL_WRITE(fd, bytes(data[:10]))
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def no_truncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with Journal(tmp_path) as journal:
        journal.append("run_started", run_id="r1")
        monkeypatch.setattr(journal_module.os, "write", write_then_fail)
        monkeypatch.setattr(journal_module.os, "ftruncate", no_truncate)
        with pytest.raises(LocalError, match="Input/output error"):
            journal.append("uploaded", batch=1, execution_id="e1")
        monkeypatch.undo()
        journal.append("uploaded", batch=1, execution_id="e2")
    lines = _lines(tmp_path)
    assert len(lines) == 3 and lines[1] == b'{"event":"\n'  # the torn piece, alone on its line
    assert [e.get("execution_id") for e in read_journal(tmp_path)] == [None, "e2"]


def test_a_real_full_device_raises_local_error(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    (tmp_path / JOURNAL_NAME).symlink_to("/dev/full")  # writes fail with ENOSPC, for real
    with Journal(tmp_path) as journal:
        with pytest.raises(LocalError, match="No space left on device") as info:
            journal.append("run_started", run_id="r1")
    assert info.value.errno == errno.ENOSPC


def test_a_journal_that_cannot_be_opened_raises_local_error(tmp_path, monkeypatch):
    with pytest.raises(LocalError, match="cannot open the run journal .*: No such file or directory"):
        Journal(tmp_path / "missing")

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(journal_module.os, "open", refuse)
    with pytest.raises(LocalError, match="Permission denied") as info:
        Journal(tmp_path)
    assert info.value.path == str(tmp_path / JOURNAL_NAME)


def test_a_failed_directory_fsync_closes_the_file_and_raises_local_error(tmp_path, monkeypatch):
    opened: list[int] = []
    real_open = os.open

    def tracking_open(*args, **kwargs) -> int:
        fd = real_open(*args, **kwargs)
        opened.append(fd)
        return fd

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(journal_module.os, "open", tracking_open)
    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    with pytest.raises(LocalError, match="cannot open the run journal"):
        Journal(tmp_path)
    monkeypatch.undo()
    for fd in opened:  # neither the journal nor the directory is left open
        with pytest.raises(OSError):
            os.fstat(fd)


def test_appending_to_a_closed_journal_is_a_programming_error(tmp_path):
    journal = Journal(tmp_path)
    journal.close()
    journal.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        journal.append("run_started", run_id="r1")

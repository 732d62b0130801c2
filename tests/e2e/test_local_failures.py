"""Issue 10, acceptance: the local system fails (full disk, unwritable outputs, a bad token, a second
run of the same work) or the input is odd (changed mid-run, a truncated .gz, an open CSV quote, a
FIFO in an input directory).

Each case ends with a clean exit code and a message (never a traceback), and proves from the
emulator's accounting that nothing was lost or sent twice, or that nothing was sent at all.
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import pipeline
from pipeline.config import load_config
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.rundir import ActiveRunGuard, work_key
from pipeline.engine.runner import RunOptions
from pipeline.errors import AlreadyImportedError
from pipeline.reading.reader import discover_inputs

from ..helpers import (
    SEGMENT_HEADER,
    activity,
    assert_exactly_once,
    csv_digests,
    ndjson_digests,
    test_config,
    write_ndjson,
)
from .test_hostile_server import (
    RECORDS,
    TOKEN,
    TOKEN_ENV,
    assert_no_traceback,
    assert_succeeded_exactly_once,
    cli_resume,
    cli_run,
    run_dirs,
    source,
    write_config,
)
from .test_hostile_server import server as server  # noqa: PLC0414  (the fixture, shared)

JOURNAL = "journal.ndjson"


# --- a full disk --------------------------------------------------------------------------------


def _is_journal(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith("/" + JOURNAL)
    except OSError:
        return False


class JournalWrites:
    """A stand-in for ``os.write`` that misbehaves only on a run journal's descriptor: after
    ``ok`` writes it fails with ENOSPC (``full=True``), or it always writes half the bytes."""

    def __init__(self, real: Any, *, ok: int = 0, full: bool = False, short: bool = False) -> None:
        self.real, self.ok, self.full, self.short = real, ok, full, short
        self.calls = 0
        self.failed = 0

    def __call__(self, fd: int, data: Any) -> int:
        if not _is_journal(fd):
            return self.real(fd, data)
        self.calls += 1
        if self.full and self.calls > self.ok:
            self.failed += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.short and len(data) > 1:
            return self.real(fd, bytes(data)[: len(data) // 2])
        return self.real(fd, data)


def _journal_lines(run_dir: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (run_dir / JOURNAL).read_bytes().splitlines()]


@pytest.mark.parametrize("ok", [0, 6])
def test_20_a_full_disk_stops_the_run_cleanly_and_resume_finishes(ok, tmp_path, capsys, server, monkeypatch) -> None:
    """ok=0: the first journal write fails (nothing sent, exit 2); ok=6: after a few uploads (exit 3)."""
    emu = server()
    src = source(tmp_path)
    writes = JournalWrites(os.write, ok=ok, full=True)
    monkeypatch.setattr("pipeline.engine.journal.os.write", writes)
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), src)
    monkeypatch.setattr("pipeline.engine.journal.os.write", writes.real)  # the disk has room again
    assert_no_traceback(result)
    assert writes.failed, "the journal was never written to"
    assert "No space left on device" in result.text and JOURNAL in result.text, result.text
    if ok == 0:
        assert result.code == 2, result.text
        assert emu.accounting.uploads == [] and emu.upload_posts() == 0
        return
    assert result.code == 3, result.text
    assert emu.upload_posts() > 0
    (run_dir,) = run_dirs(tmp_path)
    events = _journal_lines(run_dir)  # what the journal holds is whole lines only
    journaled = {e["batch"]["filename"] for e in events if e["event"] == "upload_started"}
    created = {u.filename for u in emu.accounting.uploads}
    assert created <= journaled, "an upload went out before its upload_started was durable"
    assert emu.upload_posts() <= len(journaled)
    resumed = cli_resume(capsys, run_dir)
    emu.wait_idle()
    assert_no_traceback(resumed)
    assert_succeeded_exactly_once(resumed, emu, ndjson_digests(src))


def test_20b_a_full_disk_after_uploads_is_told_as_it_is(tmp_path, capsys, server, monkeypatch) -> None:
    emu = server()
    writes = JournalWrites(os.write, ok=6, full=True)
    monkeypatch.setattr("pipeline.engine.journal.os.write", writes)
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), source(tmp_path))
    monkeypatch.setattr("pipeline.engine.journal.os.write", writes.real)
    assert result.code == 3 and result.report is not None  # report.json was written
    assert "the report could not be written" not in result.out
    assert [w for w in result.report["warnings"] if "run stopped" in w] == [
        line.removeprefix("warning: ") for line in result.out.splitlines() if "run stopped" in line
    ]


def test_20_short_journal_writes_are_continued(tmp_path, capsys, server, monkeypatch) -> None:
    emu = server()
    src = source(tmp_path)
    writes = JournalWrites(os.write, short=True)
    monkeypatch.setattr("pipeline.engine.journal.os.write", writes)
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), src)
    monkeypatch.setattr("pipeline.engine.journal.os.write", writes.real)  # the disk has room again
    emu.wait_idle()
    assert writes.calls > 20
    assert_succeeded_exactly_once(result, emu, ndjson_digests(src))
    events = _journal_lines(result.run_dir)  # every line parses
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    assert sum(e["event"] == "upload_started" for e in events) == result.report["batches"]


# --- outputs that cannot be written, a bad token: refused before anything is sent ------------


def test_21_an_unwritable_report_dir_is_refused_before_any_upload(tmp_path, capsys, server) -> None:
    emu = server()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file")
    config = write_config(tmp_path, emu.emu.base_url, report={"dir": str(blocker / "runs")})
    result = cli_run(tmp_path, capsys, config, source(tmp_path))
    assert result.code == 2, result.text
    assert_no_traceback(result)
    assert str(blocker) in result.err
    assert emu.accounting.uploads == [] and emu.upload_posts() == 0


def test_22_a_report_path_that_is_a_directory_is_refused_before_any_upload(tmp_path, capsys, server) -> None:
    emu = server()
    folder = tmp_path / "reports"
    folder.mkdir()
    config = write_config(tmp_path, emu.emu.base_url)
    result = cli_run(tmp_path, capsys, config, source(tmp_path), args=["--report", str(folder)])
    assert result.code == 2, result.text
    assert_no_traceback(result)
    assert str(folder) in result.err and "directory" in result.err
    assert emu.accounting.uploads == [] and emu.upload_posts() == 0


def test_23_a_token_with_a_line_break_inside_is_refused_unseen(tmp_path, capsys, server, monkeypatch) -> None:
    emu = server()
    bad = "tok3n-first-half\r\nX-Injected: tok3n-second-half"
    monkeypatch.setenv(TOKEN_ENV, bad)
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), source(tmp_path))
    assert result.code == 2, result.text
    assert_no_traceback(result)
    assert TOKEN_ENV in result.err and "api.token_env" in result.err
    for piece in ("tok3n-first-half", "X-Injected", "tok3n-second-half"):
        assert piece not in result.text
    assert emu.upload_posts() == 0 and sum(emu.call(lambda: dict(emu.accounting.requests)).values()) == 0


# --- a second run of the same work ----------------------------------------------------------


def test_24_a_second_run_of_the_same_work_is_refused_unless_allowed(tmp_path, capsys, server, monkeypatch) -> None:
    emu = server()  # sets XDG_RUNTIME_DIR: the guard's locks live under tmp_path
    src = source(tmp_path, 500)
    config_path = write_config(tmp_path, emu.emu.base_url)
    config = load_config(str(config_path))
    key = work_key(config.to_dict(), [str(p) for p in discover_inputs([str(src)])])
    guard = ActiveRunGuard(pipeline.engine.start.runtime_dir(), key, run_dir=tmp_path / "runs" / "the-other-one")
    try:
        refused = cli_run(tmp_path, capsys, config_path, src)
        assert refused.code == 2, refused.text
        assert_no_traceback(refused)
        assert str(os.getpid()) in refused.err and "--allow-concurrent" in refused.err
        assert emu.upload_posts() == 0
        allowed = cli_run(tmp_path, capsys, config_path, src, args=["--allow-concurrent"])
    finally:
        guard.release()
    emu.wait_idle()
    assert_succeeded_exactly_once(allowed, emu, ndjson_digests(src))


# --- odd input --------------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["append", "truncate"])
async def test_25_an_input_that_changes_during_the_run_stops_it_and_a_new_run_of_it_is_refused(
    tmp_path, change
) -> None:
    src = source(tmp_path)
    changed: list[str] = []

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if name == "batch_uploaded" and not changed:
            if change == "append":  # a file still being written
                with src.open("ab") as fh:
                    fh.write(orjson.dumps({"$user_agent_id": "vec:late", "$type": "TOUCH", "$ts": 1}) + b"\n")
            else:  # a file rewritten from the start
                os.truncate(src, src.stat().st_size // 2)
            changed.append(name)

    options = EmulatorOptions(token=TOKEN, process_ms=2, per_line_us=0)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 80_000})
        report = await pipeline.run_async(config, [src], RunOptions(token=TOKEN, on_event=on_event))
        await emu.wait_idle()
        assert changed
        assert report["exit_code"] == 3 and report["outcome"] == "incomplete", report["outcome"]
        assert any("changed" in w and str(src) in w for w in report["warnings"]), report["warnings"]
        assert report["executions"] and report["records"]["succeeded"] < RECORDS, report["records"]
        # the file complete now (new size, new time): a new run would send again what the first delivered
        uploads = len(emu.accounting.uploads)
        with pytest.raises(AlreadyImportedError) as refused:
            await pipeline.run_async(config, [src], RunOptions(token=TOKEN))
        assert "changed while run" in str(refused.value) and "--again" in (refused.value.hint or "")
        assert len(emu.accounting.uploads) == uploads  # the refused run sent nothing
        assert not emu.accounting.duplicates()


def test_26_a_truncated_gzip_every_record_delivered_or_counted(tmp_path, capsys, server) -> None:
    emu = server()
    lines = [orjson.dumps(activity(i)) + b"\n" for i in range(RECORDS)]
    whole = gzip.compress(b"".join(lines))
    path = tmp_path / "in.ndjson.gz"
    path.write_bytes(whole[: len(whole) // 2])
    decoded = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(whole[: len(whole) // 2])
    complete = decoded.count(b"\n")  # the whole lines gzip could decode; the partial last one is not sent
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), path)
    emu.wait_idle()
    assert_no_traceback(result)
    report = result.report
    assert result.code == 1 and report["outcome"] == "completed_with_failures", result.text
    plain = tmp_path / "decoded.ndjson"
    plain.write_bytes(b"".join(lines[:complete]))
    assert_exactly_once(emu.accounting, ndjson_digests(plain))
    assert report["records"]["succeeded"] == complete
    [warning] = [w for w in report["warnings"] if str(path) in w and "truncated" in w]
    assert f"after line {complete}" in warning and "not sent" in warning
    assert warning in result.out


def test_26_an_unterminated_csv_quote_counts_every_line_it_swallowed(tmp_path, capsys, server) -> None:
    emu = server()
    rows = [f"UPDATE,0,1000,acc-{i},123,bag-{i}\n" for i in range(3_000)]
    bad_line = 1_002  # line 1 is the header: rows[1000] is on line 1002
    rows[bad_line - 2] = 'UPDATE,0,1000,"acc-open,123,bag\n'
    header = ",".join(SEGMENT_HEADER) + "\n"
    path = tmp_path / "segments.csv"
    path.write_text(header + "".join(rows))
    good = tmp_path / "good.csv"
    good.write_text(header + "".join(rows[: bad_line - 2]))
    config = write_config(
        tmp_path, emu.emu.base_url, **{"import": {"document_type": "USER_SEGMENT", "mime_type": "TEXT_CSV"}}
    )
    result = cli_run(tmp_path, capsys, config, path)
    emu.wait_idle()
    assert_no_traceback(result)
    report = result.report
    assert result.code == 1 and report["outcome"] == "completed_with_failures", result.text
    assert_exactly_once(emu.accounting, csv_digests(good))
    last = 3_001
    assert report["records"]["succeeded"] == bad_line - 2
    assert report["records"]["rejected"] == last - bad_line + 1  # every swallowed line is counted
    [reject] = report["rejects_sample"]
    assert reject["line"] == bad_line and f"lines {bad_line}-{last} not sent" in reject["reason"]
    assert f"{path}:{bad_line}: line {bad_line} opens a quote that is never closed" in result.out


def _make_fifo(path: Path) -> str:
    os.mkfifo(path)
    return "FIFO"


def _make_dangling_link(path: Path) -> str:
    path.symlink_to(path.with_name("gone.ndjson"))
    return "broken symbolic link"


def _make_link_loop(path: Path) -> str:
    path.symlink_to(path)
    return "symbolic link loop"


def _make_directory(path: Path) -> str:
    path.mkdir()
    write_ndjson(path / "part-0.ndjson", range(5))
    return "use --recursive"


@pytest.mark.parametrize("make", [_make_fifo, _make_dangling_link, _make_link_loop, _make_directory])
def test_27_an_odd_entry_named_like_an_input_in_a_directory_is_refused_by_name(tmp_path, capsys, server, make) -> None:
    emu = server()
    folder = tmp_path / "exports"
    folder.mkdir()
    write_ndjson(folder / "a.ndjson", range(10))
    odd = folder / "x.ndjson"
    why = make(odd)
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), folder)
    assert result.code == 2, result.text
    assert_no_traceback(result)
    assert str(odd) in result.err and why in result.err
    assert emu.upload_posts() == 0


def test_a_refused_token_or_a_wrong_url_before_anything_was_sent_is_exit_2_with_a_report_that_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = server()
    src = source(tmp_path, 100)
    monkeypatch.setenv(TOKEN_ENV, "a-token-the-server-does-not-know")
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), src)
    assert result.code == 2 and "401" in result.err and "token" in result.err
    assert result.report["outcome"] == "nothing_sent", "the run directory keeps a report that says why"
    assert "token was refused" in result.report["final_error"]["cause"]
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url + "/v1"), src)
    assert result.code == 2 and "without /v1" in result.err
    assert emu.accounting.uploads == []


def test_28_too_little_free_space_is_refused_before_any_upload(tmp_path, capsys, server, monkeypatch) -> None:
    emu = server()
    real = shutil.disk_usage

    def nearly_full(path: Any) -> Any:
        usage = real(path)
        return usage._replace(free=2 * 10**6)  # 2 MB left: less than the journal, spool and reports need

    monkeypatch.setattr("pipeline.engine.rundir.shutil.disk_usage", nearly_full)
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), source(tmp_path))
    assert_no_traceback(result)
    assert result.code == 2, result.text
    assert "free on the filesystem" in result.err and "the run needs about" in result.err, result.err
    assert emu.upload_posts() == 0


def test_29_resume_takes_the_run_directory_lock_before_it_reads_the_journal(
    tmp_path, capsys, server, monkeypatch
) -> None:
    """A second resume that got the lock late must not work from a journal read before it."""
    from pipeline.engine import journal as journal_module
    from pipeline.engine.runs_index import is_locked

    emu = server()
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), source(tmp_path, 100))
    assert result.code == 0 and result.run_dir is not None, result.text
    locked_when_read: list[bool] = []
    real_load_run = journal_module.load_run

    def load_run(run_dir: Path) -> Any:
        locked_when_read.append(is_locked(run_dir))
        return real_load_run(run_dir)

    monkeypatch.setattr(journal_module, "load_run", load_run)
    resumed = cli_resume(capsys, result.run_dir)
    assert resumed.code == 0, resumed.text
    assert locked_when_read == [True]


class SpoolFillsUp:
    """``os.fdopen`` for the spool files of a ``.gz`` input in the run directory, on a disk that is
    full once ``full()`` says so (the look for a first record, in a temporary directory, is not
    counted)."""

    def __init__(self, full: Callable[[], bool]) -> None:
        self.full, self.real, self.failed = full, os.fdopen, 0

    def __call__(self, fd: int, *args: Any, **kwargs: Any) -> Any:
        fh = self.real(fd, *args, **kwargs)
        return _FullDiskFile(self, fh) if "/spool/" in os.readlink(f"/proc/self/fd/{fd}") else fh


class _FullDiskFile:
    def __init__(self, disk: SpoolFillsUp, fh: Any) -> None:
        self.disk, self.fh = disk, fh

    def write(self, data: Any) -> int:
        if self.disk.full():
            self.disk.failed += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return int(self.fh.write(data))

    def close(self) -> None:
        self.fh.close()


@pytest.mark.parametrize("when", ["at once", "after an upload"])
def test_20c_a_full_disk_under_the_spool_of_a_gz_input_ends_cleanly(
    when, tmp_path, capsys, server, monkeypatch
) -> None:
    """At once: the first batch cannot be spooled (nothing sent, exit 2). After an upload: the reader,
    held a few batches ahead of the uploads, meets the full disk while batches are out (exit 3, and
    the resume finishes: exactly once)."""
    emu = server()
    plain = source(tmp_path, 10_000)  # 36 batches: more than the reader may read ahead
    packed = tmp_path / "in.ndjson.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    digests = ndjson_digests(plain)
    plain.unlink()
    disk = SpoolFillsUp((lambda: True) if when == "at once" else (lambda: bool(emu.accounting.uploads)))
    monkeypatch.setattr("pipeline.reading.batch.os.fdopen", disk)
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), packed)
    monkeypatch.setattr("pipeline.reading.batch.os.fdopen", disk.real)  # room again
    assert_no_traceback(result)
    assert disk.failed and "No space left on device" in result.text and "spool" in result.text, result.text
    if when == "at once":
        assert result.code == 2, result.text
        assert emu.upload_posts() == 0
        return
    assert result.code == 3 and result.report["outcome"] == "incomplete", result.text
    assert emu.upload_posts() > 0
    resumed = cli_resume(capsys, result.run_dir)
    emu.wait_idle()
    assert_no_traceback(resumed)
    assert_succeeded_exactly_once(resumed, emu, digests)

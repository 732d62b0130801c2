"""The run directory's local checks: private directories, preflight checks, the active-run guard, rejects."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import subprocess
import sys
import textwrap
from collections import namedtuple
from pathlib import Path

import orjson
import pytest

from pipeline.engine import rundir
from pipeline.engine.rundir import (
    ACTIVE_DIR,
    ActiveRunGuard,
    RejectsFile,
    RunLock,
    check_free_space,
    check_output_dir,
    check_output_file,
    make_private_dir,
    work_key,
)
from pipeline.errors import ConcurrentRunError, LocalError, UsageError

AS_ROOT = os.geteuid() == 0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _refuse(code: int = errno.EACCES):
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    return refuse


@pytest.fixture
def no_umask():
    old = os.umask(0)
    yield
    os.umask(old)


# --- make_private_dir --------------------------------------------------------------------------


def test_every_directory_made_is_private_even_under_umask_000(tmp_path, no_umask):
    (tmp_path / "shared").mkdir(mode=0o755)
    leaf = make_private_dir(tmp_path / "shared" / "runs" / "2026" / "r1")
    assert leaf.is_dir()
    for made in (tmp_path / "shared" / "runs", tmp_path / "shared" / "runs" / "2026", leaf):
        assert _mode(made) == 0o700, made
    assert _mode(tmp_path / "shared") == 0o755  # existing parents are not changed


def test_the_parents_of_a_report_or_a_plan_file_are_made_private_even_under_umask_000(tmp_path, no_umask):
    """``--report a/b/report.json`` and ``pipeline plan --out a/b/plan.json``: the directories made are
    0700, the existing ones unchanged."""
    from pipeline.engine.plan import write_plan
    from pipeline.reporting.atomic_json import write_json_atomically

    (tmp_path / "shared").mkdir(mode=0o755)
    os.chmod(tmp_path / "shared", 0o755)
    write_json_atomically(tmp_path / "shared" / "a" / "b" / "report.json", {"x": 1})
    write_plan(tmp_path / "shared" / "c" / "plan.json", {"x": 1})  # type: ignore[arg-type]
    for made in ("a", "a/b", "c"):
        assert _mode(tmp_path / "shared" / made) == 0o700, made
    assert _mode(tmp_path / "shared") == 0o755
    assert _mode(tmp_path / "shared" / "a" / "b" / "report.json") == 0o600


def test_make_private_dir_on_an_existing_leaf_makes_it_private(tmp_path):
    (tmp_path / "d").mkdir(mode=0o755)
    os.chmod(tmp_path / "d", 0o755)
    assert make_private_dir(tmp_path / "d") == tmp_path / "d"
    assert _mode(tmp_path / "d") == 0o700


def test_make_private_dir_raises_local_error_not_a_traceback(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LocalError, match="a file of that name is in the way"):
        make_private_dir(tmp_path / "file")
    with pytest.raises(LocalError, match="Not a directory"):
        make_private_dir(tmp_path / "file" / "sub")
    monkeypatch.setattr(rundir.os, "mkdir", _refuse(errno.EROFS))
    with pytest.raises(LocalError) as info:
        make_private_dir(tmp_path / "a" / "b")
    assert str(info.value) == f"cannot create the directory {tmp_path / 'a'}: Read-only file system"
    assert info.value.errno == errno.EROFS and info.value.path == str(tmp_path / "a")


@pytest.mark.skipif(AS_ROOT, reason="root may write into a read-only directory")
def test_make_private_dir_in_a_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(LocalError, match="Permission denied"):
            make_private_dir(locked / "runs")
    finally:
        locked.chmod(0o700)


# --- preflight checks ----------------------------------------------------------------------------


def test_check_output_dir_creates_what_is_missing_and_leaves_no_probe(tmp_path, no_umask):
    (tmp_path / "base").mkdir(mode=0o755)
    check_output_dir(tmp_path / "base")
    assert _mode(tmp_path / "base") == 0o755 and list((tmp_path / "base").iterdir()) == []
    check_output_dir(tmp_path / "base" / "runs" / "x")
    assert _mode(tmp_path / "base" / "runs") == 0o700 and _mode(tmp_path / "base" / "runs" / "x") == 0o700
    assert list((tmp_path / "base" / "runs" / "x").iterdir()) == []


def test_check_output_dir_without_create_creates_nothing(tmp_path):
    check_output_dir(tmp_path / "runs" / "x", create=False)
    assert not (tmp_path / "runs").exists()


def test_check_output_dir_refuses_a_file_and_an_unwritable_directory(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LocalError, match=r"cannot write into .*/file: it is not a directory"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(LocalError, match=r"cannot create the directory .*/file/runs: Not a directory"):
        check_output_dir(tmp_path / "file" / "runs")
    with pytest.raises(LocalError, match=r"cannot write .*/file/runs: .*/file is not a directory"):
        check_output_dir(tmp_path / "file" / "runs", create=False)
    monkeypatch.setattr(rundir.tempfile, "mkstemp", _refuse(errno.EACCES))
    with pytest.raises(LocalError) as info:
        check_output_dir(tmp_path)
    assert str(info.value) == f"cannot write into {tmp_path}: Permission denied"


def test_check_output_file(tmp_path, monkeypatch):
    check_output_file(tmp_path / "report.json")
    check_output_file(tmp_path / "new" / "report.json")  # the report writer makes the directory
    assert not (tmp_path / "new").exists()
    with pytest.raises(LocalError, match="does not exist"):
        check_output_file(tmp_path / "new" / "report.json", parent_must_exist=True)
    with pytest.raises(LocalError, match="it is a directory"):
        check_output_file(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(LocalError, match="is not a directory"):
        check_output_file(tmp_path / "file" / "report.json")
    monkeypatch.setattr(rundir.tempfile, "mkstemp", _refuse(errno.EROFS))
    with pytest.raises(LocalError) as info:
        check_output_file(tmp_path / "report.json")
    report = tmp_path / "report.json"
    assert str(info.value) == f"cannot write {report}: cannot write into {tmp_path}: Read-only file system"


def test_check_free_space(tmp_path, monkeypatch):
    check_free_space(tmp_path, 1)
    check_free_space(tmp_path / "not" / "yet", 1)  # a directory the run will create
    with pytest.raises(LocalError, match=r"MB free on the filesystem of .*the run needs about .* MB"):
        check_free_space(tmp_path, 10**18)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 3_400_000, 3_400_000))
    with pytest.raises(LocalError) as info:
        check_free_space(tmp_path, 250_000_000)
    message = str(info.value)
    assert message.startswith(f"only 3.4 MB free on the filesystem of {tmp_path} (mounted on /")
    assert message.endswith("the run needs about 250 MB for its journal, spool and reports")
    assert info.value.errno == errno.ENOSPC


# --- the active-run guard ------------------------------------------------------------------------


def test_two_open_file_descriptions_of_one_file_conflict_under_flock(tmp_path):
    """What the guard relies on: in Linux, flock locks belong to open file descriptions."""
    path = tmp_path / "f.lock"
    a = os.open(path, os.O_RDWR | os.O_CREAT)
    b = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(a)
        os.close(b)


def test_the_same_work_cannot_run_twice_at_once(tmp_path, no_umask):
    key = work_key({"api": {"url": "x"}}, [str(tmp_path / "in.ndjson")])
    with ActiveRunGuard(tmp_path, key, run_dir=tmp_path / "r1") as guard:
        assert _mode(tmp_path / ACTIVE_DIR) == 0o700 and _mode(guard.path) == 0o600
        assert orjson.loads(guard.path.read_bytes()) == {"pid": os.getpid(), "run_dir": str(tmp_path / "r1")}
        with pytest.raises(ConcurrentRunError) as info:
            ActiveRunGuard(tmp_path, key, run_dir=tmp_path / "r2")
        ActiveRunGuard(tmp_path, "another-key").release()  # other work is not held back
    exc = info.value
    assert isinstance(exc, UsageError) and (exc.pid, exc.run_dir) == (os.getpid(), str(tmp_path / "r1"))
    assert f"pid {os.getpid()}" in str(exc) and str(tmp_path / "r1") in str(exc)
    assert exc.hint == "pass --allow-concurrent to run anyway"
    assert not guard.path.exists()  # released: the lock file goes
    guard.release()  # twice is fine
    ActiveRunGuard(tmp_path, key).release()


def test_a_guard_held_by_another_process_names_it_and_goes_with_it(tmp_path):
    key = work_key({}, ["a"])
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from pipeline.engine.rundir import ActiveRunGuard
        guard = ActiveRunGuard(Path({str(tmp_path)!r}), {key!r}, run_dir="runs/other")
        print("held", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(ConcurrentRunError, match=rf"pid {proc.pid}, run directory runs/other"):
            ActiveRunGuard(tmp_path, key)
    finally:
        proc.kill()  # no release: the lock file stays behind, the lock goes with the process
        proc.wait(timeout=30)
    assert (tmp_path / ACTIVE_DIR / f"{key}.lock").exists()
    with ActiveRunGuard(tmp_path, key, run_dir="runs/mine") as guard:
        assert orjson.loads(guard.path.read_bytes())["run_dir"] == "runs/mine"


def test_a_guard_does_not_keep_a_lock_file_removed_by_its_previous_holder(tmp_path, monkeypatch):
    key = "k"
    first = ActiveRunGuard(tmp_path, key)
    real_flock = fcntl.flock

    def flock_after_release(fd: int, op: int) -> None:
        first.release()  # the holder releases (and removes the file) after we opened it
        monkeypatch.setattr(rundir.fcntl, "flock", real_flock)
        real_flock(fd, op)

    monkeypatch.setattr(rundir.fcntl, "flock", flock_after_release)
    second = ActiveRunGuard(tmp_path, key)  # locked the removed file, saw it, locked the new one
    try:
        assert rundir._same_file(second._fd, second.path)
        with pytest.raises(ConcurrentRunError):
            ActiveRunGuard(tmp_path, key)
    finally:
        second.release()


def test_a_guard_refuses_a_key_that_is_a_path(tmp_path):
    for key in ("", "../x", ".hidden"):
        with pytest.raises(ValueError):
            ActiveRunGuard(tmp_path, key)


def test_work_key_is_a_digest_of_the_config_and_the_resolved_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"api": {"url": "https://x", "timeout_s": 30.0}, "batch": {"max_lines": 0}}
    same = {"batch": {"max_lines": 0}, "api": {"timeout_s": 30.0, "url": "https://x"}}
    key = work_key(config, ["a.ndjson", "b.ndjson"])
    assert len(key) == 64 and int(key, 16) >= 0
    assert work_key(same, [str(tmp_path / "b.ndjson"), "./a.ndjson"]) == key
    assert work_key(config, ["a.ndjson"]) != key
    assert work_key({**config, "batch": {"max_lines": 10}}, ["a.ndjson", "b.ndjson"]) != key


# --- run lock and rejects --------------------------------------------------------------------


def test_a_run_lock_that_cannot_be_created_raises_local_error(tmp_path):
    with pytest.raises(LocalError, match="cannot create the lock file"):
        RunLock(tmp_path / "missing")


Reject = namedtuple("Reject", "file line reason record")


def test_rejects_are_written_then_committed_whole(tmp_path):
    rejects = RejectsFile(tmp_path / "rejects.ndjson")
    rejects.write(Reject("in.ndjson", 3, "not valid JSON: unexpected char at 12", "{x"))
    assert not (tmp_path / "rejects.ndjson").exists()
    rejects.commit()
    rejects.close()
    assert orjson.loads((tmp_path / "rejects.ndjson").read_bytes())["line"] == 3
    assert (rejects.count, dict(rejects.by_reason)) == (1, {"not valid JSON": 1})


def test_a_rejects_file_on_a_full_disk_raises_local_error(tmp_path, monkeypatch):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    monkeypatch.setattr(rundir, "open_private", lambda path, mode: open("/dev/full", "wb", buffering=0))  # noqa: SIM115
    rejects = RejectsFile(tmp_path / "rejects.ndjson")
    with pytest.raises(LocalError, match="cannot write the rejects file .*: No space left on device"):
        rejects.write(Reject("in.ndjson", 3, "bad", "{x"))
    assert rejects.count == 0  # counted only once written
    rejects.close()

    monkeypatch.setattr(rundir, "open_private", lambda path, mode: open("/dev/full", "wb"))  # noqa: SIM115
    rejects = RejectsFile(tmp_path / "rejects.ndjson")
    rejects.write(Reject("in.ndjson", 3, "bad", "{x"))  # buffered: the error shows at commit
    with pytest.raises(LocalError, match="No space left on device"):
        rejects.commit()
    rejects.close()  # does not raise again
    assert not (tmp_path / "rejects.ndjson").exists()


def test_rejects_that_cannot_be_put_in_place_or_created_raise_local_error(tmp_path):
    (tmp_path / "rejects.ndjson").mkdir()  # in the way of the rename
    rejects = RejectsFile(tmp_path / "rejects.ndjson")
    with pytest.raises(LocalError, match="cannot write the rejects file"):
        rejects.commit()
    rejects.close()
    assert not (tmp_path / "rejects.ndjson.part").exists()
    with pytest.raises(LocalError, match="cannot create the rejects file .*: No such file or directory"):
        RejectsFile(tmp_path / "missing" / "rejects.ndjson")

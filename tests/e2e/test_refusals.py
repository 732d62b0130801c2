"""The server's refusals, mapped to source file and line (``failed.ndjson``), through the CLI against
the emulator over loopback: every error-file shape the emulator can serve, NDJSON (blank lines,
a record rejected client-side leaving a gap, .gz) and CSV with quoted newlines, `executions errors
--run`, and a SIGKILL then `resume`."""

from __future__ import annotations

import csv
import gzip
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from pipeline.cli.entry import main
from pipeline.emulator import EmulatorOptions

from ..helpers import SEGMENT_HEADER, EmulatorThread, activity

TOKEN = "refusals-token-5c2e"
TOKEN_ENV = "PIPELINE_REFUSALS_TOKEN"
SHAPES = ("ndjson", "text", "line", "raw", "garbage")


def write_config(tmp_path: Path, url: str, *, csv_input: bool = False, max_lines: int = 25) -> Path:
    imp = 'document_type = "USER_SEGMENT"\nmime_type = "TEXT_CSV"\n' if csv_input else ""
    path = tmp_path / "import.toml"
    path.write_text(
        f'[api]\nurl = "{url}"\ntoken_env = "{TOKEN_ENV}"\ntimeout_s = 30\n'
        f"[import]\n{imp}"
        f"[batch]\nvalidate = false\nmax_lines = {max_lines}\nmax_bytes = 3000\n"
        "[upload]\nmax_attempts = 3\nsettle_window_s = 1\nconcurrency = 3\n"
        "[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\ntimeout_s = 60\n"
        f'[report]\ndir = "{tmp_path / "runs"}"\n'
    )
    return path


def ndjson_input(path: Path, n: int = 150, refuse_from: int = 0) -> tuple[Path, set[int]]:
    """Records, some the server refuses (no identifier), blank lines (sent: validation is off) and
    one record over max_bytes (rejected client-side: a gap in its batch). Returns the refused lines."""
    lines, refused = [], set()
    for i in range(n):
        if i % 11 == 3 and i >= refuse_from:
            lines.append(orjson.dumps({"$type": "TOUCH", "$ts": i, "n": i}).decode())  # no identifier
            refused.add(i + 1)
        elif i % 23 == 9:
            lines.append("")
        elif i == 40:
            lines.append(orjson.dumps(activity(i) | {"pad": "x" * 4000}).decode())  # over max_bytes
        else:
            lines.append(orjson.dumps(activity(i)).decode())
    data = ("\n".join(lines) + "\n").encode()
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path, refused


def csv_input(path: Path, n: int = 120) -> tuple[Path, set[int]]:
    """USER_SEGMENT rows whose data_bag holds quoted newlines; some rows refused (bad operation),
    some of those spanning lines. Returns the physical lines where the refused records start."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SEGMENT_HEADER)
    line, refused = 2, set()
    for i in range(n):
        bag = orjson.dumps({"note": f"row {i}, with a comma", "quote": 'say "hi"'}).decode()
        if i % 5 == 0:
            bag += "\nsecond line of the bag"
        operation = "UPDATE"
        if i % 9 == 0:
            operation = "BOGUS"
            refused.add(line)
        writer.writerow([operation, "0", "1000", f"acc-{i}", "123", bag])
        line += 1 + bag.count("\n")
    path.write_text(buf.getvalue(), newline="")
    return path, refused


def run_dir_of(tmp_path: Path) -> Path:
    (journal,) = (tmp_path / "runs").glob("*/journal.ndjson")
    return journal.parent


def failed_rows(run_dir: Path) -> list[dict]:
    return [orjson.loads(x) for x in (run_dir / "failed.ndjson").read_bytes().splitlines()]


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def _run(tmp_path: Path, shape: str, source: Path, csv_input_: bool, capsys) -> tuple[Path, int, str]:
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0, error_files=shape)) as emu:
        config = write_config(tmp_path, emu.emu.base_url, csv_input=csv_input_)
        code = main(["run", "--config", str(config), "-q", str(source)])
    return run_dir_of(tmp_path), code, capsys.readouterr().out


def _check_rows(run_dir: Path, source: Path, refused: set[int], shape: str) -> list[dict]:
    rows = failed_rows(run_dir)
    assert len(rows) == len(refused), (len(rows), len(refused))
    assert {r["line"] for r in rows} == refused
    assert {r["file"] for r in rows} == {str(source)}
    assert all(set(r) == {"file", "line", "reason", "record", "execution_id"} for r in rows)
    if shape not in ("raw",):
        assert all(r["reason"] and "no reason" not in r["reason"] for r in rows)
    assert (run_dir / "failed.ndjson").stat().st_mode & 0o777 == 0o600
    assert not (run_dir / "failed.ndjson.part").exists() and not (run_dir / "refusals.tmp").exists()
    assert (run_dir / "failed_unmapped.ndjson").exists() == (shape == "garbage")
    return rows


@pytest.mark.parametrize("shape", SHAPES)
def test_ndjson_refusals_map_to_their_source_lines(tmp_path, token_env, capsys, shape):
    source, refused = ndjson_input(tmp_path / "in.ndjson")
    run_dir, code, out = _run(tmp_path, shape, source, False, capsys)
    assert code == 1
    rows = _check_rows(run_dir, source, refused, shape)
    text = source.read_text().splitlines()
    assert all(r["record"] == text[r["line"] - 1] for r in rows), "each row names its own record"
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert report["refused"]["count"] == len(refused) == report["records"]["failed"]
    assert report["refused"]["path"] == str(run_dir / "failed.ndjson")
    first = min(refused)
    assert f"{source}:{first}: " in out, out  # the summary shows the first ones as file:line: reason
    assert "failed.ndjson" in out
    html = (run_dir / "report.html").read_text()
    assert "Refused by the server" in html and "mics://" not in html
    if shape == "garbage":
        unmapped = (run_dir / "failed_unmapped.ndjson").read_bytes().splitlines()
        assert len(unmapped) == 2 * len(refused)  # two junk lines before each entry, kept as they came
        assert report["refused"]["unmapped"] == len(unmapped)


@pytest.mark.parametrize("shape", ["ndjson", "raw", "text", "line"])
def test_csv_refusals_map_to_the_line_where_the_record_starts(tmp_path, token_env, capsys, shape):
    source, refused = csv_input(tmp_path / "in.csv")
    run_dir, code, _ = _run(tmp_path, shape, source, True, capsys)
    assert code == 1
    rows = _check_rows(run_dir, source, refused, shape)
    assert any("\n" in r["record"] for r in rows), "some refused records span lines, kept whole"
    assert all(r["record"].startswith("BOGUS,") for r in rows)


def test_gz_refusals_map_to_the_uncompressed_source_lines(tmp_path, token_env, capsys):
    source, refused = ndjson_input(tmp_path / "in.ndjson.gz", refuse_from=90)  # batches without any first
    run_dir, code, _ = _run(tmp_path, "ndjson", source, False, capsys)
    assert code == 1
    _check_rows(run_dir, source, refused, "ndjson")


def test_succeeded_with_errors_shows_the_server_message(tmp_path, token_env, capsys):
    source, _ = ndjson_input(tmp_path / "in.ndjson")
    run_dir, _, out = _run(tmp_path, "ndjson", source, False, capsys)
    assert "SUCCEEDED with errors: " in out and "records failed; see result.error_file_uri" in out


def test_executions_errors_with_the_run_prints_source_lines(tmp_path, token_env, capsys):
    source, refused = ndjson_input(tmp_path / "in.ndjson")
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as emu:
        config = write_config(tmp_path, emu.emu.base_url)
        assert main(["run", "--config", str(config), "-q", str(source)]) == 1
        run_dir = run_dir_of(tmp_path)
        rows = failed_rows(run_dir)
        exe_id = rows[0]["execution_id"]
        capsys.readouterr()
        assert main(["executions", "errors", "--run", str(run_dir), exe_id]) == 0
        out, err = capsys.readouterr()
        expected = [f"{r['file']}:{r['line']}: {r['reason']}" for r in rows if r["execution_id"] == exe_id]
        assert out.splitlines() == expected and expected
        assert f"{len(expected)} refused records mapped" in err
        target = tmp_path / "one.ndjson"
        assert main(["executions", "errors", "--run", str(run_dir), exe_id, "-o", str(target)]) == 0
        assert [orjson.loads(x) for x in target.read_bytes().splitlines()] == [
            r for r in rows if r["execution_id"] == exe_id
        ]
        assert target.stat().st_mode & 0o777 == 0o600


def _journal_events(run_root: Path) -> list[str]:
    journals = list(run_root.glob("*/journal.ndjson")) if run_root.exists() else []
    events = []
    for line in journals[0].read_bytes().splitlines() if journals else []:
        try:
            events.append(orjson.loads(line)["event"])
        except orjson.JSONDecodeError:
            pass
    return events


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_then_resume_leaves_exactly_the_refused_records(tmp_path, token_env, seed):
    source, refused = ndjson_input(tmp_path / "in.ndjson", n=600)
    options = EmulatorOptions(token=TOKEN, process_ms=20, per_line_us=0)
    with EmulatorThread(options) as emu:
        config = write_config(tmp_path, emu.emu.base_url)
        proc = subprocess.Popen(
            [sys.executable, "-c", "from pipeline.cli.entry import main_entry; main_entry()"]
            + ["run", "--config", str(config), "-q", str(source)],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        kill_after = random.Random(seed).randint(5, 40)  # journal events seen before the kill
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if len(_journal_events(tmp_path / "runs")) >= kill_after:
                break
            time.sleep(0.005)  # polling the journal, not synchronising on time
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert "run_finished" not in _journal_events(tmp_path / "runs"), "the kill must land mid-run"
        run_dir = run_dir_of(tmp_path)
        assert main(["resume", "-q", str(run_dir)]) == 1
        rows = failed_rows(run_dir)
        assert sorted(r["line"] for r in rows) == sorted(refused)
        assert main(["resume", "-q", str(run_dir)]) == 1  # a finished run: the same file, the same count
        assert len(failed_rows(run_dir)) == len(refused)


def test_an_input_moved_since_keeps_the_entries_as_they_came(tmp_path, token_env, capsys):
    source, refused = ndjson_input(tmp_path / "in.ndjson")
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as emu:
        config = write_config(tmp_path, emu.emu.base_url)
        assert main(["run", "--config", str(config), "-q", str(source)]) == 1
        run_dir = run_dir_of(tmp_path)
        exe_id = failed_rows(run_dir)[0]["execution_id"]
        source.rename(tmp_path / "moved.ndjson")
        capsys.readouterr()
        assert main(["executions", "errors", "--run", str(run_dir), exe_id]) == 0
        out, err = capsys.readouterr()
        assert out == "" and "could not be read again" in err and f"not mapped (execution {exe_id}" in err


def test_a_run_killed_while_it_rebuilt_the_file_gets_it_whole_from_resume(tmp_path, token_env, capsys):
    """As if killed in the middle of the rebuild: the end not journaled, a torn ``.part`` and a
    half-downloaded error file left behind, no ``failed.ndjson`` yet."""
    source, refused = ndjson_input(tmp_path / "in.ndjson")
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as emu:
        config = write_config(tmp_path, emu.emu.base_url)
        assert main(["run", "--config", str(config), "-q", str(source)]) == 1
        run_dir = run_dir_of(tmp_path)
        journal = run_dir / "journal.ndjson"
        kept = [x for x in journal.read_bytes().splitlines(keepends=True) if b'"run_finished"' not in x]
        journal.write_bytes(b"".join(kept))
        (run_dir / "failed.ndjson").unlink()
        (run_dir / "failed.ndjson.part").write_bytes(b'{"file": "in.ndjson", "line": 4, "rea')
        (run_dir / "refusals.tmp").mkdir()
        (run_dir / "refusals.tmp" / "1.errors").write_bytes(b'{"line": 4, "reason"')
        uploads = emu.upload_posts()
        assert main(["resume", "-q", str(run_dir)]) == 1
        assert emu.upload_posts() == uploads, "nothing sent again"
        rows = failed_rows(run_dir)
        assert sorted(r["line"] for r in rows) == sorted(refused) and len(rows) == len(refused)
        assert not (run_dir / "failed.ndjson.part").exists() and not (run_dir / "refusals.tmp").exists()


def test_an_error_file_that_cannot_be_downloaded_is_said_and_the_rest_is_kept(tmp_path, token_env, capsys):
    source, refused = ndjson_input(tmp_path / "in.ndjson")
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as emu:
        config = write_config(tmp_path, emu.emu.base_url)
        assert main(["run", "--config", str(config), "-q", str(source)]) == 1
        run_dir = run_dir_of(tmp_path)
        rows = failed_rows(run_dir)
        gone = rows[0]["execution_id"]
        uri = emu.call(lambda: next(u for u, e in emu.emu.store.error_files.items() if e == gone))
        emu.call(lambda: emu.emu.store.error_files.pop(uri))  # the server forgot it: 404
        journal = run_dir / "journal.ndjson"  # as if killed before the end was journaled
        kept = [x for x in journal.read_bytes().splitlines(keepends=True) if b'"run_finished"' not in x]
        journal.write_bytes(b"".join(kept))
        capsys.readouterr()
        assert main(["resume", "-q", str(run_dir)]) == 1
        out = capsys.readouterr().out
        assert f"the error file of execution {gone}" in out and "could not be downloaded" in out
        assert failed_rows(run_dir) == [r for r in rows if r["execution_id"] != gone]

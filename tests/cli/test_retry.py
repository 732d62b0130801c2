"""``pipeline retry`` through the command line against the emulator over loopback: exactly the records
that did not make it are sent again (the emulator's accounting says so), never one that succeeded."""

from __future__ import annotations

import gzip
import os
import signal
from pathlib import Path

import orjson
import pytest

from pipeline.cli.entry import main
from pipeline.emulator import EmulatorOptions
from pipeline.emulator.faults import FaultDice, FaultPlan

from ..helpers import (
    EmulatorThread,
    activity,
    assert_exactly_once,
    csv_digests,
    ndjson_digests,
    write_ndjson,
    write_segment_csv,
)

TOKEN = "retry-test-token-5d1e"
TOKEN_ENV = "PIPELINE_RETRY_TEST_TOKEN"
BAD = b'{"$type": "TOUCH", "$ts": 1}'  # no identifier: rejected by the client, refused by the server


def write_config(tmp_path: Path, url: str, *, batch: str = "", import_: str = "", upload: str = "") -> Path:
    sections = {
        "api": f'url = "{url}"\ntoken_env = "{TOKEN_ENV}"\ntimeout_s = 30',
        "import": import_ or 'document_type = "USER_ACTIVITY"\nmime_type = "APPLICATION_X_NDJSON"',
        "batch": batch or 'max_bytes = 20000\nsizing = "fixed"',
        "poll": "interval_s = 0.02\nmax_interval_s = 0.1\ntimeout_s = 60",
        "report": f'dir = "{tmp_path / "runs"}"',
        "upload": upload or "max_attempts = 3\nsettle_window_s = 1\nconcurrency = 2",
    }
    path = tmp_path / "import.toml"
    path.write_text("\n".join(f"[{k}]\n{v}\n" for k, v in sections.items()))
    return path


@pytest.fixture
def emulator(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    options = EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0, faults={"failed": 0.4}, seed=7)
    with EmulatorThread(options) as server:
        yield server


def no_more_faults(emulator: EmulatorThread) -> None:
    def clear() -> None:
        emulator.emu.state.plan = FaultPlan()
        emulator.emu.state.dice = FaultDice(FaultPlan(), 0)

    emulator.call(clear)


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p.parent for p in (tmp_path / "runs").glob("*/journal.ndjson"))


def report_of(run_dir: Path) -> dict:
    return orjson.loads((run_dir / "report.json").read_bytes())


def first_run(tmp_path: Path, config: Path, source: Path) -> tuple[Path, dict]:
    code = main(["run", "--config", str(config), "-q", str(source)])
    (run_dir,) = run_dirs(tmp_path)
    report = report_of(run_dir)
    assert code == report["exit_code"]
    return run_dir, report


def retry(run_dir: Path, *flags: str) -> tuple[int, Path | None]:
    before = set(run_dirs(run_dir.parent.parent))
    code = main(["retry", "-q", *flags, str(run_dir)])
    new = set(run_dirs(run_dir.parent.parent)) - before
    assert len(new) <= 1
    return code, (new.pop() if new else None)


def failed_records(report: dict) -> int:
    return sum(e["source"]["line_count"] for e in report["executions"] if e["status"] == "FAILED")


# --- batches not delivered ------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True], ids=["ndjson", "ndjson.gz"])
def test_retry_sends_exactly_the_records_of_failed_executions(tmp_path, emulator, compressed, capsys):
    source = write_ndjson(tmp_path / "in.ndjson", range(1_500))
    if compressed:
        gz = tmp_path / "in.ndjson.gz"
        gz.write_bytes(gzip.compress(source.read_bytes()))
        source.unlink()
        source = gz
    run_dir, report = first_run(tmp_path, write_config(tmp_path, emulator.emu.base_url), source)
    assert report["outcome"] == "completed_with_failures", report["outcome"]
    resend = failed_records(report)
    assert 0 < resend < 1_500, "the fault plan must fail some executions, not all"
    no_more_faults(emulator)
    uploads_before = len(emulator.accounting.uploads)

    code, retry_dir = retry(run_dir)
    assert code == 0, capsys.readouterr()
    assert retry_dir is not None and retry_dir.parent == run_dir.parent
    plain = source
    if compressed:
        plain = tmp_path / "plain.ndjson"
        plain.write_bytes(gzip.decompress(source.read_bytes()))
    digests = ndjson_digests(plain)
    assert_exactly_once(emulator.accounting, digests)
    sent_again = sum(u.lines for u in emulator.accounting.uploads[uploads_before:])
    assert sent_again == resend, "exactly the records of the FAILED executions, nothing that succeeded"
    again = report_of(retry_dir)
    assert again["retry_of"]["run_id"] == report["run_id"] and again["retry_of"]["not_delivered"] == resend
    assert again["records"]["sent"] == resend and again["document_import"]["id"] == report["document_import"]["id"]
    assert "retry of" in capsys.readouterr().out
    assert main(["status", "--offline", str(retry_dir)]) == 0
    assert f"retry of     {report['run_id']}" in capsys.readouterr().out

    code, second = retry(run_dir)  # a run is retried once: a second retry would send twice
    assert (code, second) == (2, None)
    assert "already retried" in capsys.readouterr().err
    code, nothing = retry(retry_dir)  # the retry delivered everything: nothing left
    assert (code, nothing) == (0, None)
    assert "nothing to retry" in capsys.readouterr().out


def test_retry_sends_the_records_of_lost_executions_too(tmp_path, emulator):
    def lose_some() -> None:
        emulator.emu.state.plan = FaultPlan(lost=0.5)
        emulator.emu.state.dice = FaultDice(emulator.emu.state.plan, 11)

    emulator.call(lose_some)
    source = write_ndjson(tmp_path / "in.ndjson", range(1_000))
    run_dir, report = first_run(tmp_path, write_config(tmp_path, emulator.emu.base_url), source)
    lost = sum(e["source"]["line_count"] for e in report["executions"] if e["status"] == "LOST")
    assert lost > 0 and report["records"]["not_delivered"] == lost
    no_more_faults(emulator)
    code, retry_dir = retry(run_dir)
    assert code == 0
    assert_exactly_once(emulator.accounting, ndjson_digests(source))
    assert report_of(retry_dir)["retry_of"]["not_delivered"] == lost


def test_retry_of_csv_keeps_the_header_and_multi_line_records_whole(tmp_path, emulator):
    source = write_segment_csv(tmp_path / "segments.csv", 600)  # every 7th record spans two lines
    config = write_config(
        tmp_path,
        emulator.emu.base_url,
        import_='document_type = "USER_SEGMENT"\nmime_type = "TEXT_CSV"',
        batch='max_bytes = 6000\nsizing = "fixed"',
    )
    run_dir, report = first_run(tmp_path, config, source)
    assert report["outcome"] == "completed_with_failures"
    resend = failed_records(report)
    assert resend > 0
    no_more_faults(emulator)
    code, retry_dir = retry(run_dir)
    assert code == 0
    assert_exactly_once(emulator.accounting, csv_digests(source))
    assert report_of(retry_dir)["records"]["succeeded"] == resend


def test_an_interrupted_retry_resumes_and_delivers_exactly_once(tmp_path, emulator, monkeypatch):
    source = write_ndjson(tmp_path / "in.ndjson", range(3_000))
    config = write_config(tmp_path, emulator.emu.base_url, batch='max_bytes = 10000\nsizing = "fixed"')
    run_dir, report = first_run(tmp_path, config, source)
    assert failed_records(report) > 0 and sum(e["status"] == "FAILED" for e in report["executions"]) >= 4
    no_more_faults(emulator)

    import pipeline.cli.retry as retry_cli

    real = retry_cli._make_sink

    def interrupting_sink(args, secrets):  # SIGINT once the retry's first batch is uploaded
        sink, display = real(args, secrets)

        def on_event(name, fields):
            sink(name, fields)
            if name == "batch_uploaded":
                os.kill(os.getpid(), signal.SIGINT)

        return on_event, display

    monkeypatch.setattr(retry_cli, "_make_sink", interrupting_sink)
    code, retry_dir = retry(run_dir)
    assert code == 3 and retry_dir is not None
    assert report_of(retry_dir)["outcome"] == "interrupted"
    monkeypatch.setattr(retry_cli, "_make_sink", real)

    assert main(["resume", "-q", str(retry_dir)]) == 0
    assert_exactly_once(emulator.accounting, ndjson_digests(source))
    assert report_of(retry_dir)["retry_of"]["run_id"] == report["run_id"]


# --- the server's refusals ------------------------------------------------------------------------


def mixed_source(tmp_path: Path, n: int = 400, bad_every: int = 25) -> tuple[Path, list[int]]:
    """An NDJSON file whose lines 1, 26, 51... hold a record without an identifier."""
    lines, bad = [], []
    for i in range(n):
        if i % bad_every == 0:
            lines.append(BAD)
            bad.append(i + 1)
        else:
            lines.append(orjson.dumps(activity(i)))
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, bad


def failed_rows(run_dir: Path) -> list[dict]:
    """``failed.ndjson`` as the run wrote it from its executions' error files."""
    return [orjson.loads(x) for x in (run_dir / "failed.ndjson").read_bytes().splitlines()]


def assert_failed_lists(run_dir: Path, source: Path, lines: list[int]) -> None:
    """The run's ``failed.ndjson`` names exactly those lines of ``source``, once each, each row with
    that line's record (a retry's rows too: its batches are pieces of the source far apart)."""
    rows = failed_rows(run_dir)
    assert sorted((r["file"], r["line"]) for r in rows) == [(str(source), n) for n in sorted(lines)]
    data = source.read_bytes()
    text = (gzip.decompress(data) if source.suffix == ".gz" else data).split(b"\n")
    assert all(r["record"] == text[r["line"] - 1].decode() for r in rows), "each row holds its own record"
    warnings = report_of(run_dir)["warnings"]
    assert not [w for w in warnings if "does not read as it was sent" in w or "maps to" in w], warnings


@pytest.mark.parametrize("compressed", [False, True], ids=["ndjson", "ndjson.gz"])
def test_retry_sends_exactly_the_records_the_server_refused(tmp_path, emulator, compressed, capsys):
    no_more_faults(emulator)
    source, bad = mixed_source(tmp_path)
    if compressed:
        gz = source.with_name(source.name + ".gz")
        gz.write_bytes(gzip.compress(source.read_bytes()))
        source.unlink()
        source = gz
    config = write_config(
        tmp_path, emulator.emu.base_url, batch='max_bytes = 20000\nsizing = "fixed"\nvalidate = false'
    )
    run_dir, report = first_run(tmp_path, config, source)
    assert report["records"]["failed"] == len(bad) and report["records"]["rejected"] == 0
    assert_failed_lists(run_dir, source, bad)
    accepted = len(emulator.accounting.accepted)
    uploads_before = len(emulator.accounting.uploads)

    code, retry_dir = retry(run_dir)  # sent as they were: refused again
    assert code == 1
    sent = emulator.accounting.uploads[uploads_before:]
    assert sum(u.lines for u in sent) == len(bad), "exactly the refused records"
    assert len(emulator.accounting.accepted) == accepted, "nothing that succeeded was sent again"
    again = report_of(retry_dir)
    assert again["retry_of"]["refused"] == len(bad) and again["records"]["failed"] == len(bad)
    # the retry's batch is pieces of lines far apart: its failed.ndjson names the source lines, from its plan
    assert_failed_lists(retry_dir, source, bad)
    (exe_id,) = {r["execution_id"] for r in failed_rows(retry_dir)}
    capsys.readouterr()
    assert main(["executions", "errors", "--run", str(retry_dir), exe_id]) == 0  # the same mapping
    assert capsys.readouterr().out.splitlines() == [
        f"{source}:{r['line']}: {r['reason']}" for r in failed_rows(retry_dir)
    ]

    # the retry's executions failed whole (every record refused): their records are both not delivered
    # and in failed.ndjson; the retry of the retry sends each once, from the retry's own plan
    assert all(e["status"] == "FAILED" for e in again["executions"])
    uploads_before = len(emulator.accounting.uploads)
    code, third = retry(retry_dir)
    assert code == 1 and third is not None
    assert sum(u.lines for u in emulator.accounting.uploads[uploads_before:]) == len(bad)
    third_report = report_of(third)
    assert third_report["retry_of"]["run_id"] == again["run_id"]
    assert (third_report["retry_of"]["not_delivered"], third_report["retry_of"]["refused"]) == (len(bad), 0)
    assert_failed_lists(third, source, bad)


def test_a_record_failed_ndjson_lists_twice_is_sent_once(tmp_path, emulator):
    """A hand-edited failed.ndjson (a row pasted twice): the run never writes one, the retry must
    still send and count each record once."""
    no_more_faults(emulator)
    source, bad = mixed_source(tmp_path)
    config = write_config(
        tmp_path, emulator.emu.base_url, batch='max_bytes = 20000\nsizing = "fixed"\nvalidate = false'
    )
    run_dir, _ = first_run(tmp_path, config, source)
    failed = run_dir / "failed.ndjson"
    failed.write_bytes(failed.read_bytes() * 2)
    uploads_before = len(emulator.accounting.uploads)
    code, retry_dir = retry(run_dir)
    assert code == 1 and retry_dir is not None
    assert sum(u.lines for u in emulator.accounting.uploads[uploads_before:]) == len(bad)
    assert report_of(retry_dir)["retry_of"]["refused"] == len(bad)


def test_retry_of_csv_refusals_sends_those_records_whole_with_the_header(tmp_path, emulator):
    no_more_faults(emulator)
    source = write_segment_csv(tmp_path / "segments.csv", 300)
    text = source.read_bytes()
    # rows 0, 7, 14... span two lines (a quoted newline): make every 35th row one the server refuses
    bad_rows = [b'UPDATE,0,1000,acc-%d,123,"' % i for i in range(0, 300, 35)]
    for row in bad_rows:
        text = text.replace(row, row.replace(b"UPDATE", b"BOGUS"), 1)
    source.write_bytes(text)
    config = write_config(
        tmp_path,
        emulator.emu.base_url,
        import_='document_type = "USER_SEGMENT"\nmime_type = "TEXT_CSV"',
        batch='max_bytes = 6000\nsizing = "fixed"\nvalidate = false',
    )
    run_dir, report = first_run(tmp_path, config, source)
    assert report["records"]["failed"] == len(bad_rows)
    records, start, quotes, line = [], 0, 0, 1
    for pos, byte in enumerate(text):  # the records, with the line each starts on
        quotes += byte == 0x22
        if byte == 0x0A and quotes % 2 == 0:
            records.append((line, text[start : pos + 1]))
            line += text.count(b"\n", start, pos + 1)
            start = pos + 1
    refused = [(n, r) for n, r in records if r.startswith(b"BOGUS")]
    assert len(refused) == len(bad_rows) and all(r.count(b"\n") == 2 for _, r in refused)
    expected = sorted((str(source), n, r[:-1].decode()) for n, r in refused)
    assert sorted((x["file"], x["line"], x["record"]) for x in failed_rows(run_dir)) == expected

    code, retry_dir = retry(run_dir)
    assert code == 1
    again = report_of(retry_dir)
    assert again["records"]["sent"] == len(refused) == again["records"]["failed"]
    sent = {f.record for e in again["executions"] for f in emulator.emu.store.executions[e["id"]].failures}
    assert sent == {r[:-1] for _, r in refused}, "each refused record whole, after the header row, nothing else"
    # the retry's batches are its header and pieces far apart: mapped through its plan, the same lines
    assert sorted((x["file"], x["line"], x["record"]) for x in failed_rows(retry_dir)) == expected


def test_refusals_of_a_retry_are_retried_from_its_plan(tmp_path, emulator):
    """R1 has FAILED executions and refused records; R2 (its retry, no faults) sends the FAILED
    batches whole, whose bad lines the server refuses in executions that succeed; R3, the retry of
    R2, sends exactly those, found through R2's plan."""
    source, bad = mixed_source(tmp_path, n=1_200, bad_every=40)
    # one upload at a time: the emulator draws each execution's fate in the order uploads arrive, and
    # with two at once a draw could leave R2 a batch of refused records only (which FAILS, whole)
    config = write_config(
        tmp_path,
        emulator.emu.base_url,
        batch='max_bytes = 20000\nsizing = "fixed"\nvalidate = false',
        upload="max_attempts = 3\nsettle_window_s = 1\nconcurrency = 1",
    )
    run_dir, report = first_run(tmp_path, config, source)
    failed = [e for e in report["executions"] if e["status"] == "FAILED"]
    assert failed and len(failed) < len(report["executions"])
    in_failed = [n for n in bad if any(e["source"]["first_line"] <= n <= e["source"]["last_line"] for e in failed)]
    elsewhere = [n for n in bad if n not in in_failed]
    assert in_failed and elsewhere
    assert_failed_lists(run_dir, source, elsewhere)  # a FAILED execution (a fault) has no error file
    no_more_faults(emulator)

    code, r2 = retry(run_dir)
    assert code == 1 and r2 is not None
    second = report_of(r2)
    assert second["records"]["failed"] == len(in_failed) + len(elsewhere)
    assert all(e["status"] == "SUCCEEDED" for e in second["executions"]), "good records in every batch of R2"
    assert_failed_lists(r2, source, bad)  # every bad line refused again, in R2's SUCCEEDED executions
    uploads_before = len(emulator.accounting.uploads)
    code, r3 = retry(r2)
    assert code == 1 and r3 is not None
    assert sum(u.lines for u in emulator.accounting.uploads[uploads_before:]) == len(bad)
    third = report_of(r3)
    assert third["retry_of"]["run_id"] == second["run_id"]
    assert (third["retry_of"]["refused"], third["retry_of"]["not_delivered"]) == (len(bad), 0)
    assert_exactly_once(emulator.accounting, ndjson_digests(source))


def test_fixed_refused_and_rejected_records_are_sent_with_rejected(tmp_path, emulator, capsys):
    no_more_faults(emulator)
    source, bad = mixed_source(tmp_path)
    config = write_config(tmp_path, emulator.emu.base_url)  # validation on: the bad lines are client-side rejects
    run_dir, report = first_run(tmp_path, config, source)
    assert report["records"]["rejected"] == len(bad) and report["outcome"] == "completed_with_failures"

    code, nothing = retry(run_dir)  # without --rejected: nothing failed on the server
    assert (code, nothing) == (0, None)

    lines = source.read_bytes().split(b"\n")
    for line in bad[:-1]:  # fixed in place, one record per line; the last one left bad
        lines[line - 1] = orjson.dumps(activity(line - 1))
    source.write_bytes(b"\n".join(lines))
    code, retry_dir = retry(run_dir, "--rejected")
    assert code == 1, capsys.readouterr()
    assert_exactly_once(emulator.accounting, ndjson_digests(source))
    again = report_of(retry_dir)
    assert again["retry_of"]["rejected"] == len(bad) - 1 and again["records"]["rejected"] == 1
    (still_bad,) = [orjson.loads(x) for x in (retry_dir / "rejects.ndjson").read_bytes().splitlines()]
    assert (still_bad["file"], still_bad["line"]) == (str(source), bad[-1])


def test_refused_records_fixed_in_place_are_checked_and_sent_with_rejected(tmp_path, emulator, capsys):
    no_more_faults(emulator)
    source, bad = mixed_source(tmp_path)
    config = write_config(
        tmp_path, emulator.emu.base_url, batch='max_bytes = 20000\nsizing = "fixed"\nvalidate = false'
    )
    run_dir, _ = first_run(tmp_path, config, source)
    assert_failed_lists(run_dir, source, bad)
    lines = source.read_bytes().split(b"\n")
    for line in bad:
        lines[line - 1] = orjson.dumps(activity(line - 1))
    source.write_bytes(b"\n".join(lines))

    assert retry(run_dir) == (2, None), "changed: without --rejected, only records as they were are sent"
    assert "changed since the run" in capsys.readouterr().err
    code, retry_dir = retry(run_dir, "--rejected")
    assert code == 0, capsys.readouterr()
    assert_exactly_once(emulator.accounting, ndjson_digests(source))
    assert report_of(retry_dir)["retry_of"]["refused"] == len(bad)


def test_a_fix_that_moves_lines_is_refused(tmp_path, emulator, capsys):
    no_more_faults(emulator)
    source, bad = mixed_source(tmp_path)
    run_dir, _ = first_run(tmp_path, write_config(tmp_path, emulator.emu.base_url), source)
    lines = source.read_bytes().split(b"\n")
    lines[bad[1] - 1] = orjson.dumps(activity(0)) + b"\n" + orjson.dumps(activity(1))  # one line became two
    source.write_bytes(b"\n".join(lines))
    uploads = len(emulator.accounting.uploads)
    assert retry(run_dir, "--rejected") == (2, None)
    assert "without adding or removing lines" in capsys.readouterr().err
    assert len(emulator.accounting.uploads) == uploads


# --- refusals -------------------------------------------------------------------------------------


def test_retry_of_a_changed_input_is_refused(tmp_path, emulator, capsys):
    source = write_ndjson(tmp_path / "in.ndjson", range(1_500))
    run_dir, report = first_run(tmp_path, write_config(tmp_path, emulator.emu.base_url), source)
    assert failed_records(report) > 0
    with source.open("ab") as fh:
        fh.write(orjson.dumps(activity(99_999)) + b"\n")
    code, retry_dir = retry(run_dir)
    assert (code, retry_dir) == (2, None)
    assert "changed since the run" in capsys.readouterr().err


def test_retry_into_an_unknown_import_sends_nothing_and_leaves_no_run(tmp_path, emulator, capsys):
    source = write_ndjson(tmp_path / "in.ndjson", range(1_500))
    run_dir, report = first_run(tmp_path, write_config(tmp_path, emulator.emu.base_url), source)
    assert failed_records(report) > 0
    uploads = len(emulator.accounting.uploads)
    assert retry(run_dir, "--import-id", "987654") == (2, None)
    assert "nothing was sent" in capsys.readouterr().err
    assert len(emulator.accounting.uploads) == uploads
    assert [p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")] == [run_dir.name]


def test_retry_of_a_run_that_succeeded_creates_nothing(tmp_path, emulator, capsys):
    no_more_faults(emulator)
    source = write_ndjson(tmp_path / "in.ndjson", range(200))
    run_dir, report = first_run(tmp_path, write_config(tmp_path, emulator.emu.base_url), source)
    assert report["exit_code"] == 0
    uploads = len(emulator.accounting.uploads)
    assert retry(run_dir) == (0, None)
    assert "nothing to retry" in capsys.readouterr().out
    assert len(emulator.accounting.uploads) == uploads


def test_refusals_without_failed_ndjson_are_not_guessed_and_it_says_so(tmp_path, emulator, capsys):
    no_more_faults(emulator)
    source, bad = mixed_source(tmp_path)
    config = write_config(
        tmp_path, emulator.emu.base_url, batch='max_bytes = 20000\nsizing = "fixed"\nvalidate = false'
    )
    run_dir, report = first_run(tmp_path, config, source)
    assert report["records"]["failed"] == len(bad)
    # the run wrote failed.ndjson; deleted, it stands for a run without one (made before the file existed,
    # or whose rebuild could not write it: a warning in its report): its refusals must not be guessed
    (run_dir / "failed.ndjson").unlink()
    capsys.readouterr()
    assert retry(run_dir) == (1, None), "records left behind: not a success"
    out = capsys.readouterr()
    assert "nothing to retry" in out.out and f"the server refused {len(bad)} records but failed.ndjson" in out.err


def test_retry_of_an_unfinished_run_says_resume_it_first(tmp_path, emulator, capsys):
    source = write_ndjson(tmp_path / "in.ndjson", range(200))
    run_dir, _ = first_run(tmp_path, write_config(tmp_path, emulator.emu.base_url), source)
    journal = run_dir / "journal.ndjson"
    kept = [x for x in journal.read_bytes().splitlines(keepends=True) if b'"run_finished"' not in x]
    journal.write_bytes(b"".join(kept))  # as if the run had been killed before its end
    assert retry(run_dir) == (2, None)
    assert "pipeline resume" in capsys.readouterr().err


def test_retry_help_explains(capsys):
    with pytest.raises(SystemExit):
        main(["retry", "--help"])
    out = capsys.readouterr().out
    assert "--rejected" in out and "failed.ndjson" in out and "exit codes" in out


def test_running_the_same_files_again_is_refused_and_points_at_retry(tmp_path, emulator, capsys):
    source = write_ndjson(tmp_path / "a.ndjson", range(1_500))
    config = write_config(tmp_path, emulator.emu.base_url)
    run_dir, report = first_run(tmp_path, config, source)
    assert report["exit_code"] == 1, "some executions failed: the case where a new run is the wrong fix"
    capsys.readouterr()
    sent = len(emulator.accounting.uploads)
    assert main(["run", "--config", str(config), "-q", str(source)]) == 2
    err = capsys.readouterr().err
    assert f"already sent by run {run_dir.name}" in err and f"pipeline retry {run_dir}" in err and "--again" in err
    assert len(emulator.accounting.uploads) == sent, "nothing sent"
    assert run_dirs(tmp_path) == [run_dir]

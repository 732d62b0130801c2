"""Issue 13, the error budget and the outcomes that tell the truth, through the CLI against the
emulator over loopback: ``--max-errors N|N%`` (records rejected by the reader plus refused by the
server), ``too_many_errors`` while reading, files skipped whole, a run with nothing to send, and
the errors no resume fixes (exit 2 before anything was sent, exit 1 after some was accepted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.cli.entry import main

from ..helpers import EmulatorThread, activity, assert_exactly_once, ndjson_digests
from .test_hostile_server import (
    TOKEN,
    TOKEN_ENV,
    _result,
    assert_no_traceback,
    cli_run,
    options,
    write_config,
)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., EmulatorThread]]:
    """``server(faults)``: an emulator thread (as in ``test_hostile_server``), stopped at the end."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    started: list[EmulatorThread] = []

    def start(faults: Any = None) -> EmulatorThread:
        started.append(EmulatorThread(options(faults)).__enter__())
        return started[-1]

    yield start
    for thread in started:
        thread.__exit__(None, None, None)


BAD = b'{"$type":"TOUCH","$ts":1}'  # no user identifier: the reader rejects it, the server refuses it


def mixed(path: Path, good: int, bad_at: set[int]) -> Path:
    """``good`` valid records with a bad line before each index of ``bad_at``."""
    with path.open("wb") as fh:
        for i in range(good):
            if i in bad_at:
                fh.write(BAD + b"\n")
            fh.write(orjson.dumps(activity(i)) + b"\n")
    return path


def refused_total(report: dict[str, Any]) -> int:
    return sum(e["total_failure"] or 0 for e in report["executions"])


# --- the budget against the server's refusals --------------------------------------------------


def test_max_errors_1_percent_with_0_2_percent_refused_exits_0_with_a_warning(tmp_path, capsys, server) -> None:
    emu = server()
    src = mixed(tmp_path / "in.ndjson", 5_000, set(range(0, 5_000, 500)))  # 10 bad of 5,010: 0.2 %
    config = write_config(tmp_path, emu.emu.base_url, batch={"validate": False, "max_bytes": 200_000})
    result = cli_run(tmp_path, capsys, config, src, args=["--max-errors", "1%"])
    emu.wait_idle()
    assert_no_traceback(result)
    assert result.code == 0, result.text
    report = result.report
    assert report["outcome"] == "succeeded" and refused_total(report) == 10  # the server refused them
    assert report["error_budget"] == {"max_errors": "1%", "allowed": 50, "errors": 10, "within": True}
    assert "within the error budget" in result.out and "10 records were rejected or refused" in result.out
    assert "error budget" in (result.run_dir / "report.html").read_text()


def test_max_errors_10_with_37_refused_exits_1(tmp_path, capsys, server) -> None:
    emu = server()
    src = mixed(tmp_path / "in.ndjson", 3_000, set(range(0, 37 * 80, 80)))  # 37 bad lines
    config = write_config(tmp_path, emu.emu.base_url, batch={"validate": False})
    result = cli_run(tmp_path, capsys, config, src, args=["--max-errors", "10"])
    emu.wait_idle()
    assert_no_traceback(result)
    assert result.code == 1, result.text
    report = result.report
    assert report["outcome"] == "completed_with_failures" and refused_total(report) == 37
    assert report["error_budget"]["errors"] == 37 and not report["error_budget"]["within"]
    assert "37 of 10 allowed (10): OVER" in result.out


def test_the_budget_in_the_config_file_as_a_number(tmp_path, capsys, server) -> None:
    emu = server()
    src = mixed(tmp_path / "in.ndjson", 1_000, {3, 400, 999})
    config = write_config(tmp_path, emu.emu.base_url, batch={"max_errors": 3})
    result = cli_run(tmp_path, capsys, config, src)
    assert result.code == 0, result.text
    assert result.report["records"]["rejected"] == 3 and result.report["error_budget"]["within"]


def test_a_bad_budget_is_a_usage_error_before_anything(tmp_path, capsys, server) -> None:
    emu = server()
    src = mixed(tmp_path / "in.ndjson", 10, set())
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), src, args=["--max-errors", "ten"])
    assert result.code == 2 and "batch.max_errors" in result.err
    assert emu.upload_posts() == 0


# --- too many rejects while reading: the run stops sending, resumable ---------------------------


def test_rejects_over_the_budget_stop_the_sending_and_resume_with_a_new_budget_finishes(
    tmp_path, capsys, server
) -> None:
    emu = server()
    # 20 bad lines from record 15,000 on (about 5 MB in: the reader checks blocks of 1 MiB)
    src = mixed(tmp_path / "in.ndjson", 20_000, set(range(15_000, 15_200, 10)))
    config = write_config(tmp_path, emu.emu.base_url, batch={"max_bytes": 200_000})
    result = cli_run(tmp_path, capsys, config, src, args=["--max-errors", "5"])
    emu.wait_idle()
    assert_no_traceback(result)
    assert result.code == 1, result.text
    report = result.report
    assert report["outcome"] == "too_many_errors"
    assert report["records"]["rejected"] == 20  # as far as the reader had checked
    sent = report["records"]["sent"]
    assert 0 < sent < 15_000 and report["records"]["succeeded"] == sent  # nothing after the rejects was sent
    assert "over the error budget" in result.out and "stopped sending new batches" in result.out
    assert report["resume_command"] and "resume with:" in result.err
    status = main(["status", "--offline", str(result.run_dir)])
    out = capsys.readouterr().out
    assert status == 1 and "too_many_errors" in out and "resume with" in out

    code = main(["resume", "-q", "--max-errors", "20", str(result.run_dir)])
    resumed = _result(code, capsys, result.run_dir)
    emu.wait_idle()
    assert_no_traceback(resumed)
    assert resumed.code == 0, resumed.text
    assert resumed.report["outcome"] == "succeeded" and resumed.report["records"]["rejected"] == 20
    assert_exactly_once(emu.accounting, ndjson_digests(src))  # nothing sent twice, nothing lost


# --- files skipped whole; nothing valid to send -------------------------------------------------


def test_a_skipped_file_is_reported_with_its_size_not_as_a_rejected_record(tmp_path, capsys, server) -> None:
    emu = server()
    good = mixed(tmp_path / "a.ndjson", 200, set())
    binary = tmp_path / "b.ndjson"
    binary.write_bytes(b"\x00\x01garbage\x00" * 500)
    config = write_config(tmp_path, emu.emu.base_url)
    result = cli_run(tmp_path, capsys, config, good, binary, args=["--max-errors", "100%"])
    assert_no_traceback(result)
    assert result.code == 1, result.text  # a file is not records: never within a budget
    report = result.report
    assert report["outcome"] == "completed_with_failures"
    assert report["records"]["rejected"] == 0 and report["records"]["succeeded"] == 200
    (skipped,) = report["skipped_files"]
    assert skipped["path"] == str(binary) and skipped["bytes"] == 5_000 and "binary" in skipped["reason"]
    assert f"skipped file: {binary} (5.0 kB): binary file" in result.out
    assert "files skipped" in result.out
    assert "within; the run failed for what no budget covers: files skipped whole" in result.out
    assert "Files skipped" in (result.run_dir / "report.html").read_text()


def test_a_failed_execution_is_outside_the_budget_and_the_summary_says_so(tmp_path, capsys, server) -> None:
    emu = server({"failed": 1.0})  # every execution FAILED, whatever its records
    good = mixed(tmp_path / "a.ndjson", 200, set())
    config = write_config(tmp_path, emu.emu.base_url)
    result = cli_run(tmp_path, capsys, config, good, args=["--max-errors", "10%"])
    assert_no_traceback(result)
    assert result.code == 1, result.text
    assert result.report["error_budget"]["within"] is True
    assert "the run failed for what no budget covers: 200 records of FAILED executions" in result.out


def test_a_run_with_nothing_valid_creates_no_document_import(tmp_path, capsys, server) -> None:
    emu = server()
    src = tmp_path / "bad.ndjson"
    src.write_bytes(b"\n".join([BAD] * 30) + b"\n")
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), src)
    assert_no_traceback(result)
    assert result.code == 1, result.text
    assert result.report["records"]["rejected"] == 30 and result.report["batches"] == 0
    assert "no document import was created" in result.out
    assert emu.call(lambda: len(emu.emu.store.imports)) == 0
    assert emu.upload_posts() == 0
    assert "document import none created" in (result.run_dir / "report.html").read_text()


# --- errors no resume fixes ---------------------------------------------------------------------


def test_a_refused_token_exits_2_with_a_report_that_says_why(tmp_path, capsys, server, monkeypatch) -> None:
    emu = server()
    src = mixed(tmp_path / "in.ndjson", 100, set())
    monkeypatch.setenv(TOKEN_ENV, "a-token-the-server-does-not-know")
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), src)
    assert result.code == 2, result.text
    assert "401" in result.err and f"check {TOKEN_ENV}" in result.err and "one hour" in result.err
    report = result.report
    assert report["outcome"] == "nothing_sent" and report["exit_code"] == 2
    assert report["final_error"]["status"] == "401" and "token was refused" in report["final_error"]["cause"]
    assert "a-token-the-server" not in (result.run_dir / "report.json").read_text()
    assert "final-error" in (result.run_dir / "report.html").read_text()
    assert emu.upload_posts() == 0
    assert main(["status", "--offline", str(result.run_dir)]) == 2
    out = capsys.readouterr().out
    assert "nothing_sent" in out and f"check {TOKEN_ENV}" in out


def test_an_unknown_import_id_exits_2_with_a_report_that_says_why(tmp_path, capsys, server) -> None:
    emu = server()
    src = mixed(tmp_path / "in.ndjson", 100, set())
    config = write_config(tmp_path, emu.emu.base_url, **{"import": {"id": "987654"}})
    result = cli_run(tmp_path, capsys, config, src)
    assert result.code == 2, result.text
    report = result.report
    assert report["outcome"] == "nothing_sent"
    assert "document import 987654 is unknown" in report["final_error"]["cause"]
    assert "import.id" in report["final_error"]["fix"]
    assert emu.upload_posts() == 0


def test_an_import_deleted_mid_run_exits_1_once_batches_were_accepted(tmp_path, capsys, server) -> None:
    emu = server({"slow": "1:300ms"})  # each upload's answer 0.3 s late: the import goes while the run sends
    src = mixed(tmp_path / "in.ndjson", 3_000, set())
    config = write_config(tmp_path, emu.emu.base_url, upload={"concurrency": 1, "adaptive": False})

    def delete_after_two() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and emu.call(lambda: emu.emu.state.created) < 2:
            time.sleep(0.01)
        emu.call(lambda: [emu.emu.store.delete_import(i) for i in list(emu.emu.store.imports)])

    deleter = threading.Thread(target=delete_after_two, daemon=True)
    deleter.start()
    result = cli_run(tmp_path, capsys, config, src)
    deleter.join(30)
    assert_no_traceback(result)
    assert result.code == 1, result.text
    report = result.report
    assert report["outcome"] == "stopped_on_error"
    assert "unknown to the server" in report["final_error"]["cause"]
    assert report["records"]["sent"] > 0 and "resume_command" not in report
    assert "error: the document import" in result.out and "fix: check import.id" in result.out


def test_a_token_revoked_mid_run_stays_resumable_and_says_tokens_last_an_hour(tmp_path, capsys, server) -> None:
    emu = server({"revoke_after": 3})
    src = mixed(tmp_path / "in.ndjson", 3_000, set())
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), src)
    assert result.code == 3 and result.report["outcome"] == "incomplete", result.text
    assert "temporary tokens from a user login last one hour" in result.out
    assert TOKEN not in result.text
    again = _result(main(["resume", "-q", str(result.run_dir)]), capsys, result.run_dir)
    assert again.code == 3 and again.report["outcome"] == "incomplete", again.text  # still resumable
    assert "one hour" in again.text and again.report["resume_command"]
    emu.call(emu.emu.restore_token)
    done = _result(main(["resume", "-q", str(result.run_dir)]), capsys, result.run_dir)
    emu.wait_idle()
    assert done.code == 0, done.text
    assert_exactly_once(emu.accounting, ndjson_digests(src))


def test_a_forbidden_datamart_mid_run_exits_1_with_the_cause_and_the_fix(tmp_path, capsys, server) -> None:
    emu = server({"forbid_after": 3})  # 403 on every request once 3 executions exist
    src = mixed(tmp_path / "in.ndjson", 3_000, set())
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), src)
    assert_no_traceback(result)
    assert result.code == 1, result.text
    report = result.report
    assert report["outcome"] == "stopped_on_error" and report["final_error"]["status"] == "403"
    assert "may not import into datamart 1000" in report["final_error"]["cause"]
    assert report["records"]["sent"] > 0 and "resume_command" not in report
    assert "fix: give the token's user the right to import into datamart 1000" in result.out
    assert main(["status", "--offline", str(result.run_dir)]) == 1
    out = capsys.readouterr().out
    assert "stopped_on_error" in out and "right to import" in out


def test_a_forbidden_datamart_before_anything_exits_2_nothing_sent(tmp_path, capsys, server) -> None:
    emu = server({"forbid_after": 0})
    src = mixed(tmp_path / "in.ndjson", 100, set())
    result = cli_run(tmp_path, capsys, write_config(tmp_path, emu.emu.base_url), src)
    assert result.code == 2, result.text
    assert result.report["outcome"] == "nothing_sent" and result.report["final_error"]["status"] == "403"
    assert "hint: the API token may not import into datamart 1000" in result.err
    assert emu.upload_posts() == 0

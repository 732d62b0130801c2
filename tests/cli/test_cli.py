"""The command line against the emulator over loopback: run, validate, status, imports, executions,
cancel, --version and every --help. ``main(argv)`` is called directly; the emulator runs in a thread
(the commands run their own event loop)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import orjson
import pytest

from pipeline import __version__
from pipeline.cli.entry import main
from pipeline.cli.parser import build_parser
from pipeline.emulator import EmulatorOptions

from ..helpers import EmulatorThread, activity, write_ndjson

TOKEN = "cli-test-token-9f3a"
TOKEN_ENV = "PIPELINE_CLI_TEST_TOKEN"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write_config(tmp_path: Path, url: str, **extra: str) -> Path:
    sections = {
        "api": f'url = "{url}"\ntoken_env = "{TOKEN_ENV}"\ntimeout_s = 30',
        "poll": "interval_s = 0.02\nmax_interval_s = 0.1\ntimeout_s = 60",
        "report": f'dir = "{tmp_path / "runs"}"',
        "upload": "max_attempts = 3\nsettle_window_s = 1",
    }
    sections.update(extra)
    path = tmp_path / "import.toml"
    path.write_text("\n".join(f"[{k}]\n{v}\n" for k, v in sections.items()))
    return path


@pytest.fixture
def emulator(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as server:
        yield server


def mixed_file(tmp_path: Path, n: int = 60, bad_every: int = 10) -> Path:
    lines = [orjson.dumps(activity(i)).decode() for i in range(n)]
    for i in range(0, n, bad_every):
        lines[i] = '{"$type": "TOUCH", "$ts": 1}'  # no identifier
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def summary_rows(text: str) -> dict[str, str]:
    """The plain summary table as {row name: value}."""
    rows = {}
    for line in text.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2:
            rows[parts[0]] = parts[1]
    return rows


# --- version and help ---------------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pipeline {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["resume"],
        ["validate"],
        ["status"],
        ["imports"],
        ["imports", "list"],
        ["executions"],
        ["executions", "list"],
        ["executions", "errors"],
        ["cancel"],
        ["emulator"],
    ],
)
def test_every_help_shows_an_example(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and "pipeline " in out.split("example:")[1]


def test_a_group_without_action_prints_its_help_and_exits_2(capsys):
    assert main(["executions"]) == 2
    assert "errors" in capsys.readouterr().err


def test_the_parser_knows_every_command():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    expected = {"run", "resume", "validate", "status", "imports", "executions", "cancel", "emulator"}
    assert expected <= set(sub.choices)


# --- validate -----------------------------------------------------------------------------------


def test_validate_clean_file_exit_0_sends_nothing_and_writes_no_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MICS_API_TOKEN", raising=False)
    config = tmp_path / "small.toml"
    config.write_text(f'[batch]\nmax_lines = 300\n[report]\ndir = "{tmp_path / "runs"}"\n')
    assert main(["validate", "--config", str(config), str(EXAMPLES / "user_activity.ndjson")]) == 0
    out = capsys.readouterr().out
    assert "batch plan: 4 batches, 1,000 records" in out
    assert "1-300" in out and "901-1000" in out
    assert "no reject" in out
    assert not (tmp_path / "runs").exists()


def test_validate_shows_the_batches_a_first_run_cuts(tmp_path, monkeypatch, capsys):
    """The run's own plan (10 batches, the first two smaller), not cuts at max_bytes (1 batch)."""
    from pipeline.reading import sizing

    monkeypatch.setattr(sizing, "MIN_BATCH_BYTES", 1000)
    source = write_ndjson(tmp_path / "in.ndjson", range(4000))
    assert main(["validate", "--json", str(source)]) == 0
    batches = orjson.loads(capsys.readouterr().out)["batches"]
    assert len(batches) == sizing.MIN_BATCHES
    assert batches[0]["bytes"] < batches[1]["bytes"] < batches[2]["bytes"]


def test_validate_warns_of_a_directory_of_small_files(tmp_path, capsys):
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(25):
        write_ndjson(parts / f"part-{i:02}.ndjson", range(i * 10, i * 10 + 10))
    assert main(["validate", "--json", str(parts)]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert len(report["batches"]) == 25
    assert report["warnings"] and "at least 25 executions where 1 would do" in report["warnings"][0]
    assert main(["validate", str(parts)]) == 0
    assert "warning: 25 input files, 25 of them under half a batch" in capsys.readouterr().err


def test_validate_lists_rejects_with_file_line_reason_and_exits_1(tmp_path, capsys):
    source = mixed_file(tmp_path)
    assert main(["validate", str(source)]) == 1
    out = capsys.readouterr().out
    assert "rejects: 6 records would be rejected" in out
    for line in (1, 11, 21, 31, 41, 51):
        assert f"{source}  {line} " in out.replace("    ", "  ") or f" {line} " in out
    assert "missing user identifier" in out
    assert "54 records would be sent, 6 rejected (nothing was sent)" in out


def test_validate_json(tmp_path, capsys):
    source = mixed_file(tmp_path)
    assert main(["validate", "--json", "--max-rejects", "2", str(source)]) == 1
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["rejected"] == 6 and len(doc["rejects"]) == 2 and doc["records"] == 54
    assert doc["rejects"][0] == {
        "file": str(source),
        "line": 1,
        "reason": doc["rejects"][0]["reason"],
        "record": '{"$type": "TOUCH", "$ts": 1}',
    }
    assert doc["rejects_by_reason"] == {"missing user identifier": 6}


def test_validate_usage_and_config_errors_exit_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.ndjson")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[batch]\nmax_bytes = 1\n")
    assert main(["validate", "--config", str(bad), str(EXAMPLES / "user_activity.ndjson")]) == 2
    assert "batch.max_bytes" in capsys.readouterr().err
    assert main(["validate", str(EXAMPLES / "user_segment.csv")]) == 2  # CSV for an NDJSON import


# --- run ----------------------------------------------------------------------------------------


def test_run_writes_report_html_and_prints_the_summary(tmp_path, emulator, capsys):
    config = write_config(tmp_path, emulator.emu.base_url, batch="max_lines = 20")
    source = mixed_file(tmp_path)
    code = main(["run", "--config", str(config), "--report", str(tmp_path / "copy.json"), str(source)])
    assert code == 1
    out = capsys.readouterr().out
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / "report.json").is_file() and (run_dir / "report.html").is_file()
    assert (tmp_path / "copy.html").is_file()
    assert (run_dir / "report.html").stat().st_mode & 0o777 == 0o600
    html = (run_dir / "report.html").read_text()
    assert 'id="timeline"' in html and "missing user identifier" in html
    rows = summary_rows(out)
    assert rows["outcome"] == "completed_with_failures (exit 1)"
    assert rows["records read"] == "60" and rows["rejected"] == "6"
    assert rows["sent"] == "54" and rows["succeeded"] == "54" and rows["failed"] == "0"
    assert rows["executions"] == "SUCCEEDED 3"
    assert str(run_dir / "report.html") in out and "rejects.ndjson" in out


def test_run_json_logs_are_one_valid_object_per_line_without_the_token(tmp_path, emulator, capsys):
    config = write_config(tmp_path, emulator.emu.base_url, batch="max_lines = 20")
    source = write_ndjson(tmp_path / "a.ndjson", range(100))
    assert main(["run", "--log-format", "json", "-v", "--config", str(config), str(source)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # the summary is in run_finished
    lines = captured.err.splitlines()
    events = [orjson.loads(line) for line in lines]
    names = [e["event"] for e in events]
    assert names[0] == "target" and names[-1] == "run_finished"
    for name in ("run_started", "batch_uploaded", "execution_finished", "execution_status"):
        assert name in names
    assert names.count("batch_uploaded") == 5 and names.count("execution_finished") == 5
    assert TOKEN not in captured.err
    assert events[-1]["outcome"] == "succeeded" and events[-1]["records"]["succeeded"] == 100


def test_run_quiet_prints_only_the_summary(tmp_path, emulator, capsys):
    config = write_config(tmp_path, emulator.emu.base_url)
    source = write_ndjson(tmp_path / "a.ndjson", range(50))
    assert main(["run", "-q", "--config", str(config), str(source)]) == 0
    captured = capsys.readouterr()
    [where] = captured.err.splitlines()  # -q still says where the run directory is (a scheduler's log needs it)
    run_dir = next((tmp_path / "runs").iterdir())
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z run {run_dir.name}: run directory {run_dir}", where
    )
    assert captured.out.startswith("outcome") and "succeeded (exit 0)" in captured.out


def test_run_plain_progress_lines_every_interval_without_control_characters(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=400, per_line_us=0, slots=2)) as server:
        config = write_config(tmp_path, server.emu.base_url, batch="max_lines = 20")
        source = write_ndjson(tmp_path / "a.ndjson", range(100))
        assert main(["run", "--progress-interval", "0.1", "--config", str(config), str(source)]) == 0
    err = capsys.readouterr().err
    progress = [line.split(" ", 1)[1] for line in err.splitlines() if line.split(" ", 1)[1].startswith("progress ")]
    assert len(progress) >= 3
    assert "\x1b" not in err and "\r" not in err
    assert any("still processing after the last upload" in line for line in progress)
    assert "uploaded 5 (0 in flight)" in progress[-1]


def test_run_usage_error_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert main(["run", "--config", str(config), str(EXAMPLES / "user_activity.ndjson")]) == 2
    assert TOKEN_ENV in capsys.readouterr().err


# --- imports, executions ------------------------------------------------------------------------


def _run_with_server_failures(tmp_path: Path, url: str) -> dict:
    """A run whose bad lines are sent (validate off): the server fails them into error files."""
    config = write_config(tmp_path, url, batch="max_lines = 20\nvalidate = false")
    assert main(["run", "-q", "--config", str(config), str(mixed_file(tmp_path))]) == 1
    run_dir = next((tmp_path / "runs").iterdir())
    return orjson.loads((run_dir / "report.json").read_bytes()) | {"config": str(config)}


def test_imports_and_executions_list(tmp_path, emulator, capsys):
    report = _run_with_server_failures(tmp_path, emulator.emu.base_url)
    capsys.readouterr()
    imp = report["document_import"]["id"]
    assert main(["imports", "list", "--config", report["config"]]) == 0
    out = capsys.readouterr().out
    assert imp in out and report["run_id"] in out and "USER_ACTIVITY" in out
    assert main(["executions", "list", "--config", report["config"], imp]) == 0
    out = capsys.readouterr().out
    for e in report["executions"]:
        assert e["id"] in out
    assert out.count("SUCCEEDED") == 3 and "yes" in out
    assert main(["executions", "list", "--json", "--limit", "2", "--config", report["config"], imp]) == 0
    assert len(orjson.loads(capsys.readouterr().out)) == 2


def test_executions_errors_downloads_the_error_file(tmp_path, emulator, capsys):
    report = _run_with_server_failures(tmp_path, emulator.emu.base_url)
    failed = next(e for e in report["executions"] if e["total_failure"])
    out_file = tmp_path / "errors.ndjson"
    args = ["executions", "errors", "--config", report["config"], failed["id"], "-o", str(out_file)]
    assert main([*args, "--import-id", report["document_import"]["id"]]) == 0
    rows = [orjson.loads(x) for x in out_file.read_bytes().splitlines()]
    assert len(rows) == failed["total_failure"] == 2
    assert all(r["reason"] and r["record"] == '{"$type": "TOUCH", "$ts": 1}' for r in rows)
    out_file.unlink()
    capsys.readouterr()
    assert main(args) == 0  # without --import-id: found by scanning the imports
    assert len(out_file.read_bytes().splitlines()) == 2
    assert "2 failed records" in capsys.readouterr().err


def test_api_commands_need_a_real_url_and_a_token(tmp_path, monkeypatch, capsys):
    assert main(["imports", "list"]) == 2
    assert "embedded" in capsys.readouterr().err
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert main(["imports", "list", "--config", str(config)]) == 2
    assert TOKEN_ENV in capsys.readouterr().err


def test_an_unreachable_server_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert main(["executions", "list", "--config", str(config), "1"]) == 3
    err = capsys.readouterr().err
    assert " error: the service failed" in err.splitlines()[0] and TOKEN not in err


# --- cancel and status ----------------------------------------------------------------------------


@contextlib.contextmanager
def slow_run(tmp_path: Path, monkeypatch):
    """A run that stops at its poll timeout with one execution RUNNING and the others PENDING."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=400, per_line_us=200_000, slots=1)) as server:
        config = write_config(
            tmp_path,
            server.emu.base_url,
            batch="max_lines = 20",
            poll="interval_s = 0.02\nmax_interval_s = 0.1\ntimeout_s = 0.5",
        )
        source = write_ndjson(tmp_path / "a.ndjson", range(80))
        assert main(["run", "-q", "--config", str(config), str(source)]) == 3
        yield server, next((tmp_path / "runs").iterdir()), config


def test_cancel_run_dir_cancels_what_is_still_pending_and_status_shows_it(tmp_path, monkeypatch, capsys):
    with slow_run(tmp_path, monkeypatch) as (server, run_dir, _):
        capsys.readouterr()
        assert main(["status", str(run_dir)]) == 3
        out = capsys.readouterr().out
        assert "refreshed 4 execution(s)" in out and "PENDING 3" in out and "RUNNING 1" in out
        assert f"pipeline resume {run_dir}" in out
        assert main(["cancel", str(run_dir)]) == 0
        out = capsys.readouterr().out
        assert out.count(": CANCELED") == 3 and "canceled 3, left alone 1" in out
        statuses = sorted(e.status for e in server.emu.store.executions.values())
        assert statuses == ["CANCELED", "CANCELED", "CANCELED", "RUNNING"]
        assert main(["status", "--json", str(run_dir)]) == 3
        doc = orjson.loads(capsys.readouterr().out)
        assert sorted(e["status"] for e in doc["executions"]) == statuses
        assert doc["state"] == "finished: incomplete (exit 3)"
        assert main(["status", "--offline", str(run_dir)]) == 3
        assert "not refreshed (--offline)" in capsys.readouterr().out


def test_status_of_a_run_interrupted_while_polling_whose_executions_finished_since(tmp_path, monkeypatch, capsys):
    import asyncio
    import os
    import signal

    import pipeline
    from pipeline.config import load_config
    from pipeline.engine.runner import RunOptions

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=300)) as server:
        config = load_config(write_config(tmp_path, server.emu.base_url, batch="max_lines = 20"))
        source = write_ndjson(tmp_path / "a.ndjson", range(40))  # two batches

        def stop_after_the_last_upload(name: str, fields: dict) -> None:
            if name == "batch_uploaded" and fields["batch"] == 2:
                os.kill(os.getpid(), signal.SIGINT)

        options = RunOptions(token=TOKEN, handle_signals=True, on_event=stop_after_the_last_upload)
        report = asyncio.run(pipeline.run_async(config, [source], options))
        assert report["outcome"] == "interrupted"
        server.wait_idle()  # the platform finished both since
        capsys.readouterr()
        assert main(["status", report["run_dir"]]) == 3  # not recorded as finished: a resume does that
        out = capsys.readouterr().out
        assert "SUCCEEDED 2" in out and "every execution has finished since, nothing is left to send" in out


def test_cancel_one_execution_by_id(tmp_path, monkeypatch, capsys):
    with slow_run(tmp_path, monkeypatch) as (server, run_dir, config):
        report = orjson.loads((run_dir / "report.json").read_bytes())
        running, pending = report["executions"][0]["id"], report["executions"][-1]["id"]
        capsys.readouterr()
        assert main(["cancel", "--config", str(config), pending]) == 0  # import found by scanning
        assert f"execution {pending}: CANCELED" in capsys.readouterr().out
        imp = report["document_import"]["id"]
        assert main(["cancel", "--config", str(config), "--import-id", imp, running]) == 0
        assert "RUNNING, not PENDING: left alone" in capsys.readouterr().out
        assert main(["cancel", "--config", str(config), "--import-id", imp, "no-such-id"]) == 3


def test_status_of_a_finished_embedded_run(tmp_path, monkeypatch, capsys, isolated_state_home):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "-q", "--emulator", str(EXAMPLES / "user_activity.ndjson")]) == 0
    assert not (tmp_path / "runs").exists()  # not under the current directory (under cron: $HOME)
    run_dir = next((isolated_state_home / "pipeline" / "runs").iterdir())
    capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "finished: succeeded (exit 0)" in out and "nothing to refresh" in out and "SUCCEEDED 1" in out
    assert main(["cancel", str(run_dir)]) == 2
    assert "embedded emulator" in capsys.readouterr().err
    assert main(["status", str(tmp_path)]) == 2

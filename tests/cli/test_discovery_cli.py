"""Discovery that tells, through the command line: a run over the issue's directory lists what it
skipped in its log, report.json (typed), report.html and the summary; --recursive takes the rest;
``validate`` says the same; the journal keeps the list for a resume."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.cli.entry import main
from pipeline.emulator import EmulatorOptions

from ..helpers import EmulatorThread, activity, ndjson_digests, runs_home

TOKEN = "discovery-test-token-3e9b"


@pytest.fixture
def emulator(monkeypatch):
    monkeypatch.setenv("MICS_API_TOKEN", TOKEN)
    for name, value in {"PIPELINE_POLL_INTERVAL_S": "0.02", "PIPELINE_POLL_MAX_INTERVAL_S": "0.1"}.items():
        monkeypatch.setenv(name, value)
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as server:
        monkeypatch.setenv("PIPELINE_API_URL", server.emu.base_url)
        yield server


def export_dir(root: Path) -> Path:
    root.mkdir()
    lines = [orjson.dumps(activity(i)) + b"\n" for i in range(30)]
    (root / "part-00000.json").write_bytes(b"".join(lines[:10]))
    (root / "A.NDJSON").write_bytes(b"".join(lines[10:20]))
    (root / "notes.txt").write_text("not data\n")
    (root / "sub").mkdir()
    (root / "sub" / "part-00001.json").write_bytes(b"".join(lines[20:]))
    return root


def only_report() -> dict:
    (run_dir,) = list(runs_home().iterdir())
    return orjson.loads((run_dir / "report.json").read_bytes()) | {"_html": (run_dir / "report.html").read_text()}


def test_a_run_lists_what_it_skipped_in_the_log_the_report_and_the_summary(tmp_path, emulator, capsys):
    root = export_dir(tmp_path / "export")
    assert main(["run", str(root)]) == 0
    captured = capsys.readouterr()
    assert f"warning: {root / 'notes.txt'}: skipped: extension .txt" in captured.err
    assert f"warning: {root / 'sub'}: skipped: directory (use --recursive)" in captured.err
    report = only_report()
    assert report["skipped_inputs"] == [
        {"path": str(root / "notes.txt"), "reason": "extension", "message": "skipped: extension .txt"},
        {"path": str(root / "sub"), "reason": "directory", "message": "skipped: directory (use --recursive)"},
    ]
    assert [Path(i["path"]).name for i in report["inputs"]] == ["A.NDJSON", "part-00000.json"]
    assert report["records"]["succeeded"] == 20
    assert "skipped 2 entries of the input directories" in captured.out
    assert 'id="skipped"' in report["_html"] and "skipped: extension .txt" in report["_html"]
    digests = ndjson_digests(root / "A.NDJSON") + ndjson_digests(root / "part-00000.json")
    assert set(emulator.call(lambda: dict(emulator.accounting.accepted))) == set(digests)


def test_recursive_takes_the_subdirectory(tmp_path, emulator, capsys):
    root = export_dir(tmp_path / "export")
    assert main(["run", "--recursive", "--log-format", "json", str(root)]) == 0
    events = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    skipped = [e for e in events if e["event"] == "input_skipped"]
    assert [(e["path"], e["reason"]) for e in skipped] == [(str(root / "notes.txt"), "extension")]
    report = only_report()
    assert report["records"]["succeeded"] == 30 and len(report["skipped_inputs"]) == 1


def test_validate_lists_the_skipped_entries(tmp_path, capsys):
    root = export_dir(tmp_path / "export")
    assert main(["validate", str(root)]) == 0
    err = capsys.readouterr().err
    assert "notes.txt: skipped: extension .txt" in err and "sub: skipped: directory (use --recursive)" in err
    assert main(["validate", "--json", "-r", str(root)]) == 0
    plan = orjson.loads(capsys.readouterr().out)
    assert plan["records"] == 30 and [s["reason"] for s in plan["skipped_inputs"]] == ["extension"]


def test_the_journal_keeps_the_list_for_a_resume(tmp_path, emulator, capsys):
    from pipeline.engine.journal import load_run

    root = export_dir(tmp_path / "export")
    assert main(["run", "-q", str(root)]) == 0
    (run_dir,) = list(runs_home().iterdir())
    state = load_run(run_dir).state()
    assert [s["reason"] for s in state.skipped_inputs] == ["extension", "directory"]

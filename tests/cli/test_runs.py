"""Where run directories go, and ``pipeline runs list`` / ``pipeline runs prune`` through the CLI."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import orjson
import pytest

from pipeline.cli.entry import main
from pipeline.config import config_from_dict, runs_base
from pipeline.engine.rundir import RunLock

from ..helpers import write_ndjson

DAY = 86_400


def test_runs_go_to_the_state_directory_unless_report_dir_says_otherwise(tmp_path):
    default = config_from_dict({})
    assert runs_base(default, {"XDG_STATE_HOME": "/srv/state", "HOME": "/home/u"}) == Path("/srv/state/pipeline/runs")
    assert runs_base(default, {"HOME": "/home/u"}) == Path("/home/u/.local/state/pipeline/runs")
    # a relative XDG_STATE_HOME is invalid (the XDG spec): ignored
    assert runs_base(default, {"XDG_STATE_HOME": "state", "HOME": "/home/u"}) == Path(
        "/home/u/.local/state/pipeline/runs"
    )
    chosen = config_from_dict({"report": {"dir": "~/imports/runs"}})
    assert runs_base(chosen, {"HOME": "/home/u"}) == Path("~/imports/runs").expanduser()
    assert runs_base(config_from_dict({"report": {"dir": "runs"}}), {}) == Path("runs")


def test_the_tests_do_not_write_into_the_real_state_directory(isolated_state_home):
    assert os.environ["XDG_STATE_HOME"] == str(isolated_state_home)
    assert runs_base(config_from_dict({})) == isolated_state_home / "pipeline" / "runs"


# --- a base of runs made by real runs -----------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _age(run_dir: Path, days: float) -> None:
    """Make a run's last activity ``days`` old (its journal's modification time)."""
    when = time.time() - days * DAY
    os.utime(run_dir / "journal.ndjson", (when, when))


@pytest.fixture
def runs(tmp_path, monkeypatch, capsys, isolated_state_home):
    """Five runs under the default directory: succeeded (40 days old), completed with failures
    (40 days), succeeded (2 days), stopped before its end (40 days: its server was down) and one
    held by a process (40 days)."""
    base = isolated_state_home / "pipeline" / "runs"
    good = write_ndjson(tmp_path / "good.ndjson", range(30))
    bad = tmp_path / "bad.ndjson"
    bad.write_text(orjson.dumps({"$type": "TOUCH"}).decode() + "\n" + good.read_text())
    made = {}
    for name, source in (("old_ok", good), ("old_failed", bad), ("young_ok", good)):
        before = set(base.iterdir()) if base.exists() else set()
        code = main(["run", "-q", "--emulator", str(source)])
        assert code == (1 if name == "old_failed" else 0)
        [made[name]] = set(base.iterdir()) - before
    # a run whose server refused every connection: its journal records the start, never the end
    monkeypatch.setenv("PIPELINE_RUNS_TEST_TOKEN", "t" * 16)
    config = tmp_path / "down.toml"
    config.write_text(
        f'[api]\nurl = "http://127.0.0.1:{_closed_port()}"\ntoken_env = "PIPELINE_RUNS_TEST_TOKEN"\n'
        "[upload]\nmax_attempts = 1\n"
    )
    before = set(base.iterdir())
    assert main(["run", "-q", "--config", str(config), str(good)]) == 3
    [made["stopped"]] = set(base.iterdir()) - before
    made["running"] = base / "20261101T000000Z-running"
    (made["running"]).mkdir(mode=0o700)
    started = {"event": "run_started", "t": time.time(), "run_id": made["running"].name, "started_at": time.time()}
    (made["running"] / "journal.ndjson").write_bytes(orjson.dumps(started | {"inputs": []}) + b"\n")
    for name in ("old_ok", "old_failed", "stopped", "running"):
        _age(made[name], 40)
    _age(made["young_ok"], 2)
    (base / "notes.txt").write_text("not a run: never touched")
    capsys.readouterr()
    lock = RunLock(made["running"])
    yield base, made
    lock.release()


def test_runs_list_says_id_started_outcome_records_inputs(runs, capsys, tmp_path):
    base, made = runs
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"runs in {base}"
    rows = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert set(rows) == {p.name for p in made.values()}
    assert "succeeded, exit 0" in rows[made["old_ok"].name] and "30 read, 30 ok, 0 not" in rows[made["old_ok"].name]
    assert "completed_with_failures, exit 1" in rows[made["old_failed"].name]
    assert "31 read, 30 ok, 1 not" in rows[made["old_failed"].name] and "bad.ndjson" in rows[made["old_failed"].name]
    assert "stopped" in rows[made["stopped"].name] and "running" in rows[made["running"].name]

    assert main(["runs", "list", "--json"]) == 0
    listed = {r["run_id"]: r for r in orjson.loads(capsys.readouterr().out)}
    old = listed[made["old_ok"].name]
    assert old["phase"] == "finished" and old["outcome"] == "succeeded" and old["exit_code"] == 0
    assert old["records"] == {"read": 30, "succeeded": 30, "failed": 0, "rejected": 0}
    assert old["inputs"] == [str(tmp_path / "good.ndjson")]
    assert old["started_at"].endswith("Z") and old["run_dir"] == str(made["old_ok"])
    assert listed[made["stopped"].name]["phase"] == "stopped" and listed[made["stopped"].name]["outcome"] is None
    assert listed[made["running"].name]["phase"] == "running"


def test_prune_dry_run_removes_nothing_and_says_what_it_would(runs, capsys):
    base, made = runs
    assert main(["runs", "prune", "--older-than", "30d", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove {made['old_ok']} (succeeded, 40.0 days old" in out
    assert f"would remove {made['old_failed']} (completed_with_failures" in out
    assert "would remove 2 run(s)" in out
    assert all(p.exists() for p in made.values())


def test_prune_removes_old_finished_runs_only(runs, capsys):
    base, made = runs
    assert main(["runs", "prune", "--older-than", "30d"]) == 0
    out = capsys.readouterr().out
    assert not made["old_ok"].exists() and not made["old_failed"].exists()
    assert made["young_ok"].exists() and made["stopped"].exists() and made["running"].exists()
    assert f"removed {made['old_ok']}" in out and "removed 2 run(s)" in out
    assert f"kept {made['stopped']} (stopped, 40.0 days old): not finished" in out
    assert f"kept {made['running']}" in out and "running: a process holds it" in out
    assert (base / "notes.txt").exists()


def test_prune_keep_failed_and_include_unfinished(runs, capsys):
    base, made = runs
    assert main(["runs", "prune", "--older-than", "30d", "--keep-failed", "--include-unfinished"]) == 0
    out = capsys.readouterr().out
    assert not made["old_ok"].exists() and not made["stopped"].exists()
    assert made["old_failed"].exists() and "(--keep-failed)" in out
    assert made["running"].exists()  # never, even with --include-unfinished
    assert made["young_ok"].exists()
    assert main(["runs", "prune", "--older-than", "1d"]) == 0  # the young one is 2 days old
    assert not made["young_ok"].exists() and not made["old_failed"].exists() and made["running"].exists()


def test_prune_refuses_an_age_without_unit(runs, capsys):
    assert main(["runs", "prune", "--older-than", "30"]) == 2
    assert "e.g. 30d" in capsys.readouterr().err


def test_runs_list_of_an_empty_or_missing_directory(tmp_path, capsys):
    assert main(["runs", "list", "--dir", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out == f"no runs in {tmp_path / 'none'}\n"
    assert main(["runs", "list", "--dir", str(tmp_path / "none"), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == []

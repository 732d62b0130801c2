"""The example Airflow DAG, checked by Airflow itself: loaded with ``DagBag`` (no import error, the
plan → mapped run_shard → merge shape) and run end to end with ``dag.test()`` against an emulator
process on 127.0.0.1. Skipped when Airflow is not importable (it is not in the test extras: see
the README's "Shards")."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ..helpers import write_ndjson

pytestmark = pytest.mark.airflow
DAGS = Path(__file__).resolve().parents[2] / "examples" / "orchestrators"
TOKEN = "airflow-dag-token"


@pytest.fixture
def airflow_home(tmp_path, monkeypatch):
    if importlib.util.find_spec("airflow") is None:
        pytest.skip("Airflow is not installed (pip install apache-airflow): the example DAG is not run")
    if "airflow" in sys.modules:  # its settings are read on import: they must be this test's
        pytest.skip("Airflow was imported before this test set AIRFLOW_HOME")
    home = tmp_path / "airflow"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    home.mkdir()
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return home


@pytest.fixture
def emulator_url():
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.emulator", "--port", "0", "--token", TOKEN, "--process-ms", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()


def _dag_bag(dag_bag: type) -> object:
    """``DagBag`` of the examples folder (Airflow 2 also loads its own examples unless told not to)."""
    try:
        return dag_bag(dag_folder=str(DAGS), include_examples=False)
    except TypeError:  # Airflow 3: no examples in a DagBag
        return dag_bag(dag_folder=str(DAGS))


def test_the_dag_loads_and_runs_end_to_end_against_the_emulator(airflow_home, emulator_url, tmp_path, monkeypatch):
    from airflow.models import DagBag

    inputs = tmp_path / "in"
    inputs.mkdir()
    total = 0
    for i, n in enumerate((800, 500, 300, 200, 100)):
        write_ndjson(inputs / f"part{i}.ndjson", range(total, total + n))
        total += n
    config = tmp_path / "import.toml"
    config.write_text(
        f'[api]\nurl = "{emulator_url}"\ntoken_env = "AIRFLOW_TEST_TOKEN"\n[batch]\nmax_bytes = 50000\n'
        f'[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n[report]\ndir = "{tmp_path / "runs"}"\n'
    )
    for name, value in {
        "AIRFLOW_TEST_TOKEN": TOKEN,
        "PIPELINE_CONFIG": str(config),
        "PIPELINE_INPUTS": str(inputs),
        "PIPELINE_SHARDS": "3",
        "PIPELINE_WORK_DIR": str(tmp_path / "work"),
    }.items():
        monkeypatch.setenv(name, value)

    bag = _dag_bag(DagBag)
    assert bag.import_errors == {}
    dag = bag.dags.get("pipeline_sharded_import")
    assert dag is not None and {t.task_id for t in dag.tasks} == {"plan", "run_shard", "merge"}
    assert dag.get_task("run_shard").retries == 3

    run = dag.test()
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), run.state
    merged = orjson.loads((tmp_path / "work" / "merged" / "report.json").read_bytes())
    assert merged["exit_code"] == 0 and len(merged["shards"]) == 3
    assert merged["records"]["succeeded"] == total and merged["records"]["read"] == total
    assert os.path.isfile(tmp_path / "work" / "merged" / "report.html")

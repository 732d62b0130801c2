"""An Airflow DAG that imports a partitioned backfill with pipeline: one plan, N mapped shard tasks,
one merged report.

    plan ──► run_shard[0..N-1] (dynamic task mapping, retried: a retry resumes) ──► merge

- ``plan`` runs ``pipeline plan``: it creates the one document import and writes ``plan.json``
  (the inputs spread over the shards by size), then returns the shard numbers to map over. Run
  again (a retry, a cleared DAG run) on the same inputs, it keeps the plan.json it wrote: the
  shards then continue their own runs and send nothing twice.
- ``run_shard`` runs ``pipeline run --plan plan.json --shard K`` (Airflow sets no variable with a
  mapped task's index: the shard number is the mapped argument). A retry (``try_number > 1``)
  runs ``pipeline resume`` on the shard's run directory: what the first try sent is never sent
  again. Exit codes: 0 and 1 (finished; the merge reports the failures) succeed; 3 (not known yet:
  an outage, a kill) fails the try so that Airflow retries it as a resume; 2 (config, input) and
  4 (duplicates) fail for good, a retry would not help.
- ``merge`` runs ``pipeline report merge`` over every shard's run directory (``trigger_rule
  all_done``: a report is written even when shards failed) and fails unless the whole import
  succeeded (its exit code is the worst of the shards').

Settings (environment of the scheduler and the workers; pipeline installed where the tasks run):
``PIPELINE_CONFIG`` (the TOML config), ``PIPELINE_INPUTS`` (input paths, separated by ``:``),
``PIPELINE_SHARDS`` (default 8), ``PIPELINE_WORK_DIR`` (plan.json and the merged report; shared by
the workers, as is the config's ``report.dir``), ``PIPELINE_COMMAND`` (default: this Python's
``-m pipeline``), and the token in the variable the config names (``api.token_env``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

try:  # Airflow 3
    from airflow.sdk import dag, get_current_context, task
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task
    from airflow.exceptions import AirflowFailException
    from airflow.operators.python import get_current_context

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_UNKNOWN, EXIT_DUPLICATES = 0, 1, 2, 3, 4


def _pipeline(*args: str) -> int:
    command = shlex.split(os.environ.get("PIPELINE_COMMAND", "")) or [sys.executable, "-m", "pipeline"]
    print("$", shlex.join([*command, *args]), flush=True)
    done = subprocess.run([*command, *args], check=False, capture_output=True, text=True)
    print(done.stdout, done.stderr, sep="\n", flush=True)  # into the task's log
    return done.returncode


def _work_dir() -> Path:
    return Path(os.environ.get("PIPELINE_WORK_DIR", "pipeline-work")).absolute()


def _plan_path() -> Path:
    return _work_dir() / "plan.json"


def _shard_run_dir(shard: int) -> Path:
    """The shard's run directory, as pipeline names it (``<report.dir>/<plan id>-shard<K>``)."""
    from pipeline.engine.plan import load_plan, plan_config
    from pipeline.engine.shard import shard_run_dir

    plan = load_plan(_plan_path())
    return shard_run_dir(plan, shard, plan_config(plan, None))


@dag(
    dag_id="pipeline_sharded_import",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=16,
    tags=["pipeline", "mediarithmics"],
)
def pipeline_sharded_import():
    @task
    def plan() -> list[int]:
        shards = os.environ.get("PIPELINE_SHARDS", "8")
        inputs = [p for p in os.environ["PIPELINE_INPUTS"].split(":") if p]
        _work_dir().mkdir(parents=True, exist_ok=True)
        config = os.environ["PIPELINE_CONFIG"]
        code = _pipeline("plan", "--config", config, "--shards", shards, "--out", str(_plan_path()), *inputs)
        if code != EXIT_OK:
            raise AirflowFailException(f"pipeline plan exited {code}")
        return [s["shard"] for s in json.loads(_plan_path().read_text())["shards"]]

    @task(retries=3, retry_delay=timedelta(seconds=30), retry_exponential_backoff=True)
    def run_shard(shard: int) -> int:
        try_number = get_current_context()["ti"].try_number
        run_dir = _shard_run_dir(shard)
        if try_number > 1 and (run_dir / "journal.ndjson").exists():
            code = _pipeline("resume", str(run_dir), "-q")  # a retry continues the shard's run
        else:
            code = _pipeline("run", "--plan", str(_plan_path()), "--shard", str(shard), "-q")
        if code in (EXIT_USAGE, EXIT_DUPLICATES):
            raise AirflowFailException(f"shard {shard}: pipeline exited {code}; a retry would not help")
        if code not in (EXIT_OK, EXIT_FAILURES):
            raise RuntimeError(f"shard {shard}: pipeline exited {code} (not finished): retried as a resume")
        return code

    @task(trigger_rule="all_done")
    def merge(shards: list[int]) -> int:
        run_dirs = [str(_shard_run_dir(k)) for k in shards if (_shard_run_dir(k) / "journal.ndjson").exists()]
        out = _work_dir() / "merged"
        code = _pipeline("report", "merge", *run_dirs, "--out", str(out))
        if len(run_dirs) < len(shards):
            raise AirflowFailException(f"only {len(run_dirs)} of {len(shards)} shards started; report: {out}")
        if code != EXIT_OK:
            raise AirflowFailException(f"the import did not fully succeed (exit {code}); report: {out}/report.html")
        return code

    shards = plan()
    codes = run_shard.expand(shard=shards)
    codes >> merge(shards)


pipeline_sharded_import()

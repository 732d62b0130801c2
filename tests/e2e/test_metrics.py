"""Metrics a scheduler can watch: ``--metrics-textfile`` (the node exporter's textfile format) and
``--metrics-pushgateway`` (a real Pushgateway on 127.0.0.1), parsed back with
``prometheus_client.parser``: the values are the run's report.json."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cli.entry import main
from pipeline.emulator import EmulatorOptions
from pipeline.reporting.metrics import EXECUTION_STATUSES, LAST_SUCCESS
from pipeline.reporting.metrics_publish import MetricsPublisher
from pipeline.reporting.summary import executions_by_status

from ..helpers import EmulatorThread, write_ndjson

TOKEN = "metrics-test-token-4e0d"
TOKEN_ENV = "PIPELINE_METRICS_TEST_TOKEN"
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pushgateway(tmp_path) -> Iterator[str]:
    """A real Pushgateway on 127.0.0.1 (Debian's prometheus-pushgateway), without persistence."""
    if PUSHGATEWAY is None:
        pytest.skip("prometheus-pushgateway is not installed (apt-get install prometheus-pushgateway; .ci/run tries)")
    port = _free_port()
    log = (tmp_path / "pushgateway.log").open("wb")
    proc = subprocess.Popen(
        [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "pushgateway.log").read_text()
            assert time.monotonic() < deadline, "the Pushgateway did not become ready in 15 s"
            time.sleep(0.05)  # polling a condition, with a bound
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def emulator(monkeypatch) -> Iterator[EmulatorThread]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0, retry_after_s=0)) as server:
        yield server


def _config(tmp_path: Path, url: str, batch: str = "max_lines = 40") -> Path:
    path = tmp_path / "import.toml"
    path.write_text(
        f'[api]\nurl = "{url}"\ntoken_env = "{TOKEN_ENV}"\n'
        "[poll]\ninterval_s = 0.02\nmax_interval_s = 0.05\n"
        f'[report]\ndir = "{tmp_path / "runs"}"\n'
        f"[batch]\n{batch}\n"
    )
    return path


def _samples(text: str, **labels: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, other labels): value} of the samples whose labels include ``labels``."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if all(s.labels.get(k) == v for k, v in labels.items()):
                rest = tuple(sorted((k, v) for k, v in s.labels.items() if k not in labels))
                out[(s.name, rest)] = s.value
    return out


def _one(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _latest_report(tmp_path: Path) -> dict:
    run_dir = max((tmp_path / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return orjson.loads((run_dir / "report.json").read_bytes())


def assert_metrics_are_the_report(samples: dict, report: dict) -> None:
    for kind, value in report["records"].items():
        assert _one(samples, "pipeline_run_records", kind=kind) == value, kind
    by_status = executions_by_status(report)
    for status in set(EXECUTION_STATUSES) | set(by_status):
        assert _one(samples, "pipeline_run_executions", status=status) == by_status.get(status, 0), status
    sent = sum(e["bytes"] for e in report["executions"] if e["upload"] == "uploaded")
    assert _one(samples, "pipeline_run_bytes", kind="sent") == sent
    assert _one(samples, "pipeline_run_bytes", kind="read") == sum(i["bytes"] for i in report["inputs"])
    assert _one(samples, "pipeline_run_duration_seconds") == pytest.approx(report["duration_s"])
    assert _one(samples, "pipeline_run_start_timestamp_seconds") == pytest.approx(_epoch(report["started_at"]))
    assert _one(samples, "pipeline_run_exit_code") == report["exit_code"]
    assert _one(samples, "pipeline_run_batches") == report["batches"]
    outcomes = {dict(labels)["outcome"]: v for (name, labels), v in samples.items() if name == "pipeline_run_outcome"}
    assert outcomes[report["outcome"]] == 1 and sum(outcomes.values()) == 1 and "running" in outcomes


def test_the_textfile_holds_the_report_and_keeps_the_last_success(tmp_path, emulator, capsys):
    textfile = tmp_path / "pipeline.prom"
    config = _config(tmp_path, emulator.emu.base_url)
    source = write_ndjson(tmp_path / "a.ndjson", range(200))
    assert main(["run", "-q", "--metrics-textfile", str(textfile), "--config", str(config), str(source)]) == 0
    first = _latest_report(tmp_path)
    samples = _samples(textfile.read_text(), job="pipeline")
    assert_metrics_are_the_report(samples, first)
    assert first["records"]["succeeded"] == 200 and _one(samples, "pipeline_run_executions", status="SUCCEEDED") == 5
    assert _one(samples, LAST_SUCCESS) == pytest.approx(_epoch(first["finished_at"]))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pipeline.prom")] == []  # no temporary left

    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"$type": "TOUCH"}\n' + source.read_text())  # one rejected record: exit 1
    assert main(["run", "-q", "--metrics-textfile", str(textfile), "--config", str(config), str(bad)]) == 1
    second = _latest_report(tmp_path)
    samples = _samples(textfile.read_text(), job="pipeline")
    assert_metrics_are_the_report(samples, second)
    assert _one(samples, "pipeline_run_records", kind="rejected") == 1
    # the run that did not succeed kept the time of the last one that did
    assert _one(samples, LAST_SUCCESS) == pytest.approx(_epoch(first["finished_at"]))
    assert TOKEN not in textfile.read_text()


def test_a_real_pushgateway_holds_the_report_by_job_and_instance(tmp_path, emulator, pushgateway, capsys):
    config = _config(tmp_path, emulator.emu.base_url)
    source = write_ndjson(tmp_path / "a.ndjson", range(120))
    flags = ["--metrics-pushgateway", pushgateway, "--metrics-job", "nightly", "--metrics-instance", "shard-0"]
    assert main(["run", "-q", *flags, "--config", str(config), str(source)]) == 0
    first = _latest_report(tmp_path)
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = _samples(text, job="nightly", instance="shard-0")
    assert_metrics_are_the_report(samples, first)
    assert _one(samples, LAST_SUCCESS) == pytest.approx(_epoch(first["finished_at"]))
    assert TOKEN not in text and "metrics: cannot push" not in capsys.readouterr().err

    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"$type": "TOUCH"}\n' + source.read_text())
    assert main(["run", "-q", *flags, "--config", str(config), str(bad)]) == 1
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as answer:
        samples = _samples(answer.read().decode(), job="nightly", instance="shard-0")
    assert_metrics_are_the_report(samples, _latest_report(tmp_path))
    assert _one(samples, LAST_SUCCESS) == pytest.approx(_epoch(first["finished_at"]))  # the push kept it


def test_a_pushgateway_that_is_down_is_a_warning_not_a_failure(tmp_path, emulator, capsys):
    config = _config(tmp_path, emulator.emu.base_url)
    source = write_ndjson(tmp_path / "a.ndjson", range(20))
    down = f"http://user:hunter2@127.0.0.1:{_free_port()}"
    assert main(["run", "-q", "--metrics-pushgateway", down, "--config", str(config), str(source)]) == 0
    err = capsys.readouterr().err
    [warning] = [line for line in err.splitlines() if "metrics:" in line]
    assert f"metrics: cannot push to http://127.0.0.1:{down.rsplit(':', 1)[1]}" in warning
    assert "hunter2" not in err and warning[:4].isdigit() and warning[23] == "Z"  # timestamped like the log


def test_retries_are_counted_by_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    options = EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0, retry_after_s=0, seed=3, faults="throttle=0.4")
    textfile = tmp_path / "pipeline.prom"
    with EmulatorThread(options) as server:
        config = _config(tmp_path, server.emu.base_url, batch="max_lines = 10")
        source = write_ndjson(tmp_path / "a.ndjson", range(200))
        assert main(["run", "-q", "--metrics-textfile", str(textfile), "--config", str(config), str(source)]) == 0
        throttled = server.call(lambda: server.emu.accounting.throttled["throttle"])
    samples = _samples(textfile.read_text(), job="pipeline")
    assert throttled > 0
    assert _one(samples, "pipeline_run_retries", reason="throttled") == throttled
    assert _one(samples, "pipeline_run_retries", reason="connect") == 0
    assert_metrics_are_the_report(samples, _latest_report(tmp_path))


def test_the_textfile_is_written_every_interval_while_the_run_works(tmp_path):
    textfile = tmp_path / "live.prom"
    with MetricsPublisher(textfile=textfile, interval_s=0.02, job="nightly") as publisher:
        publisher("run_started", {"run_id": "R", "started_at": "2026-12-01T13:20:05.123Z", "inputs": []})
        publisher("batch_read", {"batch": 1, "records": 10, "bytes": 1000})
        publisher("upload_started", {"batch": 1, "bytes": 1000})
        publisher("batch_uploaded", {"batch": 1, "execution_id": "5001", "records": 10, "bytes": 1000})
        publisher("retry", {"kind": "unavailable"})
        deadline = time.monotonic() + 10
        while not textfile.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition, with a bound
        samples = _samples(textfile.read_text(), job="nightly")
    assert _one(samples, "pipeline_run_outcome", outcome="running") == 1
    assert _one(samples, "pipeline_run_executions", status="PENDING") == 1
    assert _one(samples, "pipeline_run_bytes", kind="sent") == 1000
    assert _one(samples, "pipeline_run_retries", reason="unavailable") == 1
    assert _one(samples, "pipeline_run_start_timestamp_seconds") == pytest.approx(1_796_131_205.123)
    assert ("pipeline_run_exit_code", ()) not in samples and (LAST_SUCCESS, ()) not in samples


def test_bad_metrics_flags_are_usage_errors(tmp_path, emulator, capsys):
    config = _config(tmp_path, emulator.emu.base_url)
    source = write_ndjson(tmp_path / "a.ndjson", range(5))
    missing = tmp_path / "no-such-dir" / "m.prom"
    assert main(["run", "--metrics-textfile", str(missing), "--config", str(config), str(source)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "--metrics-pushgateway", "127.0.0.1:9091", "--config", str(config), str(source)]) == 2
    assert "http://" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before a run started

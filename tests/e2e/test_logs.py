"""The log of real runs, read the morning after: every line starts with its UTC time, batch lines
name their file and lines, each status change is said once at -v, and a request that has been
failing for a while is said at the default verbosity."""

from __future__ import annotations

import re
import socket
from collections import Counter
from pathlib import Path

import pytest

import pipeline
from pipeline.cli.entry import main
from pipeline.client.retry import RetryPolicy
from pipeline.emulator import EmulatorOptions
from pipeline.engine.runner import RunOptions
from pipeline.errors import TransportError
from pipeline.reporting.progress import PlainPrinter

from ..helpers import EmulatorThread, test_config, write_ndjson

TOKEN = "log-test-token-77c1"
TOKEN_ENV = "PIPELINE_LOG_TEST_TOKEN"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (.*)$")
BATCH = re.compile(r"^batch (\d+) \((.+):(\d+)-(\d+)\): ")


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "import.toml"
    path.write_text(
        f'[api]\nurl = "{url}"\ntoken_env = "{TOKEN_ENV}"\n'
        "[poll]\ninterval_s = 0.02\nmax_interval_s = 0.05\n"
        f'[report]\ndir = "{tmp_path / "runs"}"\n'
        "[batch]\nmax_lines = 40\n"
    )
    return path


def _messages(log: str) -> list[str]:
    """Each line of the log without its time, checking that every line has one."""
    out = []
    for line in log.splitlines():
        match = STAMP.match(line)
        assert match, f"a log line without its time: {line!r}"
        out.append(match.group(1))
    return out


def test_a_verbose_run_log_is_timestamped_and_says_each_status_change_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    # two slots, 150 ms each: executions are seen PENDING, then RUNNING, then SUCCEEDED
    options = EmulatorOptions(token=TOKEN, process_ms=150, per_line_us=0, slots=2)
    source = write_ndjson(tmp_path / "a.ndjson", range(200))
    with EmulatorThread(options) as server:
        config = _config(tmp_path, server.emu.base_url)
        code = main(["run", "-v", "--progress-interval", "0.2", "--config", str(config), str(source)])
    assert code == 0
    messages = _messages(capsys.readouterr().err)
    run_dir = next((tmp_path / "runs").iterdir())
    assert f"run {run_dir.name}: run directory {run_dir}" in messages[:3]

    status_lines = [m for m in messages if " is " in m and "execution" in m]
    assert status_lines, "no status change seen: the emulator was too fast for the test"
    assert all(not m.endswith(" is SUCCEEDED") for m in status_lines)  # said once, by the end line
    repeated = [m for m, n in Counter(messages).items() if n > 1 and not m.startswith("progress ")]
    assert repeated == []
    finished = [m for m in messages if re.search(r"execution \d+ SUCCEEDED \(", m)]
    assert len(finished) == 5

    spans = set()
    for m in messages:
        match = BATCH.match(m)
        if match:
            spans.add((int(match.group(1)), match.group(2), int(match.group(3)), int(match.group(4))))
        else:
            assert not m.startswith("batch "), f"a batch line that does not name its lines: {m!r}"
    assert spans == {(b, str(source), 40 * (b - 1) + 1, 40 * b) for b in range(1, 6)}


def test_json_events_carry_an_iso_time(tmp_path, monkeypatch, capsys):
    import orjson

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    source = write_ndjson(tmp_path / "a.ndjson", range(50))
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as server:
        config = _config(tmp_path, server.emu.base_url)
        assert main(["run", "--log-format", "json", "--config", str(config), str(source)]) == 0
    events = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert events and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["ts"]) for e in events)
    started = next(e for e in events if e["event"] == "run_started")
    assert started["run_dir"].endswith(started["run_id"])
    uploaded = next(e for e in events if e["event"] == "batch_uploaded")
    assert uploaded["path"] == str(source) and uploaded["first_line"] == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_request_failing_for_a_while_is_said_at_the_default_verbosity(tmp_path, monkeypatch):
    """Nobody listens: creating the import is refused, retried, and the log says so as it happens
    (the 5 s threshold scaled down to nothing: the test does not wait 5 s)."""
    import io

    monkeypatch.setattr("pipeline.reporting.progress.RETRY_NOTICE_S", 0.0)
    out = io.StringIO()
    printer = PlainPrinter(stream=out, interval_s=0)
    url = f"http://127.0.0.1:{_closed_port()}"
    config = test_config(url, tmp_path)
    source = write_ndjson(tmp_path / "a.ndjson", range(10))
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.02)
    options = RunOptions(token=TOKEN, retry_policy=policy, on_event=printer)
    with pytest.raises(TransportError, match="connection refused"):  # the CLI: exit 3, nothing sent
        await pipeline.run_async(config, [source], options)
    messages = _messages(out.getvalue())
    retrying = [m for m in messages if "retrying" in m]
    assert retrying, messages
    assert retrying[0].startswith(f"connection refused by {url}: retrying POST /v1/datamarts/1000/document_imports,")
    assert re.search(r"attempt [2-4], next in 0\.0 s", retrying[0])

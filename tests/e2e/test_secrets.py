"""The token appears nowhere but the Authorization header: not in output, logs, reports or journals."""

from __future__ import annotations

import asyncio
import os
import stat
import sys

import pytest

from pipeline.emulator import EmulatorOptions, running_emulator

from ..helpers import write_ndjson

TOKEN = "SECRET-tok-3141592653589793"


async def _cli(*args, env_token=TOKEN):
    env = dict(os.environ, MICS_API_TOKEN=env_token)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from pipeline.cli.entry import main_entry; main_entry()",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode, out.decode(), err.decode()


def _config(tmp_path, url):
    path = tmp_path / "cfg.toml"
    path.write_text(
        f'[api]\nurl = "{url}"\n[batch]\nmax_bytes = 50000\n[upload]\nmax_attempts = 20\nsettle_window_s = 1\n'
        f'[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n[report]\ndir = "{tmp_path / "runs"}"\n'
    )
    return str(path)


@pytest.mark.parametrize("log_args", [["-v"], ["--log-format", "json"]])
async def test_the_token_is_in_no_output_and_no_file_a_run_writes(tmp_path, log_args):
    source = write_ndjson(tmp_path / "in.ndjson", range(1_000))
    source.write_bytes(source.read_bytes() + b'{"bad": true}\n')
    faults = {"throttle": 0.3, "error5xx": 0.3, "reset_before": 0.2, "drop_after": 0.2, "poll5xx": 0.3}
    options = EmulatorOptions(token=TOKEN, process_ms=2, faults=faults, seed=5, retry_after_s=0)
    async with running_emulator(options) as emu:
        code, out, err = await _cli("run", "--config", _config(tmp_path, emu.base_url), *log_args, str(source))
    assert code == 1, err  # one rejected record
    assert "retry" in (out + err).lower(), "retries happened and were logged"
    assert TOKEN not in out and TOKEN not in err
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"journal.ndjson", "report.json", "rejects.ndjson"}
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path  # personal data: owner only
    for folder in (tmp_path / "runs").iterdir():
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


async def test_a_wrong_token_is_refused_without_echoing_any_token(tmp_path):
    source = write_ndjson(tmp_path / "in.ndjson", range(10))
    async with running_emulator(EmulatorOptions(token=TOKEN)) as emu:
        code, out, err = await _cli(
            "run", "--config", _config(tmp_path, emu.base_url), str(source), env_token="WRONG-" + TOKEN
        )
    assert code != 0 and "401" in err
    assert TOKEN not in out + err and "WRONG-" not in out + err


def test_no_secret_in_the_repr_of_the_client():
    from pipeline.client.api import ApiClient

    client = ApiClient("http://127.0.0.1:1", TOKEN)
    assert TOKEN not in repr(client) and TOKEN not in str(client)


def test_no_secret_in_the_repr_of_options():
    from pipeline.engine.runner import RunOptions

    assert TOKEN not in repr(RunOptions(token=TOKEN))
    assert TOKEN not in repr(EmulatorOptions(token=TOKEN))

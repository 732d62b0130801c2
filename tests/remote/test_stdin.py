"""``-`` as the input: a pipe into a real ``pipeline run -`` process, and the resume of a stdin run."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
from types import SimpleNamespace

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions
from pipeline.reading.inputs import STDIN_RESUME_NOTE

from ..helpers import EmulatorThread, interrupt_after_uploads
from .test_s3 import digests, ndjson

TOKEN = "stdin-token-3c2d"


def _toml(path, url, runs, max_bytes):
    path.write_text(
        f'[api]\nurl = "{url}"\ntoken_env = "PIPELINE_TEST_TOKEN"\n'
        f"[batch]\nmax_bytes = {max_bytes}\n[upload]\nconcurrency = 3\nsettle_window_s = 1\n"
        f'[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n[report]\ndir = "{runs}"\n'
    )
    return path


def test_zcat_piped_into_run_dash_delivers_every_record_once_through_retries(tmp_path):
    data = ndjson(range(4_000))
    big = tmp_path / "big.ndjson.gz"
    big.write_bytes(gzip.compress(data))
    # throttled attempts: each retry sends the batch again, from its spool file
    faults = {"throttle": 0.3}
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, faults=faults, seed=4)) as emu:
        config = _toml(tmp_path / "cfg.toml", emu.emu.base_url, tmp_path / "runs", 60_000)
        env = dict(os.environ, PIPELINE_TEST_TOKEN=TOKEN)
        zcat = subprocess.Popen(["gzip", "-dc", str(big)], stdout=subprocess.PIPE)
        run = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", "--config", str(config), "-q", "-"],
            stdin=zcat.stdout,
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert zcat.stdout is not None
        zcat.stdout.close()
        zcat.wait(10)
        assert run.returncode == 0, run.stderr.decode()
        emu.wait_idle()
        batches = len(emu.call(lambda: list(emu.accounting.uploads)))
        assert emu.upload_posts() > batches > 3, "some attempts were retried"
        accepted = emu.call(lambda: dict(emu.accounting.accepted))
        want = digests(data)
        assert set(accepted) == set(want) and all(len(ids) == 1 for ids in accepted.values())
    [run_dir] = (tmp_path / "runs").iterdir()
    assert not (run_dir / "spool").exists() or not list((run_dir / "spool").iterdir())


async def test_a_stdin_run_resumed_settles_what_was_sent_and_says_what_it_cannot(tmp_path, monkeypatch, fast_retry):
    data = ndjson(range(6_000))
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(data)))
    stop_after_two = interrupt_after_uploads(2)
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=5)) as emu:
        from ..helpers import test_config

        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 50_000}, upload={"concurrency": 2})
        first = await pipeline.run_async(
            config,
            ["-"],
            RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=stop_after_two),
        )
        assert first["exit_code"] == 3
        sent = len(emu.accounting.uploads)
        monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(b"other bytes\n")))
        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert STDIN_RESUME_NOTE in second["warnings"]
        assert len(emu.accounting.uploads) == sent, "stdin is not read again: nothing more is sent"
        assert second["exit_code"] != 0, "a run whose records were not all sent is no success"
        accepted = emu.accounting.accepted
        assert accepted and set(accepted) <= set(digests(data))
        assert all(len(ids) == 1 for ids in accepted.values())


def test_a_gzip_stream_on_stdin_is_decoded_not_skipped_as_binary(tmp_path):
    """``pipeline run - < export.ndjson.gz``: a pipe has no name to say ``.gz``; its magic bytes do."""
    data = ndjson(range(1_500))
    packed = tmp_path / "export.ndjson.gz"
    packed.write_bytes(gzip.compress(data))
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        config = _toml(tmp_path / "cfg.toml", emu.emu.base_url, tmp_path / "runs", 60_000)
        with packed.open("rb") as stdin:
            run = subprocess.run(
                [sys.executable, "-m", "pipeline", "run", "--config", str(config), "-q", "-"],
                stdin=stdin,
                env=dict(os.environ, PIPELINE_TEST_TOKEN=TOKEN),
                capture_output=True,
                timeout=300,
            )
        assert run.returncode == 0, run.stderr.decode()
        emu.wait_idle()
        accepted = emu.call(lambda: dict(emu.accounting.accepted))
    want = digests(data)
    assert set(accepted) == set(want) and all(len(ids) == 1 for ids in accepted.values())

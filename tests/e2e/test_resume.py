"""Nothing lost, nothing twice: Ctrl-C, SIGKILL and resume, against the emulator over loopback."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys

import orjson
import pytest

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions

from ..helpers import (
    assert_exactly_once,
    interrupt_after_uploads,
    interrupt_twice_in_flight,
    ndjson_digests,
    test_config,
    write_ndjson,
)

TOKEN = "resume-token-77c1"


async def test_ctrl_c_stops_cleanly_and_resume_delivers_the_rest_exactly_once(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(6_000))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=5)) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 100_000}, upload={"concurrency": 2})
        first = await pipeline.run_async(
            config,
            [source],
            RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=interrupt_after_uploads(3)),
        )
        assert (first["outcome"], first["exit_code"]) == ("interrupted", 3)
        assert first["resume_command"] == f"pipeline resume {first['run_dir']}"
        assert 3 <= len(first["executions"]) < 20, "reading stopped after the signal"
        assert first["records"]["failed"] == 0, "nothing that may still succeed is called failed"

        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert (second["outcome"], second["exit_code"]) == ("succeeded", 0), second
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        assert second["records"]["succeeded"] == 6_000 and second["run_id"] == first["run_id"]

        uploads = len(emu.accounting.uploads)
        third = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN))
        assert len(emu.accounting.uploads) == uploads, "resuming a finished run sends nothing"
        assert (third["outcome"], third["records"]) == (second["outcome"], second["records"])


def _write_toml(path, url, tmp_path, max_bytes):
    path.write_text(
        f'[api]\nurl = "{url}"\ntoken_env = "PIPELINE_TEST_TOKEN"\n'
        f"[batch]\nmax_bytes = {max_bytes}\n[upload]\nconcurrency = 3\nsettle_window_s = 1\n"
        f'[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n[report]\ndir = "{tmp_path / "runs"}"\n'
    )
    return path


async def _journal_events(run_root):
    dirs = list(run_root.glob("*/journal.ndjson")) if run_root.exists() else []
    if not dirs:
        return None, []
    events = []
    for line in dirs[0].read_bytes().splitlines():
        try:
            events.append(orjson.loads(line)["event"])
        except orjson.JSONDecodeError:
            pass
    return dirs[0].parent, events


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sigkill_at_a_random_point_then_resume_delivers_everything_once(tmp_path, fast_retry, seed):
    rnd = random.Random(seed)
    source = write_ndjson(tmp_path / "in.ndjson", range(12_000))
    # slow answers widen the window in which an upload has started but is not yet answered
    options = EmulatorOptions(token=TOKEN, process_ms=5, faults={"slow": (0.5, 0.15)}, seed=seed)
    async with running_emulator(options) as emu:
        config = _write_toml(tmp_path / "cfg.toml", emu.base_url, tmp_path, 100_000)
        env = dict(os.environ, PIPELINE_TEST_TOKEN=TOKEN)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from pipeline.cli.entry import main_entry; main_entry()",
            "run",
            "--config",
            str(config),
            "-q",
            str(source),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        kill_after = rnd.randint(1, 30)  # journal events seen before the kill
        deadline = asyncio.get_running_loop().time() + 60
        run_dir, events = None, []
        while proc.returncode is None and asyncio.get_running_loop().time() < deadline:
            run_dir, events = await _journal_events(tmp_path / "runs")
            if len(events) >= kill_after:
                break
            await asyncio.sleep(0.01)  # polling the journal, not synchronising on time
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert run_dir is not None and "run_finished" not in events, "the kill must land mid-run"

        report = await pipeline.resume_async(run_dir, RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert report["exit_code"] == 0, report
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        assert report["records"]["succeeded"] == 12_000


async def test_resume_refuses_changed_inputs(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(2_000))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=5)) as emu:  # batches left to send:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 10_000}, upload={"concurrency": 1})
        first = await pipeline.run_async(
            config,
            [source],
            RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=interrupt_after_uploads(1)),
        )
        with source.open("ab") as fh:
            fh.write(b'{"$user_agent_id": "vec:1", "$type": "TOUCH", "$ts": 1}\n')
        with pytest.raises(pipeline.InputError, match="changed since the run started"):
            await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN))


async def test_two_runs_cannot_share_a_run_directory(tmp_path):
    from pipeline.engine.rundir import RunLock

    lock = RunLock(tmp_path)
    with pytest.raises(pipeline.UsageError, match="in use by another pipeline process"):
        RunLock(tmp_path)
    lock.release()
    RunLock(tmp_path).release()


async def test_a_second_ctrl_c_abandons_in_flight_uploads_and_resume_settles_them(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(6_000))
    on_event = interrupt_twice_in_flight()  # two signals while uploads are in flight: they are abandoned

    options = EmulatorOptions(token=TOKEN, process_ms=5, faults={"slow": (1.0, 0.3)}, seed=9)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 100_000}, upload={"concurrency": 3})
        first = await pipeline.run_async(
            config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=on_event)
        )
        assert (first["outcome"], first["exit_code"]) == ("interrupted", 3)
        abandoned = [e for e in first["executions"] if e["upload"] == "uploading"]
        assert abandoned, "some uploads were abandoned in flight"
        assert first["records"]["failed"] == 0
        await emu.wait_idle()
        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert second["exit_code"] == 0, second
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        # the abandoned uploads that reached the server were found by name, not sent again
        assert len({u.filename for u in emu.accounting.uploads}) == len(emu.accounting.uploads)


async def test_poll_timeout_is_exit_3_and_a_resume_finishes_the_job(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(1_000))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1_500)) as emu:
        config = test_config(emu.base_url, tmp_path, poll={"timeout_s": 0.2})
        first = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert (first["outcome"], first["exit_code"]) == ("incomplete", 3)
        assert first["records"]["pending"] == 1_000 and first["records"]["failed"] == 0
        assert "resume_command" in first
        await emu.wait_idle()
        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert (second["outcome"], second["exit_code"]) == ("succeeded", 0)
        assert len(emu.accounting.uploads) == 1
        assert_exactly_once(emu.accounting, ndjson_digests(source))


async def test_a_touched_input_resumes_and_a_changed_one_is_refused(tmp_path, fast_retry):
    """A new modification time with the same bytes is no change (the batches' digests say so); the
    same size with other bytes is refused before anything more is sent."""
    source = write_ndjson(tmp_path / "in.ndjson", range(6_000))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=5)) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 100_000}, upload={"concurrency": 2})
        first = await pipeline.run_async(
            config,
            [source],
            RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=interrupt_after_uploads(3)),
        )
        assert first["exit_code"] == 3
        original = source.read_bytes()
        changed = bytearray(original)
        changed[10:11] = b"Z" if changed[10:11] != b"Z" else b"Y"  # same size, other bytes, in batch 1
        source.write_bytes(bytes(changed))
        uploads = len(emu.accounting.uploads)
        refused = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert refused["exit_code"] == 3 and any("no longer has the same content" in w for w in refused["warnings"])
        assert len(emu.accounting.uploads) == uploads, "nothing sent from a changed input"

        source.write_bytes(original)  # the same bytes back, with a new modification time: a touch
        stat = source.stat()
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert second["exit_code"] == 0, second
        assert_exactly_once(emu.accounting, ndjson_digests(source))


def _signal_self_once_read_and_uploaded(batches: int):
    """SIGINT once reading finished and ``batches`` batches were uploaded, whichever comes last."""
    seen = {"read": False, "uploaded": 0}

    def on_event(name, fields):
        if name == "reading_finished":
            seen["read"] = True
        elif name == "batch_uploaded":
            seen["uploaded"] += 1
        else:
            return
        if seen["read"] and seen["uploaded"] == batches:
            os.kill(os.getpid(), signal.SIGINT)

    return on_event


async def test_a_run_whose_every_batch_is_uploaded_resumes_to_polling_without_its_input(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(40))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=300)) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_lines": 20})
        stop = _signal_self_once_read_and_uploaded(2)
        first = await pipeline.run_async(
            config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=stop)
        )
        assert first["outcome"] == "interrupted" and len(first["executions"]) == 2
        digests = ndjson_digests(source)
        source.unlink()  # moved away after the upload, as nightly drops are
        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert (second["outcome"], second["exit_code"]) == ("succeeded", 0), second
        assert second["records"]["succeeded"] == 40
        assert any("is gone since the run started" in w for w in second["warnings"])
        assert_exactly_once(emu.accounting, digests)


async def test_an_input_gone_before_all_its_batches_were_sent_still_refuses_the_resume(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(6_000))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=5)) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 100_000}, upload={"concurrency": 2})
        first = await pipeline.run_async(
            config,
            [source],
            RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=interrupt_after_uploads(3)),
        )
        assert first["exit_code"] == 3 and first["records"]["unsent"] + first["records"]["read"] > 0
        source.unlink()
        with pytest.raises(pipeline.errors.InputError, match="the input is gone"):
            await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))

"""Stops and failures that must neither hang, lose records, nor send a batch twice.

Each of these was found by reading the code and proven with a script before it was fixed; the
tests keep them fixed. A hang shows as ``asyncio.TimeoutError`` from ``wait_for``, never as a stuck
suite.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import pipeline
from pipeline.client.api import ApiClient
from pipeline.client.multipart import UploadUnsettled
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.emulator.faults import FaultPlan
from pipeline.engine.recorder import Recorder
from pipeline.engine.runner import RunOptions
from pipeline.errors import TransportError

from ..helpers import assert_exactly_once, ndjson_digests, test_config, write_ndjson

TOKEN = "robust-token-4d2"
NO_HANG_S = 30


async def test_second_ctrl_c_with_a_full_queue_returns_at_once_and_resume_delivers(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(8_000))
    loop = asyncio.get_running_loop()

    def on_event(name, fields):  # Ctrl-C twice while slow uploads fill the queue (back-pressure)
        if name == "batch_read" and fields["batch"] == 6:
            loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
        elif name == "stop_requested" and not fields["abandon"]:
            loop.call_soon(os.kill, os.getpid(), signal.SIGINT)

    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=5, faults={"slow": (1.0, 0.3)})) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 150_000}, upload={"concurrency": 2})
        options = RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=on_event)
        first = await asyncio.wait_for(pipeline.run_async(config, [source], options), NO_HANG_S)
        assert (first["outcome"], first["exit_code"]) == ("interrupted", 3)
        await emu.wait_idle()
        second = await asyncio.wait_for(
            pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry)), NO_HANG_S
        )
        assert second["exit_code"] == 0, second
        assert_exactly_once(emu.accounting, ndjson_digests(source))


async def test_a_crash_in_a_worker_writes_a_report_with_exit_3_and_resume_settles_it(tmp_path, fast_retry, monkeypatch):
    source = write_ndjson(tmp_path / "in.ndjson", range(3_000))
    real_uploaded = Recorder.uploaded
    calls = {"n": 0}

    def crash_once(self, batch, result):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full while journaling")  # after the server created the execution
        real_uploaded(self, batch, result)

    monkeypatch.setattr(Recorder, "uploaded", crash_once)
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=2)) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 100_000})
        first = await asyncio.wait_for(
            pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry)), NO_HANG_S
        )
        assert (first["outcome"], first["exit_code"]) == ("incomplete", 3)
        assert any("disk full while journaling" in w for w in first["warnings"])
        monkeypatch.setattr(Recorder, "uploaded", real_uploaded)
        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert second["exit_code"] == 0, second
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        assert len({u.filename for u in emu.accounting.uploads}) == len(emu.accounting.uploads), "nothing sent twice"


async def test_cancelling_a_run_from_outside_returns_promptly(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(8_000))
    async with running_emulator(EmulatorOptions(token=TOKEN, faults={"slow": (1.0, 5.0)})) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 20_000}, upload={"concurrency": 2})
        run = asyncio.create_task(pipeline.run_async(config, [source], RunOptions(token=TOKEN)))
        await asyncio.wait_for(_until_uploads_in_flight(emu), NO_HANG_S)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run, NO_HANG_S)


async def _until_uploads_in_flight(emu):
    while emu.accounting.requests[("POST", "upload")] < 2:
        await asyncio.sleep(0.01)  # polling a condition


async def test_a_resume_never_resends_a_batch_it_could_not_look_up(tmp_path, monkeypatch):
    source = write_ndjson(tmp_path / "in.ndjson", range(500))
    real_upload = ApiClient.upload

    async def answer_lost(self, *args, **kwargs):
        await real_upload(self, *args, **kwargs)  # the execution IS created...
        lost = TransportError("connection reset after the body was sent", ambiguous=True)
        raise UploadUnsettled(lost, 1)  # ...the answer lost

    async def listing_down(self, *args, **kwargs):
        raise TransportError("listing unavailable", ambiguous=False)

    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=2)) as emu:
        config = test_config(emu.base_url, tmp_path, upload={"max_attempts": 1})
        monkeypatch.setattr(ApiClient, "upload", answer_lost)
        monkeypatch.setattr(ApiClient, "list_executions", listing_down)  # every listing: walks, scans, polls
        first = await pipeline.run_async(config, [source], RunOptions(token=TOKEN))
        assert (first["outcome"], first["exit_code"]) == ("incomplete", 3), "not failed: it may have arrived"
        assert first["records"]["failed"] == 0
        monkeypatch.setattr(ApiClient, "upload", real_upload)
        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN))
        assert second["exit_code"] == 3 and len(emu.accounting.uploads) == 1, "still unknown: not sent again"
        monkeypatch.undo()  # the listing is back
        third = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN))
        assert third["exit_code"] == 0 and len(emu.accounting.uploads) == 1
        assert third["executions"][0]["recovered"]
        assert_exactly_once(emu.accounting, ndjson_digests(source))


async def test_ctrl_c_while_polling_stops_at_once(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(500))
    loop = asyncio.get_running_loop()

    def on_event(name, fields):
        if name == "batch_uploaded":
            loop.call_soon(os.kill, os.getpid(), signal.SIGINT)

    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=60_000)) as emu:
        config = test_config(emu.base_url, tmp_path)
        options = RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=on_event)
        report = await asyncio.wait_for(pipeline.run_async(config, [source], options), NO_HANG_S)
    assert (report["outcome"], report["exit_code"]) == ("interrupted", 3)
    assert report["records"]["pending"] == 500


async def test_an_interrupted_resume_keeps_the_whole_rejects_file(tmp_path):
    source = write_ndjson(tmp_path / "in.ndjson", range(2_000))
    with source.open("ab") as fh:
        fh.write(b'{"broken json\n' * 5)
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1_000)) as emu:
        config = test_config(emu.base_url, tmp_path, poll={"timeout_s": 0.1})
        first = await pipeline.run_async(config, [source], RunOptions(token=TOKEN))
        rejects = first["rejects_path"]
        assert first["exit_code"] == 3 and len(open(rejects, "rb").read().splitlines()) == 5
        loop = asyncio.get_running_loop()

        def on_event(name, fields):
            if name == "import_ready":
                loop.call_soon(os.kill, os.getpid(), signal.SIGINT)

        await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, handle_signals=True, on_event=on_event))
        assert len(open(rejects, "rb").read().splitlines()) == 5


async def test_a_stop_while_batches_are_settling_ends_at_once_and_resume_finishes_exactly_once(tmp_path, fast_retry):
    """SIGTERM while lost answers are being looked up (a 60 s settle window): nothing more is sent,
    the run ends interrupted without waiting for the window, and a resume settles them by name."""
    source = write_ndjson(tmp_path / "in.ndjson", range(2_000))
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def on_event(name, fields):
        seen.append(name)
        if name == "upload_unsettled" and seen.count(name) == 1:
            loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)

    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=2, faults={"drop_after": 1.0})) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 80_000}, upload={"settle_window_s": 60})
        options = RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=on_event)
        first = await asyncio.wait_for(pipeline.run_async(config, [source], options), 20)
        assert (first["outcome"], first["exit_code"]) == ("interrupted", 3)
        created = len(emu.accounting.uploads)
        after_stop = seen[seen.index("stop_requested") :]
        assert "upload_started" not in after_stop and "upload_resent" not in after_stop, "nothing sent after the stop"
        assert first["unsettled"], "the lost answers are listed, not re-sent"
        emu.state.dice.plan = FaultPlan()  # the server answers again
        second = await asyncio.wait_for(pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN)), 60)
        assert (second["outcome"], second["exit_code"]) == ("succeeded", 0)
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        assert sum(e["recovered"] for e in second["executions"]) == created


async def test_a_raw_upload_whose_answers_are_always_lost_is_sent_a_bounded_number_of_times(tmp_path, fast_retry):
    """A raw body carries no file name to look up: it is sent again, marked, at most MAX_RESENDS
    times, then left unsettled for good instead of looping (and duplicating) forever: exit 4, the
    batch listed as a possible duplicate and as unsettled (no resume can tell either)."""
    from pipeline.engine.stages import MAX_RESENDS

    source = write_ndjson(tmp_path / "in.ndjson", range(200))  # one batch
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=2, faults={"drop_after": 1.0})) as emu:
        config = test_config(emu.base_url, tmp_path, upload={"body": "raw"})
        report = await asyncio.wait_for(pipeline.run_async(config, [source], RunOptions(token=TOKEN)), NO_HANG_S)
        assert len(emu.accounting.uploads) == MAX_RESENDS + 1
    assert report["exit_code"] == 4 and report["outcome"] == "completed_with_duplicates"
    assert [u["batch"] for u in report["unsettled"]] == [1] and report["unsettled"][0]["final"]
    assert [d["batch"] for d in report["duplicates"]] == [1]  # possibly on the server several times: said

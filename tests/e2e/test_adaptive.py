"""The adaptive limit on uploads in flight, end to end against the emulator over loopback.

Each run checks, from the emulator's accounting, that every record was accepted once and only once,
and, from the run's ``UploadLimiter`` (``Run.limiter``, captured here), what the limit did.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import pipeline
from pipeline.client.limiter import UploadLimiter
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine import runner
from pipeline.engine.runner import RunOptions

from ..helpers import assert_exactly_once, ndjson_digests, test_config, write_ndjson

TOKEN = "adaptive-token-5e11"
RECORDS = 4_000  # about 1.3 MB: 16 batches of 80 kB


@pytest.fixture
def limiters(monkeypatch) -> list[UploadLimiter]:
    """The limiters the runs of a test build, in order."""
    made: list[UploadLimiter] = []

    class Recorded(UploadLimiter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(runner, "UploadLimiter", Recorded)
    return made


async def _run(tmp_path, retry, *, upload=None, max_bytes=80_000, **emulator):
    source = write_ndjson(tmp_path / "in.ndjson", range(RECORDS))
    options = EmulatorOptions(token=TOKEN, process_ms=2, **emulator)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": max_bytes}, upload=upload or {})
        report = await asyncio.wait_for(
            pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=retry)), 60
        )
        assert report["exit_code"] == 0, report
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        assert report["records"]["succeeded"] == RECORDS
        return report, emu.accounting


async def test_a_server_that_takes_two_uploads_at_once_brings_the_limit_to_two(tmp_path, fast_retry, limiters):
    """The first 8 uploads go at once (a 1 MB/s link each keeps them in flight); the server refuses
    all but 2 on arrival (429, Retry-After 1 s): one shared pause, then 2 at a time, no storm."""
    report, accounting = await _run(tmp_path, fast_retry, max_uploads=2, bandwidth_mbps=1.0, retry_after_s=1)
    (limiter,) = limiters
    snap = limiter.snapshot()
    assert snap.limit == 2 and snap.timeline[0].limit == 8
    assert snap.throttled == accounting.throttled["max_uploads"] >= 1
    assert snap.throttled <= 7, "refused only in the first burst: no probe within 30 s"
    assert snap.pauses == 1
    assert accounting.peak_uploads <= 2
    assert len(report["executions"]) == len(accounting.uploads)


async def test_random_throttling_brings_the_limit_down_and_nothing_is_lost_or_doubled(tmp_path, fast_retry, limiters):
    report, accounting = await _run(tmp_path, fast_retry, faults={"throttle": 0.3}, seed=5, retry_after_s=1)
    (limiter,) = limiters
    snap = limiter.snapshot()
    assert snap.throttled == accounting.throttled["throttle"] >= 1
    assert min(s.limit for s in snap.timeline) < 8 and snap.pauses >= 1
    assert any(e["attempts"] > 1 for e in report["executions"])


async def test_a_fixed_limit_sends_upload_concurrency_at_once(tmp_path, fast_retry, limiters):
    _, accounting = await _run(tmp_path, fast_retry, upload={"adaptive": False, "concurrency": 4}, bandwidth_mbps=1.0)
    (limiter,) = limiters
    snap = limiter.snapshot()
    assert {s.limit for s in snap.timeline} == {4} and not snap.adaptive
    assert accounting.peak_uploads == 4


@pytest.mark.parametrize("budget", [0, 15])
async def test_the_request_budget_keeps_every_request_under_the_servers_rate_limit(tmp_path, fast_retry, budget):
    """Uploads, polls and listings share one budget of 15 requests/s: a server that allows 20 never
    has to refuse one. Without the budget, the same run is refused whatever the machine's speed: its
    29 batches (40 kB) go at once (a fixed limit of 32), more than the 20 a bucket of 20/s holds."""
    upload = {"max_requests_per_s": budget, "adaptive": False, "concurrency": 32}
    _, accounting = await _run(tmp_path, fast_retry, max_bytes=40_000, upload=upload, rate_limit=20)
    if budget:
        assert accounting.throttled["rate_limit"] == 0
    else:
        assert accounting.throttled["rate_limit"] > 0, "the control run must meet the rate limit"


async def test_a_stop_sends_nothing_more_from_the_workers_waiting_for_a_slot(tmp_path, fast_retry, limiters):
    """16 workers, 2 slots: a stop request leaves 14 batches waiting for a slot; none of them is
    sent (not even journaled as started), and a resume delivers everything exactly once."""
    source = write_ndjson(tmp_path / "in.ndjson", range(RECORDS))
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def on_event(name, fields):
        seen.append(name)
        if name == "batch_uploaded" and seen.count(name) == 3:
            loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)

    options = EmulatorOptions(token=TOKEN, process_ms=2, bandwidth_mbps=1.0, max_uploads=2, retry_after_s=1)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 80_000})
        run_options = RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=on_event)
        first = await asyncio.wait_for(pipeline.run_async(config, [source], run_options), 60)
        assert (first["outcome"], first["exit_code"]) == ("interrupted", 3)
        after_stop = seen[seen.index("stop_requested") :]
        assert "upload_started" not in after_stop, "nothing sent after the stop"
        assert limiters[0].snapshot().waiting == 0
        sent = len(emu.accounting.uploads)
        assert sent < first["batches"]
        second = await asyncio.wait_for(pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN)), 60)
        assert (second["outcome"], second["exit_code"]) == ("succeeded", 0), second
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        assert not any(e["recovered"] for e in second["executions"])

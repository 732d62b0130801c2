"""A .gz input's batches are spooled to disk: the reader cuts only a couple ahead of the workers."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.pool import SPOOLED_READ_AHEAD, spool_bytes
from pipeline.engine.runner import RunOptions

from ..helpers import activity, assert_exactly_once, ndjson_digests, test_config

TOKEN = "spool-token"


def test_the_spool_preflight_counts_the_workers_the_read_ahead_and_the_batch_being_cut():
    assert spool_bytes([Path("a.ndjson.gz")], 16, 100) == (16 + SPOOLED_READ_AHEAD + 1) * 100
    assert spool_bytes([Path("a.ndjson")], 16, 100) == 0


async def test_spooled_batches_out_at_once_are_bounded(tmp_path, fast_retry):
    plain = tmp_path / "in.ndjson"
    plain.write_bytes(b"".join(orjson.dumps(activity(i)) + b"\n" for i in range(3000)))
    source = tmp_path / "in.ndjson.gz"
    source.write_bytes(gzip.compress(plain.read_bytes()))
    out = {"now": 0, "most": 0}

    def on_event(name, fields):
        if name == "batch_read":
            out["now"] += 1
            out["most"] = max(out["most"], out["now"])
        elif name in ("batch_uploaded", "upload_failed", "upload_postponed"):
            out["now"] -= 1

    options = EmulatorOptions(token=TOKEN, process_ms=1, bandwidth_mbps=0.5)  # uploads slower than reading
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 10_000}, upload={"concurrency": 4})
        report = await pipeline.run_async(
            config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry, on_event=on_event)
        )
        assert report["exit_code"] == 0 and report["batches"] > 20
        assert_exactly_once(emu.accounting, ndjson_digests(plain))
    assert out["most"] <= 4 + SPOOLED_READ_AHEAD + 1, out  # the workers' batches, the read-ahead, one being cut

"""Spooled batches (a ``.gz`` input's) under ambiguous 5xx answers: each is looked up by name and
settled during the run, none is left behind, none is sent twice; a run stopped with uploads in
flight resumes to settle them exactly once (the emulator's accounting).

A guard for a report of ".gz runs under error5xx=0.3 sometimes end incomplete, one batch never
looked up": not reproduced (see the settle branch's report), so these pin the promise down on the
spooled path with seeded faults.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions

from ..helpers import activity, assert_exactly_once, interrupt_twice_in_flight, ndjson_digests, test_config

TOKEN = "spooled-settle-token"
RECORDS = 4_000


def _gz_input(tmp_path: Path, records: int = RECORDS) -> tuple[Path, Path]:
    plain = tmp_path / "in.ndjson"
    plain.write_bytes(b"".join(orjson.dumps(activity(i)) + b"\n" for i in range(records)))
    source = tmp_path / "in.ndjson.gz"
    source.write_bytes(gzip.compress(plain.read_bytes()))
    return plain, source


def _journal(run_dir: str) -> list[dict]:
    return [orjson.loads(line) for line in (Path(run_dir) / "journal.ndjson").read_bytes().splitlines() if line]


@pytest.mark.parametrize("seed", [11, 22, 33])
async def test_spooled_batches_whose_upload_got_a_5xx_are_all_settled_in_the_run(seed, tmp_path, fast_retry):
    plain, source = _gz_input(tmp_path)
    options = EmulatorOptions(token=TOKEN, process_ms=2, seed=seed, retry_after_s=0, faults={"error5xx": 0.3})
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 20_000, "sizing": "fixed"})
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert (report["outcome"], report["exit_code"]) == ("succeeded", 0), report.get("warnings")
        assert report["unsettled"] == []
        assert_exactly_once(emu.accounting, ndjson_digests(plain))
    journal = _journal(report["run_dir"])
    ambiguous = {e["batch"] for e in journal if e["event"] == "upload_failed" and e.get("ambiguous")}
    settled = {e["batch"] for e in journal if e["event"] == "settled"}
    assert ambiguous, "the seed must give some upload an ambiguous 5xx"
    assert ambiguous <= settled, "every ambiguous upload was looked up by name and settled"
    assert report["batches"] > 20  # several spooled batches
    spool = Path(report["run_dir"]) / "spool"
    assert not spool.exists() or not any(spool.iterdir()), "every spool file was released"


async def test_a_spooled_run_abandoned_in_flight_resumes_and_settles_each_batch_once(tmp_path, fast_retry):
    plain, source = _gz_input(tmp_path, 6_000)
    on_event = interrupt_twice_in_flight()  # two signals while uploads are in flight: they are abandoned

    options = EmulatorOptions(token=TOKEN, process_ms=5, faults={"slow": (1.0, 0.3)}, seed=11)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 100_000}, upload={"concurrency": 3})
        first = await pipeline.run_async(
            config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=on_event)
        )
        assert (first["outcome"], first["exit_code"]) == ("interrupted", 3)
        assert [e for e in first["executions"] if e["upload"] == "uploading"], "uploads were abandoned in flight"
        await emu.wait_idle()
        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert second["exit_code"] == 0, second
        assert second["unsettled"] == []
        assert_exactly_once(emu.accounting, ndjson_digests(plain))
        # the abandoned uploads that reached the server were found by name, not sent again
        assert len({u.filename for u in emu.accounting.uploads}) == len(emu.accounting.uploads)

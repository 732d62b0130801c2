"""A hostile server survived: every fault kind, several seeds, every record accepted exactly once.

Each case runs the whole pipeline against the emulator over loopback with one kind of fault, and
checks with the emulator's accounting that each record was accepted once and only once, and that
the report says exactly what the server did.
"""

from __future__ import annotations

import pytest

import pipeline
from pipeline import formats
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions

from ..helpers import assert_exactly_once, ndjson_digests, test_config, write_ndjson

TOKEN = "matrix-token-90ab"
RECORDS = 4_000
SEEDS = [11, 22, 33]

SURVIVABLE = {
    "throttle": {"faults": {"throttle": 0.4}},
    "rate_limit": {"rate_limit": 15.0},
    "error5xx": {"faults": {"error5xx": 0.4}},
    "reset_before": {"faults": {"reset_before": 0.3}},
    "drop_after": {"faults": {"drop_after": 0.3}},
    "slow": {"faults": {"slow": (0.4, 0.2)}},
    "poll5xx": {"faults": {"poll5xx": 0.5}},
    "everything": {"faults": "throttle=0.1,error5xx=0.1,reset_before=0.1,drop_after=0.1,slow=0.1:50ms,poll5xx=0.2"},
}


async def _run(tmp_path, fast_retry, seed, **emulator):
    source = write_ndjson(tmp_path / "in.ndjson", range(RECORDS))
    options = EmulatorOptions(token=TOKEN, process_ms=2, seed=seed, retry_after_s=0, **emulator)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 80_000})
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        return source, report, emu.accounting


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", list(SURVIVABLE))
async def test_every_record_arrives_exactly_once_despite(fault, seed, tmp_path, fast_retry):
    source, report, accounting = await _run(tmp_path, fast_retry, seed, **SURVIVABLE[fault])
    assert report["exit_code"] == 0, report
    assert_exactly_once(accounting, ndjson_digests(source))
    assert report["records"]["succeeded"] == RECORDS == len(accounting.accepted)
    assert len(report["executions"]) == len({u.filename for u in accounting.uploads})
    if fault == "drop_after":  # the lost answers were found in the execution list, not re-sent
        assert any(e["recovered"] for e in report["executions"])
    if fault in ("throttle", "error5xx", "reset_before"):  # the fault really happened, and was retried
        assert any(e["attempts"] > 1 for e in report["executions"])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", ["lost", "failed"])
async def test_failed_or_lost_executions_are_reported_and_listed_for_a_rerun(fault, seed, tmp_path, fast_retry):
    source, report, accounting = await _run(tmp_path, fast_retry, seed, faults={fault: 0.3})
    bad = [e for e in report["executions"] if not formats.is_success(e["status"])]
    good = [e for e in report["executions"] if formats.is_success(e["status"])]
    assert bad, "the seed must produce at least one failed execution"
    assert {e["status"] for e in bad} == {fault.upper()}
    assert report["exit_code"] == 1
    lost_records = sum(e["source"]["line_count"] for e in bad)
    assert report["records"]["failed"] == report["records"]["not_delivered"] == lost_records
    assert report["records"]["succeeded"] == RECORDS - lost_records == len(accounting.accepted)
    assert sorted(x["batch"] for x in report["not_delivered"]) == sorted(e["batch"] for e in bad)
    for entry in report["not_delivered"]:  # enough to cut those lines out for a rerun
        assert entry["path"] == str(source) and entry["first_line"] <= entry["last_line"]
    digests = ndjson_digests(source)
    delivered = [d for e in good for d in digests[e["source"]["first_line"] - 1 : e["source"]["last_line"]]]
    assert_exactly_once(accounting, delivered)

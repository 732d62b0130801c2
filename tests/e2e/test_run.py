"""The whole pipeline against the embedded emulator over loopback: every record exactly once."""

from __future__ import annotations

import orjson
import pytest

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions

from ..helpers import (
    activity,
    assert_exactly_once,
    csv_digests,
    ndjson_digests,
    test_config,
    write_ndjson,
    write_segment_csv,
)

TOKEN = "test-token-5b1e"


async def test_100k_records_in_2mb_batches_arrive_exactly_once(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "activities.ndjson", range(100_000))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 2_000_000})
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        sizes = [u.size for u in emu.accounting.uploads]
    assert report["exit_code"] == 0, report
    assert max(sizes) <= 2_000_000
    assert len(sizes) == report["batches"] >= 15
    assert report["records"]["read"] == report["records"]["sent"] == report["records"]["succeeded"] == 100_000
    assert sum(e["total_success"] for e in report["executions"]) == 100_000
    assert all(e["status"] == "SUCCEEDED" for e in report["executions"])
    assert report["target"] == emu.base_url and TOKEN not in orjson.dumps(report).decode()
    # the executions map back to contiguous source lines
    lines = sorted((e["source"]["first_line"], e["source"]["last_line"]) for e in report["executions"])
    assert lines[0][0] == 1 and lines[-1][1] == 100_000
    assert all(b[0] == a[1] + 1 for a, b in zip(lines, lines[1:], strict=False))


async def test_a_small_run_is_cut_into_ten_batches_and_resume_plans_the_same(tmp_path, fast_retry, monkeypatch):
    monkeypatch.setattr("pipeline.reading.sizing.MIN_BATCH_BYTES", 1000)  # the 5 MB floor, scaled to the test
    source = write_ndjson(tmp_path / "in.ndjson", range(3000))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as emu:
        config = test_config(emu.base_url, tmp_path)
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        sizes = sorted(u.size for u in emu.accounting.uploads)  # upload order is not batch order
        again = await pipeline.resume_async(report["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert len(emu.accounting.uploads) == 10  # the resume re-planned the same batches: nothing to send
    assert report["exit_code"] == again["exit_code"] == 0 and report["batches"] == again["batches"] == 10
    quarter, half, *rest = sizes  # the first two are smaller, so the first upload starts early
    assert 0.2 < quarter / rest[-1] < 0.3 and 0.45 < half / rest[-1] < 0.55, sizes
    assert rest[0] > 0.9 * rest[-1], sizes  # even: no batch of a few leftover records


@pytest.mark.parametrize("validate", [True, False])
async def test_csv_with_quoted_commas_and_newlines_arrives_exactly_once(tmp_path, fast_retry, validate):
    source = write_segment_csv(tmp_path / "segments.csv", 5_000)
    assert source.read_bytes().count(b"\n") > 5_001  # some records span lines
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as emu:
        config = test_config(
            emu.base_url,
            tmp_path,
            batch={"max_bytes": 64_000, "validate": validate},
            **{"import": {"document_type": "USER_SEGMENT", "mime_type": "TEXT_CSV"}},
        )
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        # a body without its header row would fail on the server: exactly-once proves the header was sent
        assert_exactly_once(emu.accounting, csv_digests(source))
        assert max(u.size for u in emu.accounting.uploads) <= 64_000
    assert report["exit_code"] == 0, report
    assert report["batches"] > 5 and report["records"]["succeeded"] == 5_000
    # records, not lines, even unvalidated: what was sent is what the server counts
    assert report["records"]["read"] == report["records"]["sent"] == 5_000


@pytest.mark.parametrize("validate", [True, False])
async def test_server_counts_that_differ_from_what_was_sent_are_a_warning(tmp_path, fast_retry, validate):
    """Unvalidated blank lines are sent, and the server does not count them: the report says so."""
    good = b'{"$ts":1,"$type":"X","$user_agent_id":"vec:1"}\n'
    source = tmp_path / "blanks.ndjson"
    source.write_bytes(good * 3 + b"\n" + good + b"  \r\n")
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"validate": validate})
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
    assert report["exit_code"] == 0 and report["records"]["succeeded"] == 4
    mismatch = [w for w in report["warnings"] if "the server counted" in w]
    if validate:  # blank lines were skipped before sending: nothing to explain
        assert report["records"]["sent"] == 4 and mismatch == []
    else:
        assert report["records"]["sent"] == 6
        assert len(mismatch) == 1 and mismatch[0].startswith(
            "the server counted 4 records where 6 were sent, in 1 execution(s) (first: batch 1, "
            f"{source} lines 1-6: 4 counted, 6 sent)."
        )
        assert "blank lines sent with [batch] validate = false are not counted" in mismatch[0]


async def test_bad_lines_are_rejected_listed_and_give_exit_1(tmp_path, fast_retry):
    source = tmp_path / "mixed.ndjson"
    good = [orjson.dumps(activity(i)).decode() for i in range(50)]
    lines = list(good)
    bad_at = {5: '{"$type": "TOUCH", "$ts": 1}', 17: "[1, 2, 3]", 30: '{"$user_agent_id": "vec:1", "$ts": 1'}
    for index, text in bad_at.items():
        lines[index] = text
    source.write_text("\n".join(lines) + "\n")
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        config = test_config(emu.base_url, tmp_path)
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert_exactly_once(emu.accounting, ndjson_digests(source))
    assert report["exit_code"] == 1
    assert report["records"]["rejected"] == 3 and report["records"]["succeeded"] == 47
    rejects = [orjson.loads(x) for x in open(report["rejects_path"], "rb")]
    assert [r["line"] for r in rejects] == [i + 1 for i in sorted(bad_at)]
    assert all(r["file"] == str(source) and r["reason"] for r in rejects)
    assert rejects[1]["record"] == "[1, 2, 3]"


async def test_a_throttling_and_flaky_server_still_gets_everything(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "activities.ndjson", range(20_000))
    faults = {"throttle": 0.3, "error5xx": 0.2, "poll5xx": 0.2}
    options = EmulatorOptions(token=TOKEN, process_ms=1, faults=faults, seed=3, retry_after_s=0)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 500_000})
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert_exactly_once(emu.accounting, ndjson_digests(source))
    assert report["exit_code"] == 0, report
    assert any(e["attempts"] > 1 for e in report["executions"])


async def test_an_existing_import_of_another_type_stops_the_run_before_sending(tmp_path):
    from pipeline.client.api import ApiClient

    source = write_ndjson(tmp_path / "in.ndjson", range(10))
    async with running_emulator(EmulatorOptions(token=TOKEN)) as emu:
        async with ApiClient(emu.base_url, TOKEN) as client:
            profile_import = await client.create_import(
                "1000", document_type="USER_PROFILE", mime_type="APPLICATION_X_NDJSON", encoding="utf-8", name="x"
            )
        config = test_config(emu.base_url, tmp_path, **{"import": {"id": str(profile_import["id"])}})
        with pytest.raises(pipeline.ConfigError, match="has document_type USER_PROFILE") as info:
            await pipeline.run_async(config, [source], RunOptions(token=TOKEN))
        assert info.value.key == "import.document_type"
        assert emu.accounting.uploads == []


async def test_upload_into_an_existing_import_of_the_right_type(tmp_path, fast_retry):
    from pipeline.client.api import ApiClient

    source = write_ndjson(tmp_path / "in.ndjson", range(300))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        async with ApiClient(emu.base_url, TOKEN) as client:
            existing = await client.create_import(
                "1000", document_type="USER_ACTIVITY", mime_type="APPLICATION_X_NDJSON", encoding="utf-8", name="x"
            )
        config = test_config(emu.base_url, tmp_path, **{"import": {"id": str(existing["id"])}})
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert_exactly_once(emu.accounting, ndjson_digests(source))
    assert report["exit_code"] == 0 and report["document_import"]["id"] == str(existing["id"])

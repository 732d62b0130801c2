"""Plans: the assignment by size (deterministic), plan.json checks, the shard's config and inputs,
an empty shard, the shard number from the environment; the merge of reports (worst exit code,
one import only)."""

from __future__ import annotations

import argparse

import orjson
import pytest

from pipeline.cli.plan import shard_index
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.plan import assign_shards, load_plan, plan_config, shard_run_id, write_plan
from pipeline.engine.runner import RunOptions
from pipeline.engine.shard import make_plan, run_shard_async
from pipeline.errors import AlreadyImportedError, ConfigError, InputError, UsageError
from pipeline.reporting.merge import merge_reports, worst_exit_code

from ..helpers import test_config, write_ndjson

TOKEN = "plan-token-9a7"


def test_largest_first_to_the_least_loaded_shard_ties_by_name():
    files = [("b", 10), ("a", 10), ("c", 30), ("d", 5), ("e", 25)]
    shards = assign_shards(files, 3)
    assert [[i["path"] for i in s["inputs"]] for s in shards] == [["c"], ["e"], ["a", "b", "d"]]
    assert [s["bytes"] for s in shards] == [30, 25, 25]
    assert assign_shards(list(reversed(files)), 3) == shards, "the order the files are given in does not matter"


def test_more_shards_than_files_leaves_shards_empty():
    shards = assign_shards([("a", 1)], 3)
    assert [len(s["inputs"]) for s in shards] == [1, 0, 0]
    with pytest.raises(UsageError, match="at least 1"):
        assign_shards([("a", 1)], 0)


def _a_plan(tmp_path, **changes) -> dict:
    from pipeline.engine.plan import build_plan

    config = test_config("http://127.0.0.1:1", tmp_path)
    plan = dict(build_plan(config, [("/x/a.ndjson", 10)], 2, {"id": "77", "name": "n"}, "plan-T-1"))
    return plan | changes


def test_plan_json_is_checked_when_read(tmp_path):
    path = tmp_path / "plan.json"
    write_plan(path, _a_plan(tmp_path))  # type: ignore[arg-type]
    plan = load_plan(path)
    assert plan["config"]["import"]["id"] == "77" and shard_run_id(plan, 1) == "plan-T-1-shard01"
    for changes, message in [
        ({"kind": "other"}, "is not a pipeline plan"),
        ({"version": 99}, "version 99"),
        ({"shards": []}, "not numbered"),
        ({"config_digest": "0" * 64}, "was edited"),
    ]:
        path.write_bytes(orjson.dumps(_a_plan(tmp_path, **changes)))
        with pytest.raises(UsageError, match=message):
            load_plan(path)
    path.write_text("{")
    with pytest.raises(UsageError, match="not JSON"):
        load_plan(path)


def test_a_shard_runs_only_with_the_plan_s_config(tmp_path):
    plan = _a_plan(tmp_path)
    assert plan_config(plan, None).import_.id == "77"  # type: ignore[arg-type]
    same = test_config("http://127.0.0.1:1", tmp_path)
    assert plan_config(plan, same).import_.id == "77"  # type: ignore[arg-type]
    other = test_config("http://127.0.0.1:1", tmp_path, batch={"max_lines": 5})
    with pytest.raises(ConfigError, match="differs from the config the plan was made with"):
        plan_config(plan, other)  # type: ignore[arg-type]


def test_the_shard_number_from_the_flag_or_job_completion_index(monkeypatch):
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    assert shard_index(argparse.Namespace(shard=3)) == 3
    with pytest.raises(UsageError, match="which shard"):
        shard_index(argparse.Namespace(shard=None))
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "5")
    assert shard_index(argparse.Namespace(shard=None)) == 5
    assert shard_index(argparse.Namespace(shard=1)) == 1, "the flag wins"
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "x")
    with pytest.raises(UsageError, match="not a shard number"):
        shard_index(argparse.Namespace(shard=None))


async def test_an_empty_shard_succeeds_with_nothing_sent_and_a_changed_input_is_refused(tmp_path):
    source = write_ndjson(tmp_path / "a.ndjson", range(300))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        config = test_config(emu.base_url, tmp_path)
        plan = await make_plan(config, [source], 3, token=TOKEN)
        assert emu.accounting.requests[("POST", "create_import")] == 1
        assert [len(s["inputs"]) for s in plan["shards"]] == [1, 0, 0]
        empty = await run_shard_async(plan, 2, None, RunOptions(token=TOKEN))
        assert (empty["exit_code"], empty["records"]["read"], empty["batches"]) == (0, 0, 0)
        assert empty["document_import"]["id"] == plan["document_import"]["id"]
        assert empty["run_id"] == shard_run_id(plan, 2) and not emu.accounting.uploads

        again = await make_plan(config, [source], 3, token=TOKEN, import_id=plan["document_import"]["id"])
        assert emu.accounting.requests[("POST", "create_import")] == 1, "--import-id names the import"
        assert again["shards"] == plan["shards"] and again["plan_id"] != plan["plan_id"]

        with source.open("ab") as fh:
            fh.write(b"\n")
        with pytest.raises(InputError, match="changed since the plan was made"):
            await run_shard_async(plan, 0, None, RunOptions(token=TOKEN))
        with pytest.raises(UsageError, match="shard 3 is not in the plan"):
            await run_shard_async(plan, 3, None, RunOptions(token=TOKEN))


async def test_planning_again_keeps_the_same_plan_and_its_import_and_replaces_another(tmp_path):
    source = write_ndjson(tmp_path / "a.ndjson", range(300))
    out = tmp_path / "plan.json"
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        config = test_config(emu.base_url, tmp_path)
        plan = await make_plan(config, [source], 3, token=TOKEN, keep=out)
        write_plan(out, plan)
        again = await make_plan(config, [source], 3, token=TOKEN, keep=out)
        assert again == plan, "a retried plan task keeps the plan: its shard runs, its import"
        assert emu.accounting.requests[("POST", "create_import")] == 1
        named = await make_plan(config, [source], 3, token=TOKEN, keep=out, import_id=plan["document_import"]["id"])
        assert named == plan
        fresh = await make_plan(config, [source], 3, token=TOKEN, keep=out, again=True)
        assert fresh["plan_id"] != plan["plan_id"], "--again: a new plan on purpose"

        other_shards = await make_plan(config, [source], 2, token=TOKEN, keep=out)
        assert other_shards["plan_id"] != plan["plan_id"]
        other_config = config.replace(batch={"max_bytes": 1_000_000})
        assert (await make_plan(other_config, [source], 3, token=TOKEN, keep=out))["plan_id"] != plan["plan_id"]
        with source.open("ab") as fh:
            fh.write(b"\n")
        assert (await make_plan(config, [source], 3, token=TOKEN, keep=out))["plan_id"] != plan["plan_id"]
        assert emu.accounting.requests[("POST", "create_import")] == 5, "another plan: another import"

        out.write_text("not a plan")
        latest = await make_plan(config, [source], 3, token=TOKEN, keep=out)
        assert latest["plan_id"] != plan["plan_id"]

        sent = await run_shard_async(latest, 0, None, RunOptions(token=TOKEN))
        assert sent["exit_code"] == 0 and sent["records"]["sent"] == 300
        with pytest.raises(AlreadyImportedError, match=f"already sent by run {shard_run_id(latest, 0)}"):
            await make_plan(config, [source], 2, token=TOKEN)
        assert (await make_plan(config, [source], 2, token=TOKEN, again=True))["plan_id"] != latest["plan_id"]


def _report(run_id: str, exit_code: int, import_id: str = "1", **records: int) -> dict:
    counts = dict.fromkeys(("read", "sent", "succeeded", "failed", "rejected"), 0) | records
    return {
        "run_id": run_id,
        "outcome": {0: "succeeded", 1: "completed_with_failures", 3: "incomplete", 4: "x"}[exit_code],
        "exit_code": exit_code,
        "started_at": "2026-11-28T03:00:00.000Z",
        "finished_at": "2026-11-28T03:00:10.000Z",
        "target": "t",
        "document_import": {"id": import_id},
        "inputs": [],
        "records": counts,
        "batches": 1,
        "executions": [],
        "not_delivered": [],
        "duplicates": [],
        "unsettled": [],
        "throughput": None,
    }


def test_the_worst_exit_code_wins():
    assert worst_exit_code([0, 1, 0]) == 1 and worst_exit_code([1, 3, 0]) == 3 and worst_exit_code([3, 4, 1]) == 4
    assert worst_exit_code([0, 2, 1]) == 2 and worst_exit_code([]) == 0 and worst_exit_code([0, 9]) == 3


def test_merge_sums_and_refuses_runs_of_other_imports():
    reports = [_report("a", 0, read=10, succeeded=10), _report("b", 1, read=5, succeeded=3, failed=2)]
    merged = merge_reports(reports, run_id="m", run_dir=None)  # type: ignore[arg-type]
    assert (merged["exit_code"], merged["outcome"]) == (1, "completed_with_failures")
    assert merged["records"]["read"] == 15 and merged["records"]["failed"] == 2 and merged["batches"] == 2
    with pytest.raises(UsageError, match="not of one document import"):
        merge_reports([*reports, _report("c", 0, import_id="2")], run_id="m", run_dir=None)  # type: ignore[list-item]
    with pytest.raises(UsageError, match="given twice"):
        merge_reports([reports[0], reports[0]], run_id="m", run_dir=None)  # type: ignore[list-item]


async def test_running_a_stopped_shard_again_continues_it_and_one_process_per_shard(tmp_path, fast_retry):

    from pipeline.engine.rundir import ActiveRunGuard
    from pipeline.engine.start import runtime_dir
    from pipeline.errors import ConcurrentRunError

    from ..helpers import assert_exactly_once, interrupt_after_uploads, ndjson_digests

    source = write_ndjson(tmp_path / "a.ndjson", range(3000))
    stop_after_two_uploads = interrupt_after_uploads(2)
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=2)) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 50_000}, upload={"concurrency": 1})
        plan = await make_plan(config, [source], 2, token=TOKEN)
        with ActiveRunGuard(runtime_dir(), shard_run_id(plan, 0)), pytest.raises(ConcurrentRunError):
            await run_shard_async(plan, 0, None, RunOptions(token=TOKEN))
        first = await run_shard_async(
            plan, 0, None, RunOptions(token=TOKEN, handle_signals=True, on_event=stop_after_two_uploads)
        )
        assert first["outcome"] == "interrupted" and first["run_id"] == shard_run_id(plan, 0)
        second = await run_shard_async(plan, 0, None, RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert second["exit_code"] == 0 and second["run_dir"] == first["run_dir"]
        assert_exactly_once(emu.accounting, ndjson_digests(source))


def test_a_merged_report_names_its_plan_and_lists_its_shards_in_the_page():
    from pipeline.reporting.merge import merged_run_id
    from pipeline.reporting.report_html import render_report_html

    reports = [_report("plan-X-1-shard00", 0, read=3), _report("plan-X-1-shard01", 3, read=4)]
    reports[1]["resume_command"] = "pipeline resume runs/plan-X-1-shard01"
    assert merged_run_id(reports) == "plan-X-1-merged"  # type: ignore[arg-type]
    assert merged_run_id([_report("a", 0), _report("b", 0)]) == "merge-of-2-runs"  # type: ignore[list-item]
    merged = merge_reports(reports, run_id="plan-X-1-merged", run_dir=None)  # type: ignore[arg-type]
    assert merged["resume_command"] == "pipeline resume runs/plan-X-1-shard01"
    page = render_report_html(merged)
    shards = page[page.index('<div id="shards">') :]
    assert shards.count("<tr>") == 3 and "pipeline resume runs/plan-X-1-shard01" in shards


def test_the_shards_uploads_in_flight_are_summed_on_one_clock_and_a_run_without_import_is_no_conflict():
    def throughput(timeline):
        return {"max_concurrency": 4, "adaptive": True, "timeline": timeline, "peak_in_flight": 3, "throttled": 1}

    a = _report("plan-P-shard00", 0) | {"throughput": throughput([[0, 4, 3, 0], [10, 4, 0, 100]])}
    a |= {"throughput": a["throughput"] | {"pauses": 0, "upload_mb_s": 1, "poll_requests": 2, "poll_listings": 0}}
    b = _report("plan-P-shard01", 0) | {"finished_at": "2026-11-28T03:00:15.000Z"}  # its uploads end 5 s later
    b |= {"throughput": a["throughput"] | {"timeline": [[0, 4, 2, 0], [10, 4, 0, 50]]}}
    early = _report("plan-P-shard02", 3) | {"document_import": {}, "target": ""}  # killed before its import
    merged = merge_reports([a, b, early], run_id="m", run_dir=None)  # type: ignore[list-item]
    timeline = merged["throughput"]["timeline"]
    assert timeline[0] == [0.0, 4.0, 3.0, 0.0] and [5.0, 8.0, 5.0, 0.0] in timeline  # b starts at 5 s
    assert timeline[-1] == [15.0, 8.0, 0.0, 150.0] and merged["throughput"]["peak_in_flight"] == 5
    assert merged["throughput"]["max_concurrency"] == 8 and merged["throughput"]["throttled"] == 2
    assert merged["document_import"] == {"id": "1"} and merged["target"] == "t" and merged["exit_code"] == 3

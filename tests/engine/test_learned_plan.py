"""A run plans its batches from what the previous run to the same place learned of the platform,
journals that plan with the profile, and a resume cuts the same batches without looking again.

The emulator has 2 slots and a large fixed time per execution: the default plan's 10 executions
queue, the first run learns the 2 slots and the time, and the next run's plan is the model's best
shape for them (fewer executions). Every record is accepted once and only once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import orjson
import pytest

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine import platform_profile
from pipeline.engine.runner import RunOptions
from pipeline.reading import sizing

from ..helpers import assert_exactly_once, ndjson_digests, test_config, write_ndjson

TOKEN = "learned-plan-token-51c9"
RECORDS = 4_000  # about 1.3 MB


@pytest.fixture(autouse=True)
def small_floor(monkeypatch):
    """A floor of 1 kB, so that a 1.3 MB input is cut into ``MIN_BATCHES`` batches."""
    monkeypatch.setattr(sizing, "MIN_BATCH_BYTES", 1000)


def _journal(run_dir: str) -> list[dict]:
    return [orjson.loads(line) for line in (Path(run_dir) / "journal.ndjson").read_text().splitlines()]


def _options() -> EmulatorOptions:
    return EmulatorOptions(token=TOKEN, slots=2, process_ms=150, per_line_us=20)


async def _first_run(emu, tmp_path: Path, fast_retry) -> dict:
    config = test_config(emu.base_url, tmp_path)
    source = write_ndjson(tmp_path / "monday.ndjson", range(RECORDS))
    report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
    assert report["outcome"] == "succeeded" and report["batches"] == sizing.MIN_BATCHES
    assert report["platform"]["plan"] is None  # nothing to learn from yet: the default plan
    learned = report["platform"]["profile"]
    assert (learned["slots"], learned["slots_exact"]) == (2, True), learned
    assert learned["base_s"] == pytest.approx(0.15, abs=0.05)
    kept = orjson.loads((Path(report["run_dir"]) / "platform.json").read_bytes())
    assert kept["profile"] == learned and kept["run_id"] == report["run_id"]  # what the next run reads
    return report


async def test_the_next_run_plans_from_what_the_last_one_learned(tmp_path, fast_retry):
    events: list[tuple[str, dict]] = []
    async with running_emulator(_options()) as emu:
        first = await _first_run(emu, tmp_path, fast_retry)
        config = test_config(emu.base_url, tmp_path)
        source = write_ndjson(tmp_path / "tuesday.ndjson", range(RECORDS, 2 * RECORDS))
        options = RunOptions(token=TOKEN, retry_policy=fast_retry, on_event=lambda n, f: events.append((n, f)))
        second = await pipeline.run_async(config, [source], options)
        assert_exactly_once(emu.accounting, ndjson_digests(tmp_path / "monday.ndjson") + ndjson_digests(source))
    assert second["outcome"] == "succeeded"
    plan = second["platform"]["plan"]
    assert plan is not None and plan["profile"]["learned_from"] == first["run_id"]
    assert plan["modelled_s"] < plan["default_modelled_s"]
    assert second["batches"] < first["batches"]  # fewer executions for 2 slots
    journaled = next(e for e in _journal(second["run_dir"]) if e["event"] == "batch_plan")
    assert journaled["learned"] == plan  # journaled with the plan, before the first batch
    told = [f for n, f in events if n == "batch_plan"]
    assert told and told[0]["learned_from"] == first["run_id"]


async def test_a_resume_of_a_learned_plan_cuts_the_same_batches_without_looking_again(
    tmp_path, fast_retry, monkeypatch
):
    loop = asyncio.get_running_loop()
    uploads: list[int] = []

    def stop_after_first_upload(name, fields):
        if name == "batch_uploaded":
            uploads.append(fields["batch"])
            if len(uploads) == 1:
                loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)

    async with running_emulator(_options()) as emu:
        first = await _first_run(emu, tmp_path, fast_retry)
        config = test_config(emu.base_url, tmp_path, upload={"concurrency": 1})
        source = write_ndjson(tmp_path / "tuesday.ndjson", range(RECORDS, 2 * RECORDS))
        run_options = RunOptions(
            token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=stop_after_first_upload
        )
        stopped = await asyncio.wait_for(pipeline.run_async(config, [source], run_options), 60)
        assert stopped["outcome"] == "interrupted"
        plan = next(e for e in _journal(stopped["run_dir"]) if e["event"] == "batch_plan")
        assert plan["learned"]["profile"]["learned_from"] == first["run_id"]

        def no_second_look(*args, **kwargs):
            raise AssertionError("a resume draws from the journaled plan")

        monkeypatch.setattr(platform_profile, "learned_profile", no_second_look)
        resumed = await asyncio.wait_for(pipeline.resume_async(stopped["run_dir"], RunOptions(token=TOKEN)), 60)
        assert resumed["outcome"] == "succeeded", resumed
        assert_exactly_once(emu.accounting, ndjson_digests(tmp_path / "monday.ndjson") + ndjson_digests(source))
    drawn = sizing.BatchSizes.from_description(plan["plan"])
    assert drawn is not None
    cut = sorted((e["batch"], e["bytes"]) for e in resumed["executions"])
    assert [n for n, _ in cut] == list(range(1, len(cut) + 1))
    for _, size in cut[:-1]:  # each batch ends at the last whole record within its planned target
        target = drawn.next()
        assert target - 1_000 < size <= target
    assert resumed["platform"]["plan"] == plan["learned"]


async def test_fixed_sizing_never_plans_from_a_profile(tmp_path, fast_retry, monkeypatch):
    async with running_emulator(_options()) as emu:
        await _first_run(emu, tmp_path, fast_retry)

        def not_looked_up(*args, **kwargs):
            raise AssertionError("batch.sizing = fixed: no profile is looked up")

        monkeypatch.setattr(platform_profile, "learned_profile", not_looked_up)
        config = test_config(emu.base_url, tmp_path, batch={"sizing": "fixed", "max_bytes": 200_000})
        source = write_ndjson(tmp_path / "tuesday.ndjson", range(RECORDS, 2 * RECORDS))
        second = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
    assert second["outcome"] == "succeeded"
    assert second["platform"]["plan"] is None  # the profile was there to be read, and was not used
    journaled = next(e for e in _journal(second["run_dir"]) if e["event"] == "batch_plan")
    assert "learned" not in journaled and journaled["plan"] == {"first": [], "then": 200_000}


async def test_validate_shows_the_plan_the_next_run_cuts(tmp_path, fast_retry, capsys):
    """After a run that learned the platform, ``pipeline validate`` with the same place (URL,
    datamart, document type, report dir) names the fitted plan and lists the batches the next run
    then cuts."""
    from pipeline.cli.entry import main

    async with running_emulator(_options()) as emu:
        first = await _first_run(emu, tmp_path, fast_retry)
        source = write_ndjson(tmp_path / "tuesday.ndjson", range(RECORDS, 2 * RECORDS))
        toml = tmp_path / "import.toml"
        toml.write_text(f'[api]\nurl = "{emu.base_url}"\n[report]\ndir = "{tmp_path / "runs"}"\n')
        assert main(["validate", "--json", "--config", str(toml), str(source)]) == 0
        dry = orjson.loads(capsys.readouterr().out)
        assert main(["validate", "--config", str(toml), str(source)]) == 0
        text = capsys.readouterr().out
        second = await pipeline.run_async(
            test_config(emu.base_url, tmp_path), [source], RunOptions(token=TOKEN, retry_policy=fast_retry)
        )
    assert dry["learned"] is not None and dry["learned"]["profile"]["learned_from"] == first["run_id"]
    assert f"fitted to the platform as run {first['run_id']} saw it" in text
    assert second["platform"]["plan"] == dry["learned"]
    cut = sorted((e["batch"], e["bytes"]) for e in second["executions"])
    assert cut == [(b["batch"], b["bytes"]) for b in dry["batches"]]
    assert len(cut) < first["batches"]

"""The batch plan is journaled before the first batch is read, and a resume cuts the batches the
interrupted run cut: with the journaled plan even if the constants of ``reading.sizing`` changed
since, and with the former constants (``LEGACY_MIN_BATCHES``) for a journal without a plan.

Each case stops a run after a few uploads (SIGTERM, as a user would), then resumes it under other
constants; the emulator's accounting shows every record accepted once and only once.
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
from pipeline.engine import reading_stage, recorder
from pipeline.engine.runner import RunOptions
from pipeline.reading import sizing

from ..helpers import assert_exactly_once, ndjson_digests, test_config, write_ndjson

TOKEN = "plan-token-7c21"
RECORDS = 4_000  # about 1.3 MB: 10 batches of about 150 kB (8 of about 190 kB) once the floor is lowered


@pytest.fixture(autouse=True)
def small_floor(monkeypatch):
    """A floor of 1 kB, so that a 1.3 MB input is cut into ``MIN_BATCHES`` batches."""
    monkeypatch.setattr(sizing, "MIN_BATCH_BYTES", 1000)


def _journal(run_dir: str) -> list[dict]:
    return [orjson.loads(line) for line in (Path(run_dir) / "journal.ndjson").read_text().splitlines()]


async def _stopped_then_resumed(tmp_path, fast_retry, monkeypatch, *, before_resume) -> tuple[dict, dict, list]:
    """A run stopped after its 2nd upload, ``before_resume()``, then its resume; both reports and
    the first run's journal. 2 uploads at most in flight (the server refuses more)."""
    source = write_ndjson(tmp_path / "in.ndjson", range(RECORDS))
    loop = asyncio.get_running_loop()
    uploaded: list[str] = []

    def on_event(name, fields):
        if name == "batch_uploaded":
            uploaded.append(name)
            if len(uploaded) == 2:
                loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)

    options = EmulatorOptions(token=TOKEN, process_ms=2, bandwidth_mbps=1.0, max_uploads=2, retry_after_s=1)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path)
        run_options = RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=on_event)
        first = await asyncio.wait_for(pipeline.run_async(config, [source], run_options), 60)
        assert (first["outcome"], first["exit_code"]) == ("interrupted", 3)
        assert len(emu.accounting.uploads) < first["batches"], "the stop left batches to send"
        journal = _journal(first["run_dir"])
        before_resume()
        second = await asyncio.wait_for(pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN)), 60)
        assert (second["outcome"], second["exit_code"]) == ("succeeded", 0), second
        assert_exactly_once(emu.accounting, ndjson_digests(source))
    return first, second, journal


async def test_the_plan_is_journaled_before_the_first_batch_and_a_resume_keeps_it(tmp_path, fast_retry, monkeypatch):
    first, second, journal = await _stopped_then_resumed(
        tmp_path, fast_retry, monkeypatch, before_resume=lambda: monkeypatch.setattr(reading_stage, "MIN_BATCHES", 4)
    )
    kinds = [e["event"] for e in journal]
    assert kinds.count("batch_plan") == 1 and kinds.index("batch_plan") < kinds.index("upload_started")
    plan = next(e["plan"] for e in journal if e["event"] == "batch_plan")
    assert len(plan["first"]) == 2 and plan["then"] > plan["first"][1] > plan["first"][0]
    assert second["batches"] == sizing.MIN_BATCHES  # cut with the journaled plan, not with 4
    assert [e["event"] for e in _journal(second["run_dir"])].count("batch_plan") == 1  # not journaled again


async def test_a_journal_without_a_plan_resumes_with_the_former_constants(tmp_path, fast_retry, monkeypatch):
    """A run of the version before the plan was journaled: 8 batches, no ``batch_plan`` line."""
    monkeypatch.setattr(reading_stage, "MIN_BATCHES", sizing.LEGACY_MIN_BATCHES)
    monkeypatch.setattr(recorder.Recorder, "batch_plan", lambda self, plan, learned=None: None)

    def upgrade() -> None:
        monkeypatch.setattr(reading_stage, "MIN_BATCHES", sizing.MIN_BATCHES)
        monkeypatch.undo()  # the new version: batch_plan journaled, MIN_BATCHES as it is now
        monkeypatch.setattr(sizing, "MIN_BATCH_BYTES", 1000)

    first, second, journal = await _stopped_then_resumed(tmp_path, fast_retry, monkeypatch, before_resume=upgrade)
    assert "batch_plan" not in [e["event"] for e in journal]
    assert second["batches"] == sizing.LEGACY_MIN_BATCHES != sizing.MIN_BATCHES


async def test_a_directory_of_small_files_is_warned_of_the_executions_it_costs(tmp_path, fast_retry):
    """25 files of 20 records (about 6 kB each): one execution per file where 10 would do; the run
    says so in a warning (event and report), and still sends every record once."""
    parts = tmp_path / "parts"
    parts.mkdir()
    files = [write_ndjson(parts / f"part-{i:03}.ndjson", range(i * 20, i * 20 + 20)) for i in range(25)]
    warnings: list[str] = []

    def on_event(name, fields):
        if name == "warning":
            warnings.append(fields["message"])

    async with running_emulator(EmulatorOptions(token=TOKEN)) as emu:
        config = test_config(emu.base_url, tmp_path)
        options = RunOptions(token=TOKEN, retry_policy=fast_retry, on_event=on_event)
        report = await asyncio.wait_for(pipeline.run_async(config, [parts], options), 60)
        assert (report["outcome"], report["exit_code"]) == ("succeeded", 0), report
        assert report["batches"] >= 25  # one file per batch at least (the first ones are cut smaller)
        assert_exactly_once(emu.accounting, [d for f in files for d in ndjson_digests(f)])
    note = next(w for w in report["warnings"] if "input files" in w)
    assert note.startswith("25 input files, 25 of them under half a batch")
    assert "at least 25 executions where 10 would do" in note, note
    assert warnings.count(note) == 1

"""Journals written by the version before the stage packages (commit aa73a35) still resume.

The fixture is the journal of a finished run of that version (3,000 USER_ACTIVITY records, 11
batches), with its input path, API URL and report directory replaced by placeholders. Its config
predates ``upload.retry_window_s`` and ``upload.settle_window_s`` and has ``max_attempts = 8``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pipeline
from pipeline.client.api import ApiClient
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions

from ..helpers import assert_exactly_once, ndjson_digests, write_ndjson

FIXTURE = Path(__file__).parent / "fixtures" / "journal_before_the_stage_packages.ndjson"
RUN_ID = "20261201T092710Z-bf79f1"
INPUT_SIZE, INPUT_MTIME_NS = 854_905, 1_796_117_230_806_720_318
TOKEN = "fixture-token-1234"


def _install(tmp_path: Path, url: str, *, upto: str | None = None) -> tuple[Path, Path]:
    """The fixture as a run directory of ``tmp_path``; ``upto``: keep the lines up to and including
    the first event of that kind (a run killed there)."""
    source = write_ndjson(tmp_path / "in.ndjson", range(3000))
    assert source.stat().st_size == INPUT_SIZE, "the records of the fixture's input are deterministic"
    os.utime(source, ns=(INPUT_MTIME_NS, INPUT_MTIME_NS))
    lines = FIXTURE.read_text().splitlines()
    if upto is not None:
        lines = lines[: next(i for i, line in enumerate(lines) if f'"event":"{upto}"' in line) + 1]
    text = "\n".join(lines) + "\n"
    text = text.replace("@INPUT@", str(source)).replace("@URL@", url).replace("@RUNS@", str(tmp_path / "runs"))
    run_dir = tmp_path / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    (run_dir / "journal.ndjson").write_text(text)
    return source, run_dir


async def test_a_finished_run_of_the_previous_version_reports_the_same_and_sends_nothing(tmp_path):
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=2)) as emu:
        _, run_dir = _install(tmp_path, emu.base_url)
        report = await pipeline.resume_async(run_dir, RunOptions(token=TOKEN))
        assert emu.accounting.uploads == []
    assert (report["outcome"], report["exit_code"]) == ("succeeded", 0)
    assert report["records"]["succeeded"] == report["records"]["read"] == 3000
    assert len(report["executions"]) == 11 and {e["status"] for e in report["executions"]} == {"SUCCEEDED"}
    assert (run_dir / "report.json").is_file()


async def test_a_run_of_the_previous_version_killed_after_its_import_resumes_exactly_once(tmp_path):
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=2)) as emu:
        async with ApiClient(emu.base_url, TOKEN) as api:  # the import the killed run had created: 1001
            created = await api.create_import(
                "1000", document_type="USER_ACTIVITY", mime_type="APPLICATION_X_NDJSON", encoding="utf-8", name="x"
            )
        assert created["id"] == "1001"
        source, run_dir = _install(tmp_path, emu.base_url, upto="import")
        report = await pipeline.resume_async(run_dir, RunOptions(token=TOKEN))
        assert (report["outcome"], report["exit_code"]) == ("succeeded", 0), report["warnings"]
        assert_exactly_once(emu.accounting, ndjson_digests(source))
        assert len(emu.accounting.uploads) == 11


def test_a_journal_from_before_batch_sizing_is_resumed_with_fixed_batches():
    from pipeline.config import config_from_dict
    from pipeline.engine.start import _as_planned

    old = {"api": {"url": "https://x.example"}, "batch": {"max_bytes": 1000000, "max_lines": 0, "validate": True}}
    assert config_from_dict(_as_planned(old)).batch.sizing == "fixed"
    new = {"api": {"url": "https://x.example"}, "batch": {"max_bytes": 1000000, "sizing": "adaptive"}}
    assert config_from_dict(_as_planned(new)).batch.sizing == "adaptive"

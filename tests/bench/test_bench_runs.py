"""Benches end to end over loopback: every document type through the normal machinery (0 rejected
by our checks, 0 refused by the emulator's), the command with its own emulator processes (table,
bench.json, bench.html), the cleanup (one deletion per synthetic identifier, nothing else), and
the refusal against a real datamart (exit 2, nothing generated or sent)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from pipeline import formats
from pipeline.bench import generator
from pipeline.bench.cleanup import DELETION_TYPE, cleanup
from pipeline.bench.runner import BenchPlan, run_bench
from pipeline.bench.sweep import points
from pipeline.cli.entry import main
from pipeline.config import runs_base
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.errors import UsageError
from tests.helpers import test_config

TOKEN = "bench-test-token"
CASES = [(t, m) for t in formats.DOCUMENT_TYPES for m in sorted(formats.allowed_mime_types(t))]


def plan(config, document_type: str, mime_type: str = formats.NDJSON, records: int = 400) -> BenchPlan:
    def spec_of(bench_id: str) -> generator.Spec:
        return generator.Spec(document_type=document_type, mime_type=mime_type, records=records, run_id=bench_id)

    return BenchPlan(config=config, emulator=None, points=points([], config), spec_of=spec_of, token=TOKEN)


def bench_config(url: str, tmp_path: Path, document_type: str, mime_type: str = formats.NDJSON):
    return test_config(
        url, tmp_path, batch={"max_lines": 150}, **{"import": {"document_type": document_type, "mime_type": mime_type}}
    )


@pytest.mark.parametrize(("document_type", "mime_type"), CASES)
async def test_every_document_type_can_be_benched_with_nothing_rejected_or_refused(tmp_path, document_type, mime_type):
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        config = bench_config(emu.base_url, tmp_path, document_type, mime_type)
        report = await run_bench(plan(config, document_type, mime_type), lambda _: None)
        assert emu.accounting.accepted_records == 400  # the emulator's per-line checks: every line good
    (p,) = report["points"]
    assert (p["outcome"], p["rejected"], p["refused"], p["records"], p["batches"]) == ("succeeded", 0, 0, 400, 3)
    assert p["processing_s"]["p50"] is not None and p["upload_mb_s"] and p["first_byte_s"] is not None
    bench_dir = Path(report["bench_dir"])
    assert json.loads((bench_dir / "bench.json").read_text())["points"][0]["records"] == 400
    assert not list(bench_dir.glob("bench-input.*"))  # the generated input is gone


async def test_cleanup_sends_one_deletion_per_synthetic_identifier_and_nothing_else(tmp_path):
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        config = bench_config(emu.base_url, tmp_path, "USER_ACTIVITY")
        report = await run_bench(plan(config, "USER_ACTIVITY", records=700), lambda _: None)
        assert report["cleanup_command"] == f"pipeline bench --cleanup {report['bench_dir']}"
        before = {e.id for e in emu.store.executions.values()}
        done = await cleanup(Path(report["bench_dir"]), yes=False, ask=None, say=lambda _: None, token=TOKEN)
        assert done is not None and done["outcome"] == "succeeded"
        new = [e for e in emu.store.executions.values() if e.id not in before]
        imports = {emu.store.imports[i]["document_type"] for i in {e.import_id for e in new}}
        accepted = emu.accounting.accepted
    assert imports == {DELETION_TYPE}
    prefix = f"pipeline-bench-{report['bench_id']}-"
    expected = {
        formats.record_digest(
            orjson.dumps({"type": "USER_ACCOUNT", "user_account_id": f"{prefix}{n}", "compartment_id": "1"})
        )
        for n in range(700)
    }
    from_cleanup = {d for d, ids in accepted.items() if set(ids) & {e.id for e in new}}
    assert from_cleanup == expected  # one per identifier, each once, nothing else
    assert all(len(accepted[d]) == 1 for d in expected)
    assert sum(e.lines for e in emu.accounting.uploads if e.execution_id in {x.id for x in new}) == 700


def test_the_command_benches_its_own_emulators_and_writes_the_table_json_and_html(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "fast.toml"
    cfg.write_text('[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n[report]\ndir = "out"\n')
    argv = ["bench", "--emulator", "--config", str(cfg), "--records", "3000", "--process-ms", "5"]
    argv += ["--sweep", "upload.concurrency=2,4", "--estimate", "1GB", "--slots", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (bench_dir,) = (tmp_path / "out").glob("bench-*")
    bench = json.loads((bench_dir / "bench.json").read_text())
    assert [p["label"] for p in bench["points"]] == ["concurrency=2", "concurrency=4"]
    assert all(p["outcome"] == "succeeded" and p["refused"] == 0 for p in bench["points"])
    assert bench["target"]["emulator"] and "slots" in bench["target"]["emulator_options"]
    assert bench["target"]["emulator_options"]["slots"] == 2
    assert "end to end s" in out and "concurrency=4" in out
    assert "Estimate for 1 GB: about" in out and "nothing to clean up" in out
    html = (bench_dir / "bench.html").read_text()
    assert all(f'<svg id="{i}"' in html for i in ("sweep", "throughput", "concurrency", "processing"))
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_against_a_real_datamart_without_yes_it_refuses_and_sends_nothing(tmp_path, monkeypatch, capsys):
    called = []

    async def fake_run_bench(plan, say):
        called.append(plan)
        raise UsageError("stopped by the test")

    monkeypatch.setattr("pipeline.bench.runner.run_bench", fake_run_bench)
    monkeypatch.setenv("MICS_API_TOKEN", "a-token")
    cfg = tmp_path / "real.toml"
    cfg.write_text(f'[api]\nurl = "https://api.mediarithmics.com"\n[report]\ndir = "{tmp_path / "runs"}"\n')
    assert main(["bench", "--config", str(cfg), "--size", "1MB"]) == 2
    assert "without an explicit datamart" in capsys.readouterr().err
    assert main(["bench", "--config", str(cfg), "--size", "1MB", "--datamart-id", "4321"]) == 2
    err = capsys.readouterr().err
    assert "into datamart 4321 at https://api.mediarithmics.com" in err and "--yes" in err
    assert called == [] and not (tmp_path / "runs").exists()  # nothing generated, nothing sent
    assert main(["bench", "--config", str(cfg), "--size", "1MB", "--datamart-id", "4321", "--yes"]) == 2
    assert "stopped by the test" in capsys.readouterr().err and len(called) == 1  # --yes: it would go on


async def test_a_bench_with_the_default_report_dir_goes_beside_the_run_directories(tmp_path, monkeypatch):
    """Not into the current directory: ``report.dir`` unset means the user's state directory
    (``config.runs_base``), as for every run."""
    monkeypatch.chdir(tmp_path)
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        config = bench_config(emu.base_url, tmp_path, "USER_ACTIVITY").replace(report={"dir": ""})
        report = await run_bench(plan(config, "USER_ACTIVITY", records=50), lambda _: None)
    assert Path(report["bench_dir"]).parent == runs_base(config)
    assert not list(tmp_path.glob("bench-*"))

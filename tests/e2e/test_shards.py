"""Shards of one plan as separate processes (the command line, as an orchestrator runs it) against
one emulator on 127.0.0.1: one import, every record exactly once, no upload file name twice; the
merged report sums the shards and exits with the worst; a shard killed mid-run and resumed still
delivers exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import orjson

from pipeline.emulator import EmulatorOptions, running_emulator

from ..helpers import assert_exactly_once, ndjson_digests, write_ndjson

TOKEN = "shards-token-5e1f"
SHARDS = 8
DEADLINE_S = 240


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(
        f'[api]\nurl = "{url}"\ntoken_env = "SHARDS_TEST_TOKEN"\n[batch]\nmax_bytes = 20000\n'
        "[upload]\nconcurrency = 2\nsettle_window_s = 1\n"
        f'[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n[report]\ndir = "{tmp_path / "runs"}"\n'
    )
    return path


def _inputs(tmp_path: Path) -> list[Path]:
    """12 files of different sizes (one with two bad lines: its shard ends with failures, exit 1)."""
    folder = tmp_path / "in"
    folder.mkdir()
    files, start = [], 0
    for i, n in enumerate((900, 700, 700, 500, 400, 400, 300, 200, 150, 100, 60, 30)):
        files.append(write_ndjson(folder / f"part{i:02d}.ndjson", range(start, start + n)))
        start += n
    with files[5].open("ab") as fh:
        fh.write(b'{"$type": "TOUCH"}\nnot json\n')
    return files


async def _cli(*args: str, wait: bool = True) -> asyncio.subprocess.Process:
    env = dict(os.environ, SHARDS_TEST_TOKEN=TOKEN)
    env.pop("JOB_COMPLETION_INDEX", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from pipeline.cli.entry import main_entry; main_entry()",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if wait:
        await asyncio.wait_for(proc.wait(), DEADLINE_S)
    return proc


async def _output(proc: asyncio.subprocess.Process) -> str:
    out, err = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
    return out.decode() + err.decode()


def _journal_events(run_dir: Path) -> list[str]:
    try:
        lines = (run_dir / "journal.ndjson").read_bytes().splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        try:
            events.append(orjson.loads(line)["event"])
        except orjson.JSONDecodeError:
            pass  # a line being written
    return events


async def _kill_mid_run(proc: asyncio.subprocess.Process, run_dir: Path) -> None:
    """SIGKILL once the shard's journal shows an upload, polled with a bound (not a sleep to sync)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while proc.returncode is None and loop.time() < deadline:
        if "uploaded" in _journal_events(run_dir):
            break
        await asyncio.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert "run_finished" not in _journal_events(run_dir), "the kill must land mid-run"


async def _merge(tmp_path: Path, out: str) -> tuple[int, dict, str]:
    run_dirs = sorted(str(d) for d in (tmp_path / "runs").glob("plan-*-shard*"))
    assert len(run_dirs) == SHARDS
    proc = await _cli("report", "merge", *run_dirs, "--out", str(tmp_path / out), wait=False)
    text = await _output(proc)
    assert proc.returncode is not None
    return proc.returncode, orjson.loads((tmp_path / out / "report.json").read_bytes()), text


def _shard_reports(tmp_path: Path) -> list[dict]:
    return [orjson.loads(p.read_bytes()) for p in sorted((tmp_path / "runs").glob("plan-*-shard*/report.json"))]


async def test_eight_shards_one_import_exactly_once_then_a_killed_shard_resumed(tmp_path):
    files = _inputs(tmp_path)
    options = EmulatorOptions(token=TOKEN, process_ms=5, faults={"slow": (0.3, 0.05)}, seed=3)
    async with running_emulator(options) as emu:
        config = _config(tmp_path, emu.base_url)
        plan_path = tmp_path / "plan.json"
        args = ["--config", str(config), "--shards", str(SHARDS), "--out", str(plan_path), str(tmp_path / "in")]
        proc = await _cli("plan", *args, wait=False)
        assert await _output(proc) and proc.returncode == 0
        plan = orjson.loads(plan_path.read_bytes())
        assert [s["shard"] for s in plan["shards"]] == list(range(SHARDS))
        assert sorted(i["path"] for s in plan["shards"] for i in s["inputs"]) == sorted(str(f) for f in files)

        # shard 0 has the largest file: it is killed once it has uploaded something; the others run through
        procs = [
            await _cli("run", "--plan", str(plan_path), "--shard", str(k), "-q", wait=False) for k in range(SHARDS)
        ]
        first_dir = tmp_path / "runs" / f"{plan['plan_id']}-shard00"
        await _kill_mid_run(procs[0], first_dir)
        codes = [procs[0].returncode] + [await asyncio.wait_for(p.wait(), DEADLINE_S) for p in procs[1:]]
        assert codes[0] == -signal.SIGKILL and sorted(codes[1:]) == [0] * 6 + [1], codes

        code, merged, _ = await _merge(tmp_path, "merged-1")
        assert code == 3 and merged["exit_code"] == 3, "a shard not finished: the whole is not known yet"
        assert merged["document_import"]["id"] == plan["document_import"]["id"]
        assert merged["shards"][0]["outcome"] == "interrupted" and merged["resume_command"]

        # resume the killed shard (what an orchestrator's retry does), then merge again
        proc = await _cli("resume", str(first_dir), "-q", wait=False)
        text = await _output(proc)
        assert proc.returncode == 0, text
        code, merged, text = await _merge(tmp_path, "merged-2")

        # every record exactly once, one import, no file name twice
        digests = [d for f in files for d in ndjson_digests(f)]
        assert_exactly_once(emu.accounting, digests)
        assert emu.accounting.requests[("POST", "create_import")] == 1
        names = [u.filename for u in emu.accounting.uploads]
        assert len(names) == len(set(names)), "an upload file name was used twice"
        assert all(n.startswith(plan["plan_id"] + "-shard") for n in names)

        # the merged report: the sum of the shards', the worst exit code (one shard had rejects: 1)
        shards = _shard_reports(tmp_path)
        assert [s["exit_code"] for s in shards].count(1) == 1 and code == merged["exit_code"] == 1, text
        for key in merged["records"]:
            assert merged["records"][key] == sum(s["records"][key] for s in shards), key
        assert merged["records"]["succeeded"] == len(digests) and merged["records"]["rejected"] == 2
        assert merged["batches"] == sum(s["batches"] for s in shards) == len(merged["executions"])
        assert len(merged["shards"]) == SHARDS and "resume_command" not in merged
        assert (tmp_path / "merged-2" / "report.html").stat().st_size > 0

        # the whole DAG run again (cleared): the plan is kept, so its shards send nothing twice
        proc = await _cli("plan", *args, wait=False)
        text = await _output(proc)
        assert proc.returncode == 0 and "kept as it is" in text, text
        assert orjson.loads(plan_path.read_bytes())["plan_id"] == plan["plan_id"]
        for k in (0, SHARDS - 1):
            proc = await _cli("run", "--plan", str(plan_path), "--shard", str(k), "-q", wait=False)
            text = await _output(proc)
            assert proc.returncode == 0, text
        assert_exactly_once(emu.accounting, digests)
        assert emu.accounting.requests[("POST", "create_import")] == 1

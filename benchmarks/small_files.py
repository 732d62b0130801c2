"""A directory of small part files against the same bytes as one file, in the WAN scenarios.

    python benchmarks/small_files.py                          # 300 MB in 100 parts, platform and link
    python benchmarks/small_files.py --parts 20 --scenarios platform,link,throttled

A batch holds the records of one file, so each part file is an execution of its own: against a
platform with few slots and a fixed time per execution that is what the run's time becomes. Prints,
per scenario, the pipeline's defaults on the directory and on the one file: wall time, executions,
exit code (the run warns of the small files: ``reading.sizing.small_files_note``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import make_ndjson  # noqa: E402
from bench_proc import measure  # noqa: E402
from run import Bench, Emulator, pipeline_bin, write_default_config  # noqa: E402
from wan import emulator_args, emulator_flags, scenario_params  # noqa: E402


def split_into(path: Path, folder: Path, parts: int) -> list[Path]:
    """``path`` cut at line ends into about ``parts`` files of equal size."""
    folder.mkdir()
    size = path.stat().st_size
    out: list[Path] = []
    with open(path, "rb") as f:
        while chunk := f.read(size // parts):
            chunk += f.readline()  # up to the end of the line
            part = folder / f"part-{len(out):05}.ndjson"
            part.write_bytes(chunk)
            out.append(part)
    return out


def one_run(bench: Bench, cfg: Path, data: Path, state: Path) -> tuple[float, int, int]:
    """(wall seconds, executions, exit code) of ``pipeline run`` with its defaults."""
    shutil.rmtree(state, ignore_errors=True)
    m = measure(
        [*pipeline_bin(), "run", "--config", str(cfg), "-q", str(data)], env={**bench.env, "XDG_STATE_HOME": str(state)}
    )
    reports = list(state.glob("**/report.json"))
    executions = len(json.loads(reports[0].read_text())["executions"]) if reports else 0
    return m.wall_s, executions, m.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=300, help="MB")
    ap.add_argument("--parts", type=int, default=100)
    ap.add_argument("--scenarios", default="platform,link")
    args = ap.parse_args()
    names = args.scenarios.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pipeline-small-files-") as tmp_dir:
        tmp = Path(tmp_dir)
        whole = tmp / "whole.ndjson"
        make_ndjson(whole, args.size * 1_000_000)
        parts = split_into(whole, tmp / "parts", args.parts)
        known = emulator_flags()
        for name, params in scenario_params(names, [], None).items():
            emu = Emulator(*emulator_args(params, known)[0])
            try:
                bench = Bench(tmp, emu)
                cfg = write_default_config(tmp / f"cfg-{name}.toml", emu.url)
                for label, data in ((f"{len(parts)} part files", tmp / "parts"), ("one file", whole)):
                    wall, executions, code = one_run(bench, cfg, data, tmp / "state")
                    rows.append((name, label, wall, executions, code))
            finally:
                emu.stop()
    print(f"{'scenario':10} {'input':18} {'wall s':>8} {'executions':>11} {'exit':>5}")
    for name, label, wall, executions, code in rows:
        print(f"{name:10} {label:18} {wall:8.2f} {executions:11} {code:5}")


if __name__ == "__main__":
    main()

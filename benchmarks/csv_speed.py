"""CSV throughput, validation off, end to end: this tree's pipeline against another version of it,
alternating in the same run (the loopback contender "pipeline CSV, validation off" of ``run.py``).

    git archive main pipeline | tar -x -C /tmp/csv-before
    python benchmarks/csv_speed.py --size 250 --rounds 5 --baseline /tmp/csv-before

One emulator (``--light --process-ms 0 --per-line-us 0``, as in ``run.py``) serves every round; each
round runs each version once, in an order that alternates from round to round, and the table
shows medians: wall time, MB/s (input MB / wall s), CPU s of the pipeline's process tree, peak RSS
(largest process, and the tree's PSS), and the emulator's CPU s during the run. The report's
record count is checked against the generated file's.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import make_csv  # noqa: E402
from run import Bench, Emulator, settle, warm_bytecode, write_config  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=250, help="CSV size, MB (default 250)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--baseline",
        metavar="DIR",
        action="append",
        default=[],
        help="also run the pipeline package found in DIR, alternating (may be given several times)",
    )
    ap.add_argument("--validate", action="store_true", help="validation on instead of off")
    ap.add_argument("--dir", help="parent of the temporary data directory")
    args = ap.parse_args()
    warm_bytecode()
    for baseline in args.baseline:  # its bytecode too, or it recompiles on every run (PYTHONDONTWRITEBYTECODE)
        compileall.compile_dir(baseline, quiet=1)
    with tempfile.TemporaryDirectory(prefix="pipeline-csvspeed-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "segments.csv"
        records = make_csv(data, args.size * 10**6)
        size = data.stat().st_size
        Path(data).read_bytes()  # the page cache holds it
        emu = Emulator("--process-ms", "0")
        try:
            b = Bench(tmp, emu)
            cfg = write_config(tmp / "cfg.toml", emu.url, b.runs, validate=args.validate, csv=True, poll_s=0.2)
            versions: dict[str, str | None] = {"this tree": None}
            for baseline in args.baseline:
                versions[Path(baseline).name] = baseline
            rows: dict[str, list[dict[str, float]]] = {name: [] for name in versions}
            names = list(versions)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    settle()
                    emu.server.mark()
                    m = b.pipeline(cfg, data, source=versions[name], cwd=tmp)  # cwd: not this tree first on sys.path
                    emu_cpu, _ = emu.server.since_mark()
                    if m.returncode != 0:
                        print(f"{name}: exit {m.returncode}\n{m.stderr[-2000:]}", file=sys.stderr)
                        return 1
                    sent = m.report["records"]["sent"] if m.report else -1
                    row = {
                        "wall_s": m.wall_s,
                        "MB_s": size / 1e6 / m.wall_s,
                        "cpu_s": m.cpu_s,
                        "rss_mb": m.peak_rss_mb,
                        "tree_pss_mb": m.tree_rss_mb,
                        "emu_cpu_s": emu_cpu,
                    }
                    rows[name].append(row)
                    ok = "" if sent == records else f"  RECORDS {sent} != {records}"
                    print(
                        f"  round {r + 1} {name:<10} {m.wall_s:6.2f} s {row['MB_s']:5.0f} MB/s "
                        f"CPU {m.cpu_s:5.2f} s emu {emu_cpu:5.2f} s RSS {m.peak_rss_mb:4.0f} MB{ok}",
                        flush=True,
                    )
        finally:
            emu.stop()
    print(f"\n{size / 1e6:.0f} MB, {records} records, medians of {args.rounds} rounds")
    head = f"{'version':<10} {'wall s':>7} {'MB/s':>6} {'CPU s':>6} {'RSS MB':>7} {'tree PSS':>8} {'emu CPU':>8}"
    print(head + "\n" + "-" * len(head))
    for name, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(
            f"{name:<10} {med['wall_s']:7.2f} {med['MB_s']:6.0f} {med['cpu_s']:6.2f} {med['rss_mb']:7.0f} "
            f"{med['tree_pss_mb']:8.0f} {med['emu_cpu_s']:8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

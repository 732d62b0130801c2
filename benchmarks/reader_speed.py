"""Reader throughput: MB/s, CPU seconds and peak RSS for NDJSON / CSV, validation on / off.

    python benchmarks/reader_speed.py [--mb 300] [--dir /tmp] [--workers 2] [--inputs reader|bench]

Generates realistic inputs in a temporary directory (``--inputs reader``, the default: USER_ACTIVITY
NDJSON lines of 250-400 bytes with 1 % bad lines, USER_SEGMENT CSV with quoted commas, doubled
quotes and newlines; ``--inputs bench``: the all-valid inputs of ``benchmarks/run.py``), then plans
their batches with the reader, each case in a fresh process so its peak RSS is its own. The files
are read once before timing, so the figures are for the page cache (the reader's own cost).

``MB/s`` is wall time, which other load on the machine distorts; ``CPU s`` is what the reader and
its validation workers used together (``/proc``, sampled at the last batch, while the workers are
alive), the steadier figure to compare changes with: ``MB/CPU-s`` is throughput per core.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

EVENTS = ["page-view", "add-to-cart", "purchase", "search", "store-visit"]
TYPES = ["SITE_VISIT", "APP_VISIT", "TOUCH", "EMAIL", "DISPLAY_AD"]


def activity(rng: random.Random, i: int) -> dict:
    ident = rng.choice(
        [
            {"$user_agent_id": f"vec:{rng.randrange(10**9)}"},
            {"$user_account_id": f"acc-{rng.randrange(10**7)}", "$compartment_id": "1000"},
            {"$email_hash": {"$email": f"user{rng.randrange(10**6)}@example.com"}},
        ]
    )
    ts = 1_700_000_000_000 + i * 137
    props = {"url": f"https://shop.example.com/p/{rng.randrange(10**5)}" + "?ref=x" * rng.randrange(8)}
    if rng.random() < 0.5:
        props["price"] = round(rng.random() * 100, 2)
    return {
        **ident,
        "$type": rng.choice(TYPES),
        "$session_status": "NO_SESSION",
        "$ts": ts,
        "$events": [{"$event_name": rng.choice(EVENTS), "$ts": ts, "$properties": props}],
        "$location": {"$country": "france", "$city": "paris", "$zip_code": "75001"},
    }


def make_ndjson(path: Path, size: int, seed: int = 1) -> None:
    import orjson

    rng = random.Random(seed)
    pool = [orjson.dumps(activity(rng, i)) + b"\n" for i in range(5000)]
    bad = [b'{"$type":"SITE_VISIT","$ts":1}\n', b"[\n", b"not json\n", b'{"$ts":"x","$type":"T"}\n']
    written = 0
    with open(path, "wb") as f:
        while written < size:
            chunk = b"".join(rng.choice(bad) if rng.random() < 0.01 else rng.choice(pool) for _ in range(20000))
            f.write(chunk)
            written += len(chunk)


def make_csv(path: Path, size: int, seed: int = 2) -> None:
    rng = random.Random(seed)
    rows = []
    for i in range(5000):
        bag = '"{""source"": ""crm, import"", ""note"": ""line one\nline two""}"' if i % 3 == 0 else '"a, b"'
        rows.append(f"UPDATE,0,1000,acc-{rng.randrange(10**7)},seg-{i % 50},{bag}\n".encode())
    with open(path, "wb") as f:
        f.write(b"operation,expiration_duration,compartment_id,user_account_id,segment_technical_name,data_bag\n")
        written = 0
        while written < size:
            chunk = b"".join(rng.choice(rows) for _ in range(20000))
            f.write(chunk)
            written += len(chunk)


def tree_usage(pid: int) -> tuple[float, float, float]:
    """(CPU seconds of ``pid`` and its descendants, peak RSS MiB of ``pid``, largest peak RSS MiB
    of a descendant): the validation workers are children of the forkserver, not of the reader."""
    from bench_proc import cpu_and_rss, hwm, tree

    pids = tree(pid)
    cpu = sum(cpu_and_rss(p)[0] for p in pids)
    return cpu, hwm(pid) / 2**20, max((hwm(p) for p in pids if p != pid), default=0) / 2**20


def one(path: str, kind: str, validate: bool, workers: int) -> dict:
    from pipeline import formats
    from pipeline.reading.reader import BatchReader
    from pipeline.reading.reader_options import ReaderOptions

    p = Path(path)
    with open(p, "rb") as f:  # warm the page cache
        while f.read(16 << 20):
            pass
    opts = ReaderOptions(
        document_type="USER_ACTIVITY" if kind == "ndjson" else "USER_SEGMENT",
        mime_type=formats.NDJSON if kind == "ndjson" else formats.CSV,
        validate=validate,
        workers=workers,
    )
    rejects = 0

    def on_reject(_r: object) -> None:
        nonlocal rejects
        rejects += 1

    reader = BatchReader([p], opts, on_reject)
    cpu0 = tree_usage(os.getpid())[0]
    t0 = time.perf_counter()
    batches = []
    for batch in reader:
        batches.append(batch)
        cpu, rss, child = tree_usage(os.getpid())  # at the last batch the workers are still alive
    dt = time.perf_counter() - t0
    cpu -= cpu0
    size = p.stat().st_size
    return {
        "case": f"{kind} validate={'on' if validate else 'off'}" + (f" workers={workers}" if validate else ""),
        "MB": round(size / 1e6),
        "seconds": round(dt, 2),
        "MB/s": round(size / 1e6 / dt),
        "cpu_s": round(cpu, 2),
        "MB/cpu_s": round(size / 1e6 / cpu) if cpu else 0,
        "batches": len(batches),
        "records": reader.stats[p].records,
        "rejects": rejects,
        "peak_rss_MB": round(rss),
        "worker_rss_MB": round(child),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=300, help="size of each generated input (MB)")
    ap.add_argument("--dir", default=None, help="where to put the inputs (default: a temp dir)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--inputs", choices=("reader", "bench"), default="reader", help="generated inputs (see above)")
    ap.add_argument("--one", nargs=4, metavar=("PATH", "KIND", "VALIDATE", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        path, kind, validate, workers = args.one
        print(json.dumps(one(path, kind, validate == "1", int(workers))))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        nd, cs = Path(tmp) / "activity.ndjson", Path(tmp) / "segments.csv"
        t0 = time.perf_counter()
        if args.inputs == "bench":
            import bench_data

            bench_data.make_ndjson(nd, args.mb * 10**6)
            bench_data.make_csv(cs, args.mb * 10**6)
        else:
            make_ndjson(nd, args.mb * 10**6)
            make_csv(cs, args.mb * 10**6)
        print(f"generated 2 x {args.mb} MB in {time.perf_counter() - t0:.1f} s; cpus={os.cpu_count()}")
        cases = [
            (nd, "ndjson", 0, 0),
            (cs, "csv", 0, 0),
            (nd, "ndjson", 1, args.workers),
            (nd, "ndjson", 1, 0),
            (cs, "csv", 1, args.workers),
            (cs, "csv", 1, 0),
        ]
        for path, kind, validate, workers in cases:
            cmd = [sys.executable, __file__, "--one", str(path), kind, str(validate), str(workers)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            print(
                f"{r['case']:<32} {r['MB/s']:>6} MB/s {r['MB/cpu_s']:>6} MB/CPU-s  ({r['MB']} MB in {r['seconds']} s,"
                f" {r['cpu_s']} CPU s, {r['batches']} batches, {r['records']} records, {r['rejects']} rejects,"
                f" peak RSS {r['peak_rss_MB']} MB"
                + (f", workers {r['worker_rss_MB']} MB each at most" if r["worker_rss_MB"] else "")
                + ")",
                flush=True,
            )


if __name__ == "__main__":
    main()

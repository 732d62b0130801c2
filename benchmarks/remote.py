"""An S3 input against the same files read locally: throughput, peak RSS, the spool's peak, exactly once.

    python benchmarks/remote.py --size 50          # a quick look (50 MB)
    python benchmarks/remote.py --size 1000        # the README's figures (1 GB: 5 objects, 2 gzipped)

The data (``bench_data.make_ndjson``: USER_ACTIVITY records of 250-400 bytes) is written as 5 files
of ``--size / 5`` MB, the 2nd and 4th gzipped, and put in a bucket of moto's standalone S3 server
(``moto_server``, its own process on 127.0.0.1: real HTTP, SigV4, ranged GETs). Two runs of
``pipeline run`` (each its own process, measured by ``bench_proc.measure``: wall time, peak RSS of
the process tree) go to one in-process emulator (no processing delay, every record checked and its
digest kept), a fresh one per run: over the 5 local files, then over ``s3://bench/data/``. For each
run: every record accepted exactly once (the emulator's accounting against the digests of the
local files), and for the S3 run the spool directory sampled every 20 ms: its peak size and file
count, and whether it ever held a file of a plain object (it must not: those are read by ranges).

Needs moto[server] and s3fs (``pip install -e '.[test]'``) and about 2 x ``--size`` MB of disk.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import make_ndjson  # noqa: E402
from bench_proc import measure  # noqa: E402

from pipeline import formats  # noqa: E402
from pipeline.emulator import EmulatorOptions, running_emulator  # noqa: E402

TOKEN = "bench-remote-token"
BUCKET = "bench"
GZIPPED = (1, 3)  # which of the 5 files are gzipped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    """The emulator on its own thread (its accounting read at the end, from that thread)."""

    def __init__(self, light: bool = False) -> None:
        self.light = light
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        options = EmulatorOptions(token=TOKEN, process_ms=0, per_line_us=0, light=self.light)
        async with running_emulator(options) as emu:
            self.emu = emu
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Emulator:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def accepted(self) -> tuple[dict[bytes, list[str]], int]:
        """Digest -> executions that accepted it (empty in light mode), and the records accepted."""

        async def get() -> tuple[dict[bytes, list[str]], int]:
            await self.emu.wait_idle()
            return dict(self.emu.accounting.accepted), self.emu.accounting.accepted_records

        return asyncio.run_coroutine_threadsafe(get(), self.loop).result(600)


class SpoolWatch:
    """Samples the spool directories under ``runs`` every 20 ms: peak bytes, peak files, names seen."""

    def __init__(self, runs: Path) -> None:
        self.runs = runs
        self.peak_bytes = 0
        self.peak_files = 0
        self.names: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            total, files = 0, 0
            for path in self.runs.glob("*/spool/*"):
                try:
                    total += path.stat().st_size
                except OSError:
                    continue
                files += 1
                self.names.add(path.name)
            self.peak_bytes, self.peak_files = max(self.peak_bytes, total), max(self.peak_files, files)
            self._done.wait(0.02)

    def __enter__(self) -> SpoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def make_data(root: Path, size_mb: int) -> tuple[list[Path], list[bytes]]:
    """5 files (2 gzipped) and the digests of their records."""
    files, digests = [], []
    for k in range(5):
        plain = root / f"part-{k}.ndjson"
        make_ndjson(plain, size_mb * 10**6 // 5, seed=k + 1)
        with plain.open("rb") as f:
            digests += [formats.record_digest(line.rstrip(b"\n")) for line in f]
        if k in GZIPPED:
            target = plain.with_name(plain.name + ".gz")
            with plain.open("rb") as src, gzip.open(target, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
            plain.unlink()
            plain = target
        files.append(plain)
    return files, digests


def start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def write_config(path: Path, url: str, runs: Path, concurrency: int) -> Path:
    path.write_text(
        f'[api]\nurl = "{url}"\ntoken_env = "PIPELINE_BENCH_TOKEN"\n'
        f"[upload]\nconcurrency = {concurrency}\n"
        f'[poll]\ninterval_s = 0.05\nmax_interval_s = 0.2\n[report]\ndir = "{runs}"\n'
    )
    return path


def run_once(label: str, inputs: list[str], work: Path, env: dict[str, str], digests: list[bytes], args: Any) -> dict:
    runs = work / f"runs-{label}"
    with Emulator(args.light) as emulator:
        config = write_config(work / f"{label}.toml", emulator.emu.base_url, runs, args.concurrency)
        cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(config), "-q", *inputs]
        with SpoolWatch(runs) as spool:
            measured = measure(cmd, env=env)
        accepted, accepted_records = emulator.accepted()
    if measured.returncode != 0:
        print(measured.stderr[-2000:], file=sys.stderr)
    want = Counter(digests)  # the generated records repeat: each must be accepted as often as it is there
    twice = sum(1 for d, ids in accepted.items() if len(ids) > want.get(d, 0))
    missing = sum(1 for d, n in want.items() if len(accepted.get(d, ())) < n)
    [report_path] = runs.glob("*/report.json")
    report = json.loads(report_path.read_text())
    plain_names = {f"part-{k}.ndjson." for k in range(5) if k not in GZIPPED}
    copied = sorted(n for n in spool.names if any(n.startswith(p) for p in plain_names))
    return {
        "run": label,
        "exit_code": measured.returncode,
        "wall_s": round(measured.wall_s, 2),
        "in_run_s": report.get("duration_s"),
        "mb_per_s": round(args.size / report["duration_s"], 1) if report.get("duration_s") else None,
        "peak_rss_mb": round(measured.peak_rss_mb, 1),
        "batches": report["batches"],
        # light mode: no digests, the count of records accepted only
        "exactly_once": accepted_records == len(digests)
        if args.light
        else not twice and not missing and len(accepted) == len(want),
        "records_twice": twice,
        "records_missing": missing,
        "spool_peak_mb": round(spool.peak_bytes / 1e6, 1),
        "spool_peak_files": spool.peak_files,
        "plain_objects_copied_locally": copied,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000, help="MB of NDJSON in all (default 1000)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--light", action="store_true", help="the emulator counts lines only (no digests: exactly once by count)"
    )
    parser.add_argument("--dir", default=None, help="work directory (default: a temporary one, deleted)")
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="pipeline-bench-remote-"))
    work.mkdir(parents=True, exist_ok=True)
    moto = None
    try:
        t0 = time.perf_counter()
        files, digests = make_data(work, args.size)
        print(f"data: {len(digests):,} records in {len(files)} files ({time.perf_counter() - t0:.0f} s)")
        port = free_port()
        moto = start_moto(port)
        env = dict(
            os.environ,
            PIPELINE_BENCH_TOKEN=TOKEN,
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
        )
        os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        for path in files:
            client.upload_file(str(path), BUCKET, f"data/{path.name}")
        for path in files:
            path.read_bytes() if path.stat().st_size < 2**31 else None  # warm the page cache for the local run
        results = [
            run_once("local", [str(p) for p in files], work, env, digests, args),
            run_once("s3", [f"s3://{BUCKET}/data/"], work, env, digests, args),
        ]
        local, s3 = results
        ratio = round(s3["mb_per_s"] / local["mb_per_s"], 2) if local["mb_per_s"] and s3["mb_per_s"] else None
        out = {"size_mb": args.size, "concurrency": args.concurrency, "s3_over_local": ratio, "runs": results}
        print(json.dumps(out, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    finally:
        if moto is not None:
            moto.kill()
            moto.wait()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

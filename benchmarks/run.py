"""End-to-end benchmark: the pipeline against split + curl, xargs -P 4 curl and a raw aiohttp ceiling.

    python benchmarks/run.py                          # both scenarios, 1 GB loopback, 3 rounds
    python benchmarks/run.py --size 250 --rounds 1    # a quick look
    python benchmarks/run.py --scenario wan --wan-size 300

See ``benchmarks/README.md`` for what each contender does and how the figures are measured.
Everything runs on the same temporary data against one emulator per scenario; contenders alternate
inside each round (the order rotates from round to round) and the table shows medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import make_csv, make_ndjson  # noqa: E402
from bench_proc import Measured, Server, measure  # noqa: E402

TOKEN_ENV = "BENCH_MICS_TOKEN"
LIMIT = 100_000_000  # the API's upload limit; `split -C 100m` would be 104,857,600 bytes, over it
NDJSON_TYPE = "application/x-ndjson"

SPLIT = 'split -C 100000000 -d -a 4 "$FILE" "$PIECES/piece."'
CURL = 'curl -sS --fail -X POST "$URL" -H "Authorization: $TOKEN" -H "Content-Type: application/x-ndjson"'
SCRIPTS = {
    "seq": f'set -e; {SPLIT}; for p in "$PIECES"/piece.*; do {CURL} -o /dev/null --data-binary "@$p"; done',
    "xargs": f'set -e; {SPLIT}; ls "$PIECES"/piece.* | xargs -P 4 -I{{}} {CURL} -o /dev/null --data-binary @{{}}',
    # WAN: upload each piece, keep its execution id, then poll every execution until all are done
    "seq_poll": f"""set -e; {SPLIT}; ids=""
for p in "$PIECES"/piece.*; do ids="$ids $({CURL} --data-binary "@$p" | jq -r .data.id)"; done
POLL""",
    "xargs_poll": f"""set -e; {SPLIT}
ids=$(ls "$PIECES"/piece.* | xargs -P 4 -I{{}} sh -c '{CURL} --data-binary @{{}} | jq -r .data.id')
POLL""",
}
# the pipeline as it was before sendfile: batch bodies streamed in 1 MiB chunks through asyncio
NO_SENDFILE = (
    "import sys, pipeline.engine.pool as u; u.BatchBody.file_parts = None; sys.argv[0] = 'pipeline'; "
    "from pipeline.cli.entry import main_entry; main_entry()"
)
POLL_LOOP = """while [ -n "$ids" ]; do
  sleep "$POLL_S"; left=""
  for id in $ids; do
    st=$(curl -sS --fail -H "Authorization: $TOKEN" "$URL/$id" | jq -r .data.status)
    case "$st" in
      SUCCEEDED) ;;
      FAILED|CANCELED|LOST) echo "execution $id $st" >&2; exit 1 ;;
      *) left="$left $id" ;;
    esac
  done
  ids=$left
done"""


# --- the emulator ---------------------------------------------------------------------------------


class Emulator:
    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "pipeline.emulator", "--port", "0", "--light", "--per-line-us", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.proc.stdout.readline().strip()
        self.token = self.proc.stdout.readline().split(":", 1)[1].split()[0]
        self.server = Server(self.proc.pid)

    def create_import(self, document_type: str = "USER_ACTIVITY", mime_type: str = "APPLICATION_X_NDJSON") -> str:
        body = {"document_type": document_type, "mime_type": mime_type, "encoding": "utf-8", "name": "bench"}
        req = urllib.request.Request(
            f"{self.url}/v1/datamarts/1000/document_imports",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": self.token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            imp = json.loads(resp.read())["data"]["id"]
        return f"{self.url}/v1/datamarts/1000/document_imports/{imp}/executions"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- contenders -----------------------------------------------------------------------------------


def write_config(
    path: Path,
    url: str,
    run_dir: Path,
    *,
    validate: bool,
    csv: bool,
    poll_s: float | None,
    max_bytes: int | None = None,
    concurrency: int | None = None,
) -> Path:
    lines = ["[api]", f'url = "{url}"', f'token_env = "{TOKEN_ENV}"', "[batch]", f"validate = {str(validate).lower()}"]
    if csv:
        lines[3:3] = ["[import]", 'document_type = "USER_SEGMENT"', 'mime_type = "TEXT_CSV"']
    if max_bytes is not None:
        lines.append(f"max_bytes = {max_bytes}")
    if concurrency is not None:
        lines += ["[upload]", f"concurrency = {concurrency}"]
    if poll_s is not None:
        lines += ["[poll]", f"interval_s = {poll_s}"]
    lines += ["[report]", f'dir = "{run_dir}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def pipeline_bin() -> list[str]:
    script = Path(sys.executable).parent / "pipeline"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pipeline.cli.entry import main_entry; main_entry()"]


def split_ranges(path: Path, limit: int = LIMIT) -> list[tuple[int, int]]:
    """The byte ranges ``split -C limit`` makes: at most ``limit`` bytes, cut after a newline."""
    size, start, out = path.stat().st_size, 0, []
    with open(path, "rb") as f:
        while start < size:
            end = min(start + limit, size)
            if end < size:
                f.seek(start)
                nl = f.read(end - start).rfind(b"\n")
                end = start + nl + 1 if nl >= 0 else end
            out.append((start, end))
            start = end
    return out


class Bench:
    def __init__(self, tmp: Path, emu: Emulator) -> None:
        self.tmp, self.emu = tmp, emu
        self.env = {**os.environ, TOKEN_ENV: emu.token}
        self.runs = tmp / "runs"

    def pipeline(self, cfg: Path, data: Path, *, sendfile: bool = True) -> Measured:
        cmd = pipeline_bin() if sendfile else [sys.executable, "-c", NO_SENDFILE]
        m = measure([*cmd, "run", "--config", str(cfg), "-q", str(data)], env=self.env)
        for report in self.runs.glob("*/report.json"):
            m.in_run_s = json.loads(report.read_text())["duration_s"]
        shutil.rmtree(self.runs, ignore_errors=True)
        return m

    def script(self, kind: str, data: Path, upload_url: str, poll_s: float = 2.0) -> Measured:
        pieces = self.tmp / "pieces"
        pieces.mkdir(exist_ok=True)
        script = SCRIPTS[kind].replace("POLL", POLL_LOOP)
        env = {**self.env, "FILE": str(data), "PIECES": str(pieces), "URL": upload_url, "TOKEN": self.emu.token}
        m = measure(["bash", "-c", script], env={**env, "POLL_S": str(poll_s)})
        shutil.rmtree(pieces, ignore_errors=True)
        return m

    def raw(self, data: Path, upload_url: str, ranges: list[tuple[int, int]]) -> Measured:
        args = [f"{a}:{b}" for a, b in ranges]
        cmd = [sys.executable, str(HERE / "raw_post.py"), upload_url, self.emu.token, NDJSON_TYPE, str(data), *args]
        return measure(cmd)


def settle() -> None:
    """Before each contender: write back dirty pages (the split pieces of the curl contenders are
    1 GB of writes, whose writeback would otherwise slow whoever runs next) and let the machine
    settle a moment."""
    os.sync()
    time.sleep(0.3)


def run_rounds(contenders: dict, rounds: int, server: Server) -> dict[str, list[dict]]:
    """Each round runs every contender once, in an order rotated from round to round."""
    names = list(contenders)
    rows: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn, size, records = contenders[name]
            settle()
            server.mark()
            m = fn()
            emu_cpu, emu_rss = server.since_mark()
            if m.returncode != 0:
                raise RuntimeError(f"{name}: exit code {m.returncode}\n{m.stdout[-2000:]}\n{m.stderr[-2000:]}")
            row = {
                "wall_s": m.wall_s,
                "in_run_s": m.in_run_s,
                "MB_s": size / 1e6 / m.wall_s,
                "records_s": records / m.wall_s,
                "cpu_s": m.cpu_s,
                "peak_rss_mb": m.peak_rss_mb,
                "tree_rss_mb": m.tree_rss_mb,
                "server_cpu_s": emu_cpu,
                "server_peak_rss_mb": emu_rss,
                "bytes": size,
                "records": records,
            }
            rows[name].append(row)
            print(f"  round {r + 1} {name:<36} {m.wall_s:7.2f} s {row['MB_s']:7.0f} MB/s", flush=True)
    return rows


def medians(rows: dict[str, list[dict]]) -> dict[str, dict]:
    return {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in rows.items() if rs}


def print_table(title: str, med: dict[str, dict]) -> None:
    print(f"\n{title}")
    head = f"{'contender':<38} {'wall s':>7} {'in-run':>6} {'MB/s':>6} {'records/s':>10} {'CPU s':>6} {'RSS MB':>7} "
    head += f"{'tree PSS':>8} {'emu CPU':>8} {'emu MB':>7}"
    print(head + "\n" + "-" * len(head))
    for name, m in med.items():
        in_run = f"{m['in_run_s']:6.2f}" if m["in_run_s"] else f"{'-':>6}"
        print(
            f"{name:<38} {m['wall_s']:7.2f} {in_run} {m['MB_s']:6.0f} {m['records_s']:10.0f} {m['cpu_s']:6.2f} "
            f"{m['peak_rss_mb']:7.0f} {m['tree_rss_mb']:8.0f} {m['server_cpu_s']:8.2f} {m['server_peak_rss_mb']:7.0f}"
        )


# --- scenarios ------------------------------------------------------------------------------------

P_ON, P_OFF, P_CSV = "pipeline, validation on", "pipeline, validation off", "pipeline CSV, validation off"
SEQ, XARGS, RAW = "split + curl (sequential)", "split + xargs -P 4 curl", "raw aiohttp ceiling (4 streams)"
P_CHUNKS = "pipeline, validation off, no sendfile"
P_CSV_ON = "pipeline CSV, validation on"
Q_ON, Q_OFF = "pipeline, validation on, 1/4 size", "pipeline, validation off, 1/4 size"


def loopback(tmp: Path, size: int, rounds: int) -> dict:
    nd, small, cs = tmp / "activity.ndjson", tmp / "activity-quarter.ndjson", tmp / "segments.csv"
    n_nd, n_small, n_cs = make_ndjson(nd, size), make_ndjson(small, size // 4), make_csv(cs, size)
    sizes = {p: p.stat().st_size for p in (nd, small, cs)}
    emu = Emulator("--process-ms", "0")
    try:
        b = Bench(tmp, emu)
        url = emu.create_import()
        ranges = split_ranges(nd)
        cfg = {
            (v, c): write_config(tmp / f"cfg-{v}-{c}.toml", emu.url, b.runs, validate=v, csv=c, poll_s=0.2)
            for v in (True, False)
            for c in (True, False)
        }
        contenders = {
            P_OFF: (lambda: b.pipeline(cfg[False, False], nd), sizes[nd], n_nd),
            P_ON: (lambda: b.pipeline(cfg[True, False], nd), sizes[nd], n_nd),
            SEQ: (lambda: b.script("seq", nd, url), sizes[nd], n_nd),
            XARGS: (lambda: b.script("xargs", nd, url), sizes[nd], n_nd),
            RAW: (lambda: b.raw(nd, url, ranges), sizes[nd], n_nd),
            P_CSV: (lambda: b.pipeline(cfg[False, True], cs), sizes[cs], n_cs),
            P_CSV_ON: (lambda: b.pipeline(cfg[True, True], cs), sizes[cs], n_cs),
            P_CHUNKS: (lambda: b.pipeline(cfg[False, False], nd, sendfile=False), sizes[nd], n_nd),
            Q_OFF: (lambda: b.pipeline(cfg[False, False], small), sizes[small], n_small),
            Q_ON: (lambda: b.pipeline(cfg[True, False], small), sizes[small], n_small),
        }
        for p in sizes:  # warm the page cache
            subprocess.run(["cat", str(p)], stdout=subprocess.DEVNULL, check=True)
        med = medians(run_rounds(contenders, rounds, emu.server))
    finally:
        emu.stop()
    off, on = med[P_OFF], med[P_ON]

    def mem(name: str) -> float:  # the stricter of: largest process peak, whole-tree PSS peak
        return max(med[name]["peak_rss_mb"], med[name]["tree_rss_mb"])

    goals = {
        "validation off >= 800 MB/s": (off["MB_s"], off["MB_s"] >= 800),
        "validation off >= 2x split + curl": (
            med[SEQ]["wall_s"] / off["wall_s"],
            med[SEQ]["wall_s"] >= 2 * off["wall_s"],
        ),
        "validation off >= 1.8x xargs -P 4 curl": (
            med[XARGS]["wall_s"] / off["wall_s"],
            med[XARGS]["wall_s"] >= 1.8 * off["wall_s"],
        ),
        "validation off >= 80 % of the raw ceiling": (
            off["MB_s"] / med[RAW]["MB_s"],
            off["MB_s"] >= 0.8 * med[RAW]["MB_s"],
        ),
        "validation off peak RSS < 100 MB": (mem(P_OFF), mem(P_OFF) < 100),
        "validation on >= 250 MB/s": (on["MB_s"], on["MB_s"] >= 250),
        "validation on peak RSS (max_bytes 100 MB, 4 uploads) < 150 MB": (mem(P_ON), mem(P_ON) < 150),
        "CSV validation off >= 500 MB/s": (med[P_CSV]["MB_s"], med[P_CSV]["MB_s"] >= 500),
        "RSS 1/4 size vs full, validation off: < 20 MB apart": (
            mem(P_OFF) - mem(Q_OFF),
            abs(mem(P_OFF) - mem(Q_OFF)) < 20,
        ),
        "RSS 1/4 size vs full, validation on: < 20 MB apart": (
            mem(P_ON) - mem(Q_ON),
            abs(mem(P_ON) - mem(Q_ON)) < 20,
        ),
    }
    return {"medians": med, "goals": goals, "size_bytes": sizes[nd], "records": n_nd, "poll_interval_s": 0.2}


#: what a user would choose for a WAN: smaller batches so that more uploads run at once, 8 of them,
#: and a shorter first poll
WAN_SETTINGS = {"max_bytes": 25_000_000, "concurrency": 8, "poll_s": 0.5}
P_WAN = "pipeline, WAN settings (validation on)"
P_WAN_DEFAULT = "pipeline (default settings)"
SEQ_POLL = "split + curl + polling (sequential)"


def wan(tmp: Path, size: int, rounds: int, latency_ms: float, mbps: float, process_ms: float, slots: int) -> dict:
    nd = tmp / "wan.ndjson"
    n_nd = make_ndjson(nd, size)
    nbytes = nd.stat().st_size
    args = ["--process-ms", str(process_ms), "--latency-ms", str(latency_ms), "--bandwidth", str(mbps)]
    args += ["--slots", str(slots)]
    emu = Emulator(*args)
    try:
        b = Bench(tmp, emu)
        url = emu.create_import()
        cfg = write_config(tmp / "cfg-wan.toml", emu.url, b.runs, validate=True, csv=False, poll_s=None)
        fast = write_config(tmp / "cfg-wan-fast.toml", emu.url, b.runs, validate=False, csv=False, poll_s=0.5)
        tuned = write_config(tmp / "cfg-wan-tuned.toml", emu.url, b.runs, validate=True, csv=False, **WAN_SETTINGS)
        contenders = {
            P_WAN_DEFAULT: (lambda: b.pipeline(cfg, nd), nbytes, n_nd),
            P_WAN: (lambda: b.pipeline(tuned, nd), nbytes, n_nd),
            SEQ_POLL: (lambda: b.script("seq_poll", nd, url), nbytes, n_nd),
            "split + xargs -P 4 curl + polling": (lambda: b.script("xargs_poll", nd, url), nbytes, n_nd),
            "pipeline, validation off, poll 0.5 s": (lambda: b.pipeline(fast, nd), nbytes, n_nd),
        }
        subprocess.run(["cat", str(nd)], stdout=subprocess.DEVNULL, check=True)
        med = medians(run_rounds(contenders, rounds, emu.server))
    finally:
        emu.stop()
    tuned_ratio = med[SEQ_POLL]["wall_s"] / med[P_WAN]["wall_s"]
    ratio = med[SEQ_POLL]["wall_s"] / med[P_WAN_DEFAULT]["wall_s"]
    goals = {
        "WAN: >= 3x split + curl + polling, end to end (WAN settings)": (tuned_ratio, tuned_ratio >= 3),
        "WAN: >= 3x split + curl + polling, end to end (default settings)": (ratio, ratio >= 3),
    }
    knobs = {
        "latency_ms": latency_ms,
        "bandwidth_MB_s_per_connection": mbps,
        "process_ms": process_ms,
        "slots": slots,
        "pipeline_wan_settings": WAN_SETTINGS,
    }
    return {"medians": med, "goals": goals, "size_bytes": nbytes, "records": n_nd, "emulator": knobs}


def print_goals(goals: dict) -> None:
    for name, (value, met) in goals.items():
        print(f"  {'met    ' if met else 'NOT met'}  {name}: {value:.2f}")


def warm_bytecode() -> None:
    """Write the package's ``.pyc`` files, as ``pip install`` does for a regular install: an
    editable install under ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile every module from
    source on every run (about 60 ms), which no installed user pays."""
    import compileall

    import pipeline

    compileall.compile_dir(Path(pipeline.__file__).parent, quiet=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000, help="loopback NDJSON and CSV size, MB (default 1000)")
    ap.add_argument("--wan-size", type=int, default=400, help="WAN NDJSON size, MB (default 400)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the table shows medians (default 3)")
    ap.add_argument("--scenario", choices=("loopback", "wan", "all"), default="all")
    ap.add_argument("--latency-ms", type=float, default=40)
    ap.add_argument("--bandwidth", type=float, default=25, help="WAN cap per connection, MB/s")
    ap.add_argument("--process-ms", type=float, default=2000, help="WAN processing time per execution")
    ap.add_argument("--slots", type=int, default=32, help="WAN executions processed at once (the platform: many)")
    ap.add_argument("--dir", help="parent of the temporary data directory (default: the system's)")
    ap.add_argument("--json", default=str(HERE / "results.json"), help="where to write the figures")
    args = ap.parse_args()
    for tool in ("curl", "split", "xargs", "jq"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed", file=sys.stderr)
            return 2
    need = 2.5 * args.size * 1e6 + args.wan_size * 2e6
    free = shutil.disk_usage(args.dir or tempfile.gettempdir()).free
    if free < need:
        print(f"needs {need / 1e9:.1f} GB free, {free / 1e9:.1f} GB left", file=sys.stderr)
        return 2
    out: dict = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "rounds": args.rounds}
    warm_bytecode()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-", dir=args.dir) as tmp:
        if args.scenario in ("loopback", "all"):
            print(f"loopback: {args.size} MB NDJSON and CSV, {args.rounds} rounds", flush=True)
            out["loopback"] = loopback(Path(tmp), args.size * 10**6, args.rounds)
        if args.scenario in ("wan", "all"):
            print(f"WAN: {args.wan_size} MB NDJSON, {args.rounds} rounds", flush=True)
            out["wan"] = wan(
                Path(tmp),
                args.wan_size * 10**6,
                args.rounds,
                args.latency_ms,
                args.bandwidth,
                args.process_ms,
                args.slots,
            )
    for key, title in (("loopback", "loopback, emulator light mode, no processing delay"), ("wan", "WAN")):
        if key in out:
            r = out[key]
            print_table(f"{title}: {r['size_bytes'] / 1e6:.0f} MB, {r['records']} records (medians)", r["medians"])
            print_goals(r["goals"])
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; figures in {args.json}")
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

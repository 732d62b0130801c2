"""End-to-end benchmark: the pipeline against split + curl, xargs -P 4 curl and a raw aiohttp ceiling.

    python benchmarks/run.py                          # both scenarios, 1 GB loopback, 3 rounds
    python benchmarks/run.py --size 250 --rounds 1    # a quick look
    python benchmarks/run.py --scenario wan --wan-size 60 --rounds 1      # the three WAN scenarios, small
    python benchmarks/run.py --scenario wan --wan-scenarios throttled --wan-params 'throttled:cap=3'
    python benchmarks/run.py --scenario wan --vary 7                      # other parameter values, seed 7

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
from collections.abc import Callable
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import make_csv, make_ndjson  # noqa: E402
from bench_proc import Measured, Server, measure  # noqa: E402
from wan import (  # noqa: E402
    GOAL_SHELL,
    SCENARIOS,
    WanParams,
    describe_facts,
    emulator_args,
    emulator_flags,
    params_json,
    report_facts,
    retries,
    scenario_params,
)

from pipeline.bench.bound import bound_terms, lower_bound_s  # noqa: E402  (the one formula of the bound)

TOKEN_ENV = "BENCH_MICS_TOKEN"
LIMIT = 100_000_000  # the API's upload limit; `split -C 100m` would be 104,857,600 bytes, over it
NDJSON_TYPE = "application/x-ndjson"

SPLIT = 'split -C 100000000 -d -a 4 "$FILE" "$PIECES/piece."'
CURL = 'curl -sS --fail -X POST "$URL" -H "Authorization: $TOKEN" -H "Content-Type: application/x-ndjson"'
# WAN: curl retries transient failures (429 and 5xx among them) up to 20 times, waiting what
# Retry-After says (else 1 s, doubling); a curl that still fails fails the script (pipefail)
CURL_RETRY = f"{CURL} --retry 20"
SCRIPTS = {
    "seq": f'set -e; {SPLIT}; for p in "$PIECES"/piece.*; do {CURL} -o /dev/null --data-binary "@$p"; done',
    "xargs": f'set -e; {SPLIT}; ls "$PIECES"/piece.* | xargs -P 4 -I{{}} {CURL} -o /dev/null --data-binary @{{}}',
    # WAN: upload each piece, keep its execution id, then poll every execution until all are done
    "seq_poll": f"""set -eo pipefail; {SPLIT}; ids=""
for p in "$PIECES"/piece.*; do ids="$ids $({CURL_RETRY} --data-binary "@$p" | jq -r .data.id)"; done
POLL""",
    "xargs_poll": f"""set -eo pipefail; {SPLIT}
ids=$(ls "$PIECES"/piece.* |
  xargs -P 4 -I{{}} bash -c 'set -o pipefail; {CURL_RETRY} --data-binary @{{}} | jq -r .data.id')
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
    st=$(curl -sS --fail --retry 20 -H "Authorization: $TOKEN" "$URL/$id" | jq -r .data.status)
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
        if not self.url:
            raise RuntimeError(f"the emulator did not start: {' '.join(cmd)}")
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


def write_default_config(path: Path, url: str) -> Path:
    """A config with only what a run needs (the API, the token's variable, the datamart, the import
    type): every other setting is the pipeline's default, report directory included (``runs``
    under the working directory)."""
    lines = ["[api]", f'url = "{url}"', f'token_env = "{TOKEN_ENV}"']
    lines += ["[import]", 'datamart_id = "1000"', 'document_type = "USER_ACTIVITY"']
    lines += ['mime_type = "APPLICATION_X_NDJSON"']
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
        self.learned = tmp / "runs-learned"

    def pipeline(
        self, cfg: Path, data: Path, *, sendfile: bool = True, cwd: Path | None = None, source: str | None = None
    ) -> Measured:
        """``pipeline run``; with ``cwd`` (a config without ``[report] dir``) its run directory is
        under ``$XDG_STATE_HOME``, set to ``self.runs``. ``source``: run the package found there
        instead (``--baseline``: another version, in the same run)."""
        cmd = pipeline_bin() if sendfile else [sys.executable, "-c", NO_SENDFILE]
        env = {**self.env, "XDG_STATE_HOME": str(self.runs)}
        if source is not None:
            cmd, env["PYTHONPATH"] = [sys.executable, "-m", "pipeline"], source
        m = measure([*cmd, "run", "--config", str(cfg), "-q", str(data)], env=env, cwd=cwd and str(cwd))
        for report in self.runs.glob("**/report.json"):
            m.report = json.loads(report.read_text())
            m.in_run_s = m.report["duration_s"] or 0.0
        shutil.rmtree(self.runs, ignore_errors=True)
        return m

    def pipeline_learned(self, cfg: Path, data: Path, *, cwd: Path) -> Measured:
        """``pipeline run`` with its defaults, as on a second night: the run directories are kept
        in ``self.learned`` from run to run, so each run plans its batches from what the one before
        learned of the platform (``reading/platform_model.py``). The input gets a new modification
        time first: new data to the pipeline, not a re-import it would refuse."""
        os.utime(data)
        env = {**self.env, "XDG_STATE_HOME": str(self.learned)}
        m = measure([*pipeline_bin(), "run", "--config", str(cfg), "-q", str(data)], env=env, cwd=str(cwd))
        reports = sorted(self.learned.glob("**/report.json"), key=lambda p: p.stat().st_mtime)
        if reports:
            m.report = json.loads(reports[-1].read_text())
            m.in_run_s = m.report["duration_s"] or 0.0
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


def run_rounds(
    contenders: dict,
    rounds: int,
    server: Server,
    *,
    failures: dict[str, list[str]] | None = None,
    reports: dict[str, list[dict | None]] | None = None,
) -> dict[str, list[dict]]:
    """Each round runs every contender once, in an order rotated from round to round.

    A contender that fails stops the benchmark, unless ``failures`` is given: then the failure is
    noted there (the end of its stderr) and the round is left out of that contender's rows.
    ``reports`` collects the pipeline's report of each successful round (None for the others)."""
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
                text = f"{name}: exit code {m.returncode}\n{m.stdout[-2000:]}\n{m.stderr[-2000:]}"
                if failures is None:
                    raise RuntimeError(text)
                lines = [line for line in m.stderr.splitlines() if line.strip()]
                last = lines[-1][:200] if lines else "(no stderr)"
                note = f"round {r + 1}: exit code {m.returncode} after {m.wall_s:.1f} s"
                note += f", {m.stderr.count('error: 429')} x 429 in its stderr, last line: {last}"
                failures.setdefault(name, []).append(note)
                print(f"  round {r + 1} {name:<36} FAILED after {m.wall_s:.2f} s, exit {m.returncode}", flush=True)
                continue
            if reports is not None:
                reports.setdefault(name, []).append(m.report)
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
B_OFF, B_ON = "pipeline baseline, validation off", "pipeline baseline, validation on"
#: ``--contenders`` keys of the loopback contenders (the baseline ones only with ``--baseline``)
LOOPBACK_KEYS = {
    "off": P_OFF, "on": P_ON, "seq": SEQ, "xargs": XARGS, "raw": RAW, "csv": P_CSV, "csv_on": P_CSV_ON,
    "chunks": P_CHUNKS, "q_off": Q_OFF, "q_on": Q_ON, "base_off": B_OFF, "base_on": B_ON,
}  # fmt: skip


def loopback(tmp: Path, size: int, rounds: int, baseline: str | None = None, keys: list[str] | None = None) -> dict:
    nd, small, cs = tmp / "activity.ndjson", tmp / "activity-quarter.ndjson", tmp / "segments.csv"
    csv_size = size if not keys or {"csv", "csv_on"} & set(keys) else 1000  # no CSV contender: a token file
    n_nd, n_small, n_cs = make_ndjson(nd, size), make_ndjson(small, size // 4), make_csv(cs, csv_size)
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
        if baseline:  # another version of the pipeline, in the same rounds (--baseline)
            contenders[B_OFF] = (lambda: b.pipeline(cfg[False, False], nd, source=baseline), sizes[nd], n_nd)
            contenders[B_ON] = (lambda: b.pipeline(cfg[True, False], nd, source=baseline), sizes[nd], n_nd)
        if keys:  # --contenders: only these
            chosen = {LOOPBACK_KEYS[k] for k in keys}
            contenders = {name: c for name, c in contenders.items() if name in chosen}
        for p in sizes:  # warm the page cache
            subprocess.run(["cat", str(p)], stdout=subprocess.DEVNULL, check=True)
        med = medians(run_rounds(contenders, rounds, emu.server))
    finally:
        emu.stop()

    def mem(name: str) -> float:  # the stricter of: largest process peak, whole-tree PSS peak
        return max(med[name]["peak_rss_mb"], med[name]["tree_rss_mb"])

    if keys:  # some contenders only: the goals whose contenders all ran
        goals = partial_goals(med, mem)
        return {"medians": med, "goals": goals, "size_bytes": sizes[nd], "records": n_nd, "poll_interval_s": 0.2}
    off, on = med[P_OFF], med[P_ON]
    goals = {  # issue 12's goals for loopback
        "validation off >= 2x split + curl": (
            med[SEQ]["wall_s"] / off["wall_s"],
            med[SEQ]["wall_s"] >= 2 * off["wall_s"],
        ),
        "validation off >= 80 % of the raw ceiling": (
            off["MB_s"] / med[RAW]["MB_s"],
            off["MB_s"] >= 0.8 * med[RAW]["MB_s"],
        ),
        "validation off peak RSS < 100 MB": (mem(P_OFF), mem(P_OFF) < 100),
        "validation on >= 250 MB/s": (on["MB_s"], on["MB_s"] >= 250),
        "validation on peak RSS (with its validation workers) < 150 MB": (mem(P_ON), mem(P_ON) < 150),
        "CSV validation off >= 400 MB/s": (med[P_CSV]["MB_s"], med[P_CSV]["MB_s"] >= 400),
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


def partial_goals(med: dict[str, dict], mem: Callable[[str], float]) -> dict:
    """The loopback goals of ``--contenders`` runs, each only when its contenders ran (and the
    same ratios for a baseline that ran)."""
    goals = {}
    for tag, off, on in (("", P_OFF, P_ON), ("baseline: ", B_OFF, B_ON)):
        if off in med and SEQ in med:
            ratio = med[SEQ]["wall_s"] / med[off]["wall_s"]
            goals[f"{tag}validation off >= 2x split + curl"] = (ratio, ratio >= 2)
        if off in med and RAW in med:
            ratio = med[off]["MB_s"] / med[RAW]["MB_s"]
            goals[f"{tag}validation off >= 80 % of the raw ceiling"] = (ratio, ratio >= 0.8)
        if off in med:
            goals[f"{tag}validation off peak RSS < 100 MB"] = (mem(off), mem(off) < 100)
        if on in med:
            goals[f"{tag}validation on >= 250 MB/s"] = (med[on]["MB_s"], med[on]["MB_s"] >= 250)
            goals[f"{tag}validation on peak RSS (with its validation workers) < 150 MB"] = (mem(on), mem(on) < 150)
    for full, quarter in ((P_OFF, Q_OFF), (P_ON, Q_ON)):
        if full in med and quarter in med:
            gap = mem(full) - mem(quarter)
            goals[f"RSS 1/4 size vs full, {full.split(', ')[1]}: < 20 MB apart"] = (gap, abs(gap) < 20)
    return goals


P_WAN = "pipeline (default settings)"
P_LEARNED = "pipeline (defaults, next run: learned)"
P_BASELINE = "pipeline baseline (--baseline)"
XARGS_POLL = "split + xargs -P 4 curl + polling"
SEQ_POLL = "split + curl + polling (sequential)"
WAN_POLL_S = 1.0  # the shell contenders' polling period


def shell_contender(b: Bench, kind: str, data: Path, upload_url: str) -> Measured:
    """A shell contender of the WAN scenarios; the 429s curl was answered are counted from its
    stderr (``-sS`` prints one "returned error: 429" per refused attempt, retried or not)."""
    m = b.script(kind, data, upload_url, WAN_POLL_S)
    m.report = {"http_429": m.stderr.count("returned error: 429")}
    return m


def wan(tmp: Path, size: int, rounds: int, params: dict[str, WanParams], baseline: str | None = None) -> dict:
    """The WAN scenarios (``wan.py``), one emulator each, on the same NDJSON file."""
    nd = tmp / "wan.ndjson"
    n_nd = make_ndjson(nd, size)
    nbytes = nd.stat().st_size
    subprocess.run(["cat", str(nd)], stdout=subprocess.DEVNULL, check=True)
    known = emulator_flags()
    out: dict = {"size_bytes": nbytes, "records": n_nd, "poll_interval_s": WAN_POLL_S, "scenarios": {}, "goals": {}}
    for name, p in params.items():
        title, _, bound_goal = SCENARIOS[name]
        args, missing = emulator_args(p, known)
        print(f"WAN {title}: {p.describe()}", flush=True)
        if missing:
            print(f"  this emulator does not know {', '.join(missing)} yet: run without them", flush=True)
        emu = Emulator(*args)
        failures: dict[str, list[str]] = {}
        reports: dict[str, list[dict | None]] = {}
        try:
            b = Bench(tmp, emu)
            url = emu.create_import()
            cfg = write_default_config(tmp / f"cfg-wan-{name}.toml", emu.url)
            shutil.rmtree(b.learned, ignore_errors=True)
            warm_up = b.pipeline_learned(cfg, nd, cwd=tmp)  # the first night: what the next runs learn from
            print(f"  warm-up run for {P_LEARNED}: {warm_up.wall_s:.2f} s, exit {warm_up.returncode}", flush=True)
            contenders = {
                P_WAN: (partial(b.pipeline, cfg, nd, cwd=tmp), nbytes, n_nd),
                P_LEARNED: (partial(b.pipeline_learned, cfg, nd, cwd=tmp), nbytes, n_nd),
                XARGS_POLL: (partial(shell_contender, b, "xargs_poll", nd, url), nbytes, n_nd),
                SEQ_POLL: (partial(shell_contender, b, "seq_poll", nd, url), nbytes, n_nd),
            }
            if baseline:  # another version of the pipeline, its defaults, in the same rounds
                contenders[P_BASELINE] = (partial(b.pipeline, cfg, nd, cwd=tmp, source=baseline), nbytes, n_nd)
            rows = run_rounds(contenders, rounds, emu.server, failures=failures, reports=reports)
        finally:
            emu.stop()
        med = medians(rows)
        bound = lower_bound_s(p, nbytes, n_nd)
        terms = bound_terms(p, nbytes, n_nd)
        for m in med.values():
            m["x_bound"] = m["wall_s"] / bound
        facts = [report_facts(r) for r in reports.get(P_WAN, [])]
        median_round = _median_round(rows.get(P_WAN, []))
        learned_facts = [report_facts(r) for r in reports.get(P_LEARNED, [])]
        for n, m in med.items():  # retries (pipeline) or 429s (curl): the median over rounds
            seen = [f if f is None or "http_429" in f else report_facts(f) for f in reports.get(n, [])]
            counts = [c for c in (retries(f or {}) for f in seen) if c is not None]
            m["retries"] = statistics.median(counts) if counts else None
        pipe, shell, seq, learned = (med.get(n, {}).get("wall_s") for n in (P_WAN, XARGS_POLL, SEQ_POLL, P_LEARNED))
        ratios = {
            "shell_over_pipeline": shell / pipe if pipe and shell else None,
            "sequential_over_pipeline": seq / pipe if pipe and seq else None,
            "pipeline_over_bound": pipe / bound if pipe else None,
            "shell_over_learned": shell / learned if learned and shell else None,
            "learned_over_bound": learned / bound if learned else None,
        }
        if base := med.get(P_BASELINE, {}).get("wall_s"):  # the same two ratios for --baseline
            ratios |= {"shell_over_baseline": shell / base if shell else None, "baseline_over_bound": base / bound}
        goals = {
            f"WAN {title}: xargs -P 4 curl / pipeline >= {GOAL_SHELL:g}": (
                ratios["shell_over_pipeline"],
                bool(pipe) and (not shell or shell >= GOAL_SHELL * pipe),  # a shell way that failed: met
            ),
            f"WAN {title}: pipeline / bound <= {bound_goal:g}": (
                ratios["pipeline_over_bound"],
                bool(pipe) and pipe <= bound_goal * bound,
            ),
            f"WAN {title}, next run (learned): xargs -P 4 curl / pipeline >= {GOAL_SHELL:g}": (
                ratios["shell_over_learned"],
                bool(learned) and (not shell or shell >= GOAL_SHELL * learned),
            ),
            f"WAN {title}, next run (learned): pipeline / bound <= {bound_goal:g}": (
                ratios["learned_over_bound"],
                bool(learned) and learned <= bound_goal * bound,
            ),
        }
        out["scenarios"][name] = {
            "title": title,
            "params": params_json(p),
            "emulator_args": args,
            "emulator_flags_missing": missing,
            "bound_s": bound,
            "bound_terms_s": {"link": terms.link_s, "platform": terms.platform_s, "latency": terms.latency_s},
            "medians": med,
            "failures": failures,
            "ratios": ratios,
            "goals": goals,
            "pipeline_report": facts,
            "pipeline_report_median_round": median_round if facts else None,
            "learned_report": learned_facts,
            "learned_report_median_round": _median_round(rows.get(P_LEARNED, [])) if learned_facts else None,
        }
        out["goals"].update(goals)
    return out


def _median_round(rows: list[dict]) -> int:
    """The index of the round whose wall time is the median (the lower one of an even count)."""
    walls = [r["wall_s"] for r in rows]
    return sorted(range(len(walls)), key=walls.__getitem__)[(len(walls) - 1) // 2] if walls else 0


def print_wan(r: dict) -> None:
    for s in r["scenarios"].values():
        p = s["params"]
        print(f"\nWAN {s['title']}: {r['size_bytes'] / 1e6:.0f} MB, {r['records']} records (medians)")
        print(f"  {WanParams(**{k: v for k, v in p.items() if k != 'usable_link_mbps'}).describe()}")
        if s["emulator_flags_missing"]:
            print(f"  NOT applied (the emulator does not know them yet): {', '.join(s['emulator_flags_missing'])}")
        head = f"{'contender':<38} {'wall s':>7} {'x bound':>7} {'MB/s':>6} {'CPU s':>6} {'RSS MB':>7} {'emu CPU':>8}"
        head += f" {'retries':>7}"
        print(head + "\n" + "-" * len(head))
        for name in (P_WAN, P_LEARNED, XARGS_POLL, SEQ_POLL, P_BASELINE):
            m = s["medians"].get(name)
            if m is None and name == P_BASELINE:
                continue
            if m is None:
                print(f"{name:<38} {'FAILED':>7}  ({len(s['failures'].get(name, []))} rounds)")
                continue
            fails = f"  ({len(s['failures'][name])} failed rounds left out)" if name in s["failures"] else ""
            tries = f"{m['retries']:7.0f}" if m.get("retries") is not None else f"{'-':>7}"
            print(
                f"{name:<38} {m['wall_s']:7.2f} {m['x_bound']:7.2f} {m['MB_s']:6.0f} {m['cpu_s']:6.2f} "
                f"{m['peak_rss_mb']:7.0f} {m['server_cpu_s']:8.2f} {tries}{fails}"
            )
        t = s["bound_terms_s"]
        print(f"{'lower bound':<38} {s['bound_s']:7.2f} {1:7.2f} {r['size_bytes'] / 1e6 / s['bound_s']:6.0f}")
        print(
            f"  bound = max(S / usable link + base = {t['link']:.2f}, base + L x per record / slots = "
            f"{t['platform']:.2f}) + latency {t['latency']:.2f} s; usable link {p['usable_link_mbps']:g} MB/s"
        )
        print_goals(s["goals"])
        seq = s["ratios"]["sequential_over_pipeline"]
        print(f"  {'':7}  sequential curl / pipeline: {seq:.2f}" if seq else "")
        if (b_shell := s["ratios"].get("shell_over_baseline")) is not None:
            print(
                f"  {'':7}  baseline: shell / baseline {b_shell:.2f}, "
                f"baseline / bound {s['ratios']['baseline_over_bound']:.2f}"
            )
        if s["pipeline_report"]:
            for line in describe_facts(s["pipeline_report"][s["pipeline_report_median_round"]]):
                print(f"  {line}")
        if s.get("learned_report"):
            for line in describe_facts(s["learned_report"][s["learned_report_median_round"]]):
                print(f"  next run: {line}")
        for name, notes in s["failures"].items():
            for note in notes:
                print(f"  FAILED {name}, {note}")


def print_goals(goals: dict) -> None:
    for name, (value, met) in goals.items():
        shown = "n/a" if value is None else f"{value:.2f}"
        print(f"  {'met    ' if met else 'NOT met'}  {name}: {shown}")


def warm_bytecode(baseline: str | None = None) -> None:
    """Write the package's ``.pyc`` files (and the ``--baseline`` package's), as ``pip install``
    does for a regular install: an editable install under ``PYTHONDONTWRITEBYTECODE=1`` would
    otherwise compile every module from source on every run (about 60 ms), which no installed user
    pays, and a baseline that paid it would be measured slower than it is."""
    import compileall

    import pipeline

    compileall.compile_dir(Path(pipeline.__file__).parent, quiet=1)
    if baseline:
        compileall.compile_dir(Path(baseline) / "pipeline", quiet=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000, help="loopback NDJSON and CSV size, MB (default 1000)")
    ap.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run the pipeline package found in DIR (e.g. a `git archive` of another commit), same rounds "
        "(WAN: with its defaults; loopback: validation off and on, with --contenders base_off,base_on)",
    )
    ap.add_argument(
        "--contenders",
        metavar="KEYS",
        help=f"loopback: run only these contenders, comma-separated, of {','.join(LOOPBACK_KEYS)} "
        "(default: all but the baseline ones); the goals shown are those whose contenders ran",
    )
    ap.add_argument("--wan-size", type=int, default=324, help="WAN NDJSON size, MB (default 324)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the table shows medians (default 3)")
    ap.add_argument("--scenario", choices=("loopback", "wan", "all"), default="all")
    ap.add_argument(
        "--wan-scenarios",
        default=",".join(SCENARIOS),
        help=f"WAN scenarios to run, comma-separated (default {','.join(SCENARIOS)})",
    )
    ap.add_argument(
        "--wan-params",
        action="append",
        default=[],
        metavar="SPEC",
        help="change WAN parameters: '[scenario:]key=value,...' (';' between scenarios; no scenario: all); "
        "keys latency (ms), conn, uplink (MB/s), slots, base (s), per_record_us, cap (uploads, 0: none), "
        "retry_after (s); e.g. 'link:latency=80,uplink=30;throttled:cap=3'",
    )
    ap.add_argument(
        "--vary",
        type=int,
        metavar="SEED",
        help="draw other WAN parameter values from SEED (--wan-params still win), to check the defaults elsewhere",
    )
    ap.add_argument("--dir", help="parent of the temporary data directory (default: the system's)")
    ap.add_argument("--json", default=str(HERE / "results.json"), help="where to write the figures")
    args = ap.parse_args()
    keys = [k.strip() for k in (args.contenders or "").split(",") if k.strip()]
    if unknown_keys := [k for k in keys if k not in LOOPBACK_KEYS]:
        print(f"--contenders: unknown {', '.join(unknown_keys)}; known: {', '.join(LOOPBACK_KEYS)}")
        return 2
    names = [n.strip() for n in args.wan_scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        print(f"--wan-scenarios: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(SCENARIOS)}")
        return 2
    try:
        params = scenario_params(names, args.wan_params, args.vary)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    for tool in ("curl", "split", "xargs", "jq"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed", file=sys.stderr)
            return 2
    need = 0.0
    if args.scenario in ("loopback", "all"):
        need += 2.5 * args.size * 1e6
    if args.scenario in ("wan", "all"):
        need += args.wan_size * 2e6
    free = shutil.disk_usage(args.dir or tempfile.gettempdir()).free
    if free < need:
        print(f"needs {need / 1e9:.1f} GB free, {free / 1e9:.1f} GB left", file=sys.stderr)
        return 2
    out: dict = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "rounds": args.rounds}
    warm_bytecode(args.baseline)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-", dir=args.dir) as tmp:
        if args.scenario in ("loopback", "all"):
            print(f"loopback: {args.size} MB NDJSON and CSV, {args.rounds} rounds", flush=True)
            out["loopback"] = loopback(Path(tmp), args.size * 10**6, args.rounds, args.baseline, keys)
        if args.scenario in ("wan", "all"):
            vary = f", parameters drawn from seed {args.vary}" if args.vary is not None else ""
            print(f"WAN: {args.wan_size} MB NDJSON, {args.rounds} rounds, {', '.join(names)}{vary}", flush=True)
            out["wan"] = wan(Path(tmp), args.wan_size * 10**6, args.rounds, params, args.baseline)
            out["wan"]["vary_seed"] = args.vary
    if "loopback" in out:
        r = out["loopback"]
        title = "loopback, emulator light mode, no processing delay"
        print_table(f"{title}: {r['size_bytes'] / 1e6:.0f} MB, {r['records']} records (medians)", r["medians"])
        print_goals(r["goals"])
    if "wan" in out:
        print_wan(out["wan"])
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; figures in {args.json}")
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

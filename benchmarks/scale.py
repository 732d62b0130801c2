"""Scale check: runs of 2,000 and 20,000 batches (100 kB each) on the light emulator.

    python benchmarks/scale.py              # 2000 and 20000 batches (about 200 MB and 2 GB of data)
    python benchmarks/scale.py 5000         # other counts

Prints, per run: time per batch (a quadratic step in the journal, the state, the poller or the
report would show as a growing figure), peak RSS (the largest of the process's peak and the
process tree's PSS), and the time `pipeline resume` takes on the finished run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import make_ndjson  # noqa: E402
from bench_proc import measure  # noqa: E402

BATCH_BYTES = 100_000


def pipeline_bin() -> list[str]:
    exe = shutil.which("pipeline")
    return [exe] if exe else [sys.executable, "-m", "pipeline"]


def main() -> int:
    counts = [int(a) for a in sys.argv[1:]] or [2000, 20000]
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-scale-"))
    emu = subprocess.Popen(
        [sys.executable, "-m", "pipeline.emulator", "--port", "0", "--light", "--process-ms", "0", "--per-line-us", "0"]
        + ["--slots", "64"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert emu.stdout is not None
    url = emu.stdout.readline().strip()
    token = emu.stdout.readline().split(":", 1)[1].split()[0]
    env = dict(os.environ, MICS_API_TOKEN=token)
    rows = []
    try:
        for batches in counts:
            data = tmp / f"d{batches}.ndjson"
            make_ndjson(data, batches * BATCH_BYTES)
            cfg = tmp / f"c{batches}.toml"
            cfg.write_text(
                f'[api]\nurl = "{url}"\n[import]\ndatamart_id = "1"\n'
                f"[batch]\nmax_bytes = {BATCH_BYTES}\nvalidate = false\n"
                f'[report]\ndir = "{tmp}/runs{batches}"\n'
            )
            m = measure([*pipeline_bin(), "run", "--config", str(cfg), "--quiet", str(data)], env=env)
            run_dir = next((tmp / f"runs{batches}").iterdir())
            report = json.loads((run_dir / "report.json").read_text())
            t0 = time.perf_counter()
            resumed = subprocess.run([*pipeline_bin(), "resume", "--quiet", str(run_dir)], env=env, capture_output=True)
            rows.append(
                {
                    "batches": report["batches"],
                    "wall_s": round(m.wall_s, 2),
                    "ms_per_batch": round(1000 * m.wall_s / report["batches"], 3),
                    "peak_rss_mb": round(max(m.peak_rss_mb, m.tree_rss_mb), 1),
                    "resume_s": round(time.perf_counter() - t0, 2),
                    "resume_exit": resumed.returncode,
                    "outcome": report["outcome"],
                    "poll_requests": (report.get("throughput") or {}).get("poll_requests"),
                }
            )
            print(rows[-1], flush=True)
            data.unlink()
    finally:
        emu.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

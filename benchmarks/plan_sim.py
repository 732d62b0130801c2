"""A fluid model of a WAN run, to compare batch plans before measuring them (``run.py`` measures).

The reader cuts the batches in order at ``--reader`` MB/s; a cut batch is uploaded as soon as one
of at most 16 uploads (or the scenario's cap) is free; the uploads in flight share the uplink,
each at most the per-connection rate; an uploaded batch waits for the first free of ``slots``
FIFO processing slots and holds it ``base + records x per_record``. The end is the last
execution's end. No start-up, no polls, no 429s: it ranks plans, it does not predict times (it
was 3-8 % under the measured times of the 8-batch plan, 2026-12-01).

    python benchmarks/plan_sim.py                      # the three scenarios and --vary 1..7, n = 6..16
    python benchmarks/plan_sim.py --reader 200 --batches 8,10
"""

from __future__ import annotations

import argparse
import statistics

from wan import WanParams, model_cases

RECORDS_PER_MB = 958_525 / 324  # the bench's USER_ACTIVITY records


def plan(total_mb: float, n: int) -> list[float]:
    """``reading.sizing``'s shape for ``n`` batches: a quarter and a half, then even ones."""
    x = total_mb / (n - 1.25)
    return [x / 4, x / 2] + [x] * (n - 2)


def simulate(sizes: list[float], p: WanParams, reader_mbps: float, dt: float = 0.004) -> float:
    """The last execution's end with these batch sizes (``plan_sim_learned.run`` is the model)."""
    from plan_sim_learned import fixed, run

    return run(p, reader_mbps, fixed(sizes), sum(sizes), dt)[0]


def bound(p: WanParams, total_mb: float) -> float:
    link = min(p.uplink_mbps, p.conn_mbps * p.max_uploads) if p.max_uploads else p.uplink_mbps
    records = total_mb * RECORDS_PER_MB
    return max(total_mb / link + p.base_s, p.base_s + records * p.per_record_us / 1e6 / p.slots) + p.latency_ms / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reader", type=float, default=115, help="reader MB/s (validation on, 2 shared cores: 115)")
    ap.add_argument("--size", type=float, default=324, help="MB")
    ap.add_argument("--batches", default="6,8,10,12,16")
    ap.add_argument("--seeds", default="1,2,3,4,5,7", help="--vary seeds, besides the default values")
    args = ap.parse_args()
    counts = [int(n) for n in args.batches.split(",")]
    cases = model_cases(args.seeds)
    x_bound: dict[int, list[float]] = {n: [] for n in counts}
    print(f"{'case':<14} " + " ".join(f"{n:>6}" for n in counts) + "   (run time / bound)")
    for label, p in cases:
        row = [simulate(plan(args.size, n), p, args.reader) / bound(p, args.size) for n in counts]
        for n, r in zip(counts, row, strict=True):
            x_bound[n].append(r)
        print(f"{label:<14} " + " ".join(f"{r:6.2f}" for r in row))
    print(f"{'geo. mean':<14} " + " ".join(f"{statistics.geometric_mean(x_bound[n]):6.2f}" for n in counts))


if __name__ == "__main__":
    main()

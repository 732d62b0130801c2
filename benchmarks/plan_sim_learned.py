"""Plans that ``plan_sim.py`` does not rank: other shapes, and a plan learned from the link.

The fluid model of ``plan_sim.py`` lives here (``run``: reader, at most 16 uploads or the
scenario's cap sharing the uplink, FIFO slots; no start-up, no polls, no 429s), with the batch
sizes drawn while the model runs, as the reader draws them:

- ``fixed``: the sizes given (the pipeline's shape for n batches, or another ramp / tail);
- ``learned T``: the pipeline's 10-batch shape until the first upload ends, then every batch not
  cut yet is ``T`` seconds of upload at the rate that first upload had (5 MB to 100 MB): a fast
  connection gets fewer, bigger batches (fewer per-execution costs for the platform), a slow one
  more, smaller ones (more connections at once).

Besides run time / bound it prints the shell way's modelled time over the plan's (``split -C
100000000``: 3 x 100 MB and the rest, 4 uploads at once), the ratio the goals ask >= 1.3.

    python benchmarks/plan_sim_learned.py                 # --vary seeds 1..20 and the defaults
    python benchmarks/plan_sim_learned.py --reader 115 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

from plan_sim import RECORDS_PER_MB, bound, plan
from wan import WanParams, model_cases

MIN_MB, MAX_MB = 5.0, 100.0
#: a way of drawing the next batch's size: (batches drawn so far, the first upload's MB/s or None)
Sizer = Callable[[int, float | None], float]


def fixed(sizes: list[float]) -> Sizer:
    return lambda i, rate: sizes[i] if i < len(sizes) else sizes[-1]


def learned(total_mb: float, seconds: float) -> Sizer:
    start = plan(total_mb, 10)

    def size(i: int, rate: float | None) -> float:
        if rate is None or i < 2:
            return start[i] if i < len(start) else start[-1]
        return max(MIN_MB, min(MAX_MB, rate * seconds))

    return size


def shaped(total_mb: float, n: int, ramp: tuple[float, ...], tail: tuple[float, ...] = ()) -> list[float]:
    """``n`` batches: ``ramp`` shares first, ``tail`` shares last, whole ones between."""
    x = total_mb / (sum(ramp) + sum(tail) + n - len(ramp) - len(tail))
    return [x * r for r in ramp] + [x] * (n - len(ramp) - len(tail)) + [x * t for t in tail]


def run(
    p: WanParams, reader_mbps: float, size_of: Sizer, total_mb: float = 324.0, dt: float = 0.004
) -> tuple[float, int]:
    """The model of one run: (the last execution's end, the number of batches)."""
    sizes: list[float] = []
    cut_at: list[float] = []
    left: list[float] = []
    started: list[float] = []
    uploaded: list[float] = []
    flight: list[int] = []
    cap = min(16, int(p.max_uploads)) if p.max_uploads else 16
    read, read_until, nxt, t, rate = 0.0, 0.0, 0, 0.0, None
    while True:
        while read < total_mb - 1e-9 and read_until <= t:  # the reader cuts what its speed allows
            s = min(size_of(len(sizes), rate), total_mb - read)
            if total_mb - read - s < 0.5:
                s = total_mb - read  # no crumb of a last batch
            read += s
            read_until += s / reader_mbps
            sizes.append(s)
            cut_at.append(read_until)
            left.append(s)
            started.append(0.0)
            uploaded.append(0.0)
        while nxt < len(sizes) and cut_at[nxt] <= t and len(flight) < cap:
            flight.append(nxt)
            started[nxt] = t
            nxt += 1
        if flight:
            each = min(p.conn_mbps, p.uplink_mbps / len(flight))
            for i in list(flight):
                left[i] -= each * dt
                if left[i] <= 0:
                    uploaded[i] = t + p.latency_ms / 1000
                    flight.remove(i)
                    if rate is None:
                        rate = sizes[i] / (uploaded[i] - started[i])
        if read >= total_mb - 1e-9 and nxt >= len(sizes) and not flight:
            break
        t += dt
    free, end = [0.0] * int(p.slots), 0.0
    for i in sorted(range(len(sizes)), key=uploaded.__getitem__):
        j = min(range(len(free)), key=free.__getitem__)
        free[j] = max(free[j], uploaded[i]) + p.base_s + sizes[i] * RECORDS_PER_MB * p.per_record_us / 1e6
        end = max(end, free[j])
    return end, len(sizes)


def shell_way(p: WanParams, total_mb: float) -> float:
    pieces = [100.0] * int(total_mb // 100) + ([total_mb % 100] if total_mb % 100 else [])
    shell = WanParams(**{**vars(p), "max_uploads": min(4, p.max_uploads) if p.max_uploads else 4})
    return run(shell, 1e9, fixed(pieces), total_mb)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reader", type=float, default=230, help="reader MB/s (validation on, quiet machine: 230)")
    ap.add_argument("--size", type=float, default=324, help="MB")
    ap.add_argument("--seeds", default=",".join(str(s) for s in range(1, 21)), help="--vary seeds")
    args = ap.parse_args()
    total = args.size
    plans: dict[str, Sizer] = {
        "10 (now)": fixed(plan(total, 10)),
        "8": fixed(plan(total, 8)),
        "12": fixed(plan(total, 12)),
        "ramp 3": fixed(shaped(total, 10, (0.25, 0.5, 0.75))),
        "tail 1/2": fixed(shaped(total, 10, (0.25, 0.5), (0.5,))),
        "link 1 s": learned(total, 1.0),
        "link 2 s": learned(total, 2.0),
    }
    cases = model_cases(args.seeds)
    x_bound: dict[str, list[float]] = {k: [] for k in plans}
    x_shell: dict[str, list[float]] = {k: [] for k in plans}
    print(f"{'case':<20}" + "".join(f"{k:>10}" for k in plans) + "   (run time / bound)")
    for label, p in cases:
        b, shell = bound(p, total), shell_way(p, total)
        row = []
        for k, sizer in plans.items():
            end, _ = run(p, args.reader, sizer, total)
            x_bound[k].append(end / b)
            x_shell[k].append(shell / end)
            row.append(end / b)
        print(f"{label:<20}" + "".join(f"{r:10.2f}" for r in row))
    for title, table, pick in (
        ("x bound, geo. mean", x_bound, statistics.geometric_mean),
        ("x bound, worst", x_bound, max),
        ("shell / plan, geo.", x_shell, statistics.geometric_mean),
        ("shell / plan, worst", x_shell, min),
    ):
        print(f"{title:<20}" + "".join(f"{pick(table[k]):10.2f}" for k in plans))


if __name__ == "__main__":
    main()

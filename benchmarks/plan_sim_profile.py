"""The pipeline's learned plan (``reading/platform_model.py``) against the default one, in the model.

For the three WAN scenarios and 20 ``--vary`` draws, three plans are played through the model with
the scenario's true parameters:

- ``default``: the plan of a first run (``sizing.plan_sizes``);
- ``next``: the plan the next run would choose from what the first one could see. Its profile has
  the true times, but the slots only as the first run would see them: exact when an execution
  waited for a slot, else the most that ran at once (a floor);
- ``truth``: the plan chosen with the true slot count, the best a profile can give.

It prints each case's modelled end for the three, with the batch counts, then the geometric means
of default / next and default / truth, and the worst ratios. It plans with the package's own code,
so a change to the model or its shapes is seen here before it is measured (``run.py --scenario
wan``).

    python benchmarks/plan_sim_profile.py
    python benchmarks/plan_sim_profile.py --seeds 1,2,3 --reader 400
"""

from __future__ import annotations

import argparse
import statistics

from plan_sim import RECORDS_PER_MB
from wan import WanParams, model_cases

from pipeline.engine.platform_profile import most_at_once
from pipeline.reading.platform_model import (
    MODEL_UPLOADS,
    PlatformProfile,
    drawn_mb,
    modelled_end,
    modelled_spans,
    plan_from_profile,
)
from pipeline.reading.sizing import BatchSizes, plan_sizes

MAX_BYTES = 100_000_000


def true_profile(p: WanParams) -> PlatformProfile:
    cap = int(p.max_uploads) or None
    link = min(p.uplink_mbps, p.conn_mbps * cap) if cap else p.uplink_mbps
    per_mb = RECORDS_PER_MB * p.per_record_us / 1e6
    return PlatformProfile(int(p.slots), True, p.base_s, per_mb, p.conn_mbps, link, cap, "truth")


def seen_slots(sizes: list[float], truth: PlatformProfile, uploads: int, reader: float) -> tuple[int, bool]:
    """What a run of ``sizes`` would show of the slots: (count, exact)."""
    spans = modelled_spans(sizes, truth, uploads=uploads, reader_mbps=reader)
    if any(start > arrival + 1e-6 for arrival, start, _ in spans):
        return truth.slots, True  # an execution waited: the count is known
    return most_at_once([(start, end) for _, start, end in spans]), False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=324, help="MB")
    ap.add_argument("--reader", type=float, default=250, help="the reader's MB/s in the model")
    ap.add_argument("--seeds", default=",".join(str(s) for s in range(1, 21)), help="--vary seeds")
    args = ap.parse_args()
    total = int(args.size * 1e6)
    cases = model_cases(args.seeds)
    default = plan_sizes(total, max_bytes=MAX_BYTES, concurrency=16, sizing="adaptive")
    print(f"{'case':<14} {'slots':>5} {'seen':>5} {'default':>8} {'next':>12} {'truth':>12}   (modelled s, batches)")
    ratios: list[tuple[float, float]] = []
    for label, p in cases:
        truth = true_profile(p)
        uploads = min(MODEL_UPLOADS, truth.max_uploads or MODEL_UPLOADS)

        def end(sizes: BatchSizes, t: PlatformProfile = truth, u: int = uploads) -> tuple[float, int]:
            drawn = drawn_mb(sizes, total)
            return modelled_end(drawn, t, uploads=u, reader_mbps=args.reader), len(drawn)

        def chosen(profile: PlatformProfile) -> BatchSizes:
            learned = plan_from_profile(
                total, profile, default=default, max_bytes=MAX_BYTES, concurrency=16, validate=True
            )
            return learned.sizes if learned else default

        slots, exact = seen_slots(drawn_mb(default, total), truth, uploads, args.reader)
        seen = PlatformProfile(
            slots, exact, truth.base_s, truth.s_per_mb, truth.conn_mbps, truth.link_mbps, truth.max_uploads, "first"
        )
        (d, _), (n, nn), (t, nt) = end(default), end(chosen(seen)), end(chosen(truth))
        ratios.append((d / n, d / t))
        mark = "=" if exact else "+"
        print(f"{label:<14} {truth.slots:5d} {slots:4d}{mark} {d:8.2f} {n:8.2f} ({nn:2d}) {t:8.2f} ({nt:2d})")
    for k, name in ((0, "next"), (1, "truth")):
        column = [r[k] for r in ratios]
        print(f"default / {name}: geometric mean {statistics.geometric_mean(column):.3f}, worst {min(column):.3f}")


if __name__ == "__main__":
    main()

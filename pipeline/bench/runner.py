"""A whole bench: generate the input once, run each point with the normal machinery, measure,
write ``bench.json`` and ``bench.html``, delete the generated input.

The bench's private directory is ``<runs base>/bench-<id>/`` (``config.runs_base``: ``report.dir``, else
the user's state directory): ``points/`` holds each point's
run directory (journal, report.json, report.html: a bench is a run), ``bench.json`` and
``bench.html`` sit beside it. The input is written there and deleted at the end, whatever happens.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.bench import generator
from pipeline.bench.bench_html import write_bench_html
from pipeline.bench.bound import Conditions, lower_bound_s, point_terms
from pipeline.bench.heartbeat import Heartbeat
from pipeline.bench.measures import Counters, measure_point
from pipeline.bench.recommendation import recommend
from pipeline.bench.sweep import Point
from pipeline.bench.target import EmulatorProcess, conditions_of
from pipeline.bench.types import BenchReport, PointMeasures
from pipeline.config import Config, runs_base
from pipeline.emulator.options import EmulatorOptions
from pipeline.engine.rundir import make_private_dir, new_run_id
from pipeline.engine.runner import RunOptions
from pipeline.engine.start import run_async
from pipeline.reporting.atomic_json import write_json_atomically

BENCH_JSON = "bench.json"
BENCH_HTML = "bench.html"
FED = "written to a file in the bench directory (the reader re-reads byte ranges on a retry), deleted at the end"

Say = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class BenchPlan:
    """Everything a bench needs: the base config (its API, or the emulator's options), the points,
    what to generate, and the size to estimate for."""

    config: Config
    emulator: EmulatorOptions | None
    points: list[Point]
    spec_of: Callable[[str], generator.Spec]  # bench id -> what to generate
    estimate_bytes: int | None = None
    token: str | None = field(default=None, repr=False)
    bench_id: str = field(default_factory=lambda: new_run_id())


@contextlib.contextmanager
def _target(plan: BenchPlan, config: Config) -> Iterator[tuple[Config, str | None]]:
    if plan.emulator is None:
        yield config, plan.token
        return
    emu = EmulatorProcess(plan.emulator)
    try:
        yield config.replace(api={"url": emu.url}), plan.emulator.token
    finally:
        emu.stop()


def _point_bound(conditions: Conditions | None, config: Config, point: PointMeasures) -> float | None:
    if conditions is None or not point["batches"]:
        return None
    terms = point_terms(
        conditions, point["bytes"], point["records"], concurrency=config.upload.concurrency, batches=point["batches"]
    )
    return terms.total_s


async def run_point(
    plan: BenchPlan, point: Point, data: Path, runs_dir: Path, index: int, say: Say = lambda _: None
) -> PointMeasures:
    """One point: a run of the normal machinery, its own emulator when benching the emulator."""
    base = point.apply(plan.config).replace(
        report={"dir": str(runs_dir)}, **{"import": {"name": f"pipeline-bench {plan.bench_id} point {index + 1}"}}
    )
    with _target(plan, base) as (config, token):
        counters = Counters()
        counters.mark()
        started = time.time()
        options = RunOptions(token=token, allow_concurrent=True, again=True, on_event=Heartbeat(say))
        report = await run_async(config, [data], options)
        ended = time.time()
        measures = measure_point(point, report, started=started, ended=ended, counters=counters, bound_s=None)
    conditions = conditions_of(plan.emulator) if plan.emulator else None
    measures["bound_s"] = _point_bound(conditions, base, measures)
    return measures


def cleanup_command(bench_dir: Path) -> str:
    return f"pipeline bench --cleanup {shlex.quote(str(bench_dir))}"


async def run_bench(plan: BenchPlan, say: Say) -> BenchReport:
    bench_dir = make_private_dir(runs_base(plan.config) / f"bench-{plan.bench_id}")
    spec = plan.spec_of(plan.bench_id)
    began = time.perf_counter()
    say(f"bench {plan.bench_id}: generating {spec.document_type} documents in {bench_dir}")
    generated = generator.write_input(spec, bench_dir)
    generation_s = round(time.perf_counter() - began, 2)
    say(f"  {generated.records:,} records, {generated.bytes:,} bytes in {generation_s:g} s")
    points: list[PointMeasures] = []
    try:
        for i, point in enumerate(plan.points):
            say(f"point {i + 1}/{len(plan.points)}: {point.label}")
            measures = await run_point(plan, point, generated.path, bench_dir / "points", i, say)
            say(
                f"  {measures['outcome']} in {measures['end_to_end_s']:.2f} s, "
                f"uploads {measures['upload_mb_s'] or 0:.1f} MB/s, "
                f"{measures['rejected']} rejected, {measures['refused']} refused"
            )
            points.append(measures)
    finally:
        generated.path.unlink(missing_ok=True)
    report = _bench_report(plan, bench_dir, spec, generated, generation_s, points)
    write_json_atomically(bench_dir / BENCH_JSON, report)
    write_bench_html(report, bench_dir / BENCH_HTML)
    return report


def _bench_report(
    plan: BenchPlan,
    bench_dir: Path,
    spec: generator.Spec,
    generated: generator.Generated,
    generation_s: float,
    points: list[PointMeasures],
) -> BenchReport:
    conditions = conditions_of(plan.emulator) if plan.emulator else None
    creates = spec.document_type in generator.CREATING_TYPES
    return {
        "bench_id": plan.bench_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "bench_dir": str(bench_dir),
        "target": {
            "url": "emulator" if plan.emulator else plan.config.api.url,
            "emulator": plan.emulator is not None,
            "datamart_id": plan.config.import_.datamart_id,
            "conditions": _describe(plan.emulator) if plan.emulator else None,
            "emulator_options": _emulator_fields(plan.emulator),
        },
        "document_type": spec.document_type,
        "mime_type": spec.mime_type,
        "seed": spec.seed,
        "record_bytes": spec.record_bytes,
        "input": {"bytes": generated.bytes, "records": generated.records, "generation_s": generation_s, "fed": FED},
        "identifiers": {
            "prefix": generator.identifier(plan.bench_id, 0)[:-1],
            "count": generated.records,
            "compartment_id": spec.compartment_id,
            "creates_user_points": creates,
        },
        "config": plan.config.to_dict(),
        "lower_bound_s": round(lower_bound_s(conditions, generated.bytes, generated.records), 3)
        if conditions
        else None,
        "points": points,
        "recommendation": recommend(points, plan.estimate_bytes),
        "cleanup_command": cleanup_command(bench_dir) if creates and plan.emulator is None else None,
    }


def _describe(options: EmulatorOptions) -> str:
    platform = f"{options.slots} slots, {options.process_ms:g} ms + {options.per_line_us:g} us/record per execution"
    checks = "lines counted only (--light)" if options.light else "every line checked"
    return f"{platform}, {checks}; link: {options.conditions()}"


def _emulator_fields(options: EmulatorOptions | None) -> dict[str, object] | None:
    if options is None:
        return None
    keep = ["latency_ms", "bandwidth_mbps", "uplink_mbps", "max_uploads", "retry_after_s", "rate_limit", "slots"]
    keep += ["process_ms", "per_line_us", "light", "seed"]
    return {k: getattr(options, k) for k in keep}

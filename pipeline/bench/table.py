"""The bench's table (rich) and its plain twin for a pipe: one row per point."""

from __future__ import annotations

from rich.table import Table

from pipeline.bench.types import BenchReport, PointMeasures, Spread

COLUMNS = (
    ("point", "left"),
    ("end to end s", "right"),
    ("bound s", "right"),
    ("first byte s", "right"),
    ("upload MB/s", "right"),
    ("upload rec/s", "right"),
    ("platform rec/s", "right"),
    ("queue p50/p90/p99 s", "right"),
    ("processing p50/p90/p99 s", "right"),
    ("batches", "right"),
    ("CPU s", "right"),
    ("peak RSS MB", "right"),
    ("retries", "right"),
    ("429", "right"),
    ("in flight max", "right"),
    ("rejected/refused", "right"),
)


def _n(value: float | int | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _spread(s: Spread) -> str:
    return "/".join(_n(s[k]) for k in ("p50", "p90", "p99"))


def row(p: PointMeasures) -> list[str]:
    return [
        p["label"] + ("" if p["outcome"] == "succeeded" else f" ({p['outcome']})"),
        _n(p["end_to_end_s"]),
        _n(p["bound_s"]),
        _n(p["first_byte_s"]),
        _n(p["upload_mb_s"], "{:.1f}"),
        _n(p["upload_records_s"], "{:,.0f}"),
        _n(p["platform_records_s"], "{:,.0f}"),
        _spread(p["queue_s"]),
        _spread(p["processing_s"]),
        str(p["batches"]),
        _n(p["cpu_s"], "{:.1f}"),
        _n(p["peak_rss_mb"], "{:.0f}"),
        str(p["retries"]),
        str(p["throttled"]),
        _n(p["peak_in_flight"], "{}"),
        f"{p['rejected']}/{p['refused']}",
    ]


def rich_table(report: BenchReport) -> Table:
    table = Table(title=f"pipeline bench {report['bench_id']}: {report['document_type']}, {_input(report)}")
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    best = report["recommendation"]["best"]
    for p in report["points"]:
        table.add_row(*row(p), style="bold green" if p["label"] == best else None)
    return table


def plain_table(report: BenchReport) -> str:
    rows = [[name for name, _ in COLUMNS], *(row(p) for p in report["points"])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [f"pipeline bench {report['bench_id']}: {report['document_type']}, {_input(report)}"]
    for r in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _input(report: BenchReport) -> str:
    data = report["input"]
    return f"{data['bytes'] / 1e6:.0f} MB, {data['records']:,} records per point, target {report['target']['url']}"

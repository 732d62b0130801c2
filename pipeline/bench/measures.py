"""One point's figures, from its run report (the per-execution times, the limiter's timeline) and
the process's own counters (CPU, peak RSS). Server times (RUNNING, done) come from the server's
clock, upload times from ours: against a remote API a clock skew moves the queue times."""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.bench.sweep import Point
from pipeline.bench.types import PointMeasures, Spread
from pipeline.reporting.types import ExecutionEntry, Report

MAX_SAMPLES = 2000
MAX_TIMELINE = 400
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def _t(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def spread(values: list[float]) -> Spread:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": round(max(values), 3) if values else None,
    }


def evenly(values: list[float], at_most: int) -> list[float]:
    if len(values) <= at_most:
        return [round(v, 4) for v in values]
    step = len(values) / at_most
    return [round(values[int(i * step)], 4) for i in range(at_most)]


@dataclass
class Counters:
    """CPU seconds and the peak RSS, from a mark: ``mark()`` resets the kernel's peak (Linux)."""

    cpu_at_mark: float = 0.0

    @staticmethod
    def _cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def mark(self) -> None:
        try:
            CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        self.cpu_at_mark = self._cpu()

    def cpu_s(self) -> float:
        return round(self._cpu() - self.cpu_at_mark, 3)

    @staticmethod
    def peak_rss_mb() -> float | None:
        try:
            for line in STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return None


def _timeline(report: Report, started: float, offset: float) -> list[list[float]]:
    """The limiter's samples, their time moved to seconds since the client's start, thinned."""
    th = report.get("throughput")
    points = [list(p) for p in (th["timeline"] if th else [])]
    for p in points:
        p[0] = round(p[0] + offset, 3)
    if len(points) > MAX_TIMELINE:
        step = len(points) / MAX_TIMELINE
        points = [points[int(i * step)] for i in range(MAX_TIMELINE)] + [points[-1]]
    return points


def _span(executions: list[ExecutionEntry], begin: str, end: str) -> tuple[float | None, float | None]:
    starts = [t for t in (_t(e[begin]) for e in executions) if t is not None]  # type: ignore[literal-required]
    ends = [t for t in (_t(e[end]) for e in executions) if t is not None]  # type: ignore[literal-required]
    return (min(starts) if starts else None), (max(ends) if ends else None)


def _uploads(executions: list[ExecutionEntry], started: float) -> list[list[float]]:
    spans = []
    for e in executions:
        begin, end = _t(e["upload_started_at"]), _t(e["uploaded_at"])
        if begin and end:
            spans.append([round(begin - started, 3), round(end - started, 3), float(e["bytes"])])
    if len(spans) > MAX_SAMPLES:
        step = len(spans) / MAX_SAMPLES
        spans = [spans[int(i * step)] for i in range(MAX_SAMPLES)]
    return spans


RAMP_SHARE = 0.2  # the first 20 % of the bytes: the adaptive limit's ramp, kept as it is in an estimate


def steady(uploads: list[list[float]]) -> tuple[float | None, float | None]:
    """(bytes/s of the last 80 % of the bytes, the time the first 20 % were sent): each upload's
    bytes spread evenly over its span, the time found where the cumulative count crosses 20 %."""
    total = sum(u[2] for u in uploads)
    if not uploads or not total:
        return None, None
    events = sorted({u[0] for u in uploads} | {u[1] for u in uploads})
    goal, done = RAMP_SHARE * total, 0.0
    for begin, end in zip(events, events[1:], strict=False):
        rate = sum(u[2] / max(u[1] - u[0], 1e-9) for u in uploads if u[0] <= begin and u[1] >= end)
        if done + rate * (end - begin) >= goal:
            t = begin + (goal - done) / rate if rate else begin
            last = max(u[1] for u in uploads)
            return ((total - goal) / (last - t) if last > t else None), t
        done += rate * (end - begin)
    return None, None


def measure_point(
    point: Point, report: Report, *, started: float, ended: float, counters: Counters, bound_s: float | None
) -> PointMeasures:
    """The figures of one point's run; ``started``/``ended``: the client's clock around the run."""
    ex = report["executions"]
    records = report["records"]
    first_upload, last_answer = _span(ex, "upload_started_at", "uploaded_at")
    first_running, last_done = _span(ex, "started_at", "finished_at")
    # the server may start an execution before its answer reaches us: a queue is never below 0
    queue = [max(0.0, b - a) for a, b in ((_t(e["uploaded_at"]), _t(e["started_at"])) for e in ex) if a and b]
    processing = [b - a for a, b in ((_t(e["started_at"]), _t(e["finished_at"])) for e in ex) if a and b]
    sent_bytes = sum(e["bytes"] for e in ex if e["id"])
    sent_records = sum(e["source"]["line_count"] for e in ex if e["id"])
    upload_s = last_answer - first_upload if first_upload and last_answer else None
    finished = sum(e["source"]["line_count"] for e in ex if e["finished_at"])
    platform_s = last_done - first_running if first_running and last_done else None
    th = report.get("throughput")
    attempts = sum(e["attempts"] for e in ex)
    run_started = _t(report["started_at"]) or started
    uploads = _uploads(ex, started)
    steady_rate, ramp_end = steady(uploads)
    return {
        "label": point.label,
        "settings": point.as_dict(),
        "run_id": report["run_id"],
        "run_dir": report["run_dir"],
        "outcome": report["outcome"],
        "exit_code": report["exit_code"],
        "bytes": sent_bytes,
        "records": records["read"],
        "rejected": records["rejected"],
        "refused": sum(e["total_failure"] or 0 for e in ex),
        "batches": report["batches"],
        "end_to_end_s": round(ended - started, 3),
        "first_byte_s": round(first_upload - started, 3) if first_upload else None,
        "upload_s": round(upload_s, 3) if upload_s else None,
        "upload_mb_s": round(sent_bytes / upload_s / 1e6, 2) if upload_s else None,
        "steady_upload_mb_s": round(steady_rate / 1e6, 2) if steady_rate else None,
        "ramp_end_s": round(ramp_end, 3) if ramp_end is not None else None,
        "last_upload_end_s": round(last_answer - started, 3) if last_answer else None,
        "upload_records_s": round(sent_records / upload_s) if upload_s else None,
        "platform_records_s": round(finished / platform_s) if platform_s else None,
        "queue_s": spread(queue),
        "processing_s": spread(processing),
        "processing_samples_s": evenly(processing, MAX_SAMPLES),
        "cpu_s": counters.cpu_s(),
        "peak_rss_mb": counters.peak_rss_mb(),
        "attempts": attempts,
        "retries": max(0, attempts - sum(1 for e in ex if e["id"])),
        "throttled": th["throttled"] if th else 0,
        "peak_in_flight": th["peak_in_flight"] if th else None,
        "max_concurrency": th["max_concurrency"] if th else None,
        "timeline": _timeline(report, started, run_started - started),
        "uploads": uploads,
        "poll_requests": th["poll_requests"] if th else None,
        "bound_s": round(bound_s, 3) if bound_s is not None else None,
    }

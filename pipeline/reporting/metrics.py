"""The run as Prometheus metrics: what a scheduler's monitoring watches (``--metrics-textfile``,
``--metrics-pushgateway``; written by ``metrics_publish``).

Batch jobs are watched through the node exporter's textfile collector or a Pushgateway: the
metrics are gauges holding the values of *this* run (the last one to write them), not counters
that grow across runs. While the run works they come from the progress counters (the run's
events); at the end from the report itself, so a textfile or a push holds exactly the figures of
``report.json`` (records by what became of them, executions by status, duration, outcome).
Retries are counted by class (``client.retry.RetryReason``: a few values, never a message, a URL
or a token). ``pipeline_run_last_success_timestamp_seconds`` is only written by a run that
succeeded; a run that did not keeps the previous value (read back from the textfile; on a
Pushgateway, pushes replace only the metrics they carry, so the previous success stays).

Every family is always written with all its label values (0 when none): a push replaces a family
as a whole, so yesterday's ``status="FAILED"`` does not survive today's run without failures.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from pipeline.client.retry import RetryReason
from pipeline.reporting.progress_counters import Progress, Snapshot
from pipeline.reporting.summary import executions_by_status
from pipeline.reporting.types import RecordCounts, Report

PREFIX = "pipeline_run"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"
RECORD_KINDS: tuple[str, ...] = tuple(RecordCounts.__annotations__)
#: statuses always written (0 when none): the public set, and what an upload can end as without one
EXECUTION_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "LOST", "refused", "unsettled")


class OutcomeLabel(StrEnum):
    """``pipeline_run_outcome{outcome=...}``: the report's outcomes, and ``running`` before it."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    COMPLETED_WITH_DUPLICATES = "completed_with_duplicates"
    COMPLETED_WITH_UNKNOWNS = "completed_with_unknowns"
    INTERRUPTED = "interrupted"
    INCOMPLETE = "incomplete"


@dataclass(kw_only=True)
class MetricValues:
    """The figures written, from the progress counters (``from_snapshot``) or the report (``from_report``)."""

    records: dict[str, int]
    bytes_read: int
    bytes_sent: int
    executions: dict[str, int]
    retries: dict[str, int]
    started_at: float | None
    duration_s: float
    outcome: str
    exit_code: int | None  # None while the run works
    last_success_at: float | None  # None: not this run (the previous value is kept)
    batches: int = 0


def from_snapshot(snap: Snapshot, retries: Mapping[str, int], started_at: float | None) -> MetricValues:
    """The values while the run works (what the progress line says)."""
    executions = Counter(snap.done_by_status)
    executions["PENDING"] += snap.exec_pending
    executions["RUNNING"] += snap.exec_running
    executions["refused"] += snap.uploads_failed
    records = dict.fromkeys(RECORD_KINDS, 0) | {
        "read": snap.records_read + snap.records_rejected,
        "rejected": snap.records_rejected,
        "succeeded": snap.records_succeeded,
        "failed": snap.records_failed,
    }
    return MetricValues(
        records=records,
        bytes_read=snap.bytes_read,
        bytes_sent=snap.bytes_uploaded,
        executions=dict(executions),
        retries=dict(retries),
        started_at=started_at,
        duration_s=snap.elapsed_s,
        outcome=OutcomeLabel.RUNNING,
        exit_code=None,
        last_success_at=None,
        batches=snap.batches_read,
    )


def from_report(report: Report, retries: Mapping[str, int]) -> MetricValues:
    """The values at the end: the report's own figures."""
    started, finished = _epoch(report.get("started_at")), _epoch(report.get("finished_at"))
    sent = sum(e["bytes"] for e in report["executions"] if e["upload"] == "uploaded")
    succeeded = report["outcome"] == OutcomeLabel.SUCCEEDED
    return MetricValues(
        records={k: int(report["records"][k]) for k in RECORD_KINDS},  # type: ignore[literal-required]
        bytes_read=sum(i["bytes"] for i in report["inputs"]),
        bytes_sent=sent,
        executions=executions_by_status(report),
        retries=dict(retries),
        started_at=started,
        duration_s=float(report.get("duration_s") or 0.0),
        outcome=report["outcome"],
        exit_code=int(report["exit_code"]),
        last_success_at=(finished or time.time()) if succeeded else None,
        batches=int(report["batches"]),
    )


def _epoch(value: str | None) -> float | None:
    """An ISO 8601 UTC time of the report (``2026-12-01T13:20:05.123Z``) as epoch seconds."""
    if not value:
        return None
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class RunCollector(Collector):
    """The metric families of one ``MetricValues``; ``labels`` are added to every sample (the
    textfile's ``job``: several jobs may share one collector directory)."""

    def __init__(self, values: MetricValues, labels: Mapping[str, str] | None = None) -> None:
        self.values = values
        self.labels = dict(labels or {})

    def _family(self, name: str, doc: str, by: str | None = None) -> GaugeMetricFamily:
        names = [*self.labels, *([by] if by else [])]
        return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=names)

    def _add(self, family: GaugeMetricFamily, value: float, by: str | None = None) -> GaugeMetricFamily:
        family.add_metric([*self.labels.values(), *([by] if by is not None else [])], value)
        return family

    def collect(self) -> Iterator[Metric]:
        v = self.values
        records = self._family("records", "records of the run by what became of them (report.json records)", "kind")
        for kind in RECORD_KINDS:
            self._add(records, v.records.get(kind, 0), kind)
        yield records
        data = self._family("bytes", "bytes of the run: read from the inputs (uncompressed), sent in uploads", "kind")
        self._add(data, v.bytes_read, "read")
        yield self._add(data, v.bytes_sent, "sent")
        executions = self._family("executions", "executions (one per batch) by status", "status")
        for status in sorted(set(EXECUTION_STATUSES) | set(v.executions)):
            self._add(executions, v.executions.get(status, 0), status)
        yield executions
        retries = self._family("retries", "requests retried, by class of failure", "reason")
        for reason in sorted(set(RetryReason) | set(v.retries)):
            self._add(retries, v.retries.get(reason, 0), reason)
        yield retries
        yield self._add(self._family("batches", "batches planned (read) so far"), v.batches)
        yield self._add(
            self._family("duration_seconds", "seconds from the start of the run to its end (or now)"), v.duration_s
        )
        if v.started_at is not None:
            yield self._add(self._family("start_timestamp_seconds", "when the run started (epoch)"), v.started_at)
        outcome = self._family(
            "outcome", "1 for the run's outcome (running until it ends), 0 for the others", "outcome"
        )
        for phase in OutcomeLabel:
            self._add(outcome, 1.0 if phase == v.outcome else 0.0, phase)
        yield outcome
        if v.exit_code is not None:
            yield self._add(
                self._family("exit_code", "the exit code of the run (0 ok, 1 failures, 3 not known yet, 4 duplicates)"),
                v.exit_code,
            )
        if v.last_success_at is not None:
            yield self._add(
                GaugeMetricFamily(
                    LAST_SUCCESS, "when the last run that succeeded ended (epoch)", labels=list(self.labels)
                ),
                v.last_success_at,
            )


def registry_of(values: MetricValues, labels: Mapping[str, str] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(values, labels))
    return registry


class MetricsState:
    """Folds the run's events (an event sink): the progress counters, retries by class, the start.
    ``values()`` may be called from any thread."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress or Progress()
        self._lock = threading.Lock()
        self._retries: Counter[str] = Counter()
        self.started_at: float | None = None

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        self.progress(name, fields)
        with self._lock:
            if name == "retry":
                self._retries[str(fields.get("kind") or RetryReason.OTHER)] += 1
            elif name == "run_started" and self.started_at is None:
                self.started_at = _epoch(fields.get("started_at")) or time.time()

    def retries(self) -> dict[str, int]:
        with self._lock:
            return dict(self._retries)

    def values(self) -> MetricValues:
        return from_snapshot(self.progress.snapshot(), self.retries(), self.started_at)

    def final(self, report: Report) -> MetricValues:
        return from_report(report, self.retries())

"""The shape of ``bench.json`` (``TypedDict``s): what the table, the HTML page, the
recommendation and ``--cleanup`` read. Times are seconds, rates per second, sizes bytes."""

from __future__ import annotations

from typing import Any, TypedDict


class Spread(TypedDict):
    """Percentiles of one figure over a point's executions (None without executions)."""

    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class PointMeasures(TypedDict):
    """One point of the sweep: one run of the normal machinery, measured."""

    label: str
    settings: dict[str, Any]
    run_id: str
    run_dir: str | None
    outcome: str
    exit_code: int
    bytes: int
    records: int
    rejected: int  # by our own checks
    refused: int  # by the server's per-line checks (total_failure)
    batches: int
    end_to_end_s: float  # the client's start to the last execution seen done
    first_byte_s: float | None  # the client's start to the first upload
    upload_s: float | None  # the first upload's start to the last upload's answer
    upload_mb_s: float | None
    #: after the ramp: the rate of the last 80 % of the bytes, and when the first 20 % were sent
    steady_upload_mb_s: float | None
    ramp_end_s: float | None  # since the client's start
    last_upload_end_s: float | None  # since the client's start
    upload_records_s: float | None
    platform_records_s: float | None  # records finished / (first RUNNING to last done)
    queue_s: Spread  # per execution: uploaded to RUNNING
    processing_s: Spread  # per execution: RUNNING to done
    processing_samples_s: list[float]  # per execution (at most MAX_SAMPLES, evenly picked)
    cpu_s: float  # the client process and its workers
    peak_rss_mb: float | None  # the client process during this point
    attempts: int
    retries: int  # upload attempts beyond one per batch
    throttled: int  # 429 and 503 answers to uploads
    peak_in_flight: int | None
    max_concurrency: int | None
    #: [seconds since the client's start, limit of uploads in flight, in flight, bytes sent]
    timeline: list[list[float]]
    #: [start, end (seconds since the client's start), bytes] of each upload (at most MAX_SAMPLES)
    uploads: list[list[float]]
    poll_requests: int | None
    bound_s: float | None  # the lower bound of this point's settings (emulator conditions only)


class Estimate(TypedDict):
    bytes: int
    seconds: float
    text: str


class Recommendation(TypedDict):
    best: str | None  # label of the point with the best end-to-end time
    best_settings: dict[str, Any]
    limit: str | None  # link, platform, server_cap
    limit_text: str | None
    estimate: Estimate | None
    bound_best: list[str]  # labels the bound says are best (emulator conditions only)
    text: str


class BenchReport(TypedDict):
    """``bench.json``."""

    bench_id: str
    created_at: str
    bench_dir: str
    target: dict[str, Any]  # url, emulator, datamart_id, conditions (emulator: EmulatorOptions' fields)
    document_type: str
    mime_type: str
    seed: int
    record_bytes: int
    input: dict[str, Any]  # bytes, records, generation_s, how it was fed
    identifiers: dict[str, Any]  # prefix, count, compartment_id, kind
    config: dict[str, Any]  # the base config (no token): what --cleanup sends with
    lower_bound_s: float | None  # no client can beat it (emulator conditions only)
    points: list[PointMeasures]
    recommendation: Recommendation
    cleanup_command: str | None

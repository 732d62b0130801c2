"""What a run learned of the platform and the link (``reading.platform_model.PlatformProfile``), and
the newest one learned under a ``report.dir`` for the same place.

At the end of a run, :func:`profile_of` reads the executions that succeeded (server dates of start
and end, bytes, this machine's upload times) and the limiter's counts:

- **slots**: the most executions processing at once. It is exact when the platform was seen handing
  a freed slot over (an execution starting within ``HANDOVER_S`` of another's end while the others
  were all busy): a queue, so no more slots exist. Otherwise it is only a floor (a run of 10
  batches on 16 slots sees 10), and a floor never lowers what an earlier run found exact.
- **base_s, s_per_mb**: a least-squares fit of each execution's processing time (end - start) on its
  MB, both terms non-negative. It needs sizes that differ (the default plan's smaller first
  batches); when they do not, the profile the run was planned from lends its fit.
- **conn_mbps**: the fastest upload of 1 MB or more (of any size, when none is); **link_mbps**: all
  the bytes uploaded over the time some upload was in flight (what the link gave this client; at
  least ``conn_mbps``).
- **max_uploads**: the limit of uploads in flight the limiter ended on, when the server refused some
  (429/503); else None.

:func:`keep_profile` writes it to ``platform.json`` in the run directory when the run finished for
good (the report has it too, under ``platform``). :func:`learned_profile` looks, newest first, for
a run under ``base`` that went to the same API URL, datamart and document type
(``imported_before.place``) and kept one (the newest ``MAX_LOOKED_AT`` runs to that place, by their
journal's last write). A run against the embedded emulator never keeps one, nor looks one up (each
starts a new emulator).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from pipeline import formats
from pipeline.config import Config, runs_base
from pipeline.engine.imported_before import place
from pipeline.engine.journal import JOURNAL_NAME
from pipeline.engine.runs_index import FINAL_OUTCOMES, first_event, run_dirs
from pipeline.engine.state import BatchState
from pipeline.reading.platform_model import MB, LearnedPlan, PlatformProfile, plan_from_profile
from pipeline.reading.sizing import BatchSizes
from pipeline.reporting.atomic_json import write_json_atomically
from pipeline.reporting.types import Report, Throughput

HANDOVER_S = 0.05
#: server dates are whole ms, each taken on its own: an end and the start that took its slot may be
#: a ms or two out of order
DATE_SLACK_S = 0.005
MIN_UPLOAD_BYTES = 1_000_000
#: the newest runs to the same place looked at for a profile, at most
MAX_LOOKED_AT = 5
PROFILE_NAME = "platform.json"
MAX_PROFILE_BYTES = 64_000


def profile_of(
    batches: Iterable[BatchState], throughput: Throughput | None, *, run_id: str, planned_from: PlatformProfile | None
) -> PlatformProfile | None:
    """The profile this run's executions show, or ``None`` when they show too little (fewer than
    two successes with server dates, no fit and none to lend)."""
    done = [b for b in batches if formats.is_success(b.status)]
    rows = [(b.size / MB, b.started_at, b.finished_at) for b in done if b.started_at and b.finished_at]
    spans = [(start, end) for _, start, end in rows]
    if len(spans) < 2 or any(end < start for start, end in spans):
        return None
    fit = _fit([mb for mb, _, _ in rows], [end - start for _, start, end in rows])
    if fit is None and planned_from is not None:
        fit = planned_from.base_s, planned_from.s_per_mb
    timed = [b for b in done if b.size >= MIN_UPLOAD_BYTES] or done  # small ones time the request more than the link
    conn = max((_upload_mbps(b) for b in timed), default=0.0)
    link = max(_busy_rate([(b.upload_started_at, b.uploaded_at, b.size) for b in done]), conn)
    if fit is None or conn <= 0 or not link:
        return None
    slots, exact = _slots(spans)
    if planned_from is not None and not exact:
        if planned_from.slots_exact and slots <= planned_from.slots:
            slots, exact = planned_from.slots, True
        else:
            slots = max(slots, planned_from.slots)
    profile = PlatformProfile(
        slots=slots,
        slots_exact=exact,
        base_s=fit[0],
        s_per_mb=fit[1],
        conn_mbps=conn,
        link_mbps=float(link),
        max_uploads=_upload_cap(throughput),
        learned_from=run_id,
    )
    return profile if profile.plausible() else None


def keep_profile(run_dir: Path, report: Report) -> None:
    """Write ``platform.json`` beside the report of a run that finished for good (outcome final, not
    the embedded emulator) and learned a profile; remove a stale one otherwise. The next run reads
    this small file, never a report (one of 20,000 executions is 20 MB). Best effort: a disk that
    refuses it costs the next run its fitted plan, never this run its outcome."""
    path = run_dir / PROFILE_NAME
    platform = report.get("platform")
    profile = platform["profile"] if platform else None
    with contextlib.suppress(OSError):
        if profile is None or report["outcome"] not in FINAL_OUTCOMES or report["emulator"]:
            path.unlink(missing_ok=True)
            return
        kept = {"run_id": report["run_id"], "finished_at": report["finished_at"], "profile": profile}
        write_json_atomically(path, kept)


def learned_profile(base: Path, target: str, config: Mapping[str, Any]) -> PlatformProfile | None:
    """The profile of the newest finished run under ``base`` to the same place, if one kept it.
    Runs are taken by their last activity, newest first; at most ``MAX_LOOKED_AT`` are looked at."""
    if not base.is_dir():
        return None
    here = place(target, config)
    looked_at = 0
    for run_dir in sorted(run_dirs(base), key=_last_activity, reverse=True):
        first = first_event(run_dir)
        if place(str(first.get("target") or ""), first.get("config") or {}) != here:
            continue
        kept = _read_small_json(run_dir / PROFILE_NAME)
        profile = PlatformProfile.from_json(kept.get("profile")) if kept else None
        if profile is not None:
            return profile
        looked_at += 1
        if looked_at >= MAX_LOOKED_AT:
            break
    return None


def fitted_plan(config: Config, total_bytes: int | None, default: BatchSizes) -> LearnedPlan | None:
    """Batch sizes for ``total_bytes`` of input fitted to what the newest finished run to the same
    place learned of the platform (``reading.platform_model``), for a new run (``stages``) or its dry
    run (``pipeline validate``); None: ``batch.sizing = "fixed"``, the embedded emulator, no such
    run, or the default plan is as good."""
    if config.batch.sizing != "adaptive" or config.uses_embedded_emulator:
        return None
    profile = learned_profile(runs_base(config), config.api.url, config.to_dict())
    if profile is None:
        return None
    return plan_from_profile(
        total_bytes,
        profile,
        default=default,
        max_bytes=config.batch.max_bytes,
        concurrency=config.upload.concurrency,
        validate=config.batch.validate,
    )


def _last_activity(run_dir: Path) -> float:
    with contextlib.suppress(OSError):
        return (run_dir / JOURNAL_NAME).stat().st_mtime
    return 0.0


def _read_small_json(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        if path.stat().st_size <= MAX_PROFILE_BYTES:
            data = orjson.loads(path.read_bytes())
            return data if isinstance(data, dict) else None
    return None


def _fit(mb: list[float], seconds: list[float]) -> tuple[float, float] | None:
    """``seconds = base + per_mb x mb`` by least squares, both terms >= 0; ``None`` when the sizes
    hardly differ (the slope would be noise)."""
    if max(mb) < 1.2 * min(mb) or min(mb) <= 0:
        return None
    n = len(mb)
    mean_x, mean_y = sum(mb) / n, sum(seconds) / n
    var = sum((x - mean_x) ** 2 for x in mb)
    slope = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in zip(mb, seconds, strict=True)) / var)
    base = mean_y - slope * mean_x
    if base < 0:  # no fixed part: all of it per MB
        return 0.0, sum(y * x for x, y in zip(mb, seconds, strict=True)) / sum(x * x for x in mb)
    return base, slope


def _upload_mbps(batch: BatchState) -> float:
    if batch.upload_started_at is None or batch.uploaded_at is None or batch.uploaded_at <= batch.upload_started_at:
        return 0.0
    return batch.size / MB / (batch.uploaded_at - batch.upload_started_at)


def _busy_rate(uploads: list[tuple[float | None, float | None, int]]) -> float:
    """MB/s over the time at least one upload was in flight: all their bytes over the union of their
    spans (the rate the link gave this client, gaps between bursts left out)."""
    spans = sorted((start, end, size) for start, end, size in uploads if start is not None and end is not None)
    busy, reach, total = 0.0, float("-inf"), 0
    for start, end, size in spans:
        total += size
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    return total / MB / busy if busy > 0 else 0.0


def most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    """The most ``(start, end)`` spans open at one moment (one that ends as another starts: not open)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = open_now = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    return most


def _slots(spans: list[tuple[float, float]]) -> tuple[int, bool]:
    """The most spans open at once, and whether one opened within ``HANDOVER_S`` of another's close
    while all the others were open (a slot handed over: a queue). Ends sort before starts."""
    spans = [(start, max(start, end - DATE_SLACK_S)) for start, end in spans]  # a start at an end: no overlap
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = most_at_once(spans)
    if most >= len(spans):
        return most, False  # every execution ran at once: nothing waited
    open_now, last_end = 0, float("-inf")
    for t, step in events:
        if step > 0 and open_now == most - 1 and t - last_end <= HANDOVER_S:
            return most, True
        open_now += step
        if step < 0:
            last_end = t
    return most, False


def _upload_cap(throughput: Throughput | None) -> int | None:
    if not throughput or not throughput.get("throttled") or not throughput.get("timeline"):
        return None
    return max(1, int(throughput["timeline"][-1][1]))

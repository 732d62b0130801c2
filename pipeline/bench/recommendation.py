"""The bench's conclusion: the best end-to-end point, what limits it, and how long a given size
would take there.

The estimate scales what limits the run. When the uploads limit: the ramp of the adaptive limit
(until the first 20 % of the bytes were sent) and the time after the last upload are kept, the
other bytes go at the steady rate measured after the ramp. When the platform limits: its rate
(records finished over its busy span, in bytes) is scaled and the rest of the measured time kept.
``limit`` says which one it is: ``server_cap`` when uploads were answered 429/503, else
``platform`` when the platform finished records slower than they arrived, else ``link``.
"""

from __future__ import annotations

from pipeline.bench.measures import RAMP_SHARE
from pipeline.bench.sizes import show_duration, show_size
from pipeline.bench.types import Estimate, PointMeasures, Recommendation

PLATFORM_MARGIN = 0.9  # the platform limits when it finishes below 90 % of the upload rate
BOUND_TIE = 0.005  # points whose bounds are within 0.5 % of the smallest are all "best" by the bound

LIMIT_TEXT = {
    "link": "the link (the uploads' throughput)",
    "platform": "the platform's processing",
    "server_cap": "the server's limit on uploads in flight (429 answers)",
}


def _ok(point: PointMeasures) -> bool:
    return point["outcome"] == "succeeded" and point["bytes"] > 0


def rates(point: PointMeasures) -> tuple[float | None, float | None]:
    """(upload bytes/s, platform bytes/s) of a point."""
    upload = point["upload_mb_s"] * 1e6 if point["upload_mb_s"] else None
    per_record = point["bytes"] / point["records"] if point["records"] else 0
    platform = point["platform_records_s"] * per_record if point["platform_records_s"] else None
    return upload, platform


def limit_of(point: PointMeasures) -> str:
    if point["throttled"]:
        return "server_cap"
    upload, platform = rates(point)
    if upload and platform and platform < PLATFORM_MARGIN * upload:
        return "platform"
    return "link"


def estimate_s(point: PointMeasures, nbytes: int) -> float | None:
    """Seconds for ``nbytes`` at ``point``: the limiting rate scaled, the rest kept. When the
    uploads limit, the ramp (until the first 20 % of the bytes were sent) is kept as it is and the
    rest of the bytes go at the steady rate measured after it; the time after the last upload
    (the last executions' processing, the last polls) is kept too."""
    ramp, last, steady = point["ramp_end_s"], point["last_upload_end_s"], point["steady_upload_mb_s"]
    if limit_of(point) != "platform" and ramp is not None and last is not None and steady:
        after = max(0.0, point["end_to_end_s"] - last)
        return ramp + max(0.0, nbytes - RAMP_SHARE * point["bytes"]) / (steady * 1e6) + after
    upload, platform = rates(point)
    rate = min(r for r in (upload, platform, None) if r) if (upload or platform) else None
    if not rate:
        return None
    first = point["first_byte_s"] or 0.0
    rest = max(0.0, point["end_to_end_s"] - first - point["bytes"] / rate)
    return first + rest + nbytes / rate


def _words(point: PointMeasures, limit: str) -> str:
    upload, platform = rates(point)
    parts = []
    if upload:
        parts.append(f"uploads {upload / 1e6:.1f} MB/s")
    if platform:
        parts.append(f"platform {point['platform_records_s']:,} records/s")
    if point["throttled"]:
        parts.append(f"{point['throttled']} answers 429/503")
    return f"{LIMIT_TEXT[limit]} ({', '.join(parts)})" if parts else LIMIT_TEXT[limit]


def bound_best(points: list[PointMeasures]) -> list[str]:
    bounds = [(p["bound_s"], p["label"]) for p in points if p["bound_s"] is not None]
    if not bounds:
        return []
    least = min(b for b, _ in bounds)
    return [label for b, label in bounds if b <= least * (1 + BOUND_TIE)]


def recommend(points: list[PointMeasures], estimate_bytes: int | None) -> Recommendation:
    good = [p for p in points if _ok(p)]
    by_bound = bound_best(points)
    if not good:
        text = "No point succeeded: no recommendation (see each point's report for why)."
        return {"best": None, "best_settings": {}, "limit": None, "limit_text": None, "estimate": None,
                "bound_best": by_bound, "text": text}  # fmt: skip
    best = min(good, key=lambda p: p["end_to_end_s"])
    limit = limit_of(best)
    limit_text = _words(best, limit)
    mb_s = best["bytes"] / best["end_to_end_s"] / 1e6
    lead = "The best end-to-end point" if len(points) > 1 else "This run"
    text = (
        f"{lead}: {best['label']}, {show_duration(best['end_to_end_s'])} for {show_size(best['bytes'])} "
        f"({mb_s:.1f} MB/s end to end), limited by {limit_text}."
    )
    estimate: Estimate | None = None
    seconds = estimate_s(best, estimate_bytes) if estimate_bytes else None
    if estimate_bytes and seconds is not None:
        where = "at the best point" if len(points) > 1 else "with these settings"
        said = f"{show_size(estimate_bytes)}: about {show_duration(seconds)} {where}, limited by {LIMIT_TEXT[limit]}"
        estimate = {"bytes": estimate_bytes, "seconds": round(seconds, 1), "text": said}
        text += f" Estimate for {said}."
    if by_bound and len(points) > 1:
        agrees = "agrees" if best["label"] in by_bound else "differs: it says " + " or ".join(by_bound)
        text += f" The lower bound of these conditions {agrees}."
    return {
        "best": best["label"],
        "best_settings": best["settings"],
        "limit": limit,
        "limit_text": limit_text,
        "estimate": estimate,
        "bound_best": by_bound,
        "text": text,
    }

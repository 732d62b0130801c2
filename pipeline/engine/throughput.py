"""The report's ``throughput`` section, from the upload limiter's timeline and the poller's counts."""

from __future__ import annotations

from pipeline.client.limiter_snapshot import LimiterSnapshot
from pipeline.reporting.types import Throughput


def upload_rate(timeline: list[list[float]]) -> float | None:
    """MB/s from the first sample with an upload in flight to the last that added bytes."""
    start = next((t for t, _, flying, _ in timeline if flying > 0), None)
    if start is None or not timeline:
        return None
    sent = timeline[-1][3]
    last = next((t for t, _, _, done in timeline if done >= sent), None)  # when the last bytes were counted
    if not sent or last is None or last <= start:
        return None
    return round(sent / (last - start) / 1e6, 3)


def throughput_of(snapshot: LimiterSnapshot, *, poll_requests: int, poll_listings: int) -> Throughput:
    """The report's section: the timeline counted from the first sample (the client's start)."""
    timeline = [[round(s.t, 3), s.limit, s.in_flight, s.bytes_done] for s in snapshot.timeline]
    return {
        "max_concurrency": snapshot.maximum,
        "adaptive": snapshot.adaptive,
        "timeline": timeline,
        "peak_in_flight": snapshot.peak_in_flight,
        "throttled": snapshot.throttled,
        "pauses": snapshot.pauses,
        "upload_mb_s": upload_rate(timeline),
        "poll_requests": poll_requests,
        "poll_listings": poll_listings,
    }

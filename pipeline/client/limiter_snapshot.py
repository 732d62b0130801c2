"""What the upload limiter did, as values: the points of its timeline and its snapshot.

Apart from the ``limiter`` (which takes them): these are what the report (``engine/throughput``,
``report.json``, ``report.html``) and the live display read, with no state or time in them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LimiterSample:
    """One point of the timeline."""

    t: float  # monotonic seconds since the limiter started
    limit: int
    in_flight: int
    bytes_done: int  # bytes of the attempts completed so far


@dataclass(frozen=True, kw_only=True)
class LimiterSnapshot:
    """What the limiter did, for report.json, report.html and the live display."""

    adaptive: bool
    maximum: int
    limit: int
    in_flight: int
    waiting: int  # attempts waiting for a slot (or for the pause to end)
    paused_s: float  # seconds the pause still lasts (0: none)
    throttled: int  # 429/503 answers to upload attempts
    pauses: int  # pauses started (overlapping refusals extend one pause)
    bytes_done: int
    peak_in_flight: int
    timeline: tuple[LimiterSample, ...] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the timeline as ``[t, limit, in_flight, bytes_done]`` rows."""
        return {
            "adaptive": self.adaptive,
            "maximum": self.maximum,
            "limit": self.limit,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "paused_s": round(self.paused_s, 3),
            "throttled": self.throttled,
            "pauses": self.pauses,
            "bytes_done": self.bytes_done,
            "peak_in_flight": self.peak_in_flight,
            "timeline": [[s.t, s.limit, s.in_flight, s.bytes_done] for s in self.timeline],
        }

"""A line now and then while a point runs (a point of a real bench may last many minutes):
batches uploaded, executions done, every ``interval_s`` seconds, from the run's own events."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.engine.events import Event

HEARTBEAT_S = 30.0


class Heartbeat:
    """A ``RunOptions.on_event`` sink that says progress through ``say``; ``clock`` is patchable."""

    def __init__(
        self, say: Callable[[str], None], interval_s: float = HEARTBEAT_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.say, self.interval_s, self.clock = say, interval_s, clock
        self.started = self.last = clock()
        self.uploaded = self.finished = self.retries = 0
        self.sent_bytes = 0

    def __call__(self, event: str, fields: Mapping[str, Any]) -> None:
        if event == Event.BATCH_UPLOADED:
            self.uploaded += 1
            self.sent_bytes += int(fields.get("bytes") or 0)
        elif event == Event.EXECUTION_FINISHED:
            self.finished += 1
        elif event == Event.RETRY:
            self.retries += 1
        now = self.clock()
        if self.interval_s and now - self.last >= self.interval_s:
            self.last = now
            self.say(
                f"  {now - self.started:.0f} s: {self.uploaded} batches uploaded ({self.sent_bytes / 1e6:.0f} MB), "
                f"{self.finished} executions done, {self.retries} retries"
            )

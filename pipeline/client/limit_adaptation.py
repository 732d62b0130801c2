"""Where the upload limiter's limit goes: the throughput measured at each limit over epochs, the
ceilings that refusals and fruitless levels set, and when a ceiling is probed again.

Apart from the ``limiter``, which owns the slots, the waiting attempts and the shared pause, and
applies what is decided here (:class:`LimitAdaptation` returns the new limit; the limiter sets
it, samples it and tells it). A refused attempt makes the concurrency it started at a ceiling and
the limit goes just below it (the multiplicative decrease, see the limiter); then the limit

- **grows** (+1, the additive increase) while the aggregate throughput grows with it: the limit is
  measured over *epochs* (at least ``epoch_s`` and 2 completed attempts started at this limit),
  and only while it binds (an attempt had to wait for a slot, not for a pause). Throughput is
  Little's law over upload latency, ``X = C * bytes / busy_s`` (``C`` the mean attempts in flight
  over the epoch, ``bytes / busy_s`` the completed attempts' bytes over their time in flight): it
  is bytes completed per second, without the lumps of a few big uploads ending at once. After a
  +1, the limit grows again only if ``X`` rose by at least half of what one more connection
  would bring were the link not shared (``GAIN / (limit - 1)``); otherwise the +1 bought only
  latency (each upload slower, no more bytes per second: the signal of the Netflix
  concurrency-limits *gradient* limit, ``min_rtt / rtt``, read here as a throughput ratio) and
  the limit goes back by one and holds.
- **probes** a ceiling (a refused concurrency, or a level that brought no gain) only now and then:
  after ``probe_s`` (x1 to x1.5, jittered), doubled after each probe that fails, up to
  ``max_probe_s``; a probe that pays (an epoch at the ceiling, no refusal, more throughput)
  clears the ceiling. A server that accepts 2 uploads settles at 2 and is asked for 3 after
  about 30 s, then 60, 120, ... 300 (each failed probe costs one refusal and one pause).


Jitter is injectable (``rng``, the limiter's own): tests run on a fake clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Tuning:
    """The limiter's constants: the epochs and the probes (see the module docstring), the timeline's
    samples (see ``limiter``); tests shrink them."""

    epoch_s: float = 1.0  # an epoch lasts at least this long...
    epoch_attempts: int = 2  # ...and holds at least this many completed attempts started at its limit
    gain: float = 0.5  # a +1 must bring this fraction of a linear gain (1 / (limit - 1)) to go on
    probe_s: float = 30.0  # first wait before a ceiling is probed again
    max_probe_s: float = 300.0
    sample_s: float = 0.25
    max_samples: int = 2000

    def __post_init__(self) -> None:
        if self.epoch_s < 0 or self.epoch_attempts < 1 or self.gain < 0 or self.probe_s < 0:
            raise ValueError("Tuning: out of range")
        if self.max_probe_s < self.probe_s or self.sample_s <= 0 or self.max_samples < 4:
            raise ValueError("Tuning: out of range")


class LimitAdaptation:
    """The limit's epochs, ceilings and probes (see the module docstring). ``binds(now)``: does the
    limit bind now (an attempt waits for a slot, not for a pause)? An epoch that starts then has
    already said something about the limit."""

    def __init__(
        self, maximum: int, tuning: Tuning, rng: random.Random, now: float, binds: Callable[[float], bool]
    ) -> None:
        self.maximum, self._tuning, self._rng, self._binds = maximum, tuning, rng, binds
        self._rates: dict[int, float] = {}  # limit -> throughput measured there (smoothed)
        self.ceiling = maximum + 1  # growing to this level or above is a probe
        self._probe_at = -math.inf
        self._probe_wait = tuning.probe_s
        self._area, self._area_t = 0.0, now  # in-flight integral over time, since the epoch started
        self.new_epoch(now, 0)

    def integrate(self, now: float, in_flight: int) -> None:
        self._area += in_flight * max(0.0, now - self._area_t)
        self._area_t = now

    def new_epoch(self, now: float, in_flight: int) -> None:
        self.integrate(now, in_flight)
        self._epoch_start = now
        self._area = 0.0
        self._epoch_bytes = 0
        self._epoch_busy = 0.0
        self._epoch_done = 0
        self.limited = self._binds(now)  # the limit binds: this epoch says something about it

    def completed(self, size: int, busy_s: float) -> None:
        """An attempt started at the current limit completed: ``size`` bytes in ``busy_s``."""
        self._epoch_bytes += size
        self._epoch_busy += busy_s
        self._epoch_done += 1

    def _next_probe(self, now: float, *, failed: bool) -> None:
        """When a ceiling may be probed next: ``probe_s`` later, doubled after each failed probe."""
        if failed:
            self._probe_wait = min(self._tuning.max_probe_s, self._probe_wait * 2)
        self._probe_at = now + self._probe_wait * self._rng.uniform(1.0, 1.5)

    def refused(self, concurrency: int, probe: bool, now: float, limit: int) -> int:
        """The server refused ``concurrency`` attempts at once (``probe``: the refused one was a
        probe): that is a ceiling, and the new limit is just below it (never up: a refusal of an
        attempt started under an older, higher limit changes nothing more)."""
        refused_at = max(1, concurrency)
        self.ceiling = min(self.ceiling, refused_at)
        self._next_probe(now, failed=probe)
        return min(limit, refused_at - 1)

    def decide(self, now: float, limit: int, in_flight: int) -> int | None:
        """At the end of an epoch: the new limit, +1 when the last +1 paid, -1 (and a ceiling) when
        it did not; None when no epoch ended or the limit stays (a new epoch started then)."""
        t = self._tuning
        elapsed = now - self._epoch_start
        if elapsed < t.epoch_s or self._epoch_done < t.epoch_attempts:
            return None
        self.integrate(now, in_flight)
        concurrency = self._area / elapsed if elapsed > 0 else float(in_flight)
        rate = concurrency * self._epoch_bytes / self._epoch_busy if self._epoch_busy > 0 else 0.0
        limited = self.limited
        self.new_epoch(now, in_flight)
        if not limited:
            return None  # the limit did not bind: nothing learnt about it
        known = self._rates.get(limit)
        self._rates[limit] = rate if known is None else (known + rate) / 2
        probing = limit >= self.ceiling
        below = self._rates.get(limit - 1)
        if below is None or self._rates[limit] >= below * (1 + t.gain / max(1, limit - 1)):
            if probing:  # the probe paid: the ceiling is gone
                self.ceiling, self._probe_wait = self.maximum + 1, t.probe_s
            if limit < self.maximum and (limit + 1 < self.ceiling or now >= self._probe_at):
                return limit + 1
            return None
        # the last +1 brought latency, not throughput: back by one; that level is a ceiling now
        self.ceiling = min(self.ceiling, limit)
        self._next_probe(now, failed=probing)
        return limit - 1

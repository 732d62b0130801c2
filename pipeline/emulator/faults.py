"""Fault injection: parse a fault spec and make seeded, reproducible decisions.

Spec string: comma-separated ``kind=probability`` items, e.g.
``"throttle=0.1,error5xx=0.05,reset_before=0.02,drop_after=0.02,slow=0.1:2s,lost=0.01,failed=0.01,poll5xx=0.05"``.
The dict form takes the same kinds: ``{"throttle": 0.1, "slow": "0.1:2s"}``; ``slow`` also accepts
``(probability, seconds)`` or a bare probability (then the delay is 1 s).

Kinds and what they do:
- ``throttle``     upload answered 429 with ``Retry-After: <retry_after_s>``
- ``error5xx``     upload answered 500, 502 or 503 (chosen by the seeded RNG; 503 carries Retry-After)
- ``reset_before`` upload connection reset (RST) before the body is read; nothing is created
- ``drop_after``   body read, execution created, then the connection is closed with no answer
- ``slow``         upload answer delayed by the given duration (the execution exists meanwhile)
- ``lost``         the execution ends ``LOST`` (accepts nothing)
- ``failed``       the execution ends ``FAILED`` with ``error.message`` (accepts nothing)
- ``poll5xx``      ``GET .../executions/{id}`` answered 500, 502 or 503

Each decision point has its own RNG seeded from ``(seed, point)``: the decisions for uploads
depend only on the seed and the order of uploads, those for polls on the order of polls.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("throttle", "error5xx", "reset_before", "drop_after", "slow", "lost", "failed", "poll5xx")
DEFAULT_SLOW_S = 1.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """Probability of each fault kind (0 = never, 1 = always) and the ``slow`` delay."""

    throttle: float = 0.0
    error5xx: float = 0.0
    reset_before: float = 0.0
    drop_after: float = 0.0
    slow: float = 0.0
    slow_s: float = DEFAULT_SLOW_S
    lost: float = 0.0
    failed: float = 0.0
    poll5xx: float = 0.0

    def active(self) -> dict[str, float]:
        """The kinds with a non-zero probability."""
        return {k: getattr(self, k) for k in KINDS if getattr(self, k) > 0}


def _duration(text: str, item: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"fault {item!r}: bad duration {text!r} (use e.g. 2s or 500ms)")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value


def _probability(value: Any, item: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"fault {item!r}: probability {value!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"fault {item!r}: probability {p} is not between 0 and 1")
    return p


def parse_faults(spec: str | Mapping[str, Any] | FaultPlan | None) -> FaultPlan:
    """Parse a spec string or dict into a ``FaultPlan``. Raises ``ValueError`` naming the bad item."""
    if spec is None:
        return FaultPlan()
    if isinstance(spec, FaultPlan):
        return spec
    items: list[tuple[str, Any, str]] = []
    if isinstance(spec, str):
        for raw in spec.split(","):
            raw = raw.strip()
            if not raw:
                continue
            if "=" not in raw:
                raise ValueError(f"fault {raw!r}: expected kind=probability")
            kind, value = (s.strip() for s in raw.split("=", 1))
            items.append((kind, value, raw))
    elif isinstance(spec, Mapping):
        items = [(str(k), v, f"{k}={v}") for k, v in spec.items()]
    else:
        raise ValueError(f"faults: expected a spec string or a dict, got {type(spec).__name__}")
    values: dict[str, float] = {}
    for kind, value, item in items:
        if kind not in KINDS:
            raise ValueError(f"fault {item!r}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
        if kind == "slow":
            if isinstance(value, (tuple, list)) and len(value) == 2:
                values["slow"] = _probability(value[0], item)
                values["slow_s"] = float(value[1])
                continue
            if isinstance(value, str) and ":" in value:
                prob, dur = value.split(":", 1)
                values["slow"] = _probability(prob, item)
                values["slow_s"] = _duration(dur, item)
                continue
        values[kind] = _probability(value, item)
    return FaultPlan(**values)


class FaultDice:
    """Seeded decisions for each decision point (upload, execution fate, poll)."""

    def __init__(self, plan: FaultPlan, seed: int = 0) -> None:
        self.plan = plan
        self._upload = random.Random(f"{seed}:upload")
        self._fate = random.Random(f"{seed}:fate")
        self._poll = random.Random(f"{seed}:poll")

    def upload_fault(self) -> tuple[str | None, int]:
        """The fault for one upload: (kind or None, 5xx status). Always draws the same numbers."""
        rng, plan = self._upload, self.plan
        rolls = [rng.random() for _ in range(4)]
        status = rng.choice((500, 502, 503))
        for kind, roll in zip(("throttle", "error5xx", "reset_before", "drop_after"), rolls, strict=True):
            if roll < getattr(plan, kind):
                return kind, status
        return None, status

    def upload_delay(self) -> float:
        """Seconds to delay an upload's answer (the ``slow`` fault), 0 when not slow."""
        return self.plan.slow_s if self._upload.random() < self.plan.slow else 0.0

    def fate(self) -> str | None:
        """``"LOST"``, ``"FAILED"`` or ``None`` for a new execution."""
        lost, failed = self._fate.random(), self._fate.random()
        if lost < self.plan.lost:
            return "LOST"
        if failed < self.plan.failed:
            return "FAILED"
        return None

    def poll_fault(self) -> int | None:
        """A 5xx status for one execution poll, or ``None``."""
        roll, status = self._poll.random(), self._poll.choice((500, 502, 503))
        return status if roll < self.plan.poll5xx else None


class RateLimiter:
    """A token bucket per API token: ``rate`` requests per second, bursts up to ``max(1, rate)``."""

    def __init__(self, rate: float, clock: Any) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str) -> float:
        """Take one token. Returns 0 when allowed, else the seconds until a token is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

"""What no client can beat on a link and a platform of known shape (issue 12's lower bound).

``lower_bound_s`` is the one formula, shared by ``benchmarks/run.py --scenario wan`` and the bench:
``max(S / usable_link + base, base + L * per_record / slots) + latency``. ``point_bound_s`` is the
same reasoning for one sweep point: a client limited to ``concurrency`` uploads cannot use more
than that many connections, and batches of ``records / batches`` records make the platform start
only after the first batch and end a batch's processing after the last byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class Shape(Protocol):
    """A link and a platform (``benchmarks/wan.WanParams`` and ``Conditions`` both are)."""

    @property
    def latency_ms(self) -> float: ...
    @property
    def conn_mbps(self) -> float: ...
    @property
    def uplink_mbps(self) -> float: ...
    @property
    def slots(self) -> int: ...
    @property
    def base_s(self) -> float: ...
    @property
    def per_record_us(self) -> float: ...
    @property
    def max_uploads(self) -> int: ...


@dataclass(frozen=True, kw_only=True)
class Conditions:
    """The emulator's conditions in the bound's units (0 MB/s: no cap)."""

    latency_ms: float
    conn_mbps: float
    uplink_mbps: float
    slots: int
    base_s: float
    per_record_us: float
    max_uploads: int = 0


@dataclass(frozen=True)
class BoundTerms:
    """The two limits and the latency, seconds: the bound is ``max(link, platform) + latency``."""

    link_s: float
    platform_s: float
    latency_s: float

    @property
    def total_s(self) -> float:
        return max(self.link_s, self.platform_s) + self.latency_s

    @property
    def limit(self) -> str:
        """``link`` or ``platform``: the larger term."""
        return "link" if self.link_s >= self.platform_s else "platform"


def usable_link_mbps(shape: Shape, connections: float = math.inf) -> float:
    """What the link gives a client with at most ``connections`` uploads at once (inf: any number),
    within the server's cap on uploads in flight; ``inf`` when nothing caps it."""
    per_connection = shape.conn_mbps or math.inf
    conns = min(connections, shape.max_uploads or math.inf)
    return min(shape.uplink_mbps or math.inf, per_connection * conns)


def bound_terms(shape: Shape, nbytes: int, records: int) -> BoundTerms:
    link = nbytes / (usable_link_mbps(shape) * 1e6) + shape.base_s
    platform = shape.base_s + records * shape.per_record_us / 1e6 / shape.slots
    return BoundTerms(link, platform, shape.latency_ms / 1000)


def lower_bound_s(shape: Shape, nbytes: int, records: int) -> float:
    """``max(S / usable_link + base, base + L * per_record / slots) + latency``: the bytes must
    cross the link and the last execution still takes ``base`` after its bytes; or the records must
    be processed by the slots; plus one request's latency. No client can end sooner."""
    return bound_terms(shape, nbytes, records).total_s


def point_terms(shape: Shape, nbytes: int, records: int, *, concurrency: int, batches: int) -> BoundTerms:
    """The bound of one client setting: at most ``min(concurrency, batches)`` connections; the last
    batch (``records / batches`` records) is processed after its last byte; the slots do
    ``batches`` times ``base`` plus every record's time, and no execution is shorter than one batch."""
    batches = max(1, batches)
    per_batch = records / batches * shape.per_record_us / 1e6
    link = nbytes / (usable_link_mbps(shape, min(concurrency, batches)) * 1e6) + shape.base_s + per_batch
    work = (batches * shape.base_s + records * shape.per_record_us / 1e6) / min(shape.slots, batches)
    return BoundTerms(link, max(shape.base_s + per_batch, work), shape.latency_ms / 1000)

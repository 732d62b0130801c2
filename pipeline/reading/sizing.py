"""Batch sizes: how big each uploaded body is, decided from the inputs and the config alone.

100 MB is the API's ceiling, not a target. With few, big batches, one batch per connection takes
the whole run, the platform starts processing only once the first 100 MB arrived, and a link whose
per-connection rate is a fraction of its capacity stays half empty. So, with ``batch.sizing =
"adaptive"`` (the default), a run of ``S`` bytes is cut into ``n`` batches,

    n = max(ceil(S / max_bytes), min(MIN_BATCHES, upload.concurrency))

the first two smaller than the rest (a quarter and a half of the others' target ``x``), so that the
first upload starts after a few MB are read and checked, not 100, and the platform gets work early:

    x = min(max_bytes, 1.005 x S / (n - 1.25)),   targets x/4, x/2, x, x, ...

each target at least ``MIN_BATCH_BYTES`` (the platform advises more than 1,000 records per file:
1,000 records of 5 kB), never over ``batch.max_bytes`` (a record larger than its batch's target but
within ``max_bytes`` gets a batch of its own). Why 8 and no more: every execution costs the platform
a fixed time of its own; more batches fill a link that needs many connections, fewer spare a
platform with few processing slots; 8 keeps both within reach (``benchmarks/run.py --scenario
wan``). Large inputs are cut at ``max_bytes`` after the two smaller first batches.

The targets are a pure function of the inputs' sizes and the config, both journaled when a run
starts and checked on ``resume`` (an input whose size changed is refused), and they are drawn in
batch order, so a resume re-plans the very same batches. A ``.gz`` input has no known decoded size:
a run with one is cut at ``max_bytes`` (after the same two smaller first batches).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.reading.gzstream import is_gzip
from pipeline.reading.sources import Input, size_of

MIN_BATCHES = 8
MIN_BATCH_BYTES = 5_000_000
#: batches are cut at a record's end below their target, so each is a little short of it: without
#: some room, eight batches would leave a ninth of a few records
SLACK = 0.005
#: the first batches' share of the others' target
RAMP = (0.25, 0.5)


@dataclass
class BatchSizes:
    """The target of each next batch of a run, in order: ``first`` ones, then ``then`` for ever.

    One instance is shared by the cutters of a run's files (batches are cut in file order)."""

    first: tuple[int, ...]
    then: int
    _drawn: int = field(default=0, repr=False)

    def next(self) -> int:
        n, self._drawn = self._drawn, self._drawn + 1
        return self.first[n] if n < len(self.first) else self.then


def plan_sizes(total_bytes: int | None, *, max_bytes: int, concurrency: int, sizing: str) -> BatchSizes:
    """The run's batch targets (see the module docstring); ``total_bytes`` None: size unknown."""
    if sizing == "fixed":
        return BatchSizes((), max_bytes)
    floor = min(MIN_BATCH_BYTES, max_bytes)
    if total_bytes is None or total_bytes <= 0:
        x = max_bytes
    else:
        n = max(math.ceil(total_bytes / max_bytes), min(MIN_BATCHES, concurrency))
        shares = n - len(RAMP) + sum(RAMP) if n > len(RAMP) else n
        x = max(min(math.ceil(total_bytes * (1 + SLACK) / shares), max_bytes), floor)
        if n <= len(RAMP):
            return BatchSizes((), x)
    return BatchSizes(tuple(max(floor, math.ceil(x * share)) for share in RAMP), x)


def total_input_bytes(paths: Sequence[Input]) -> int | None:
    """The bytes the inputs hold, or ``None`` when one of them is compressed (decoded size unknown),
    is stdin, or cannot be sized (the reader reports it)."""
    total = 0
    for path in paths:
        size = None if is_gzip(path) else size_of(path)
        if size is None:
            return None
        total += size
    return total

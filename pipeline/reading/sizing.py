"""Batch sizes: how big each uploaded body is, decided from the inputs and the config alone.

100 MB is the API's ceiling, not a target. With few, big batches, one batch per connection takes
the whole run, the platform starts processing only once the first 100 MB arrived, and a link whose
per-connection rate is a fraction of its capacity stays half empty. So, with ``batch.sizing =
"adaptive"`` (the default), a run of ``S`` bytes is cut into at least ``MIN_BATCHES`` batches
(never more than ``upload.concurrency``, the most uploads in flight, asks for), each at most
``batch.max_bytes`` and at least ``MIN_BATCH_BYTES`` (the platform advises more than 1,000 records
per file: 1,000 records of 5 kB):

    limit = clamp(ceil(1.005 x S / max(ceil(S / max_bytes), min(MIN_BATCHES, concurrency))),
                  MIN_BATCH_BYTES, max_bytes)

Why 8 and no more: every execution costs the platform a fixed time of its own; more batches fill a
link that needs many connections, fewer spare a platform with few processing slots. 8 keeps both
within reach (measured in ``benchmarks/run.py --scenario wan``). Large inputs (``S`` over 8 x
``max_bytes``) are cut at ``max_bytes`` as before: the uploads in flight fill the link.

The limit is a pure function of the inputs' sizes and the config, both journaled when a run starts
and checked on ``resume`` (an input whose size changed is refused), so a resume re-plans the very
same batches. A ``.gz`` input has no known decoded size: a run with one is cut at ``max_bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

MIN_BATCHES = 8
MIN_BATCH_BYTES = 5_000_000
#: batches are cut at a record's end below the limit, so each is a little short of it: without some
#: room, eight batches would leave a ninth of a few records
SLACK = 0.005


def batch_limit(total_bytes: int | None, *, max_bytes: int, concurrency: int, sizing: str) -> int:
    """The largest body of this run's batches (see the module docstring); ``None``: size unknown."""
    if sizing == "fixed" or total_bytes is None or total_bytes <= 0:
        return max_bytes
    batches = max(math.ceil(total_bytes / max_bytes), min(MIN_BATCHES, concurrency))
    even = math.ceil(total_bytes / batches * (1 + SLACK))
    return max(min(even, max_bytes), min(MIN_BATCH_BYTES, max_bytes))


def total_input_bytes(paths: Sequence[Path]) -> int | None:
    """The bytes the inputs hold, or ``None`` when one of them is compressed (decoded size unknown)."""
    total = 0
    for path in paths:
        if path.suffix.lower() == ".gz":
            return None
        try:
            total += path.stat().st_size
        except OSError:
            return None  # the reader reports it
    return total

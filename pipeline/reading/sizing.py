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
within ``max_bytes`` gets a batch of its own). Why 10: every execution costs the platform a fixed
time of its own; more batches fill a link that needs many connections and spread the records over
more processing slots, fewer spare a platform with few slots. Over the three WAN scenarios and 18
other draws of their parameters (``benchmarks/plan_sim.py``, a model of the reader, the link and
the slots, ranking plans; ``benchmarks/run.py --scenario wan`` measures them), 10 came closer to
the bound than 8 in 19 of 21, and was at most 8 % further in the other two (2 and 3 slots, about
1 s per execution). 16 would be closer still on average but up to 48 % further with 2 slots: the
count that suits a platform is learned only from its executions, too late for a small run. Large
inputs are cut at ``max_bytes`` after the two smaller first batches.

The targets are a pure function of the inputs' sizes and the config, both journaled when a run
starts and checked on ``resume`` (an input whose size changed is refused), and they are drawn in
batch order, so a resume re-plans the very same batches. The plan itself is journaled too
(``BatchSizes.describe``, the ``batch_plan`` event) and a resume draws from the journaled one, so
that a later change of these constants never changes the batches of a run already under way; a
journal from before that event was planned with ``LEGACY_MIN_BATCHES``.

A ``.gz`` input has no known decoded size: a run with one is cut at ``max_bytes`` (after the same
two smaller first batches).

This is the plan of a run that knows nothing of the platform. When an earlier run to the same place
learned its slots and processing time, ``platform_model.plan_from_profile`` may fit the sizes to
them instead (journaled the same way, with the profile).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from pipeline.reading.gzstream import is_gzip
from pipeline.reading.sources import Input, size_of

MIN_BATCHES = 10
#: what runs journaled before the plan itself was (no ``batch_plan`` event) were planned with
LEGACY_MIN_BATCHES = 8
MIN_BATCH_BYTES = 5_000_000
#: batches are cut at a record's end below their target, so each is a little short of it: without
#: some room, eight batches would leave a ninth of a few records
SLACK = 0.005
#: the first batches' share of the others' target
RAMP = (0.25, 0.5)
#: inputs of fewer small files than this are not worth a warning (``small_files_note``)
SMALL_FILES_AT_LEAST = 20


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

    def describe(self) -> PlanDescription:
        """What the journal keeps of the plan (``from_description`` reads it back)."""
        return {"first": list(self.first), "then": self.then}

    @classmethod
    def from_description(cls, described: Any) -> BatchSizes | None:
        """The plan a journal kept, drawn from the start; ``None`` when it is not one."""
        if not isinstance(described, dict):
            return None
        first, then = described.get("first"), described.get("then")
        if not isinstance(first, list) or not all(_positive(x) for x in first) or not isinstance(then, int):
            return None
        return cls(tuple(first), then) if _positive(then) else None


class PlanDescription(TypedDict):
    first: list[int]
    then: int


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def plan_sizes(
    total_bytes: int | None, *, max_bytes: int, concurrency: int, sizing: str, min_batches: int = MIN_BATCHES
) -> BatchSizes:
    """The run's batch targets (see the module docstring); ``total_bytes`` None: size unknown.
    ``min_batches``: ``LEGACY_MIN_BATCHES`` for a run journaled before its plan was."""
    if sizing == "fixed":
        return BatchSizes((), max_bytes)
    floor = min(MIN_BATCH_BYTES, max_bytes)
    if total_bytes is None or total_bytes <= 0:
        x = max_bytes
    else:
        n = max(math.ceil(total_bytes / max_bytes), min(min_batches, concurrency))
        shares = n - len(RAMP) + sum(RAMP) if n > len(RAMP) else n
        x = max(min(math.ceil(total_bytes * (1 + SLACK) / shares), max_bytes), floor)
        if n <= len(RAMP):
            return BatchSizes((), x)
    return BatchSizes(tuple(max(floor, math.ceil(x * share)) for share in RAMP), x)


def planned_count(sizes: BatchSizes, total_bytes: int) -> int:
    """How many batches the plan cuts ``total_bytes`` of one file into (a fresh draw of it)."""
    draw, left, n = BatchSizes(sizes.first, sizes.then), total_bytes, 0
    while left > 0:
        left -= draw.next()
        n += 1
    return n


def small_files_note(paths: Sequence[Input], sizes: BatchSizes, total_bytes: int | None) -> str | None:
    """A warning when the inputs are many files much smaller than the plan's batches, or ``None``.

    A batch holds records of one file only, so each small file is an execution of its own, and the
    platform pays its fixed time per execution once per file (``benchmarks/small_files.py``,
    4 slots and 1 s per execution: 100 files of 3 MB took 27.9 s, the same 300 MB in one file 6.4 s)."""
    if not total_bytes or len(paths) < SMALL_FILES_AT_LEAST:
        return None
    known = [s for s in (size_of(p) for p in paths) if s is not None]
    small = sorted(s for s in known if s < sizes.then / 2)
    would = planned_count(sizes, total_bytes)
    if len(small) < SMALL_FILES_AT_LEAST or len(paths) < 2 * would:
        return None
    typical = small[len(small) // 2]
    return (
        f"{len(paths):,} input files, {len(small):,} of them under half a batch ({_mb(typical)} "
        f"against {_mb(sizes.then)} batches): a batch holds one file's records, so this run "
        f"makes at least {len(paths):,} executions where {would:,} would do, and the platform takes its "
        "fixed time per execution for each; concatenating the files first (CSV: one header) avoids it"
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size / 1e3:,.1f} kB"


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

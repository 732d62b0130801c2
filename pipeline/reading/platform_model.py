"""Batch sizes planned from what a previous run learned of the platform and the link.

The default plan (``sizing.plan_sizes``) must suit every platform, since a first run knows none:
about 10 batches, the first two smaller. Against a platform with few processing slots and a large
fixed time per execution, that is too many executions (4 slots and 1 s each: 10 executions cost 2.5
s of fixed time per slot where 4, one per slot, would cost 1 s); against one with 30 slots, too
few. A run that ended tells what it met (``engine.platform_profile`` reads it off its executions into a
:class:`PlatformProfile`: the slots seen busy at once, the time of an execution as ``base + s_per_mb
x MB``, the fastest upload and the aggregate rate, a cap on uploads in flight). The next run to the
same place (API URL, datamart, document type) plans from it: a few shapes are each played through a
model of the run, and the one that ends first is kept (of those within ``NEAR`` of it, the one with
the fewest batches: the model sees no cost per request), if it beats the default plan's own
modelled end by ``MIN_GAIN``; otherwise the default plan stands.

The model (:func:`modelled_end`) is the one of ``benchmarks/plan_sim.py``: batches become ready as
the reader reaches them; at most ``uploads`` go at once, each at ``min(conn, link / in flight)``;
each uploaded batch then takes the first free slot, in order of arrival (``base + s_per_mb x MB``).
It ignores start-up, polls and latency, which all shapes pay alike.

The shapes (:func:`candidate_shapes`) are multiples of the slots: ``m x slots`` batches of one size,
or with the first ``slots`` of them smaller (a quarter or a half of the others, or what is left when
the others are ``max_bytes``): each slot starts on a small batch as soon as the first bytes are in,
and gets its large one while it works. Every batch stays within
``MIN_BATCH_BYTES`` and ``max_bytes``, and no shape has more than ``MAX_SHAPE_BATCHES``; inputs
larger than ``MAX_MODELLED`` batches of ``max_bytes`` keep the default plan (cut at ``max_bytes``:
the shape no longer matters).

The plan chosen is journaled with the profile it came from (``batch_plan``), and a resume draws from
the journaled plan: a profile learned meanwhile never changes a run under way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

from pipeline.reading import sizing
from pipeline.reading.sizing import SLACK, BatchSizes

MB = 1_000_000
#: a learned plan must end at least this much sooner than the default one, in the model
MIN_GAIN = 0.05
#: shapes within this much of the best modelled end count as good as it (the fewest batches wins)
NEAR = 0.03
#: inputs of more batches of ``max_bytes`` than this keep the default plan
MAX_MODELLED = 64
#: shapes of more batches than this are not modelled (a platform of hundreds of slots)
MAX_SHAPE_BATCHES = 256
#: how many uploads the model lets go at once (the limiter starts there: ``client.limiter.START_LIMIT``)
MODEL_UPLOADS = 8
#: the reader's pace in the model, MB/s, validating or not (a quiet 2-core machine reads faster)
READER_MBPS = {True: 250.0, False: 600.0}
SMALL_SHARES = (0.25, 0.5)


class ProfileJson(TypedDict):
    slots: int
    slots_exact: bool
    base_s: float
    s_per_mb: float
    conn_mbps: float
    link_mbps: float
    max_uploads: int | None
    learned_from: str


@dataclass(frozen=True)
class PlatformProfile:
    """What a run saw of the platform and the link (``engine.platform_profile.profile_of``)."""

    slots: int  # executions seen processing at once
    slots_exact: bool  # an execution waited for a slot: there are no more; False: at least ``slots``
    base_s: float  # an execution's processing time: ``base_s + s_per_mb x MB`` of its body
    s_per_mb: float
    conn_mbps: float  # the fastest single upload
    link_mbps: float  # the aggregate upload rate, first upload to last
    max_uploads: int | None  # the server refused more uploads at once than this (429/503); None: no cap seen
    learned_from: str  # the run id

    def to_json(self) -> ProfileJson:
        return {
            "slots": self.slots,
            "slots_exact": self.slots_exact,
            "base_s": round(self.base_s, 4),
            "s_per_mb": round(self.s_per_mb, 6),
            "conn_mbps": round(self.conn_mbps, 3),
            "link_mbps": round(self.link_mbps, 3),
            "max_uploads": self.max_uploads,
            "learned_from": self.learned_from,
        }

    @classmethod
    def from_json(cls, data: Any) -> PlatformProfile | None:
        """The profile a report or a journal kept; ``None`` when it is not one (or not plausible)."""
        if not isinstance(data, dict):
            return None
        try:
            cap = data.get("max_uploads")
            profile = cls(
                slots=int(data["slots"]),
                slots_exact=bool(data["slots_exact"]),
                base_s=float(data["base_s"]),
                s_per_mb=float(data["s_per_mb"]),
                conn_mbps=float(data["conn_mbps"]),
                link_mbps=float(data["link_mbps"]),
                max_uploads=None if cap is None else int(cap),
                # a run id, printed in summaries: nothing a terminal would act on, however the file was edited
                learned_from="".join(c for c in str(data["learned_from"]) if c.isprintable())[:200],
            )
        except (KeyError, TypeError, ValueError):
            return None
        return profile if profile.plausible() else None

    def plausible(self) -> bool:
        finite = all(math.isfinite(v) for v in (self.base_s, self.s_per_mb, self.conn_mbps, self.link_mbps))
        return (
            finite
            and 1 <= self.slots <= 10_000
            and self.base_s >= 0
            and self.s_per_mb >= 0
            and self.conn_mbps > 0
            and self.link_mbps > 0
            and (self.max_uploads is None or self.max_uploads >= 1)
        )


class LearnedBasis(TypedDict):
    """What the journal (``batch_plan``'s ``learned``) and the report keep of a learned plan."""

    profile: ProfileJson
    shape: str
    modelled_s: float
    default_modelled_s: float


def told_fields(learned: LearnedBasis) -> dict[str, Any]:
    """The fields of the ``batch_plan`` event (what the run prints, and ``pipeline validate``)."""
    return {
        "shape": learned["shape"],
        "learned_from": learned["profile"]["learned_from"],
        "modelled_s": learned["modelled_s"],
        "default_modelled_s": learned["default_modelled_s"],
    }


@dataclass(frozen=True)
class LearnedPlan:
    """A plan chosen from a profile, with the model's ends of it and of the default plan."""

    sizes: BatchSizes
    shape: str  # e.g. "8 batches, the first 4 at 0.25 of the others"
    modelled_s: float
    default_modelled_s: float
    profile: PlatformProfile

    def describe(self) -> LearnedBasis:
        return {
            "profile": self.profile.to_json(),
            "shape": self.shape,
            "modelled_s": self.modelled_s,
            "default_modelled_s": self.default_modelled_s,
        }


def plan_from_profile(
    total_bytes: int | None,
    profile: PlatformProfile,
    *,
    default: BatchSizes,
    max_bytes: int,
    concurrency: int,
    validate: bool,
) -> LearnedPlan | None:
    """The best shape for this profile, or ``None`` when the default plan is as good (or the input
    too large, or of unknown size, to model)."""
    if not total_bytes or total_bytes > MAX_MODELLED * max_bytes:
        return None
    uploads = min(concurrency, MODEL_UPLOADS, profile.max_uploads or concurrency)
    reader = READER_MBPS[validate]

    def end(sizes: BatchSizes) -> float:
        return modelled_end(drawn_mb(sizes, total_bytes), profile, uploads=uploads, reader_mbps=reader)

    default_s = end(default)
    modelled = [
        (end(sizes), shape, sizes) for shape, sizes in candidate_shapes(total_bytes, profile.slots, max_bytes=max_bytes)
    ]
    if not modelled:
        return None
    best_s = min(m[0] for m in modelled)
    # the fewest batches within NEAR of the best: the model sees no cost per request, the platform does
    chosen = next(m for m in modelled if m[0] <= best_s * (1 + NEAR))
    if chosen[0] > default_s * (1 - MIN_GAIN):
        return None
    return LearnedPlan(chosen[2], chosen[1], round(chosen[0], 3), round(default_s, 3), profile)


def candidate_shapes(total_bytes: int, slots: int, *, max_bytes: int) -> Iterator[tuple[str, BatchSizes]]:
    """``m x slots`` batches (m = 1..4), of one size or with the first ``slots`` smaller: a quarter
    or a half of the others, or what is left when the others are ``max_bytes`` (fewer executions
    than halves allow, on a platform with few slots and a large input)."""
    floor = min(sizing.MIN_BATCH_BYTES, max_bytes)
    room = total_bytes * (1 + SLACK)
    for m in (1, 2, 3, 4):
        n = m * slots
        if n > MAX_SHAPE_BATCHES:
            return
        for share in (1.0, *SMALL_SHARES) if m > 1 else (1.0,):
            small = slots if share < 1 else 0
            x = math.ceil(room / (small * share + n - small))
            first = (math.ceil(x * share),) * small
            if x > max_bytes or min(first, default=x) < floor:
                continue
            label = f"{n} batches" + (f", the first {small} at {share:g} of the others" if small else "")
            yield label, BatchSizes(first, x)
        rest = math.ceil((room - (n - slots) * max_bytes) / slots)
        if m > 1 and floor <= rest <= max_bytes * 0.8 and rest * slots + (n - slots) * max_bytes >= room:
            label = f"{n} batches: the first {slots} of {rest / MB:.0f} MB, the others of max_bytes"
            yield label, BatchSizes((rest,) * slots, max_bytes)


def drawn_mb(sizes: BatchSizes, total_bytes: int) -> list[float]:
    """The batches (MB) a plan cuts ``total_bytes`` into: its targets in order, the last one short."""
    draw = BatchSizes(sizes.first, sizes.then)  # a fresh copy: drawing moves it on
    out: list[float] = []
    left = total_bytes
    while left > 0:
        size = min(draw.next(), left)
        out.append(size / MB)
        left -= size
    return out


def modelled_end(sizes_mb: list[float], profile: PlatformProfile, *, uploads: int, reader_mbps: float) -> float:
    """When the last execution of these batches would end (seconds from the first byte read)."""
    spans = modelled_spans(sizes_mb, profile, uploads=uploads, reader_mbps=reader_mbps)
    return max((end for _, _, end in spans), default=0.0)


def modelled_spans(
    sizes_mb: list[float], profile: PlatformProfile, *, uploads: int, reader_mbps: float
) -> list[tuple[float, float, float]]:
    """Each batch's ``(arrival, start, end)`` in the model: its bytes in, its slot taken, its end."""
    ready, read = [], 0.0
    for size in sizes_mb:
        read += size
        ready.append(read / reader_mbps)
    arrived = _upload_ends(sizes_mb, ready, profile, max(1, uploads))
    free = [0.0] * profile.slots
    spans = [(0.0, 0.0, 0.0)] * len(sizes_mb)
    for i in sorted(range(len(sizes_mb)), key=arrived.__getitem__):
        slot = min(range(len(free)), key=free.__getitem__)
        start = max(free[slot], arrived[i])
        free[slot] = start + profile.base_s + profile.s_per_mb * sizes_mb[i]
        spans[i] = (arrived[i], start, free[slot])
    return spans


def _upload_ends(sizes_mb: list[float], ready: list[float], profile: PlatformProfile, uploads: int) -> list[float]:
    """Each batch's upload end: taken in order when ready and fewer than ``uploads`` are in flight,
    the link shared equally (each at most ``conn_mbps``). Event by event: exact, and n^2 at most."""
    ends = [0.0] * len(sizes_mb)
    left = list(sizes_mb)
    flight: list[int] = []
    t, nxt = 0.0, 0
    while nxt < len(sizes_mb) or flight:
        while nxt < len(sizes_mb) and len(flight) < uploads and ready[nxt] <= t:
            flight.append(nxt)
            nxt += 1
        if not flight:
            t = ready[nxt]
            continue
        rate = min(profile.conn_mbps, profile.link_mbps / len(flight))
        finish = min(left[i] for i in flight) / rate
        step = min(finish, ready[nxt] - t) if nxt < len(sizes_mb) and len(flight) < uploads else finish
        step = max(step, 0.0)
        t += step
        for i in list(flight):
            left[i] -= rate * step
            if left[i] <= 1e-9:
                ends[i] = t
                flight.remove(i)
    return ends

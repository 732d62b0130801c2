"""Synthetic valid documents of every document type, written as a stream to one input file.

The reader needs a file (it cuts byte ranges and re-reads them on a retry), so the documents are
written once, in chunks of lines (memory stays flat whatever the size), to the bench's private run
directory; the runner deletes the file after the last point. Everything but the identifiers is
drawn from ``seed`` (the same seed gives the same sizes and values); every record carries its own
identifier, ``pipeline-bench-<run_id>-<n>``, recognisably synthetic and unique to the bench run,
which is what ``cleanup`` deletes. Sizes spread around ``record_bytes`` (log-normal, as real
exports do), by a filler in a free-form field of the type; the deletion and association types have
no free-form field and keep their natural size (60-200 bytes).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline import formats

ID_PREFIX = "pipeline-bench-"
#: Each chunk written at once: a few hundred KB whatever the record size.
CHUNK_RECORDS = 1000
#: Spread of the record sizes (sigma of the log-normal): most records within 0.6x-1.6x the median.
SIZE_SPREAD = 0.35
BASE_TS_MS = 1_764_547_200_000  # 2025-12-01T00:00:00Z: activities of a plausible recent day
CSV_HEADER = [
    "operation",
    "expiration_duration",
    "compartment_id",
    "user_account_id",
    "segment_technical_name",
    "data_bag",
]

#: The document types whose records create user points (and so something ``cleanup`` removes).
CREATING_TYPES = frozenset(
    {"USER_ACTIVITY", "USER_PROFILE", "USER_SEGMENT", "USER_CHOICE", "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS"}
)


def identifier(run_id: str, n: int) -> str:
    """The ``n``-th synthetic user account id of a bench run."""
    return f"{ID_PREFIX}{run_id}-{n}"


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What to generate: the type and mime type, a size in bytes or a record count (the first
    reached ends the file), the median record size, the seed and the identifiers' parts."""

    document_type: str
    mime_type: str = formats.NDJSON
    size_bytes: int = 0
    records: int = 0
    record_bytes: int = 300
    seed: int = 0
    run_id: str
    compartment_id: str = "1"


@dataclass(frozen=True)
class Generated:
    """The input file written: its path, bytes, records (one identifier each)."""

    path: Path
    bytes: int
    records: int


class _Draw:
    """The seeded random values of one file: target sizes, picks, filler text."""

    def __init__(self, seed: int, record_bytes: int) -> None:
        self.rng = random.Random(seed)
        self.random = self.rng.random
        self.mu = math.log(max(1, record_bytes)) - SIZE_SPREAD**2 / 2  # the mean is record_bytes
        alphabet = string.ascii_letters + string.digits
        self.pool = "".join(self.rng.choice(alphabet) for _ in range(1 << 16))

    def size(self) -> int:
        return int(self.rng.lognormvariate(self.mu, SIZE_SPREAD))

    def filler(self, length: int) -> str:
        length = max(0, min(length, len(self.pool) - 1))
        start = int(self.random() * (len(self.pool) - length))
        return self.pool[start : start + length]

    def pick(self, choices: tuple[str, ...]) -> str:
        return choices[int(self.random() * len(choices))]

    def below(self, n: int) -> int:
        return int(self.random() * n)


Builder = Callable[[str, int, _Draw, str, str], dict[str, Any]]
PAD = "@@FILLER@@"  # stands for the filler until the record's size without it is known
PAD_BYTES = PAD.encode()

VISITS = ("SITE_VISIT", "APP_VISIT", "TOUCH", "EMAIL", "DISPLAY_AD")
EVENTS = ("page-view", "product-view", "add-to-cart", "purchase", "search")
SESSIONS = ("NO_SESSION", "IN_SESSION")
COUNTRIES = ("france", "germany", "spain", "italy", "united kingdom", "belgium")
NAMES = ("Camille", "Louis", "Jade", "Gabriel", "Emma", "Raphael", "Lina", "Arthur")


def _ts(n: int, draw: _Draw) -> int:
    return BASE_TS_MS + n * 997 + draw.below(1000)


def _activity(uid: str, n: int, draw: _Draw, comp: str, run_id: str) -> dict[str, Any]:
    ts = _ts(n, draw)
    properties = {"$url": f"https://shop.example/p/{n}", "bench_filler": PAD}
    event = {"$event_name": draw.pick(EVENTS), "$ts": ts, "$properties": properties}
    return {
        "$user_account_id": uid,
        "$compartment_id": comp,
        "$type": draw.pick(VISITS),
        "$session_status": draw.pick(SESSIONS),
        "$ts": ts,
        "$events": [event],
        "$location": {"$country": draw.pick(COUNTRIES)},
    }


def _profile(uid: str, n: int, draw: _Draw, comp: str, run_id: str) -> dict[str, Any]:
    profile = {"$user_account_id": uid, "$compartment_id": comp, "first_name": draw.pick(NAMES)}
    profile.update(country=draw.pick(COUNTRIES), bench_filler=PAD)
    return {"operation": "UPSERT", "compartment_id": comp, "user_account_id": uid, "user_profile": profile}


def _segment(uid: str, n: int, draw: _Draw, comp: str, run_id: str) -> dict[str, Any]:
    return {
        "operation": "UPDATE",
        "expiration_duration": 0,
        "compartment_id": comp,
        "user_account_id": uid,
        "segment_technical_name": f"pipeline-bench-{run_id}",
        "data_bag": PAD,
    }


def _choice(uid: str, n: int, draw: _Draw, comp: str, run_id: str) -> dict[str, Any]:
    choice = {"$processing_id": "pipeline-bench", "$choice_ts": _ts(n, draw), "bench_filler": PAD}
    return {
        "operation": "UPSERT",
        "compartment_id": comp,
        "user_account_id": uid,
        "force_replace": True,
        "user_choice": choice,
    }


def _association(uid: str, n: int, draw: _Draw, comp: str, run_id: str) -> dict[str, Any]:
    ids: list[dict[str, str]] = [{"type": "USER_ACCOUNT", "user_account_id": uid, "compartment_id": comp}]
    ids.append({"type": "USER_EMAIL", "hash": hashlib.blake2b(uid.encode(), digest_size=16).hexdigest()})
    if draw.random() < 0.5:
        ids.append({"type": "USER_AGENT", "user_agent_id": f"vec:{uid}"})
    return {"identifiers": ids}


def _account_deletion(uid: str, n: int, draw: _Draw, comp: str, run_id: str) -> dict[str, Any]:
    return {"type": "USER_ACCOUNT", "user_account_id": uid, "compartment_id": comp}


def _device_deletion(uid: str, n: int, draw: _Draw, comp: str, run_id: str) -> dict[str, Any]:
    return {"type": "USER_AGENT", "user_agent_id": f"vec:{uid}"}


BUILDERS: dict[str, Builder] = {
    "USER_ACTIVITY": _activity,
    "USER_PROFILE": _profile,
    "USER_SEGMENT": _segment,
    "USER_CHOICE": _choice,
    "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS": _association,
    "USER_IDENTIFIERS_DELETION": _account_deletion,
    "USER_DEVICE_POINTS_DELETION": _device_deletion,
    "USER_POINTS_DELETION": _account_deletion,
}
assert set(BUILDERS) == set(formats.DOCUMENT_TYPES), "a document type without a generator"


def _ndjson_line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def _csv_line(record: dict[str, Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([str(record[c]) for c in CSV_HEADER])
    return out.getvalue().encode()


def _lines(spec: Spec, draw: _Draw, line_of: Callable[[dict[str, Any]], bytes]) -> Iterator[bytes]:
    """One encoded record after the other, the filler (when the type has a place for it) sized so
    that the line is about the drawn size."""
    build = BUILDERS[spec.document_type]
    n = 0
    while True:
        line = line_of(build(identifier(spec.run_id, n), n, draw, spec.compartment_id, spec.run_id))
        if PAD_BYTES in line:
            line = line.replace(PAD_BYTES, draw.filler(draw.size() - len(line) + len(PAD_BYTES)).encode())
        yield line
        n += 1


def write_input(spec: Spec, directory: Path) -> Generated:
    """Write the documents of ``spec`` to ``directory/bench-input.<ndjson|csv>``, chunk by chunk,
    until ``size_bytes`` or ``records`` is reached (whichever is given first)."""
    if spec.mime_type not in formats.allowed_mime_types(spec.document_type):
        raise ValueError(f"{spec.document_type} cannot be {spec.mime_type}")
    is_csv = spec.mime_type == formats.CSV
    path = directory / ("bench-input.csv" if is_csv else "bench-input.ndjson")
    source = _lines(spec, _Draw(spec.seed, spec.record_bytes), _csv_line if is_csv else _ndjson_line)
    written = records = 0
    with path.open("wb", buffering=1 << 20) as out:
        if is_csv:
            written += out.write((",".join(CSV_HEADER) + "\n").encode())
        while not _done(spec, written, records):
            chunk = []
            for line in source:
                chunk.append(line)
                written += len(line)
                records += 1
                if len(chunk) >= CHUNK_RECORDS or _done(spec, written, records):
                    break
            out.write(b"".join(chunk))
    return Generated(path, written, records)


def _done(spec: Spec, written: int, records: int) -> bool:
    return bool((spec.size_bytes and written >= spec.size_bytes) or (spec.records and records >= spec.records))

"""Shared test helpers: realistic input files and the proof that every record arrived exactly once.

Fixtures live in ``conftest.py``; everything else a test module shares is here."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import orjson

from pipeline import formats
from pipeline.config import config_from_dict


def activity(i: int, rnd: random.Random | None = None) -> dict:
    """A valid USER_ACTIVITY record, unique by ``i``, of about 250 to 400 bytes."""
    rnd = rnd or random.Random(i)
    ident = [
        {"$user_agent_id": f"vec:{10_000_000 + i}"},
        {"$user_account_id": f"acc-{i}", "$compartment_id": "1000"},
        {"$email_hash": {"$email": f"user{i}@example.com"}},
    ][i % 3]
    ts = 1_764_300_000_000 + i
    return {
        **ident,
        "$type": rnd.choice(["SITE_VISIT", "APP_VISIT", "TOUCH"]),
        "$session_status": "NO_SESSION",
        "$ts": ts,
        "$events": [
            {
                "$event_name": "page-view",
                "$ts": ts,
                "$properties": {"url": "https://shop.example/p/" + "x" * rnd.randint(0, 120)},
            }
        ],
    }


def write_ndjson(path: Path, records: list[dict] | range, *, line_end: bytes = b"\n") -> Path:
    with path.open("wb") as fh:
        for r in records:
            rec = activity(r) if isinstance(r, int) else r
            fh.write(orjson.dumps(rec) + line_end)
    return path


SEGMENT_HEADER = ["operation", "expiration_duration", "compartment_id", "user_account_id", "segment_id", "data_bag"]


def write_segment_csv(path: Path, n: int) -> Path:
    """A USER_SEGMENT CSV whose data_bag fields hold quoted commas, doubled quotes and newlines."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SEGMENT_HEADER)
    for i in range(n):
        bag = orjson.dumps({"note": f"row {i}, with a comma", "quote": 'say "hi"'}).decode()
        if i % 7 == 0:
            bag += "\nsecond line of the bag"
        writer.writerow(["UPDATE", "0", "1000", f"acc-{i}", "123", bag])
    path.write_text(buf.getvalue(), newline="")
    return path


def ndjson_digests(path: Path, document_type: str = "USER_ACTIVITY") -> list[bytes]:
    """Digests of the valid records of an NDJSON file, in order."""
    out = []
    with path.open("rb") as fh:
        for line in fh:
            body = line.rstrip(b"\r\n")
            if body.strip() and formats.check_ndjson_line(document_type, body) is None:
                out.append(formats.record_digest(body))
    return out


def csv_digests(path: Path) -> list[bytes]:
    """Digests of the records of a CSV file (raw record bytes, header excluded)."""
    data = path.read_bytes()
    records, start, quotes = [], 0, 0
    for pos, byte in enumerate(data):
        if byte == 0x22:
            quotes += 1
        elif byte == 0x0A and quotes % 2 == 0:
            records.append(data[start : pos + 1])
            start = pos + 1
    return [formats.record_digest(r) for r in records[1:]]


def assert_exactly_once(accounting, digests: list[bytes]) -> None:
    accepted = accounting.accepted
    missing = [d for d in digests if d not in accepted]
    twice = {d: ids for d, ids in accepted.items() if len(ids) > 1}
    assert not missing, f"{len(missing)} records never accepted"
    assert not twice, f"{len(twice)} records accepted more than once"
    assert len(accepted) == len(set(digests)), "the server accepted records that were not in the input"


def test_config(url: str, tmp_path: Path, **sections) -> object:
    """A config for tests: fast polling, run directories under tmp_path."""
    data = {
        "api": {"url": url},
        "poll": {"interval_s": 0.02, "max_interval_s": 0.1, "timeout_s": 120},
        "report": {"dir": str(tmp_path / "runs")},
        "upload": {"settle_window_s": 1.0},  # lookups of lost answers: 1 s, not the default minute
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data)


test_config.__test__ = False  # not a test, despite its name

"""Realistic benchmark inputs: USER_ACTIVITY NDJSON (250-400 byte records) and USER_SEGMENT CSV.

Every record is valid (the benchmark compares speeds, not reject handling). The CSV has quoted
fields on every row, doubled quotes, and a quoted newline in one row of seven, so a naive cut on
``\\n`` would split records: only a quote-aware cutter produces valid batches.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

EVENTS = ["page-view", "add-to-cart", "purchase", "search", "store-visit"]
TYPES = ["SITE_VISIT", "APP_VISIT", "TOUCH", "EMAIL", "DISPLAY_AD"]
CSV_HEADER = b"operation,expiration_duration,compartment_id,user_account_id,segment_technical_name,data_bag\n"


def activity_line(rng: random.Random, i: int) -> bytes:
    """One USER_ACTIVITY record of 250 to 400 bytes, newline included."""
    ident = rng.choice(
        [
            {"$user_agent_id": f"vec:{rng.randrange(10**9)}"},
            {"$user_account_id": f"acc-{rng.randrange(10**7)}", "$compartment_id": "1000"},
            {"$email_hash": {"$email": f"user{rng.randrange(10**6)}@example.com"}},
        ]
    )
    ts = 1_700_000_000_000 + i * 137
    record = {
        **ident,
        "$type": rng.choice(TYPES),
        "$session_status": "NO_SESSION",
        "$ts": ts,
        "$events": [{"$event_name": rng.choice(EVENTS), "$ts": ts, "$properties": {"url": ""}}],
        "$location": {"$country": "france", "$city": "paris", "$zip_code": "75001"},
    }
    bare = len(orjson.dumps(record)) + 1
    want = rng.randrange(250, 401)
    url = f"https://shop.example.com/p/{rng.randrange(10**5)}?ref="
    record["$events"][0]["$properties"]["url"] = url + "x" * max(0, want - bare - len(url))
    line = orjson.dumps(record) + b"\n"
    assert 250 <= len(line) <= 400, len(line)
    return line


def segment_row(rng: random.Random, i: int) -> bytes:
    if i % 7 == 0:
        bag = '"{""source"": ""crm, import"", ""note"": ""line one\nline two""}"'
    else:
        bag = f'"{{""source"": ""crm"", ""score"": {rng.randrange(100)}}}"'
    return f'UPDATE,43200,1000,"acc-{rng.randrange(10**7)}","seg, {i % 50}",{bag}\n'.encode()


def _write(path: Path, size: int, pool: list[bytes], rng: random.Random, head: bytes = b"") -> int:
    """Write whole records from ``pool`` until ``size`` bytes; returns the record count."""
    records = 0
    with open(path, "wb") as f:
        f.write(head)
        written = len(head)
        while written < size:
            picks = [rng.choice(pool) for _ in range(20000)]
            chunk = b"".join(picks)
            if written + len(chunk) > size:  # trim to whole records
                keep, total = [], written
                for p in picks:
                    if total + len(p) > size:
                        break
                    keep.append(p)
                    total += len(p)
                picks, chunk = keep, b"".join(keep)
                if not picks:
                    break
            f.write(chunk)
            written += len(chunk)
            records += len(picks)
    return records


def make_ndjson(path: Path, size: int, seed: int = 1) -> int:
    """A USER_ACTIVITY NDJSON file of about ``size`` bytes; returns its record count."""
    rng = random.Random(seed)
    pool = [activity_line(rng, i) for i in range(20000)]
    return _write(path, size, pool, rng)


def make_csv(path: Path, size: int, seed: int = 2) -> int:
    """A USER_SEGMENT CSV of about ``size`` bytes (header first); returns its record count."""
    rng = random.Random(seed)
    pool = [segment_row(rng, i) for i in range(7000)]
    return _write(path, size, pool, rng, CSV_HEADER)

"""The synthetic documents: valid for every type (our checks), deterministic by seed, identifiers
synthetic and unique, sizes spread around the asked mean, the size or count respected."""

from __future__ import annotations

import csv
import io
import statistics

import pytest

from pipeline import formats
from pipeline.bench.generator import ID_PREFIX, Spec, write_input

CASES = [(t, m) for t in formats.DOCUMENT_TYPES for m in sorted(formats.allowed_mime_types(t))]


def _lines(path):
    return path.read_bytes().splitlines()


@pytest.mark.parametrize(("document_type", "mime_type"), CASES)
def test_every_type_is_generated_valid_by_our_checks(tmp_path, document_type, mime_type):
    g = write_input(Spec(document_type=document_type, mime_type=mime_type, records=500, run_id="r1"), tmp_path)
    lines = _lines(g.path)
    if mime_type == formats.CSV:
        rows = list(csv.reader(io.StringIO(g.path.read_text())))
        header, body = rows[0], rows[1:]
        assert formats.check_csv_header(header) is None
        reasons = [formats.check_csv_row(header, r) for r in body]
    else:
        body = lines
        reasons = [formats.check_ndjson_line(document_type, line) for line in lines]
    assert len(body) == g.records == 500
    assert [r for r in reasons if r] == []
    assert g.bytes == g.path.stat().st_size


def test_identifiers_are_synthetic_unique_and_carry_the_run_id(tmp_path):
    g = write_input(Spec(document_type="USER_PROFILE", records=300, run_id="20261201T000000Z-abc"), tmp_path)
    ids = [line.split(b'"user_account_id":"')[1].split(b'"')[0].decode() for line in _lines(g.path)]
    assert ids == [f"{ID_PREFIX}20261201T000000Z-abc-{n}" for n in range(300)]


def test_the_same_seed_gives_the_same_documents_another_seed_others(tmp_path):
    def make(seed: int, name: str) -> bytes:
        (tmp_path / name).mkdir()
        return write_input(
            Spec(document_type="USER_ACTIVITY", records=200, seed=seed, run_id="r"), tmp_path / name
        ).path.read_bytes()

    first, again, other = make(7, "a"), make(7, "b"), make(8, "c")
    assert first == again
    assert first != other


def test_sizes_spread_around_the_record_bytes(tmp_path):
    g = write_input(Spec(document_type="USER_SEGMENT", records=4000, record_bytes=600, run_id="r"), tmp_path)
    sizes = [len(line) + 1 for line in _lines(g.path)]
    assert 540 < statistics.mean(sizes) < 660
    assert statistics.pstdev(sizes) > 100  # a spread, not one size
    assert min(sizes) < 450 and max(sizes) > 900


def test_a_size_ends_the_file_at_the_first_line_past_it(tmp_path):
    g = write_input(Spec(document_type="USER_ACTIVITY", size_bytes=2_000_000, run_id="r"), tmp_path)
    last = len(_lines(g.path)[-1]) + 1
    assert 2_000_000 <= g.bytes < 2_000_000 + last
    assert g.records == len(_lines(g.path))


def test_the_heartbeat_says_progress_once_per_interval_on_a_patched_clock():
    from pipeline.bench.heartbeat import Heartbeat
    from pipeline.engine.events import Event

    now = [0.0]
    said: list[str] = []
    beat = Heartbeat(said.append, interval_s=30, clock=lambda: now[0])
    beat(Event.BATCH_UPLOADED, {"bytes": 5_000_000})
    now[0] = 29.0
    beat(Event.EXECUTION_FINISHED, {})
    assert said == []
    now[0] = 31.0
    beat(Event.BATCH_UPLOADED, {"bytes": 5_000_000})
    assert said == ["  31 s: 2 batches uploaded (10 MB), 1 executions done, 0 retries"]

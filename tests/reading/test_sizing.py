"""Batch sizes: a pure function of the inputs' total size and the config."""

from pathlib import Path

import pytest

from pipeline.reading.sizing import MIN_BATCH_BYTES, MIN_BATCHES, batch_limit, total_input_bytes

M = 100_000_000


def test_fixed_sizing_and_unknown_sizes_cut_at_max_bytes():
    assert batch_limit(324_000_000, max_bytes=M, concurrency=16, sizing="fixed") == M
    assert batch_limit(None, max_bytes=M, concurrency=16, sizing="adaptive") == M


@pytest.mark.parametrize("total", [50_000_000, 324_000_000, 799_000_000])
def test_a_small_run_gets_enough_batches_for_the_uploads_in_flight(total):
    limit = batch_limit(total, max_bytes=M, concurrency=16, sizing="adaptive")
    assert -(-total // limit) == MIN_BATCHES  # ceil: eight batches, with room for cuts at record ends


def test_never_more_batches_than_the_uploads_in_flight_ask_for():
    assert batch_limit(324_000_000, max_bytes=M, concurrency=1, sizing="adaptive") == 81_405_000  # 4 anyway
    assert batch_limit(324_000_000, max_bytes=M, concurrency=4, sizing="adaptive") == 81_405_000


def test_large_runs_are_cut_at_max_bytes_and_the_user_ceiling_holds():
    assert batch_limit(10**12, max_bytes=M, concurrency=16, sizing="adaptive") == M
    limit = batch_limit(324_000_000, max_bytes=10_000_000, concurrency=16, sizing="adaptive")
    assert limit <= 10_000_000 and -(-324_000_000 // limit) == 33  # as many as max_bytes needs, evened out


def test_batches_keep_a_floor_so_executions_hold_many_records():
    assert batch_limit(1_000_000, max_bytes=M, concurrency=16, sizing="adaptive") == MIN_BATCH_BYTES
    assert batch_limit(1_000_000, max_bytes=2048, concurrency=16, sizing="adaptive") == 2048


def test_total_input_bytes(tmp_path: Path):
    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 5)
    assert total_input_bytes([a, b]) == 15
    gz = tmp_path / "c.ndjson.gz"
    gz.write_bytes(b"z")
    assert total_input_bytes([a, gz]) is None

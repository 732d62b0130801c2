"""Batch targets: each batch is cut near its target; max_bytes stays the ceiling of every batch."""

from pathlib import Path

from pipeline.reading.reader import BatchReader
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.sizing import BatchSizes

from ..helpers import activity, write_ndjson


def read(paths: list[Path], sizes: BatchSizes | None, max_bytes: int = 100_000):
    options = ReaderOptions(
        document_type="USER_ACTIVITY", mime_type="APPLICATION_X_NDJSON", max_bytes=max_bytes, sizes=sizes, workers=0
    )
    rejects: list = []
    reader = BatchReader(paths, options, on_reject=rejects.append)
    return list(reader), rejects


def test_batches_follow_their_targets_in_order_across_files(tmp_path: Path):
    a = write_ndjson(tmp_path / "a.ndjson", range(400))
    b = write_ndjson(tmp_path / "b.ndjson", range(400, 800))
    plan = BatchSizes((5_000, 10_000), 20_000)
    batches, rejects = read([a, b], plan)
    assert not rejects
    sizes = [x.size for x in batches]
    assert sizes[0] <= 5_000 < sizes[1] <= 10_000 < sizes[2] <= 20_000
    assert all(s <= 20_000 for s in sizes)
    again, _ = read([a, b], plan)  # a reader draws from the start: a resume re-plans the same batches
    spans = [(x.source, x.first_line, x.last_line) for x in batches]
    assert [(x.source, x.first_line, x.last_line) for x in again] == spans


def test_a_record_over_its_batch_target_gets_a_batch_of_its_own_within_max_bytes(tmp_path: Path):
    big = activity(1) | {"pad": "x" * 3_000}
    src = write_ndjson(tmp_path / "in.ndjson", [activity(0), big, activity(2)])
    batches, rejects = read([src], BatchSizes((), 1_000), max_bytes=10_000)
    assert not rejects  # within max_bytes: not "too large"
    assert sum(x.records for x in batches) == 3
    assert any(x.records == 1 and x.size > 3_000 for x in batches)

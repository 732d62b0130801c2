"""Batch sizes: a pure function of the inputs' total size and the config, drawn in batch order."""

from pathlib import Path

from pipeline.reading.sizing import (
    LEGACY_MIN_BATCHES,
    MIN_BATCH_BYTES,
    MIN_BATCHES,
    SMALL_FILES_AT_LEAST,
    BatchSizes,
    plan_sizes,
    planned_count,
    small_files_note,
    total_input_bytes,
)

M = 100_000_000


def targets(plan: BatchSizes, total: int) -> list[int]:
    """The sizes of the batches the plan gives ``total`` bytes (records of no size: exact cuts)."""
    out, left = [], total
    while left > 0:
        size = min(plan.next(), left)
        out.append(size)
        left -= size
    return out


def test_fixed_sizing_cuts_at_max_bytes():
    assert targets(plan_sizes(324_000_000, max_bytes=M, concurrency=16, sizing="fixed"), 324_000_000) == [
        M,
        M,
        M,
        24_000_000,
    ]


def test_a_small_run_gets_ten_batches_the_first_two_smaller():
    sizes = targets(plan_sizes(324_000_000, max_bytes=M, concurrency=16, sizing="adaptive"), 324_000_000)
    assert len(sizes) == MIN_BATCHES == 10
    x = sizes[2]
    assert sizes[0] == -(-x // 4) and sizes[1] == -(-x // 2) and all(s == x for s in sizes[2:-1])
    assert sizes[-1] > 0.95 * x  # no tiny leftover batch


def test_never_more_batches_than_the_uploads_in_flight_ask_for():
    sizes = targets(plan_sizes(324_000_000, max_bytes=M, concurrency=1, sizing="adaptive"), 324_000_000)
    assert len(sizes) <= 5 and max(sizes) <= M


def test_large_runs_are_cut_at_max_bytes_after_two_smaller_ones():
    plan = plan_sizes(10**12, max_bytes=M, concurrency=16, sizing="adaptive")
    assert [plan.next() for _ in range(4)] == [M // 4, M // 2, M, M]
    plan = plan_sizes(324_000_000, max_bytes=10_000_000, concurrency=16, sizing="adaptive")
    assert max(plan.next() for _ in range(50)) == 10_000_000  # the user's ceiling holds


def test_targets_keep_a_floor_so_executions_hold_many_records():
    plan = plan_sizes(1_000_000, max_bytes=M, concurrency=16, sizing="adaptive")
    assert min(plan.next() for _ in range(5)) == MIN_BATCH_BYTES
    plan = plan_sizes(1_000_000, max_bytes=2048, concurrency=16, sizing="adaptive")
    assert {plan.next() for _ in range(5)} == {2048}


def test_unknown_sizes_cut_at_max_bytes_after_the_ramp():
    plan = plan_sizes(None, max_bytes=M, concurrency=16, sizing="adaptive")
    assert [plan.next() for _ in range(3)] == [M // 4, M // 2, M]


def test_total_input_bytes(tmp_path: Path):
    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 5)
    assert total_input_bytes([a, b]) == 15
    gz = tmp_path / "c.ndjson.gz"
    gz.write_bytes(b"z")
    assert total_input_bytes([a, gz]) is None


def test_runs_journaled_without_their_plan_are_planned_with_the_former_count():
    plan = plan_sizes(324_000_000, max_bytes=M, concurrency=16, sizing="adaptive", min_batches=LEGACY_MIN_BATCHES)
    assert len(targets(plan, 324_000_000)) == 8


def test_a_plan_reads_back_from_its_description_and_junk_is_not_a_plan():
    plan = plan_sizes(324_000_000, max_bytes=M, concurrency=16, sizing="adaptive")
    described = plan.describe()
    again = BatchSizes.from_description(described)
    assert again is not None and targets(again, 324_000_000) == targets(
        plan_sizes(324_000_000, max_bytes=M, concurrency=16, sizing="adaptive"), 324_000_000
    )
    for junk in (
        None,
        [],
        {"first": [1]},
        {"first": "x", "then": 5},
        {"first": [0], "then": 5},
        {"first": [], "then": True},
    ):
        assert BatchSizes.from_description(junk) is None


def test_planned_count_is_the_number_of_targets_drawn():
    for total in (1, 4_000_000, 324_000_000, 2_000_000_000):
        plan = plan_sizes(total, max_bytes=M, concurrency=16, sizing="adaptive")
        assert planned_count(plan, total) == len(targets(BatchSizes(plan.first, plan.then), total))


def _files(folder: Path, sizes: list[int]) -> list[Path]:
    """Files of these sizes (sparse: only their size is read)."""
    folder.mkdir()
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"part-{i:03}.ndjson"
        with open(path, "wb") as f:
            f.truncate(size)
        paths.append(path)
    return paths


def _note(paths: list[Path]) -> str | None:
    total = total_input_bytes(paths)
    return small_files_note(paths, plan_sizes(total, max_bytes=M, concurrency=16, sizing="adaptive"), total)


def test_many_small_files_are_told_how_many_executions_they_cost(tmp_path: Path):
    """30 files of 1 MB: each is a batch of its own, where one batch at the floor (5 MB) would hold
    5 of them."""
    note = _note(_files(tmp_path / "parts", [1_000_000] * 30))
    assert note is not None
    assert note.startswith("30 input files, 30 of them under half a batch (1.0 MB against 5.0 MB batches)")
    assert "at least 30 executions where 6 would do" in note and "concatenating" in note


def test_part_files_of_a_fifth_of_a_batch_are_small(tmp_path: Path):
    """40 files of 20 MB: 10 batches of about 87 MB would do."""
    note = _note(_files(tmp_path / "parts", [20_000_000] * 40))
    assert note is not None and "at least 40 executions where 10 would do" in note


def test_a_few_small_files_or_files_near_a_batch_are_not_worth_a_warning(tmp_path: Path):
    assert _note(_files(tmp_path / "few", [1_000_000] * (SMALL_FILES_AT_LEAST - 1))) is None
    # 20 files of 45 MB: 11 batches would do (25, 50, then 100 MB); 20 executions are not twice that
    assert _note(_files(tmp_path / "near", [45_000_000] * 20)) is None
    # small files beside large ones: 20 of 1 MB and 3 of 1 GB, 32 batches would do; 23 files cost
    # at most 20 more (52), not twice that
    assert _note(_files(tmp_path / "mixed", [1_000_000] * 20 + [1_000_000_000] * 3)) is None

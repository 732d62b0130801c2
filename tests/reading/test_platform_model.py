"""The plan learned from a platform profile: the model's ends, the shapes it may choose, and when
the default plan stands."""

from __future__ import annotations

import pytest

from pipeline.reading.platform_model import (
    PlatformProfile,
    candidate_shapes,
    drawn_mb,
    modelled_end,
    plan_from_profile,
)
from pipeline.reading.sizing import BatchSizes, plan_sizes

MB = 1_000_000
S = 324 * MB


def profile(**fields: object) -> PlatformProfile:
    values: dict[str, object] = {
        "slots": 4,
        "slots_exact": True,
        "base_s": 1.0,
        "s_per_mb": 0.03,
        "conn_mbps": 50.0,
        "link_mbps": 200.0,
        "max_uploads": None,
        "learned_from": "run-1",
    }
    return PlatformProfile(**(values | fields))  # type: ignore[arg-type]


def default_plan() -> BatchSizes:
    return plan_sizes(S, max_bytes=100 * MB, concurrency=16, sizing="adaptive")


def test_the_model_of_one_batch_is_its_read_its_upload_and_its_processing():
    p = profile(slots=1, conn_mbps=10.0, link_mbps=10.0)
    # read 10 MB at 100 MB/s (0.1 s), upload at 10 MB/s (1 s), process 1 s + 10 x 0.03 s
    assert modelled_end([10.0], p, uploads=4, reader_mbps=100.0) == pytest.approx(0.1 + 1.0 + 1.3)


def test_the_model_shares_the_link_and_serves_the_slots_in_order_of_arrival():
    p = profile(slots=1, base_s=1.0, s_per_mb=0.0, conn_mbps=10.0, link_mbps=10.0)
    # two 10 MB batches share 10 MB/s: both arrive at 2 s, then one slot takes them one after the other
    assert modelled_end([10.0, 10.0], p, uploads=2, reader_mbps=1e9) == pytest.approx(2.0 + 2.0)
    # one upload at a time: the first arrives at 1 s and is processed while the second uploads
    assert modelled_end([10.0, 10.0], p, uploads=1, reader_mbps=1e9) == pytest.approx(3.0)


def test_drawn_sizes_cover_the_input_exactly():
    sizes = drawn_mb(default_plan(), S)
    assert sum(sizes) == pytest.approx(324.0)
    assert len(sizes) == 10


def test_every_candidate_stays_within_the_floor_and_the_ceiling():
    for _, sizes in candidate_shapes(S, 4, max_bytes=60 * MB):
        drawn = drawn_mb(sizes, S)
        assert max(drawn) <= 60.0 + 1e-9
        assert min(sizes.first + (sizes.then,)) >= 5 * MB
    # 2, 4 or 6 batches of 324 MB would be over 50 MB, and so would the others of 8 with 2 at a quarter
    assert [label for label, _ in candidate_shapes(S, 2, max_bytes=50 * MB)] == [
        "8 batches",
        "8 batches, the first 2 at 0.5 of the others",
        "8 batches: the first 2 of 13 MB, the others of max_bytes",
    ]
    assert [label for label, _ in candidate_shapes(20 * MB, 4, max_bytes=100 * MB)] == ["4 batches"]


def test_few_slots_with_a_large_fixed_time_get_one_small_and_one_large_batch_per_slot():
    learned = plan_from_profile(S, profile(), default=default_plan(), max_bytes=100 * MB, concurrency=16, validate=True)
    assert learned is not None
    assert learned.sizes.first == (learned.sizes.first[0],) * 4 and learned.sizes.then > learned.sizes.first[0]
    assert len(drawn_mb(learned.sizes, S)) == 8
    assert learned.modelled_s < learned.default_modelled_s * 0.95
    assert learned.describe()["profile"]["learned_from"] == "run-1"


def test_two_slots_and_a_large_fixed_time_get_as_few_executions_as_max_bytes_allows():
    """2 slots, 1.35 s per execution, 22 MB/s per upload: 4 executions (two of 63 MB, two of
    100 MB: the ceiling) rather than 6 or 8 smaller ones."""
    p = profile(slots=2, base_s=1.35, s_per_mb=0.0107, conn_mbps=22.0, link_mbps=88.0, max_uploads=8)
    learned = plan_from_profile(S, p, default=default_plan(), max_bytes=100 * MB, concurrency=16, validate=True)
    assert learned is not None
    assert drawn_mb(learned.sizes, S) == pytest.approx([62.81, 62.81, 100.0, 98.38], abs=0.01)
    assert learned.shape == "4 batches: the first 2 of 63 MB, the others of max_bytes"


def test_many_slots_get_more_batches_than_the_default():
    learned = plan_from_profile(
        S,
        profile(slots=25, base_s=0.3, s_per_mb=0.003, conn_mbps=10.0, link_mbps=80.0),
        default=default_plan(),
        max_bytes=100 * MB,
        concurrency=16,
        validate=True,
    )
    assert learned is not None and len(drawn_mb(learned.sizes, S)) > 10


def test_the_default_plan_stands_when_no_shape_beats_it_by_enough():
    # the link is the limit (2 uploads at 20 MB/s) and processing is cheap: every shape ends alike
    p = profile(slots=16, base_s=0.5, s_per_mb=0.003, conn_mbps=20.0, link_mbps=40.0, max_uploads=2)
    assert plan_from_profile(S, p, default=default_plan(), max_bytes=100 * MB, concurrency=16, validate=True) is None


@pytest.mark.parametrize("total", [None, 0, 65 * 100 * MB])
def test_inputs_of_unknown_size_or_too_large_keep_the_default_plan(total):
    assert (
        plan_from_profile(total, profile(), default=default_plan(), max_bytes=100 * MB, concurrency=16, validate=True)
        is None
    )


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"slots": 4},
        {**profile().to_json(), "slots": 0},
        {**profile().to_json(), "base_s": -1},
        {**profile().to_json(), "conn_mbps": "fast"},
        {**profile().to_json(), "link_mbps": float("nan")},
        {**profile().to_json(), "max_uploads": 0},
    ],
)
def test_a_kept_profile_that_is_not_one_is_ignored(data):
    assert PlatformProfile.from_json(data) is None


def test_a_kept_profile_s_run_id_loses_what_a_terminal_would_act_on():
    kept = PlatformProfile.from_json({**profile().to_json(), "learned_from": "run\x1b]0;owned\x07-1"})
    assert kept is not None and kept.learned_from == "run]0;owned-1"


def test_a_kept_profile_reads_back_as_it_was():
    p = profile(max_uploads=2)
    assert PlatformProfile.from_json(p.to_json()) == p


def test_a_platform_of_thousands_of_slots_gets_no_shape_of_thousands_of_batches():
    p = profile(slots=5000, slots_exact=False, base_s=0.1, s_per_mb=0.001, conn_mbps=1000.0, link_mbps=5000.0)
    assert list(candidate_shapes(6_000 * MB, 5000, max_bytes=100 * MB)) == []  # 5,000 batches: over the cap
    assert (
        plan_from_profile(6_000 * MB, p, default=default_plan(), max_bytes=100 * MB, concurrency=16, validate=False)
        is None
    )

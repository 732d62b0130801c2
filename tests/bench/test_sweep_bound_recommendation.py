"""The sweep's points, the lower bound (issue 12's formula and one point's), the recommendation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.bench.bound import Conditions, lower_bound_s, point_terms
from pipeline.bench.recommendation import estimate_s, limit_of, recommend
from pipeline.bench.sizes import parse_size, show_duration
from pipeline.bench.sweep import points
from pipeline.config import config_from_dict
from pipeline.errors import UsageError

LINK_BOUND = Conditions(latency_ms=40, conn_mbps=10, uplink_mbps=60, slots=16, base_s=0.5, per_record_us=1)


def test_a_sweep_is_the_product_of_its_axes_in_order():
    found = points(["upload.concurrency=2,4", "batch.max_bytes=10MB,50MB,100MB"], config_from_dict({}))
    assert [p.label for p in found][:4] == [
        "concurrency=2 max_bytes=10MB",
        "concurrency=2 max_bytes=50MB",
        "concurrency=2 max_bytes=100MB",
        "concurrency=4 max_bytes=10MB",
    ]
    config = found[-1].apply(config_from_dict({}))
    assert (config.upload.concurrency, config.batch.max_bytes) == (4, 100_000_000)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["upload.nope=1"], "unknown key of [upload]"),
        (["concurrency=1"], "not section.key"),
        (["batch.max_bytes=200MB"], "between"),
        (["upload.concurrency=two"], "not a size"),
        (["upload.concurrency"], "not section.key=value"),
    ],
)
def test_a_bad_sweep_is_a_usage_error_before_anything_is_sent(spec, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        points(spec, config_from_dict({}))


def test_sizes_and_durations_read_and_said_as_people_do():
    assert parse_size("500MB") == 500_000_000 and parse_size("2GB") == 2 * 10**9 and parse_size("1MiB") == 2**20
    assert parse_size("1.5 GB") == 1_500_000_000 and parse_size("4096") == 4096
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    assert show_duration(7800) == "2 h 10 min" and show_duration(840) == "14 min" and show_duration(48) == "48 s"


def test_the_bound_is_issue_12s_formula_and_benchmarks_use_this_one():
    # 324 MB of 1 M records, link-bound: max(324/60 + 0.5, 0.5 + 1e6 * 1e-6 / 16) + 0.04 = 5.94 s
    assert lower_bound_s(LINK_BOUND, 324_000_000, 1_000_000) == pytest.approx(5.94)
    throttled = Conditions(
        latency_ms=40, conn_mbps=20, uplink_mbps=100, slots=16, base_s=0.5, per_record_us=1, max_uploads=2
    )
    assert lower_bound_s(throttled, 324_000_000, 1_000_000) == pytest.approx(324 / 40 + 0.5 + 0.04)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import wan  # the WAN scenarios' parameters fit the same formula

    assert lower_bound_s(wan.SCENARIOS["link"][1], 324_000_000, 1_000_000) == pytest.approx(5.94)


def test_a_points_bound_prefers_more_connections_and_smaller_batches_on_the_link_bound_condition():
    def bound(concurrency: int, batch_mb: int) -> float:
        return point_terms(LINK_BOUND, 500_000_000, 1_600_000, concurrency=concurrency, batches=500 // batch_mb).total_s

    grid = {(c, b): bound(c, b) for c in (2, 4, 8, 16) for b in (10, 50, 100)}
    best = min(grid, key=grid.__getitem__)
    assert best[1] == 10 and best[0] >= 8
    assert grid[best] < 0.7 * grid[4, 100]


def point(label="p", **over):
    base = {
        "label": label, "settings": {}, "run_id": "r", "run_dir": None, "outcome": "succeeded", "exit_code": 0,
        "bytes": 100_000_000, "records": 300_000, "rejected": 0, "refused": 0, "batches": 10,
        "end_to_end_s": 12.0, "first_byte_s": 0.5, "upload_s": 10.0, "upload_mb_s": 10.0,
        "steady_upload_mb_s": None, "ramp_end_s": None, "last_upload_end_s": None,
        "upload_records_s": 30_000, "platform_records_s": 60_000, "queue_s": {}, "processing_s": {},
        "processing_samples_s": [], "cpu_s": 1.0, "peak_rss_mb": 60.0, "attempts": 10, "retries": 0,
        "throttled": 0, "peak_in_flight": 4, "max_concurrency": 16, "timeline": [], "uploads": [], "poll_requests": 10,
        "bound_s": None,
    }  # fmt: skip
    return base | over


def test_the_limit_is_said_from_the_measured_figures():
    assert limit_of(point()) == "link"
    assert limit_of(point(platform_records_s=10_000)) == "platform"  # 3.3 MB/s finished against 10 MB/s sent
    assert limit_of(point(throttled=5)) == "server_cap"


def test_the_estimate_scales_what_limits_and_keeps_the_rest():
    # link-bound: 100 MB in 10 s of uploads, 0.5 s before, 1.5 s after; 400 MB: 0.5 + 1.5 + 40 s
    assert estimate_s(point(), 400_000_000) == pytest.approx(42.0)
    # platform-bound: 10,000 records/s of 333 bytes = 3.33 MB/s
    assert estimate_s(point(platform_records_s=10_000, end_to_end_s=31.0), 400_000_000) == pytest.approx(
        0.5 + (31.0 - 0.5 - 30.0) + 120.0
    )


def test_when_the_uploads_limit_the_ramp_is_kept_and_the_rest_goes_at_the_steady_rate():
    # 20 MB sent by 2.5 s (the ramp), then 80 MB at 16 MB/s until 7.5 s; 1.5 s after the last upload
    p = point(end_to_end_s=9.0, steady_upload_mb_s=16.0, ramp_end_s=2.5, last_upload_end_s=7.5)
    assert estimate_s(p, 400_000_000) == pytest.approx(2.5 + 380 / 16 + 1.5)


def test_the_steady_rate_is_that_of_the_bytes_after_the_first_fifth():
    from pipeline.bench.measures import steady

    # two uploads: 0-1 s at 10 MB/s, 1-5 s at 10 MB/s, 50 MB in all: 20 % (10 MB) is sent at 1 s
    rate, ramp_end = steady([[0.0, 1.0, 10e6], [1.0, 5.0, 40e6]])
    assert ramp_end == pytest.approx(1.0) and rate == pytest.approx(10e6)
    rate, ramp_end = steady([[0.0, 2.0, 10e6], [1.0, 2.0, 40e6]])  # 5 then 45 MB/s: 10 MB at 1.11 s
    assert ramp_end == pytest.approx(1 + 5 / 45) and rate == pytest.approx(40e6 / (2 - ramp_end))


def test_the_recommendation_names_the_best_point_and_the_estimate_in_words():
    rec = recommend([point("slow", end_to_end_s=20.0), point("fast"), point("bad", outcome="failed")], 40 * 10**9)
    assert rec["best"] == "fast" and rec["limit"] == "link"
    assert rec["estimate"] is not None and rec["estimate"]["text"].startswith(
        "40 GB: about 1 h 7 min at the best point"
    )
    assert "limited by the link" in rec["text"]


def test_the_emulator_a_bench_starts_plays_the_conditions_its_flags_name():
    import argparse

    from pipeline.bench.target import conditions_of, emulator_argv
    from pipeline.emulator.cli import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = ["--latency-ms", "40", "--bandwidth", "10", "--uplink", "60", "--slots", "16", "--process-ms", "500"]
    flags += ["--max-uploads", "2", "--retry-after", "3", "--faults", "throttle=0.1", "--light"]
    options = options_from_args(parser.parse_args(flags))
    again = options_from_args(parser.parse_args(emulator_argv(options)[3:]))  # after: python -m pipeline.emulator
    assert again == options.replace(host="127.0.0.1", port=0)
    assert conditions_of(options) == Conditions(
        latency_ms=40, conn_mbps=10, uplink_mbps=60, slots=16, base_s=0.5, per_record_us=1, max_uploads=2
    )


def test_a_real_datamart_needs_its_name_and_a_yes_or_a_terminals_confirmation():
    from pipeline.bench.target import Volume, check_allowed

    config = config_from_dict({"api": {"url": "https://api.mediarithmics.com"}, "import": {"datamart_id": "77"}})
    volume = Volume(500_000_000, 1_600_000, 12)
    asked: list[str] = []

    def ask(answer: bool):
        return lambda question: asked.append(question) or answer

    with pytest.raises(UsageError, match="without an explicit datamart"):
        check_allowed(config, datamart_given=None, yes=True, volume=volume, ask=ask(True))
    with pytest.raises(UsageError, match="nothing was sent to datamart 77"):
        check_allowed(config, datamart_given="77", yes=False, volume=volume, ask=ask(False))
    assert asked == [
        "a bench writes 12 point(s) x 500 MB (1,600,000 synthetic records each; 6 GB in all) into datamart 77 "
        "at https://api.mediarithmics.com. Go on? [y/N] "
    ]
    check_allowed(config, datamart_given="77", yes=False, volume=volume, ask=ask(True))  # a yes on the terminal
    check_allowed(config, datamart_given="77", yes=True, volume=volume, ask=None)
    local = config.replace(api={"url": "http://127.0.0.1:8080"})
    check_allowed(local, datamart_given=None, yes=False, volume=volume, ask=None)  # loopback: an emulator

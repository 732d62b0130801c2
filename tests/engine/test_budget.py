"""The error budget's parsing and its check while reading (``engine/budget.py``)."""

from __future__ import annotations

import pytest

from pipeline.engine.budget import ErrorBudget, ReadingBudget, parse_max_errors
from pipeline.errors import ConfigError


@pytest.mark.parametrize(
    ("spec", "budget", "allowed_of_1000"),
    [("0", ErrorBudget(count=0), 0), (10, ErrorBudget(count=10), 10), ("10", ErrorBudget(count=10), 10),
     ("1%", ErrorBudget(count=None, percent=1.0), 10), (" 0.5 % ", ErrorBudget(count=None, percent=0.5), 5),
     ("100%", ErrorBudget(count=None, percent=100.0), 1000)],
)  # fmt: skip
def test_counts_and_percentages(spec, budget, allowed_of_1000):
    parsed = parse_max_errors(spec)
    assert parsed == budget and parsed.allowed(1000) == allowed_of_1000


@pytest.mark.parametrize("spec", ["ten", "-1", "1.5", "101%", "", "1%%", True, None, 1.0])
def test_anything_else_names_the_key(spec):
    with pytest.raises(ConfigError, match="batch.max_errors"):
        parse_max_errors(spec)


def test_a_percentage_is_of_the_records_read_rounded_down():
    budget = parse_max_errors("1%")
    assert budget.allowed(5_010) == 50 and budget.within(50, 5_010) and not budget.within(51, 5_010)


def test_while_reading_a_count_stops_at_the_first_reject_over_it():
    reading = ReadingBudget(parse_max_errors("2"), total_bytes=1_000)
    for _ in range(2):
        reading.rejected()
    reading.batch_read(10, 100)
    assert not reading.exceeded()
    reading.rejected()
    assert reading.exceeded() and "3 records rejected" in reading.message()


def test_while_reading_a_percentage_is_of_the_estimated_total():
    reading = ReadingBudget(parse_max_errors("1%"), total_bytes=1_000_000)
    reading.rejected()  # a bad first line: 1 of 11 read, but of about 110,000 in the inputs
    reading.batch_read(10, 100)
    assert reading.estimated_total() == 110_000 and not reading.exceeded()
    for _ in range(2_000):
        reading.rejected()
    reading.batch_read(10, 200_000)  # the next batch ends a fifth of the way in: 2,021 read, of about 10,105
    assert reading.estimated_total() == 10_105 and reading.exceeded()


def test_no_budget_and_unknown_totals_never_stop_the_reading():
    zero = ReadingBudget(parse_max_errors("0"), total_bytes=1_000)
    zero.rejected()
    assert not zero.exceeded()  # 0: no budget, everything is sent, the end says exit 1
    gz = ReadingBudget(parse_max_errors("1%"), total_bytes=None)
    for _ in range(100):
        gz.rejected()
    assert not gz.exceeded()  # a .gz input: a percentage is checked at the end only

"""Pure tests of the emulator's line processing, fault parsing and rate limiter (no server)."""

from __future__ import annotations

import pytest

from pipeline import formats
from pipeline.emulator.faults import FaultDice, FaultPlan, RateLimiter, parse_faults
from pipeline.emulator.intake import CsvChecker, LineCounter, NdjsonChecker, make_checker

GOOD = b'{"type":"USER_AGENT","user_agent_id":"vec:1"}'
BAD = b'{"type":"USER_AGENT"}'


def feed_in_pieces(checker, data: bytes, size: int):
    for i in range(0, len(data), size):
        checker.feed(data[i : i + size])
    checker.finish()
    return checker


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_ndjson_lines_split_across_chunks(size: int) -> None:
    data = GOOD + b"\n" + BAD + b"\r\n\n   \nnot json\n" + GOOD.replace(b"1", b"2")
    c = feed_in_pieces(NdjsonChecker("USER_IDENTIFIERS_DELETION", max_record_bytes=1000), data, size)
    assert (c.lines, c.ok, c.failed, c.records) == (6, 2, 2, 4)
    assert [f.line for f in c.failures] == [2, 5]
    assert c.failures[0].record == BAD
    assert "user_agent_id" in c.failures[0].reason
    assert c.failures[1].reason.startswith("not valid JSON")
    assert bytes(c.digests) == formats.record_digest(GOOD) + formats.record_digest(GOOD.replace(b"1", b"2"))


def test_ndjson_bom_and_crlf_digests_match_record_digest() -> None:
    c = feed_in_pieces(
        NdjsonChecker("USER_IDENTIFIERS_DELETION", max_record_bytes=1000), b"\xef\xbb\xbf" + GOOD + b"\r\n", 2
    )
    assert c.ok == 1 and bytes(c.digests) == formats.record_digest(GOOD + b"\r\n")


def test_ndjson_overlong_line_fails_without_growing_memory() -> None:
    c = NdjsonChecker("USER_IDENTIFIERS_DELETION", max_record_bytes=100)
    c.feed(GOOD + b"\n" + b"x" * 150)
    c.feed(b"y" * 10_000)
    c.feed(b"z\n" + GOOD + b"\n")
    c.finish()
    assert (c.lines, c.ok, c.failed) == (3, 2, 1)
    assert c.failures[0].line == 2 and "longer than 100" in c.failures[0].reason


CSV_HEAD = b"operation,expiration_duration,user_account_id,compartment_id,segment_id\n"


@pytest.mark.parametrize("size", [1, 5, 4096])
def test_csv_quoted_newlines_make_one_record(size: int) -> None:
    rows = [
        b'UPDATE,0,"u1\r\nwith newline",1000,7',
        b'UPDATE,0,"u""2",1000,7',
        b"UPDATE,x,u3,1000,7",
        b"UPDATE,0,u4,1000",
    ]
    data = CSV_HEAD + b"\r\n".join(rows) + b"\r\n"
    c = feed_in_pieces(CsvChecker(max_record_bytes=1000), data, size)
    assert c.header == ["operation", "expiration_duration", "user_account_id", "compartment_id", "segment_id"]
    assert (c.ok, c.failed, c.lines) == (2, 2, 6)
    assert [f.line for f in c.failures] == [5, 6]
    assert "expiration_duration" in c.failures[0].reason and "fields" in c.failures[1].reason
    assert bytes(c.digests) == formats.record_digest(rows[0]) + formats.record_digest(rows[1])


def test_csv_bad_header_fails_every_row() -> None:
    c = feed_in_pieces(CsvChecker(max_record_bytes=1000), b"UPDATE,0,u1,1000,7\nUPDATE,0,u2,1000,7\n", 4)
    assert c.header is None and c.problem and "line 1" in c.problem
    assert (c.ok, c.failed) == (0, 1)
    assert c.failures[0].line == 2 and "no valid header" in c.failures[0].reason


def test_csv_unterminated_quote_at_end() -> None:
    c = feed_in_pieces(CsvChecker(max_record_bytes=1000), CSV_HEAD + b'UPDATE,0,"u1,1000,7\n', 3)
    assert (c.ok, c.failed) == (0, 1) and "unterminated" in c.failures[0].reason


def test_light_counter_counts_lines_only() -> None:
    c = feed_in_pieces(LineCounter(), b"a\nb\nnot json at all", 2)
    assert (c.lines, c.ok, c.failed, c.size) == (3, 3, 0, 19)
    c = feed_in_pieces(LineCounter(header=True), CSV_HEAD + b"x\n", 3)
    assert (c.lines, c.ok) == (2, 1)
    assert isinstance(make_checker("USER_SEGMENT", formats.CSV, light=False, max_record_bytes=9), CsvChecker)
    assert isinstance(make_checker("USER_PROFILE", formats.NDJSON, light=True, max_record_bytes=9), LineCounter)


def test_parse_fault_spec_and_dict() -> None:
    spec = "throttle=0.1,error5xx=0.05,reset_before=0.02,drop_after=0.02,slow=0.1:2s,lost=0.01,failed=0.01,poll5xx=0.05"
    plan = parse_faults(spec)
    assert plan == FaultPlan(
        throttle=0.1, error5xx=0.05, reset_before=0.02, drop_after=0.02, slow=0.1, slow_s=2.0,
        lost=0.01, failed=0.01, poll5xx=0.05,
    )  # fmt: skip
    assert parse_faults({"slow": "1:250ms"}).slow_s == 0.25
    assert parse_faults({"slow": (0.5, 3)}) == FaultPlan(slow=0.5, slow_s=3.0)
    assert parse_faults({"slow": 1}) == FaultPlan(slow=1.0)
    assert parse_faults("") == parse_faults(None) == FaultPlan()


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("throttle=2", "throttle=2"),
        ("bogus=0.1", "bogus"),
        ("lost", "lost"),
        ("slow=0.1:fast", "fast"),
        ("poll5xx=x", "x"),
    ],
)
def test_bad_fault_spec_names_the_item(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_faults(spec)


def test_fault_decisions_are_reproducible() -> None:
    plan = FaultPlan(throttle=0.3, error5xx=0.3, lost=0.3, failed=0.3, poll5xx=0.5, slow=0.5)

    def run(seed: int):
        dice = FaultDice(plan, seed)
        return [(dice.upload_fault(), dice.upload_delay(), dice.fate(), dice.poll_fault()) for _ in range(50)]

    assert run(1) == run(1)
    assert run(1) != run(2)
    kinds = {u[0][0] for u in run(1)}
    assert {"throttle", "error5xx", None} <= kinds
    assert {u[0][1] for u in run(3)} <= {500, 502, 503}


def test_rate_limiter_token_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, lambda: now[0])
    assert limiter.acquire("t") == 0 and limiter.acquire("t") == 0
    wait = limiter.acquire("t")
    assert wait == pytest.approx(0.5)
    assert limiter.acquire("other") == 0
    now[0] += 0.5
    assert limiter.acquire("t") == 0
    assert RateLimiter(0, lambda: 0.0).acquire("t") == 0

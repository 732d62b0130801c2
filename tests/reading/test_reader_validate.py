"""validate_block and its fast pre-checks agree with pipeline.formats, the shared rules."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import formats
from pipeline.reading.validate import (
    FAST_CHECKS,
    explain,
    validate_block,
    validate_counted,
    validate_file_block,
)
from pipeline.reading.validate_csv import _validate_csv_block, _validate_csv_records, segment_row_check

VALUES = st.sampled_from([None, "", 0, 1, -5, True, False, 1.5, "x", "vec:1", [], [{}], {}, {"$email": "a@b"}])
KEYS = ["$ts", "$type", "$events", "$user_agent_id", "$user_account_id", "$compartment_id", "$email_hash"]
GOOD = {"$ts": 1, "$type": "SITE_VISIT", "$events": [], "$user_agent_id": "vec:1"}


@st.composite
def activities(draw):
    rec = dict(GOOD) if draw(st.booleans()) else {}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=5)):
        if draw(st.booleans()):
            rec[key] = draw(VALUES)
        else:
            rec.pop(key, None)
    return rec


@settings(max_examples=400, deadline=None)
@given(activities())
def test_fast_activity_check_never_accepts_what_formats_rejects(rec):
    fast = FAST_CHECKS["USER_ACTIVITY"]
    if fast(rec):
        assert formats.check_record("USER_ACTIVITY", rec) is None


def test_fast_activity_check_accepts_the_usual_lines():
    fast = FAST_CHECKS["USER_ACTIVITY"]
    for ident in (
        {"$user_agent_id": "vec:1"},
        {"$user_account_id": "u", "$compartment_id": "1"},
        {"$email_hash": "ab"},
        {"$email_hash": {"$email": "a@b"}},
    ):
        assert fast({**GOOD, "$user_agent_id": None, **ident})


LINES = st.one_of(
    activities().map(orjson.dumps),
    st.sampled_from([b"", b"  ", b"\r", b"[", b"{", b"not json", b"\xff\xfe", b"42", b'{"$ts":1},']),
)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(LINES, min_size=1, max_size=30),
    crlf=st.booleans(),
    last_nl=st.booleans(),
    first=st.integers(1, 1000),
    doc=st.sampled_from(["USER_ACTIVITY", "USER_PROFILE"]),
    max_len=st.sampled_from([0, 40, 10_000]),
)
def test_validate_block_matches_line_by_line_check(lines, crlf, last_nl, first, doc, max_len):
    end = b"\r\n" if crlf else b"\n"
    data = end.join(lines) + (end if last_nl else b"")
    if not data:
        return
    expected = []
    pos = 0
    for i, raw in enumerate(data.split(b"\n")):
        length = len(raw) + 1 if pos + len(raw) < len(data) else len(raw)
        if length == 0:
            break
        if max_len and length > max_len:
            expected.append((pos, length, first + i, "too large"))
        else:
            reason = formats.check_ndjson_line(doc, raw)
            if reason is not None:
                expected.append((pos, length, first + i, None if not raw.strip() else explain(raw, reason)))
        pos += length
    got = validate_block(doc, data, first, max_len)
    assert [(o, n, ln) for o, n, ln, _ in got] == [(o, n, ln) for o, n, ln, _ in expected]
    for (_, _, _, r), (_, _, _, e) in zip(got, expected, strict=True):
        assert r == e or (e == "too large" and r.startswith("record larger than max_bytes"))
    count, rel = validate_counted(doc, data, max_len)
    assert count == data.count(b"\n") + (not data.endswith(b"\n"))
    assert [(o, n, ln + first) for o, n, ln, _ in rel] == [(o, n, ln) for o, n, ln, _ in got]


def test_validate_file_block_reads_its_slice(tmp_path):
    p = tmp_path / "a.ndjson"
    p.write_bytes(b"junk\n" + orjson.dumps(GOOD) + b"\n[\n")
    assert validate_file_block("USER_ACTIVITY", str(p), 5, p.stat().st_size - 5) == (
        2,
        [(len(orjson.dumps(GOOD)) + 1, 2, 1, validate_block("USER_ACTIVITY", b"[\n", 0)[0][3])],
    )


def test_hints():
    (problem,) = validate_block("USER_ACTIVITY", b"[\n", 1)
    assert problem[3].startswith("not a JSON object") and "JSON array" in problem[3]
    (problem,) = validate_block("USER_ACTIVITY", b'  "$ts": 1,\n', 1)
    assert "pretty-printed" in problem[3]
    (problem,) = validate_block("USER_ACTIVITY", orjson.dumps(GOOD) + b",\n", 1)
    assert "trailing comma" in problem[3]


#: Values per column, good and bad, so that rows often pass all checks but one.
SEGMENT_VALUES = {
    "operation": ["UPDATE", "DELETE", "", "update", "x"],
    "expiration_duration": ["43200", "0", "", "-1", "1.5", "²", " 5"],
}
OTHER_VALUES = ["", "", "12", "vec:1", " "]


@st.composite
def segment_headers_and_rows(draw):
    optional = sorted(formats.CSV_COLUMNS - formats.CSV_REQUIRED_COLUMNS)
    columns = ["operation", "expiration_duration", *draw(st.lists(st.sampled_from(optional), unique=True))]
    columns = draw(st.permutations(columns))
    row = [draw(st.sampled_from(SEGMENT_VALUES.get(c, OTHER_VALUES))) for c in columns]
    shape = draw(st.sampled_from(["same", "same", "same", "longer", "shorter"]))
    if shape == "longer":
        row.append("extra")
    elif shape == "shorter":
        row.pop()
    return columns, row


@settings(max_examples=600, deadline=None)
@given(segment_headers_and_rows())
def test_fast_segment_row_check_never_accepts_what_formats_rejects(header_and_row):
    columns, row = header_and_row
    if segment_row_check(columns)(row):
        assert formats.check_csv_row(columns, row) is None


def test_fast_segment_row_check_accepts_the_usual_rows():
    columns = ["operation", "expiration_duration", "compartment_id", "user_account_id", "segment_technical_name"]
    fast = segment_row_check(columns)
    assert fast(["UPDATE", "43200", "1000", "acc-1", "seg"]) and fast(["DELETE", "0", "1000", "acc-1", "seg"])
    assert not fast(["UPDATE", "43200", "", "acc-1", "seg"])  # an account needs its compartment
    by_agent = segment_row_check(["operation", "expiration_duration", "user_agent_id", "segment_id"])
    assert by_agent(["UPDATE", "5", "vec:1", "12"]) and not by_agent(["UPDATE", "5", "vec:1", ""])


SEGMENT_COLUMNS = ["operation", "expiration_duration", "compartment_id", "user_account_id", "segment_id", "data_bag"]
PLAIN_RECORDS = [
    b"UPDATE,43200,1000,acc-1,12,x",
    b'UPDATE,43200,1000,acc-1,12,"a\nb"',  # a quoted newline: one record on two lines
    b'DELETE,0,1000,"acc-2",12,"say ""hi"",\n\nbye"',
    b"DELETE,x,1000,acc-1,12,",  # bad duration
    b"UPDATE,1",  # too few fields
    b"",  # blank
]
ODD_RECORDS = [
    b"   ",  # a line of spaces (blank) ...
    b'"   "',  # ... or a quoted blank field: the record-by-record path tells them apart
    b'UPDATE,43200,1000,ac"c,12,x',  # a stray quote: csv and quote parity disagree
    b'UPDATE,43200,1000,a"b,12,"x\ny"',  # ... on where this one ends, too (with another stray quote,
    # csv and parity count as many multi-line records, at different places)
    b'UPDATE,43200,1000,acc,12,"x"y',  # malformed quoting
    b"UPDATE,43200,1000,\xff,12,x",  # invalid UTF-8
    b"UPDATE,43200,1000,acc,12,a\rb",  # a bare CR
    "\u00a0".encode(),
    b"\r",  # blank with LF line ends, a bare CR before CRLF ones
]


def _settled(result):
    """What the reader's settle step sees: the told records, each with the extra lines of the good
    multi-line records before it, and the extra lines after the last one."""
    n, entries = result
    told, extra = [], 0
    for off, length, line, reason, k in entries:
        if reason == "":
            extra += k - 1
        else:
            told.append((off, length, line, reason, k, extra))
            extra = 0
    return n, told, extra


def _block(records, crlf, last_nl):
    end = b"\r\n" if crlf else b"\n"
    data = end.join(records)
    return data + end if last_nl else data


@settings(max_examples=500, deadline=None)
@given(
    records=st.lists(st.sampled_from(PLAIN_RECORDS + ODD_RECORDS), min_size=1, max_size=25),
    crlf=st.booleans(),
    last_nl=st.booleans(),
    first=st.integers(0, 50),
)
def test_csv_block_path_agrees_with_the_record_by_record_path(records, crlf, last_nl, first):
    data = _block(records, crlf, last_nl)
    whole = _validate_csv_block(SEGMENT_COLUMNS, data, first)
    if whole is not None:
        assert _settled(whole) == _settled(_validate_csv_records(SEGMENT_COLUMNS, data, 0, first))


@settings(max_examples=200, deadline=None)
@given(records=st.lists(st.sampled_from(PLAIN_RECORDS), min_size=1, max_size=25), crlf=st.booleans())
def test_plain_csv_blocks_take_the_block_path(records, crlf):
    data = _block(records, crlf, True)
    whole = _validate_csv_block(SEGMENT_COLUMNS, data, 1)
    assert whole is not None
    assert _settled(whole) == _settled(_validate_csv_records(SEGMENT_COLUMNS, data, 0, 1))


def test_a_broken_one_line_object_gets_no_pretty_printing_hint():
    # a whole object on one line that is not valid JSON (cut short, a stray quote) is just invalid
    for line in (b'{"$user_agent_id": "vec:1", "$type": "TOUCH"', b'{"a": "b"c"}'):
        reason = explain(line, "not valid JSON: unexpected end of data")
        assert "pretty-printed" not in reason, line
    assert "pretty-printed" in explain(b'  "$type": "TOUCH",', "not valid JSON: trailing comma")

"""Property tests: the batches partition the good records exactly, whatever the input and limits."""

from __future__ import annotations

import gzip
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline.reading.reader as reader
from pipeline import formats
from pipeline.reading.csvscan import open_quote as open_quote_reason
from pipeline.reading.reader import BatchReader
from pipeline.reading.reader_options import ReaderOptions

HEADER = b"operation,expiration_duration,user_agent_id,segment_id,data_bag\r\n"
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Rec:
    raw: bytes  # with its line end
    kind: str  # good, bad, blank
    line: int = 0


text = st.text(alphabet="ab ,\"'é\n", max_size=60)


@st.composite
def ndjson_recs(draw):
    kind = draw(st.sampled_from(["good"] * 6 + ["bad", "blank"]))
    if kind == "good":
        body = orjson.dumps(
            {"operation": "UPDATE", "expiration_duration": 0, "user_agent_id": "vec:1", "segment_id": "1",
             "data_bag": draw(text) * draw(st.sampled_from([1, 1, 1, 20]))}
        )  # fmt: skip
    elif kind == "bad":
        body = draw(st.sampled_from([b"[", b"]", b'{"operation":"UPDATE"}', b"nope", b'"s"', b'{"a":"\xff"}', b"{"]))
    else:
        body = draw(st.sampled_from([b"", b"  ", b"\t"]))
    return Rec(body + draw(st.sampled_from([b"\n", b"\r\n"])), kind)


def quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


@st.composite
def csv_recs(draw):
    kind = draw(st.sampled_from(["good"] * 6 + ["bad", "blank"]))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    if kind == "good":
        bag = draw(text) * draw(st.sampled_from([1, 1, 1, 20]))
        body = f"UPDATE,0,vec:{draw(st.integers(0, 99))},12,{quote(bag) if draw(st.booleans()) else 'x'}"
    elif kind == "bad":
        body = draw(st.sampled_from(["UPDATE,0", "NOPE,0,vec:1,12,x", 'UPDATE,"a\nb",vec:1,12,x']))
    else:
        body = ""
    return Rec((body + end).encode(), kind)


def run(data: bytes, tmp: Path, *, is_csv: bool, gz: bool, buffer: int, **kw):
    path = tmp / ("in.csv" if is_csv else "in.ndjson")
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    old = reader.BUFFER_SIZE, reader.BLOCK_SIZE
    reader.BUFFER_SIZE = buffer
    reader.BLOCK_SIZE = max(1, buffer // 3)
    try:
        opts = ReaderOptions(
            document_type="USER_SEGMENT",
            mime_type=formats.CSV if is_csv else formats.NDJSON,
            workers=0,
            spool_dir=tmp,
            **kw,
        )
        rejects = []
        batches = list(BatchReader([path], opts, rejects.append))
        return batches, rejects
    finally:
        reader.BUFFER_SIZE, reader.BLOCK_SIZE = old


def check_partition(recs, batches, rejects, *, header, max_bytes, max_lines, validate, exact_records=None):
    """``exact_records``: batches count records, not lines (validated input, and CSV always)."""
    exact = validate if exact_records is None else exact_records
    limit = max_bytes - len(header)
    line = 1 + header.count(b"\n")
    for r in recs:
        r.line = line
        line += r.raw.count(b"\n") + (not r.raw.endswith(b"\n"))
    sent = [r for r in recs if len(r.raw) <= limit and (r.kind == "good" or not validate)]
    expected_rejects = [r.line for r in recs if len(r.raw) > limit or (validate and r.kind == "bad")]
    assert [x.line for x in rejects] == expected_rejects
    assert [b.number for b in batches] == list(range(1, len(batches) + 1))
    i = 0
    for b in batches:
        body = b.read_body()
        assert body.startswith(header) and len(body) == b.size <= max_bytes
        rest = body[len(header) :]
        got = []
        while rest:  # the body is whole records, in order
            assert rest.startswith(sent[i].raw), (rest[:80], sent[i].raw[:80])
            rest = rest[len(sent[i].raw) :]
            got.append(sent[i])
            i += 1
        assert got and got[0].line == b.first_line
        assert got[-1].line + got[-1].raw.count(b"\n") - got[-1].raw.endswith(b"\n") == b.last_line
        if max_lines:
            assert len(got) <= max_lines
        if exact:
            assert b.records == len(got)
        if i < len(sent):  # greedy: the next record did not fit
            nxt = 1 if exact else sent[i].raw.count(b"\n") + (not sent[i].raw.endswith(b"\n"))
            full_lines = max_lines and b.records + nxt > max_lines
            assert full_lines or b.size + len(sent[i].raw) > max_bytes
    assert i == len(sent)


@SETTINGS
@given(
    recs=st.lists(ndjson_recs(), max_size=40),
    bom=st.booleans(),
    last_nl=st.booleans(),
    max_bytes=st.integers(150, 3000),
    max_lines=st.sampled_from([0, 0, 1, 2, 3, 7]),
    validate=st.booleans(),
    gz=st.booleans(),
    buffer=st.sampled_from([64, 300, 1024, 1 << 16]),
)
def test_ndjson_partition(recs, bom, last_nl, max_bytes, max_lines, validate, gz, buffer):
    if recs and not last_nl:
        recs[-1].raw = recs[-1].raw.rstrip(b"\r\n")
        if not recs[-1].raw:
            recs.pop()
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(r.raw for r in recs)
    with tempfile.TemporaryDirectory() as tmp:
        batches, rejects = run(
            data, Path(tmp), is_csv=False, gz=gz, buffer=buffer, max_bytes=max_bytes, max_lines=max_lines,
            validate=validate,
        )  # fmt: skip
        check_partition(recs, batches, rejects, header=b"", max_bytes=max_bytes, max_lines=max_lines, validate=validate)


@SETTINGS
@given(
    recs=st.lists(csv_recs(), max_size=40),
    last_nl=st.booleans(),
    open_quote=st.booleans(),
    max_bytes=st.integers(150, 3000),
    max_lines=st.sampled_from([0, 0, 1, 2, 3, 7]),
    validate=st.booleans(),
    gz=st.booleans(),
    buffer=st.sampled_from([128, 300, 1024, 1 << 16]),
)
def test_csv_partition(recs, last_nl, open_quote, max_bytes, max_lines, validate, gz, buffer):
    if recs and not last_nl:
        recs[-1].raw = recs[-1].raw.rstrip(b"\r\n")
        if not recs[-1].raw:
            recs.pop()
    data = HEADER + b"".join(r.raw for r in recs)
    tail = b'UPDATE,0,vec:1,12,"open\nUPDATE,0,vec:2,12,x\n' if open_quote and last_nl else b""
    with tempfile.TemporaryDirectory() as tmp:
        batches, rejects = run(
            data + tail, Path(tmp), is_csv=True, gz=gz, buffer=buffer, max_bytes=max_bytes,
            max_lines=max_lines, validate=validate,
        )  # fmt: skip
        if tail:
            line = 2 + sum(r.raw.count(b"\n") for r in recs)  # after the header and the records
            assert (rejects[-1].line, rejects[-1].reason) == (line, open_quote_reason(line, 2))
            rejects = rejects[:-1]
        check_partition(
            recs, batches, rejects, header=HEADER, max_bytes=max_bytes, max_lines=max_lines, validate=validate,
            exact_records=True,
        )  # fmt: skip

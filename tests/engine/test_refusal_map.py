"""Mapping error-file entries to source lines, on hand-made batches (the CLI tests cover whole runs)."""

from __future__ import annotations

from pathlib import Path

from pipeline.client.error_file import ErrorEntry, parse_entry
from pipeline.engine.refusal_map import SKIPPED, BatchMapper, BatchSource, SourceRecord, Span
from pipeline.reading.batch import body_digest

HEADER = b"operation,user_account_id,data_bag\n"


def _source(path: Path, data: bytes, *, csv: bool, rejected: frozenset[int] = frozenset()) -> BatchSource:
    path.write_bytes((HEADER if csv else b"") + data)
    start = len(HEADER) if csv else 0
    return BatchSource(
        path,
        start,
        start + len(data),
        first_line=2 if csv else 1,
        header=HEADER if csv else b"",
        csv=csv,
        rejected=rejected,
        skip_blank=True,
    )


def test_the_digest_proves_the_records_re_read_are_those_sent(tmp_path):
    src = _source(tmp_path / "in.ndjson", b'{"a":1}\n\n{"bad"\n{"a":2}\r\n', csv=False, rejected=frozenset({3}))
    assert src.digest() == body_digest([b'{"a":1}\n', b'{"a":2}\r\n'])  # blank line and reject not sent
    assert [(r.upload_line, r.source_line) for r in src.records()] == [(1, 1), (2, 4)]


def test_by_line_checked_against_the_text_else_by_text(tmp_path):
    src = _source(tmp_path / "in.ndjson", b'{"a":1}\n{"a":2}\n{"a":3}\n', csv=False)
    mapper = BatchMapper(src, by_line=True)
    rec = mapper.map(ErrorEntry(line=2, text='{"a":2}', reason="r", raw="", structured=True))
    assert isinstance(rec, SourceRecord) and rec.source_line == 2
    rec = mapper.map(ErrorEntry(line=1, text='{"a":3}', reason="r", raw="", structured=True))  # wrong number
    assert isinstance(rec, SourceRecord) and rec.source_line == 3, "the text wins over a wrong number"
    assert mapper.map(ErrorEntry(line=3, text='{"a":3}', reason="r", raw="", structured=True)) == SKIPPED
    assert mapper.duplicates == 1, "a record listed twice is mapped once"
    assert mapper.map(ErrorEntry(line=None, text="nothing like it", reason=None, raw="x")) is None


def test_a_raw_multi_line_csv_record_maps_once_to_its_first_line(tmp_path):
    data = b'BOGUS,u1,"one\ntwo"\nUPDATE,u2,x\nBOGUS,u3,"a\r\nb\nc"\n'
    src = _source(tmp_path / "in.csv", data, csv=True)
    mapper = BatchMapper(src, by_line=True)
    raw = [b"operation,user_account_id,data_bag", b'BOGUS,u1,"one', b'two"', b'BOGUS,u3,"a', b"b", b'c"']
    got = [mapper.map(parse_entry(x)) for x in raw]
    assert got[0] == SKIPPED, "the header row, listed raw, is not a record"
    assert isinstance(got[1], SourceRecord) and got[1].source_line == 2 and got[2] == SKIPPED
    assert isinstance(got[3], SourceRecord) and got[3].source_line == 5 and got[4] == got[5] == SKIPPED


def test_out_of_order_entries_are_found_again_from_the_start(tmp_path):
    src = _source(tmp_path / "in.ndjson", b"".join(b'{"a":%d}\n' % i for i in range(50)), csv=False)
    mapper = BatchMapper(src, by_line=True)
    for n in (40, 3, 45, 1):
        rec = mapper.map(ErrorEntry(line=n, text=None, reason="r", raw="", structured=True))
        assert isinstance(rec, SourceRecord) and rec.source_line == n
    rec = mapper.map(ErrorEntry(line=None, text='{"a":10}', reason=None, raw=""))  # behind: from the start
    assert isinstance(rec, SourceRecord) and rec.source_line == 11


def test_a_retry_batch_of_pieces_far_apart_maps_each_upload_line_to_its_source_line(tmp_path):
    """A retry's body: the header, then pieces of the source (lines 3-4, 9, 12-13 of a CSV whose line
    4 continues the record of line 3): each piece's lines counted from its own first line."""
    rows = [b"UPDATE,u%d,x\n" % i for i in range(2, 14)]
    rows[1] = b'BOGUS,u3,"a\nb"\n'  # lines 3-4: one record (the next row is line 5)
    data = HEADER + b"".join(rows[:2]) + b"".join(rows[3:])
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    at = {}  # source line -> offset of its record
    pos, line = len(HEADER), 2
    for row in [rows[0], rows[1], *rows[3:]]:
        at[line] = (pos, pos + len(row))
        pos, line = pos + len(row), line + row.count(b"\n")
    spans = [Span(at[3][0], at[5][1], 3), Span(*at[9], 9), Span(at[12][0], at[13][1], 12)]
    src = BatchSource(
        path, 0, 0, first_line=0, header=HEADER, csv=True, rejected=frozenset(), skip_blank=True, spans=spans
    )
    got = [(r.upload_line, r.source_line, r.lines) for r in src.records()]
    assert got == [(2, 3, 2), (4, 5, 1), (5, 9, 1), (6, 12, 1), (7, 13, 1)]
    sent = [data[s.start : s.end] for s in spans]
    assert src.digest() == body_digest([HEADER, *sent])
    mapper = BatchMapper(src, by_line=True)
    rec = mapper.map(ErrorEntry(line=5, text=None, reason="r", raw="", structured=True))
    assert isinstance(rec, SourceRecord) and rec.source_line == 9
    rec = mapper.map(ErrorEntry(line=None, text='BOGUS,u3,"a\nb"', reason="r", raw="", structured=True))
    assert isinstance(rec, SourceRecord) and rec.source_line == 3

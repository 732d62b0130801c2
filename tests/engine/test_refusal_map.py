"""Mapping error-file entries to source lines, on hand-made batches (the CLI tests cover whole runs)."""

from __future__ import annotations

from pathlib import Path

from pipeline.client.error_file import ErrorEntry, parse_entry
from pipeline.engine.refusal_map import SKIPPED, BatchMapper, BatchSource, SourceRecord
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

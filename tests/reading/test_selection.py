"""Finding records again by line (``reading.selection``), and the retry's batch source."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.reading.batch import Reject
from pipeline.reading.csvscan import CsvGrammar, NdjsonGrammar
from pipeline.reading.planned_batch import Piece, PlannedBatch, body_digest_of, pack
from pipeline.reading.selection import (
    LineLocator,
    count_lines,
    input_start,
    iter_records,
    recheck,
    record_at,
    same_text,
    scan_batch,
    scan_lines,
)
from pipeline.reading.selection_reader import SelectionReader
from pipeline.reading.source_view import SourceView

CSV = (
    b"operation,expiration_duration,user_account_id,segment_id,data_bag\n"
    b'UPDATE,0,a,1,"x\ny"\nUPDATE,0,b,1,z\nUPDATE,0,c,1,"p ""q""\nr\ns"\nUPDATE,0,d,1,w'
)


def test_csv_records_stay_whole_and_are_numbered_by_their_first_line(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(CSV)
    with SourceView(path) as view:
        start = input_start(view, is_csv=True)
        assert start.header.endswith(b"data_bag\n") and start.line == 2
        recs = list(iter_records(view, start.offset, start.line, CsvGrammar, 1000))
    assert [(r.line, r.lines) for r in recs] == [(2, 2), (4, 1), (5, 3), (8, 1)]
    assert recs[2].raw == b'UPDATE,0,c,1,"p ""q""\nr\ns"\n' and recs[-1].raw == b"UPDATE,0,d,1,w"


@pytest.mark.parametrize("compressed", [False, True])
def test_a_line_is_found_from_the_nearest_anchor(tmp_path, compressed):
    data = b"".join(b'{"n":%d}\n' % i for i in range(1, 5001))
    path = tmp_path / ("in.ndjson.gz" if compressed else "in.ndjson")
    path.write_bytes(gzip.compress(data) if compressed else data)
    with SourceView(path) as view:
        third_thousand = data.index(b'{"n":3000}')
        locator = LineLocator(view, [(1, 0), (3000, third_thousand)])
        assert record_at(locator, 4321, NdjsonGrammar, 100).raw == b'{"n":4321}\n'
        assert record_at(locator, 17, NdjsonGrammar, 100).raw == b'{"n":17}\n'  # back: the view goes back too
        assert count_lines(view) == 5000
        with pytest.raises(InputError, match="no line 6001"):
            locator.offset_of(6001)


def test_a_batch_is_its_records_minus_the_gaps_and_a_long_record_is_streamed_past(tmp_path):
    """A record longer than a read (1 MiB) and than any batch: streamed past, not held."""
    lines = [b'{"n":1}\n', b"   \n", b'{"n":3}\n', b'{"big":"' + b"x\\n" * (3 << 19) + b'"}\n', b'{"n":5}\n']
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"".join(lines))
    with SourceView(path) as view:
        recs = list(iter_records(view, 0, 1, NdjsonGrammar, 1000))
        assert [r.whole for r in recs] == [True, True, True, False, True] and recs[4].line == 5
        pieces, digest = scan_batch(
            view,
            start=0,
            first_line=1,
            last_line=5,
            header=b"",
            grammar=NdjsonGrammar,
            is_gap=lambda r: r.line == 4 or not r.raw.strip(),
            limit=1000,
        )
        assert [(p.first_line, p.last_line, p.records) for p in pieces] == [(1, 1, 1), (3, 3, 1), (5, 5, 1)]
        assert digest == body_digest_of(view, b"", pieces)
        assert "larger than max_bytes" in str(recheck(recs[3], document_type="USER_ACTIVITY", columns=None, limit=1000))


def test_pack_never_splits_a_piece_and_maps_upload_lines_back():
    pieces = [Piece(0, 40, 2, 3, 1), Piece(40, 60, 4, 4, 1), Piece(100, 150, 9, 9, 1)]
    assert pack("f", b"h\n", pieces, max_bytes=70, max_lines=0) == [[Piece(0, 60, 2, 4, 2)], [pieces[2]]]
    batch = PlannedBatch(1, "f", b"h\n", (pieces[0], pieces[2]), "d")
    assert [batch.source_line(n) for n in (1, 2, 3, 4, 5)] == [None, 2, 3, 9, None]


def test_same_text_compares_what_a_rejects_file_kept():
    assert same_text(b"abc\r\n", "abc") and not same_text(b"abd\n", "abc")
    assert same_text(b"x" * 5000 + b"\n", "x" * 4096 + "...[truncated: 5001 bytes in all]")
    assert same_text(b"anything\n", None)


def test_the_selection_reader_checks_each_batch_against_its_digest(tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":3}\n')
    with SourceView(path) as view:
        pieces = (Piece(0, 8, 1, 1, 1), Piece(16, 24, 3, 3, 1))
        planned = PlannedBatch(1, str(path), b"", pieces, body_digest_of(view, b"", pieces))
    rejects: list[Reject] = []
    reader = SelectionReader([planned], [Reject(str(path), 2, "bad", "x")], rejects.append)
    (batch,) = list(reader)
    assert batch.read_body() == b'{"n":1}\n{"n":3}\n' and len(rejects) == 1
    assert reader.stats[Path(path)].records == 2 and reader.stats[Path(path)].rejected == 1
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":4}\n')
    with pytest.raises(InputError, match="changed since the retry was planned"):
        list(SelectionReader([planned], [], rejects.append))


@pytest.mark.parametrize("seed", range(12))
def test_the_fast_ndjson_scan_finds_what_the_record_walk_finds(tmp_path, monkeypatch, seed):
    rnd = random.Random(seed)
    kinds = [b'{"n":%d}' % i for i in range(300)]
    lines = [rnd.choice([k, b"", b"  \r", b'{"pad":"' + b"y" * rnd.randint(0, 300) + b'"}']) for k in kinds]
    data = b"\n".join(lines) + rnd.choice([b"\n", b""])
    path = tmp_path / "in.ndjson"
    path.write_bytes(data)
    gaps = set(rnd.sample(range(1, 301), 30))
    first, last = rnd.randint(1, 50), rnd.randint(200, 300)
    start = sum(len(x) + 1 for x in lines[: first - 1])
    chunk = rnd.choice([64, 300, 1 << 20])
    monkeypatch.setattr("pipeline.reading.selection.CHUNK", chunk)  # the reads of the scans
    monkeypatch.setattr("pipeline.reading.source_view.CHUNK", chunk)  # SourceView.chunks, as before its move
    with SourceView(path) as view:
        for drop_blank in (True, False):
            walked = scan_batch(
                view,
                start=start,
                first_line=first,
                last_line=last,
                header=b"",
                grammar=NdjsonGrammar,
                is_gap=lambda r, d=drop_blank: r.line in gaps or (d and not r.raw.strip()),
                limit=10_000,
            )
            fast = scan_lines(
                view, start=start, first_line=first, last_line=last, gaps=gaps, drop_blank=drop_blank, limit=10_000
            )
            assert fast == walked

"""Reader: USER_SEGMENT CSV (header, quotes, cutting, validation on and off)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline import formats
from pipeline.reading.reader import BatchReader
from pipeline.reading.reader_options import ReaderOptions

HEADER = b"operation,expiration_duration,user_agent_id,segment_id,data_bag\n"


def row(i: int, bag: str = "x") -> bytes:
    return f"UPDATE,0,vec:{i},12,{bag}\n".encode()


def read(paths, **kw):
    kw.setdefault("document_type", "USER_SEGMENT")
    kw.setdefault("mime_type", formats.CSV)
    kw.setdefault("workers", 0)
    rejects = []
    reader = BatchReader([Path(p) for p in paths], ReaderOptions(**kw), rejects.append)
    return list(reader), rejects, reader.stats


def write(tmp_path: Path, data: bytes, name: str = "a.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("validate", [True, False])
def test_header_repeated_in_every_batch(tmp_path, validate):
    p = write(tmp_path, HEADER + b"".join(row(i) for i in range(10)))
    batches, rejects, _ = read([p], max_lines=4, validate=validate)
    assert not rejects and [b.records for b in batches] == [4, 4, 2]
    for b in batches:
        body = b.read_body()
        assert body.startswith(HEADER) and b.header == HEADER and b.size == len(body)
    assert [b.first_line for b in batches] == [2, 6, 10]
    assert b"".join(b.read_body()[len(HEADER) :] for b in batches) == p.read_bytes()[len(HEADER) :]


@pytest.mark.parametrize("validate", [True, False])
def test_max_bytes_includes_header(tmp_path, validate):
    p = write(tmp_path, HEADER + b"".join(row(i) for i in range(10)))
    limit = len(HEADER) + 2 * len(row(1))
    batches, _, _ = read([p], max_bytes=limit, validate=validate)
    assert [b.records for b in batches] == [2] * 5 and all(b.size == limit for b in batches)


@pytest.mark.parametrize("validate", [True, False])
def test_quoted_commas_quotes_newlines_never_split(tmp_path, validate):
    tricky = row(1, '"a,b ""quoted""\nsecond line\r\nthird"')
    data = HEADER + row(0) + tricky + row(2) + tricky
    p = write(tmp_path, data)
    limit = len(HEADER) + len(tricky) + 1
    batches, rejects, _ = read([p], max_bytes=limit, validate=validate)
    assert not rejects
    recs = [b.read_body()[len(HEADER) :] for b in batches]
    assert recs == [row(0), tricky, row(2), tricky]
    assert [(b.first_line, b.last_line) for b in batches] == [(2, 2), (3, 5), (6, 6), (7, 9)]
    assert all(b.records == 1 for b in batches)  # records, not lines, with validation off too


def test_bad_records_rejected(tmp_path):
    data = HEADER + row(0) + b"UPDATE,0,vec:1\n" + b"\r\n" + b"DELETE,x,vec:2,12,y\n" + b"\xff,0,vec:3,1,\n" + row(4)
    p = write(tmp_path, data)
    (b,), rejects, stats = read([p])
    assert [r.line for r in rejects] == [3, 5, 6]
    assert rejects[0].reason == "expected 5 fields, got 3"
    assert "expiration_duration" in rejects[1].reason and rejects[2].reason == "invalid UTF-8"
    assert b.read_body() == HEADER + row(0) + row(4) and stats[p].blank_lines == 1


@pytest.mark.parametrize("validate", [True, False])
def test_open_quote_at_eof(tmp_path, validate):
    p = write(tmp_path, HEADER + row(0) + b'UPDATE,0,vec:1,12,"never closed\n' + row(2))
    (b,), rejects, stats = read([p], validate=validate)
    reason = "line 3 opens a quote that is never closed: lines 3-4 not sent (unterminated quoted field)"
    assert [(r.line, r.reason) for r in rejects] == [(3, reason)]
    assert b.read_body() == HEADER + row(0) and stats[p].rejected == 2  # the lines it swallowed


def test_open_quote_longer_than_buffer(tmp_path, monkeypatch):
    import pipeline.reading.reader as reader

    monkeypatch.setattr(reader, "BUFFER_SIZE", 512)
    p = write(tmp_path, HEADER + row(0) + b'UPDATE,0,vec:1,12,"open\n' + row(2) * 200)
    (b,), rejects, stats = read([p], max_bytes=300)
    reason = "line 3 opens a quote that is never closed: lines 3-203 not sent (unterminated quoted field)"
    assert [(r.line, r.reason) for r in rejects] == [(3, reason)]
    assert b.read_body() == HEADER + row(0) and stats[p].rejected == 201


@pytest.mark.parametrize(
    "header,match",
    [
        (b"UPDATE,0,vec:1,12,x\n", "no header row"),
        (b"operation,user_agent_id,segment_id\n", "lacks column"),
        (b"operation,expiration_duration,colour\n", "unknown CSV column"),
    ],
)
def test_bad_header_skips_file_with_one_reject(tmp_path, header, match):
    bad = write(tmp_path, header + row(0) + row(1), "bad.csv")
    good = write(tmp_path, HEADER + row(0), "good.csv")
    batches, rejects, stats = read([bad, good])
    assert [b.source for b in batches] == [good] and batches[0].number == 1
    assert len(rejects) == 1 and rejects[0].line == 1 and match in rejects[0].reason
    assert stats[bad].skipped and stats[bad].records == 0 and stats[bad].rejected == 0  # not a rejected record


def test_bom_crlf_header_and_only_header(tmp_path):
    crlf = HEADER.replace(b"\n", b"\r\n")
    p = write(tmp_path, b"\xef\xbb\xbf" + crlf + row(0).replace(b"\n", b"\r\n"))
    (b,), rejects, _ = read([p])
    assert b.header == crlf and b.byte_start == 3 + len(crlf) and not rejects
    only = write(tmp_path, HEADER.rstrip(b"\n"), "only.csv")
    batches, rejects, stats = read([only])
    assert batches == [] and rejects == [] and stats[only].records == 0


@pytest.mark.parametrize("validate", [True, False])
def test_gzip_csv_like_plain(tmp_path, validate):
    data = HEADER + b"".join(row(i, '"q,\n"') for i in range(30))
    plain = write(tmp_path, data)
    gz = write(tmp_path, gzip.compress(data), "a.csv.gz")
    pb, _, _ = read([plain], max_bytes=400, validate=validate)
    gb, _, _ = read([gz], max_bytes=400, validate=validate, spool_dir=tmp_path)
    assert [b.read_body() for b in pb] == [b.read_body() for b in gb]
    assert [b.digest for b in pb] == [b.digest for b in gb]
    for b in gb:
        b.discard_spool()


@pytest.mark.parametrize("gz", [False, True])
def test_process_pool_gives_same_csv_batches(tmp_path, monkeypatch, gz):
    import pipeline.reading.reader as reader

    monkeypatch.setattr(reader, "BUFFER_SIZE", 4096)
    monkeypatch.setattr(reader, "BLOCK_SIZE", 700)
    monkeypatch.setattr(reader, "POOL_MIN_BYTES", 0)
    rows = [row(i, '"multi\nline, ""quoted"""') if i % 5 == 0 else row(i) for i in range(400)]
    for i in range(0, 400, 13):
        rows[i] = b"DELETE,0\n"
    data = HEADER + b"".join(rows) + b"\n"
    p = write(tmp_path, gzip.compress(data) if gz else data, "a.csv.gz" if gz else "a.csv")
    inline = read([p], max_bytes=2000, max_lines=30, workers=0, spool_dir=tmp_path)
    pooled = read([p], max_bytes=2000, max_lines=30, workers=2, spool_dir=tmp_path)
    assert [b.read_body() for b in inline[0]] == [b.read_body() for b in pooled[0]]
    assert [(b.digest, b.first_line, b.last_line, b.records) for b in inline[0]] == [
        (b.digest, b.first_line, b.last_line, b.records) for b in pooled[0]
    ]
    assert inline[1] == pooled[1] and len(inline[1]) == 31
    assert inline[2][p] == pooled[2][p] and inline[2][p].blank_lines == 1
    assert sum(b.records for b in inline[0]) == 400 - 31


@pytest.mark.parametrize("validate", [True, False])
def test_header_longer_than_the_read_buffer_is_found(tmp_path, monkeypatch, validate):
    """The read buffer is small (2 MiB); a header row is still looked for up to HEADER_LIMIT."""
    import pipeline.reading.reader as reader

    monkeypatch.setattr(reader, "BUFFER_SIZE", 64)
    monkeypatch.setattr(reader, "HEADER_LIMIT", 1024)
    header = b'operation,expiration_duration,user_agent_id,segment_id,"data_bag"' + b"\n"
    assert len(header) > 64
    p = write(tmp_path, header + b"".join(row(i) for i in range(20)))
    (b,), rejects, _ = read([p], validate=validate)
    assert not rejects and b.records == 20 and b.read_body() == header + b"".join(row(i) for i in range(20))
    monkeypatch.setattr(reader, "HEADER_LIMIT", 64)
    batches, rejects, stats = read([p], validate=validate)
    assert not batches and [r.line for r in rejects] == [1] and "not found" in rejects[0].reason

"""Reader: discovery, NDJSON cutting, bad inputs, gzip, determinism, validation off."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import orjson
import pytest

from pipeline import formats
from pipeline.errors import ConfigError, InputError
from pipeline.reading.batch import body_digest
from pipeline.reading.reader import BatchReader, discover_inputs
from pipeline.reading.reader_options import ReaderOptions

SEG = {"operation": "UPDATE", "expiration_duration": 0, "compartment_id": "1000", "segment_id": "12"}


def seg(i: int, **extra: object) -> bytes:
    return orjson.dumps({**SEG, "user_account_id": f"u{i}", **extra})


def read(paths, **kw):
    kw.setdefault("document_type", "USER_SEGMENT")
    kw.setdefault("mime_type", formats.NDJSON)
    kw.setdefault("workers", 0)
    rejects = []
    reader = BatchReader([Path(p) for p in paths], ReaderOptions(**kw), rejects.append)
    batches = list(reader)
    return batches, rejects, reader.stats


def bodies(batches):
    return [b.read_body() for b in batches]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def lines_file(tmp_path: Path, n: int, name: str = "in.ndjson") -> tuple[Path, list[bytes]]:
    recs = [seg(i) for i in range(n)]
    return write(tmp_path, name, b"".join(r + b"\n" for r in recs)), recs


# --- discovery ------------------------------------------------------------------------------------


def test_discover_directory_in_name_order(tmp_path):
    for name in ["b.ndjson", "a.csv", "c.jsonl.gz", "notes.txt", "d.json"]:
        write(tmp_path, name, b"")
    (tmp_path / "sub").mkdir()  # listed as skipped (read with recursive=True)
    found = discover_inputs([tmp_path])
    assert [p.name for p in found] == ["a.csv", "b.ndjson", "c.jsonl.gz"]  # d.json is empty: no NDJSON


def test_discover_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        discover_inputs([tmp_path / "missing.ndjson"])
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    write(empty, "readme.txt", b"x")
    with pytest.raises(InputError, match="no input files") as exc:
        discover_inputs([empty])
    assert exc.value.path == str(empty)
    if os.path.exists("/dev/null"):
        with pytest.raises(InputError, match="not a regular file"):
            discover_inputs(["/dev/null"])


def test_discover_unreadable(tmp_path):
    p = write(tmp_path, "secret.ndjson", seg(1) + b"\n")
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading")
        with pytest.raises(InputError, match="permission denied"):
            discover_inputs([p])
    finally:
        p.chmod(0o644)


def test_discover_drops_duplicates_and_checks_gzip_magic(tmp_path):
    p = write(tmp_path, "a.ndjson", b"")
    assert discover_inputs([p, tmp_path / "." / "a.ndjson"]) == [p]
    bad = write(tmp_path, "b.ndjson.gz", b"plain text")
    with pytest.raises(InputError, match="not a gzip file"):
        discover_inputs([bad])


def test_options_checked():
    with pytest.raises(ConfigError):
        ReaderOptions(document_type="USER_SEGMENT", mime_type=formats.NDJSON, max_bytes=100_000_001)
    with pytest.raises(ConfigError):
        ReaderOptions(document_type="USER_SEGMENT", mime_type=formats.NDJSON, max_lines=-1)
    with pytest.raises(ConfigError):
        ReaderOptions(document_type="NOPE", mime_type=formats.NDJSON)


# --- cutting --------------------------------------------------------------------------------------


def test_one_batch_by_default(tmp_path):
    p, recs = lines_file(tmp_path, 10)
    batches, rejects, stats = read([p])
    assert len(batches) == 1 and not rejects
    b = batches[0]
    assert (b.number, b.first_line, b.last_line, b.records) == (1, 1, 10, 10)
    assert b.ranges == ((0, p.stat().st_size),) and b.size == p.stat().st_size
    assert b.read_body() == p.read_bytes()
    assert stats[p].records == 10 and stats[p].batches == 1 and stats[p].bytes == b.size


@pytest.mark.parametrize("validate", [True, False])
def test_cut_at_max_lines(tmp_path, validate):
    p, recs = lines_file(tmp_path, 10)
    batches, _, _ = read([p], max_lines=3, validate=validate)
    assert [b.records for b in batches] == [3, 3, 3, 1]
    assert [(b.first_line, b.last_line) for b in batches] == [(1, 3), (4, 6), (7, 9), (10, 10)]
    assert [b.number for b in batches] == [1, 2, 3, 4]
    assert b"".join(bodies(batches)) == p.read_bytes()


@pytest.mark.parametrize("validate", [True, False])
def test_cut_at_max_bytes(tmp_path, validate):
    p, recs = lines_file(tmp_path, 20)
    size = len(recs[0]) + 1
    batches, _, _ = read([p], max_bytes=size * 3 + 5, validate=validate)
    assert all(b.size <= size * 3 + 5 for b in batches)
    assert [b.records for b in batches] == [3] * 6 + [2]
    assert b"".join(bodies(batches)) == p.read_bytes()
    for b in batches:
        assert b.byte_end - b.byte_start == b.size
        assert p.read_bytes()[b.byte_start : b.byte_end] == b.read_body()


def test_batches_numbered_across_files_never_spanning(tmp_path):
    a, _ = lines_file(tmp_path, 5, "a.ndjson")
    b, _ = lines_file(tmp_path, 5, "b.ndjson")
    batches, _, stats = read([a, b], max_lines=2)
    assert [x.number for x in batches] == list(range(1, 7))
    assert [x.source.name for x in batches] == ["a.ndjson"] * 3 + ["b.ndjson"] * 3
    assert stats[a].batches == 3 and stats[b].batches == 3


def test_deterministic_and_digest_stable(tmp_path):
    p, _ = lines_file(tmp_path, 50)
    one, _, _ = read([p], max_bytes=1000)
    two, _, _ = read([p], max_bytes=1000)
    assert one == two
    for b in one:
        assert b.digest == body_digest(b.iter_chunks(7)) == body_digest([b.read_body()])
    data = bytearray(p.read_bytes())
    data[5] ^= 1
    p.write_bytes(bytes(data))
    three, _, _ = read([p], max_bytes=1000, validate=False)
    assert three[0].digest != one[0].digest and three[1:] == one[1:]


def test_iter_chunks_sizes(tmp_path):
    p, _ = lines_file(tmp_path, 30)
    (b,) = read([p])[0]
    chunks = list(b.iter_chunks(100))
    assert all(len(c) <= 100 for c in chunks) and sum(map(len, chunks)) == b.size


def test_changed_file_detected_when_streaming(tmp_path):
    p, _ = lines_file(tmp_path, 30)
    (b,) = read([p])[0]
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(InputError, match="shorter than planned"):
        b.read_body()


# --- bad input ------------------------------------------------------------------------------------


def test_empty_file_and_bom_only(tmp_path):
    e = write(tmp_path, "e.ndjson", b"")
    bom = write(tmp_path, "bom.ndjson", b"\xef\xbb\xbf")
    batches, rejects, stats = read([e, bom])
    assert batches == [] and rejects == []
    assert stats[e].records == 0 and stats[bom].records == 0


@pytest.mark.parametrize("validate", [True, False])
def test_bom_stripped_and_crlf_accepted(tmp_path, validate):
    p = write(tmp_path, "a.ndjson", b"\xef\xbb\xbf" + seg(1) + b"\r\n" + seg(2) + b"\r\n")
    (b,), rejects, _ = read([p], validate=validate)
    assert not rejects
    assert b.byte_start == 3 and b.read_body() == seg(1) + b"\r\n" + seg(2) + b"\r\n"
    assert b.records == 2


def test_blank_lines_skipped_and_counted(tmp_path):
    p = write(tmp_path, "a.ndjson", b"\n" + seg(1) + b"\n  \n\r\n" + seg(2) + b"\n\n")
    (b,), rejects, stats = read([p])
    assert not rejects and stats[p].blank_lines == 4
    assert b.read_body() == seg(1) + b"\n" + seg(2) + b"\n"
    assert (b.first_line, b.last_line, b.records) == (2, 5, 2)
    assert len(b.ranges) == 2


def test_blank_lines_sent_when_not_validating(tmp_path):
    data = b"\n" + seg(1) + b"\n\n"
    p = write(tmp_path, "a.ndjson", data)
    (b,), _, stats = read([p], validate=False)
    assert b.read_body() == data and b.records == 3 and stats[p].blank_lines == 0


def test_last_line_without_newline(tmp_path):
    p = write(tmp_path, "a.ndjson", seg(1) + b"\n" + seg(2))
    for validate in (True, False):
        (b,), rejects, _ = read([p], validate=validate)
        assert not rejects and b.records == 2 and b.last_line == 2
        assert b.read_body() == p.read_bytes()  # sent as it is: no trailer


def test_invalid_utf8_rejected(tmp_path):
    bad = b'{"operation":"UPDATE","x":"\xff\xfe"}'
    p = write(tmp_path, "a.ndjson", seg(1) + b"\n" + bad + b"\n" + seg(2) + b"\n")
    (b,), rejects, stats = read([p])
    assert [(r.line, r.reason) for r in rejects] == [(2, "invalid UTF-8")]
    assert "\ufffd" in rejects[0].record and rejects[0].file == str(p)
    assert b.read_body() == seg(1) + b"\n" + seg(2) + b"\n" and stats[p].rejected == 1


def test_binary_file_one_reject(tmp_path):
    p = write(tmp_path, "a.ndjson", bytes(range(256)) * 1000)
    for validate in (True, False):
        batches, rejects, stats = read([p], validate=validate)
        assert batches == [] and len(rejects) == 1
        assert rejects[0].line == 1 and rejects[0].reason.startswith("binary file")
        assert stats[p].skipped and stats[p].rejected == 0  # a skipped file is not a rejected record


def test_json_array_rejected_with_hint(tmp_path):
    p = write(tmp_path, "a.ndjson", b"[\n" + seg(1) + b",\n" + seg(2) + b"\n]\n")
    batches, rejects, _ = read([p])
    assert [r.line for r in rejects] == [1, 2, 4]
    assert rejects[0].reason.startswith("not a JSON object")
    assert all("JSON array" in r.reason for r in rejects)
    assert bodies(batches) == [seg(2) + b"\n"]


def test_pretty_printed_json_rejected_with_hint(tmp_path):
    pretty = orjson.dumps({**SEG, "user_account_id": "u1"}, option=orjson.OPT_INDENT_2)
    p = write(tmp_path, "a.ndjson", pretty + b"\n")
    batches, rejects, stats = read([p])
    assert batches == [] and len(rejects) == pretty.count(b"\n") + 1
    assert all("pretty-printed" in r.reason for r in rejects)
    assert stats[p].rejected == len(rejects)


def test_missing_fields_and_two_identifiers(tmp_path):
    missing = orjson.dumps({"operation": "UPDATE", "user_agent_id": "vec:1", "segment_id": "1"})
    two = seg(3, user_agent_id="vec:9")
    p = write(tmp_path, "a.ndjson", b"\n".join([seg(1), missing, two, b"42", seg(2)]) + b"\n")
    (b,), rejects, _ = read([p])
    assert [r.line for r in rejects] == [2, 3, 4]
    assert "expiration_duration" in rejects[0].reason
    assert rejects[1].reason.startswith("two identifiers")
    assert rejects[2].reason == "not a JSON object (a JSON number)"
    assert rejects[1].record == two.decode()
    assert b.ranges == ((0, len(seg(1)) + 1), (p.stat().st_size - len(seg(2)) - 1, p.stat().st_size))


@pytest.mark.parametrize("validate", [True, False])
def test_record_over_max_bytes_rejected(tmp_path, validate):
    big = seg(1, pad="x" * 500)
    p = write(tmp_path, "a.ndjson", seg(0) + b"\n" + big + b"\n" + seg(2) + b"\n" + big)
    batches, rejects, stats = read([p], max_bytes=300, validate=validate)
    assert [r.line for r in rejects] == [2, 4]
    assert all("larger than max_bytes" in r.reason for r in rejects)
    (b,) = batches  # the rejected records leave gaps, they do not end a batch
    assert b.read_body() == seg(0) + b"\n" + seg(2) + b"\n"
    assert (b.first_line, b.last_line, b.records) == (1, 3, 2) and len(b.ranges) == 2


def test_huge_record_streamed_past(tmp_path, monkeypatch):
    import pipeline.reading.reader as reader

    monkeypatch.setattr(reader, "BUFFER_SIZE", 1024)
    huge = seg(1, pad="y" * 50_000)
    p = write(tmp_path, "a.ndjson", seg(0) + b"\n" + huge + b"\n" + seg(2) + b"\n" + huge)
    for validate in (True, False):
        batches, rejects, _ = read([p], max_bytes=4000, validate=validate)
        assert [r.line for r in rejects] == [2, 4]
        assert rejects[0].record.endswith(f"[truncated: {len(huge) + 1} bytes in all]")
        assert len(rejects[0].record) < 4200
        assert b"".join(bodies(batches)) == seg(0) + b"\n" + seg(2) + b"\n"


def test_long_record_that_fits_grows_buffer(tmp_path, monkeypatch):
    import pipeline.reading.reader as reader

    monkeypatch.setattr(reader, "BUFFER_SIZE", 1024)
    long = seg(1, pad="z" * 5000)
    p = write(tmp_path, "a.ndjson", b"".join(seg(i) + b"\n" for i in range(20)) + long + b"\n" + seg(9) + b"\n")
    for validate in (True, False):
        batches, rejects, _ = read([p], max_bytes=8000, validate=validate)
        assert not rejects and b"".join(bodies(batches)) == p.read_bytes()


# --- gzip -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("validate", [True, False])
def test_gzip_same_batches_as_plain(tmp_path, validate):
    data = b"\xef\xbb\xbf" + b"".join(seg(i) + b"\n" for i in range(40)) + b"oops\n" + seg(99)
    plain = write(tmp_path, "a.ndjson", data)
    gz = write(tmp_path, "a.ndjson.gz", gzip.compress(data))
    spool = tmp_path / "spool"
    spool.mkdir()
    pb, pr, ps = read([plain], max_bytes=1000, validate=validate)
    gb, gr, gs = read([gz], max_bytes=1000, validate=validate, spool_dir=spool)
    assert bodies(pb) == bodies(gb)
    assert [r.line for r in pr] == [r.line for r in gr]
    for p, g in zip(pb, gb, strict=True):
        assert (p.digest, p.size, p.first_line, p.last_line, p.byte_start, p.byte_end, p.records) == (
            g.digest, g.size, g.first_line, g.last_line, g.byte_start, g.byte_end, g.records,
        )  # fmt: skip
        assert g.spooled and g.data_path.parent == spool and g.ranges == ((0, g.size),) and g.source == gz
    assert gs[gz].bytes == ps[plain].bytes == len(data)
    assert len(list(spool.iterdir())) == len(gb)
    for g in gb:
        g.discard_spool()
        g.discard_spool()
    assert list(spool.iterdir()) == []
    pb[0].discard_spool()
    assert plain.exists()


def test_gzip_spool_removed_when_reader_closed_early(tmp_path):
    gz = write(tmp_path, "a.ndjson.gz", gzip.compress(b"".join(seg(i) + b"\n" for i in range(40))))
    spool = tmp_path / "spool"
    spool.mkdir()
    opts = ReaderOptions(document_type="USER_SEGMENT", mime_type=formats.NDJSON, max_lines=7, spool_dir=spool)
    it = iter(BatchReader([gz], opts, lambda r: None))
    first = next(it)
    it.close()
    assert list(spool.iterdir()) == [first.data_path]


def test_truncated_gzip_sends_what_was_decoded_and_says_so(tmp_path):
    gz = write(tmp_path, "a.ndjson.gz", gzip.compress(b"".join(seg(i) + b"\n" for i in range(400)))[:-30])
    batches, rejects, stats = read([gz], spool_dir=tmp_path)  # no InputError: the next input is read
    assert not rejects and sum(b.records for b in batches) == stats[gz].records > 0
    assert stats[gz].unread.startswith("gzip data is truncated/corrupt")


def test_process_pool_gives_same_batches_and_rejects(tmp_path, monkeypatch):
    import pipeline.reading.reader as reader

    monkeypatch.setattr(reader, "BUFFER_SIZE", 4096)
    monkeypatch.setattr(reader, "POOL_MIN_BYTES", 0)
    recs = [seg(i) if i % 17 else b"[" for i in range(600)]
    recs[300] = seg(300, pad="x" * 9000)  # longer than the buffer and than max_bytes
    p = write(tmp_path, "a.ndjson", b"\n".join(recs) + b"\n\n")
    inline = read([p], max_bytes=5000, max_lines=50, workers=0)
    pooled = read([p], max_bytes=5000, max_lines=50, workers=2)
    assert inline[0] == pooled[0] and inline[1] == pooled[1]
    assert inline[2][p] == pooled[2][p]
    assert len(inline[1]) == 36 + 1 and inline[2][p].blank_lines == 1

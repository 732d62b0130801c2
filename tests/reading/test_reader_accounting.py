"""Every byte of the input accounted for: sent, rejected, or said to be unread.

Truncated, corrupt and padded ``.gz`` files (what zlib decoded is sent, the rest is reported in
``FileStats.unread``, trailing garbage in ``FileStats.notes``), a CSV quote never closed (one
reject counting every line it swallowed), and the entries of an input directory that look like
inputs but are not regular files (an ``InputError``, not skipped silently).
"""

from __future__ import annotations

import gzip
import os
import random
import zlib
from pathlib import Path

import orjson
import pytest

import pipeline.reading.gzstream as gzstream
import pipeline.reading.reader as reader
from pipeline import formats
from pipeline.errors import InputError
from pipeline.reading.discover import SkipReason, discover
from pipeline.reading.reader import BatchReader, discover_inputs
from pipeline.reading.reader_options import ReaderOptions

SEG = {"operation": "UPDATE", "expiration_duration": 0, "compartment_id": "1000", "segment_id": "12"}
CSV_HEADER = b"operation,expiration_duration,user_agent_id,segment_id,data_bag\n"


def seg(i: int) -> bytes:
    return orjson.dumps({**SEG, "user_account_id": f"u{i}", "n": i * 7919 % 100_003})


def ndjson(n: int) -> bytes:
    return b"".join(seg(i) + b"\n" for i in range(n))


def csv_row(i: int, bag: str = "x") -> bytes:
    return f"UPDATE,0,vec:{i},12,{bag}\n".encode()


def read(paths, tmp_path: Path, **kw):
    kw.setdefault("document_type", "USER_SEGMENT")
    kw.setdefault("mime_type", formats.NDJSON)
    kw.setdefault("workers", 0)
    rejects = []
    r = BatchReader([Path(p) for p in paths], ReaderOptions(spool_dir=tmp_path, **kw), rejects.append)
    batches = list(r)
    sent = {p: b"".join(b.read_body()[len(b.header) :] for b in batches if b.source == p) for p in r.stats}
    for b in batches:
        b.discard_spool()
    return batches, rejects, r.stats, sent


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def zlib_decodes(data: bytes) -> bytes:
    """What zlib decodes of a single-member gzip stream cut short (it raises nothing: it waits)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data)
    assert not d.eof
    return out


def cut_message(next_line: int, read_bytes: int, size: int, rest: str, why: str = "the file ends inside the gzip data"):
    after = f"after line {next_line - 1}" if next_line > 1 else "before line 1"
    return (
        f"gzip data is truncated/corrupt ({why}): decoding stopped {after} "
        f"({read_bytes:,} of {size:,} compressed bytes read); {rest}"
    )


# --- truncated .gz -----------------------------------------------------------------------------


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("cut", [1, 9, 3000, 200_000])
def test_truncated_gz_sends_every_complete_line_zlib_decodes(tmp_path, validate, cut):
    data = ndjson(60_000)
    whole = gzip.compress(data)
    gz = write(tmp_path / "a.ndjson.gz", whole[:-cut])
    after = write(tmp_path / "b.ndjson", ndjson(3))
    decoded = zlib_decodes(whole[:-cut])
    complete = decoded.count(b"\n")  # the lines zlib can give whole: all of them are sent
    partial = len(decoded) - (decoded.rfind(b"\n") + 1)
    assert decoded == data[: len(decoded)]  # (all 60,000 lines when the cut is in the gzip trailer)

    batches, rejects, stats, sent = read([gz, after], tmp_path, validate=validate, max_bytes=1 << 20)
    st = stats[gz]
    assert not rejects and st.rejected == 0
    assert st.records == sum(b.records for b in batches if b.source == gz) == complete
    assert sent[gz] == data[: len(decoded) - partial] and st.bytes == len(decoded)
    rest = (
        f"the partial line {complete + 1} ({partial:,} bytes decoded) and the rest were not sent"
        if partial
        else "the rest was not sent"
    )
    assert st.unread == cut_message(complete + 1, len(whole) - cut, len(whole) - cut, rest)
    assert st.notes == [] and st.skipped is None
    assert stats[after].records == 3 and stats[after].unread is None  # the next input was read


def test_truncated_gz_in_the_pool_gives_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "POOL_MIN_BYTES", 0)
    whole = gzip.compress(ndjson(60_000) + b"[\n")
    gz = write(tmp_path / "a.ndjson.gz", whole[:-5000])
    inline = read([gz], tmp_path, max_bytes=1 << 20)
    pooled = read([gz], tmp_path, max_bytes=1 << 20, workers=2)
    assert inline[2][gz] == pooled[2][gz] and inline[3] == pooled[3]
    assert inline[2][gz].records == zlib_decodes(whole[:-5000]).count(b"\n") and inline[2][gz].unread


@pytest.mark.parametrize("validate", [True, False])
def test_truncated_gz_csv_holds_back_a_record_cut_inside_its_quotes(tmp_path, validate):
    rnd = random.Random(5)
    bags = [f'"{rnd.getrandbits(64):x}\n{rnd.getrandbits(64):x}"' for _ in range(5000)]  # two lines
    rows = [csv_row(i, bags[i] if i % 10 == 9 else "x") for i in range(5000)]
    data = CSV_HEADER + b"".join(rows)
    whole = gzip.compress(data)
    for cut in range(8, 2000):  # find a cut that ends inside a quoted field
        decoded = zlib_decodes(whole[:-cut])
        if decoded.count(b'"') % 2:
            break
    else:
        pytest.fail("no cut inside quotes")
    k = 0  # the rows decoded whole
    end = len(CSV_HEADER)
    while end + len(rows[k]) <= len(decoded):
        end += len(rows[k])
        k += 1
    gz = write(tmp_path / "a.csv.gz", whole[:-cut])
    batches, rejects, stats, sent = read([gz], tmp_path, validate=validate, mime_type=formats.CSV)
    st = stats[gz]
    assert not rejects and st.records == k and sent[gz] == data[len(CSV_HEADER) : end]
    next_line = 2 + sum(r.count(b"\n") for r in rows[:k])
    held = len(decoded) - end
    assert decoded[end:].count(b"\n") == 1  # the cut row: its first line, and part of its second
    lines = f"lines {next_line}-{next_line + 1}"
    rest = f"the partial record of {lines} ({held:,} bytes decoded) and the rest were not sent"
    assert st.unread == cut_message(next_line, len(whole) - cut, len(whole) - cut, rest)


def test_gz_cut_in_its_header_or_empty(tmp_path):
    empty = write(tmp_path / "empty.ndjson.gz", b"")
    header_only = write(tmp_path / "h.ndjson.gz", gzip.compress(ndjson(10))[:6])
    plain = write(tmp_path / "p.ndjson.gz", b"not gzip\n")  # discover_inputs refuses it; the reader says so
    batches, rejects, stats, _ = read([empty, header_only, plain], tmp_path)
    assert batches == [] and rejects == []
    assert stats[empty].unread == "empty .gz: not a gzip file" and stats[empty].records == 0
    assert stats[header_only].unread == cut_message(1, 6, 6, "the rest was not sent")
    assert stats[plain].unread == "not a gzip file (no gzip header)"


@pytest.mark.parametrize("validate", [True, False])
def test_corrupt_gz_sends_what_decoded_before_the_error(tmp_path, validate):
    data = ndjson(20_000)
    whole = bytearray(gzip.compress(data))
    whole[len(whole) // 2] ^= 0x55
    gz = write(tmp_path / "a.ndjson.gz", bytes(whole))
    good = bytearray()  # independently: what zlib decodes before it raises, fed a byte at a time
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for i in range(len(whole)):
        try:
            good += d.decompress(whole[i : i + 1])
        except zlib.error as exc:
            error, at = str(exc), i
            break
    else:
        pytest.fail("the flipped byte went unnoticed")
    batches, rejects, stats, sent = read([gz], tmp_path, validate=validate, max_bytes=1 << 20)
    st = stats[gz]
    lines = st.records + st.rejected + st.blank_lines  # what the flipped byte decodes to may be bad
    assert abs(lines - good.count(b"\n")) <= 1  # to within the symbols of the byte zlib raised on
    common = min(len(good), len(sent[gz]))
    if not validate:  # everything decoded whole is sent, good or bad
        assert sent[gz].endswith(b"\n") and sent[gz][:common] == good[:common] and sent[gz].count(b"\n") == lines
    assert st.unread.startswith(f"gzip data is truncated/corrupt ({error}): decoding stopped after line {lines} (")
    read_bytes = int(st.unread.split("(")[2].split(" of ")[0].replace(",", ""))
    assert abs(read_bytes - at) <= 8 and f" of {len(whole):,} compressed bytes read); " in st.unread


def test_bad_crc_in_the_first_member_stops_before_the_second(tmp_path):
    one, two = gzip.compress(ndjson(100)), gzip.compress(ndjson(50))
    bad = bytearray(one)
    bad[-8] ^= 1  # the CRC-32 of the first member
    gz = write(tmp_path / "a.ndjson.gz", bytes(bad) + two)
    _, _, stats, sent = read([gz], tmp_path)
    st = stats[gz]
    assert st.records == 100 and sent[gz] == ndjson(100)  # decoded before the trailer was checked
    assert st.unread.startswith(
        "gzip data is truncated/corrupt (Error -3 while decompressing data: incorrect data check): "
        "decoding stopped after line 100 ("
    )
    read_bytes = int(st.unread.split("(")[2].split(" of ")[0].replace(",", ""))
    assert len(one) - 8 <= read_bytes <= len(one)


# --- trailing garbage, several members ------------------------------------------------------------


@pytest.mark.parametrize("validate", [True, False])
def test_trailing_garbage_is_ignored_with_a_note(tmp_path, validate):
    data = ndjson(60_000)
    gz = write(tmp_path / "a.ndjson.gz", gzip.compress(data) + b"garbage")
    batches, rejects, stats, sent = read([gz], tmp_path, validate=validate)
    st = stats[gz]
    assert not rejects and st.records == 60_000 and sent[gz] == data
    assert st.unread is None and st.notes == ["trailing garbage after the gzip data ignored (7 bytes)"]


def test_members_are_read_one_after_the_other(tmp_path, monkeypatch):
    monkeypatch.setattr(gzstream, "GZIP_CHUNK", 97)  # member ends fall anywhere in a chunk
    parts = [ndjson(300), b"", ndjson(7), ndjson(1000)]
    data = b"".join(parts)
    gz = write(tmp_path / "a.ndjson.gz", b"".join(gzip.compress(p) for p in parts))
    _, _, stats, sent = read([gz], tmp_path, max_bytes=10_000)
    assert sent[gz] == data and stats[gz].records == 1307 and stats[gz].unread is None and stats[gz].notes == []
    padded = write(tmp_path / "b.ndjson.gz", gzip.compress(parts[0]) + gzip.compress(parts[2]) + b"\0" * 1000)
    _, _, stats, sent = read([padded], tmp_path)
    assert sent[padded] == parts[0] + parts[2] and stats[padded].unread is None
    assert stats[padded].notes == ["trailing garbage after the gzip data ignored (1,000 bytes)"]


def test_a_second_member_cut_short(tmp_path):
    one, two = gzip.compress(ndjson(100)), gzip.compress(ndjson(50))
    gz = write(tmp_path / "a.ndjson.gz", one + two[:-20])
    _, _, stats, _ = read([gz], tmp_path)
    decoded = zlib_decodes(two[:-20])
    n = 100 + decoded.count(b"\n")
    size = len(one) + len(two) - 20
    held = len(decoded) - decoded.rfind(b"\n") - 1
    rest = f"the partial line {n + 1} ({held:,} bytes decoded) and the rest were not sent"
    assert stats[gz].records == n
    assert stats[gz].unread == cut_message(n + 1, size, size, rest, "the file ends inside the gzip member 2")


# --- a CSV quote never closed ------------------------------------------------------------------------


def open_quote_csv(last_newline: bool = True) -> bytes:
    """3001 lines: the header, 1000 good rows, at line 1002 a quote never closed, 1999 more rows."""
    rows = [csv_row(i, '"a, b"' if i % 3 == 0 else "x") for i in range(3000)]
    rows[1000] = b'UPDATE,0,vec:1000,12,"never closed\n'
    data = CSV_HEADER + b"".join(rows)
    return data if last_newline else data[:-1]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("last_newline", [True, False])
def test_a_quote_never_closed_rejects_every_line_it_swallows(tmp_path, validate, gz, last_newline):
    data = open_quote_csv(last_newline)
    path = write(tmp_path / ("a.csv.gz" if gz else "a.csv"), gzip.compress(data) if gz else data)
    batches, rejects, stats, sent = read([path], tmp_path, validate=validate, mime_type=formats.CSV)
    st = stats[path]
    ((reject),) = rejects
    assert reject.line == 1002
    assert reject.reason == (
        "line 1002 opens a quote that is never closed: lines 1002-3001 not sent (unterminated quoted field)"
    )
    assert reject.record.startswith('UPDATE,0,vec:1000,12,"never closed\nUPDATE,0,vec:1001,12,x')
    assert st.records == 1000 and st.rejected == 2000 and st.unread is None
    assert sent[path] == data[len(CSV_HEADER) : data.index(b'UPDATE,0,vec:1000,12,"')]
    lines = data.count(b"\n") + (not data.endswith(b"\n")) - 1  # the header is not a record
    assert lines == st.records + st.rejected == 3000  # read = sent + rejected, in lines


@pytest.mark.parametrize("validate", [True, False])
def test_a_quote_never_closed_longer_than_the_buffer(tmp_path, monkeypatch, validate):
    monkeypatch.setattr(reader, "BUFFER_SIZE", 4096)
    data = open_quote_csv()
    path = write(tmp_path / "a.csv", data)
    _, rejects, stats, _ = read([path], tmp_path, validate=validate, mime_type=formats.CSV, max_bytes=2000)
    ((reject),) = rejects
    assert (reject.line, reject.reason) == (
        1002,
        "line 1002 opens a quote that is never closed: lines 1002-3001 not sent (unterminated quoted field)",
    )
    assert stats[path].records == 1000 and stats[path].rejected == 2000


@pytest.mark.parametrize("validate", [True, False])
def test_a_quote_opened_on_the_last_line(tmp_path, validate):
    path = write(tmp_path / "a.csv", CSV_HEADER + csv_row(0) + b'UPDATE,0,vec:1,12,"open')
    _, rejects, stats, _ = read([path], tmp_path, validate=validate, mime_type=formats.CSV)
    assert [(r.line, r.reason) for r in rejects] == [
        (3, "line 3 opens a quote that is never closed: line 3 not sent (unterminated quoted field)")
    ]
    assert stats[path].records == 1 and stats[path].rejected == 1


# --- input directories --------------------------------------------------------------------------


def test_directory_entries_named_like_inputs_must_be_readable_files(tmp_path):
    def folder(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        write(d / "a.ndjson", ndjson(1))
        return d

    fifo = folder("fifo")
    os.mkfifo(fifo / "b.ndjson")
    dangling = folder("dangling")
    (dangling / "b.csv").symlink_to(dangling / "gone.csv")
    loop = folder("loop")
    (loop / "b.jsonl").symlink_to(loop / "c.jsonl")
    (loop / "c.jsonl").symlink_to(loop / "b.jsonl")
    for name in ("x.ndjson", "x.json", "x.csv.gz"):  # a Spark-style output directory: skipping it would lose it
        subdir = folder(f"sub-{name}")
        write((subdir / name).mkdir() or subdir / name / "part-0.ndjson", ndjson(2))
        with pytest.raises(InputError) as exc:
            discover([subdir])
        assert (exc.value.path, exc.value.message) == (
            str(subdir / name),
            "a directory named like an input file: use --recursive to read its files",
        )
        assert discover([subdir], recursive=True).files == [subdir / "a.ndjson", subdir / name / "part-0.ndjson"]
    cases = [
        (fifo / "b.ndjson", "not a regular file (a FIFO)"),
        (dangling / "b.csv", f"broken symbolic link (its target '{dangling / 'gone.csv'}' does not exist)"),
        (loop / "b.jsonl", "symbolic link loop (too many levels of symbolic links)"),
    ]
    for entry, why in cases:
        with pytest.raises(InputError) as exc:
            discover_inputs([entry.parent])
        assert (exc.value.path, exc.value.message) == (str(entry), why)
        with pytest.raises(InputError) as exc:  # given directly: the same error
            discover_inputs([entry])
        assert (exc.value.path, exc.value.message) == (str(entry), why)


def test_directory_entries_under_other_names_are_skipped_and_listed(tmp_path):
    write(tmp_path / "a.ndjson", ndjson(1))
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "old.txt").symlink_to(tmp_path / "gone.txt")
    (tmp_path / "sub").mkdir()
    (tmp_path / "ok.csv").symlink_to(write(tmp_path / "target", b"x\n"))  # a link to a regular file is a file
    found = discover([tmp_path])
    assert [p.name for p in found.files] == ["a.ndjson", "ok.csv"]
    assert [(s.path.name, s.reason, s.message) for s in found.skipped] == [
        ("old.txt", SkipReason.NOT_A_FILE, "skipped: broken symbolic link"),
        ("pipe", SkipReason.NOT_A_FILE, "skipped: not a regular file (a FIFO)"),
        ("sub", SkipReason.DIRECTORY, "skipped: directory (use --recursive)"),
        ("target", SkipReason.EXTENSION, "skipped: no extension"),
    ]


@pytest.mark.parametrize("validate", [True, False])
def test_every_cut_of_a_small_gz_is_accounted_for(tmp_path, monkeypatch, validate):
    """Cut anywhere, small buffers, records longer than a batch: each complete line decoded is
    sent or rejected, a last line cut short is held back and told, or rejected if already too large."""
    monkeypatch.setattr(reader, "BUFFER_SIZE", 1024)
    monkeypatch.setattr(reader, "BLOCK_SIZE", 300)
    rnd = random.Random(3)
    pads = [rnd.randbytes(2500 if i % 9 == 4 else i).hex() for i in range(40)]  # 5000 bytes: too large
    recs = [orjson.dumps({**SEG, "user_account_id": f"u{i}", "pad": pad}) for i, pad in enumerate(pads)]
    data = b"".join(r + b"\n" for r in recs)
    whole = gzip.compress(data, compresslevel=1)
    for cut in range(1, len(whole) - 2, 41):
        gz = write(tmp_path / "a.ndjson.gz", whole[:-cut])
        decoded = zlib_decodes(whole[:-cut])
        complete = decoded.count(b"\n")
        partial = len(decoded) - (decoded.rfind(b"\n") + 1)
        _, rejects, stats, sent = read([gz], tmp_path, validate=validate, max_bytes=4000)
        st = stats[gz]
        too_large = [r for r in rejects if "larger than max_bytes" in r.reason]
        assert len(rejects) == len(too_large) == st.rejected
        assert sent[gz] == b"".join(r + b"\n" for r in recs[:complete] if len(r) < 4000)
        if partial and len(too_large) > sum(len(r) >= 4000 for r in recs[:complete]):  # read past the limit
            assert too_large[-1].line == complete + 1 and "the rest was not sent" in st.unread
            assert st.records + st.rejected == complete + 1
        else:
            assert st.records + st.rejected == complete
            told = f"the partial line {complete + 1} ({partial:,} bytes decoded)" if partial else "the rest was not"
            stopped = f"decoding stopped after line {complete} (" if complete else "decoding stopped before line 1 ("
            assert stopped in st.unread and told in st.unread, (cut, st.unread)

"""The batch digests' CRC-32 (``reading.crc``: zlib-ng when installed) is zlib's, chained or not,
and every batch the reader cuts carries the zlib CRC-32 of its exact body: a digest journaled by an
earlier version (zlib) still matches on resume."""

from __future__ import annotations

import builtins
import gzip
import random
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import formats
from pipeline.reading import crc
from pipeline.reading.batch import body_digest
from pipeline.reading.reader import BatchReader
from pipeline.reading.reader_options import ReaderOptions


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=20000),
    cuts=st.lists(st.integers(0, 20000), max_size=6),
    start=st.integers(0, 2**32 - 1),
)
def test_same_crc_as_zlib_in_any_pieces(data, cuts, start):
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    value = start
    view = memoryview(bytearray(data))
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        value = crc.crc32(view[lo:hi], value)
    assert value == zlib.crc32(data, start)
    assert crc.crc32(data, 0) == zlib.crc32(data)


def test_large_buffers_as_zlib():
    data = random.Random(3).randbytes(5 << 20)
    assert crc.crc32(data, 0) == zlib.crc32(data)
    assert crc.crc32(bytearray(data), 7) == zlib.crc32(data, 7)


def test_zlib_when_zlib_ng_is_missing(monkeypatch):
    real_import = builtins.__import__

    def no_zlib_ng(name, *args, **kwargs):
        if name.startswith("zlib_ng"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zlib_ng)
    assert crc._fastest() is zlib.crc32


def test_zlib_ng_used_when_installed():
    zlib_ng = pytest.importorskip("zlib_ng.zlib_ng", reason="zlib-ng not installed: zlib is used")
    assert crc.crc32 is zlib_ng.crc32


def _csv(rng: random.Random, n: int) -> bytes:
    """USER_SEGMENT rows shaped as the bench's (quote-dense, one in seven with a quoted newline),
    CRLF or LF ends, a bad row now and then (a gap in the batch's ranges when validated)."""
    rows = [b"operation,expiration_duration,compartment_id,user_account_id,segment_technical_name,data_bag\n"]
    for i in range(n):
        bag = b'"{""note"": ""one\ntwo""}"' if i % 7 == 0 else b'"{""score"": %d}"' % rng.randrange(100)
        op = b"BOGUS" if i % 97 == 5 else b"UPDATE"
        rows.append(b'%s,43200,1000,"acc-%d","seg, %d",%s%s' % (op, i, i % 50, bag, b"\r\n" if i % 3 else b"\n"))
    return b"".join(rows)


def _ndjson(rng: random.Random, n: int) -> bytes:
    lines = []
    for i in range(n):
        pad = b"y" * rng.randrange(300)
        lines.append(
            b"{bad\n"
            if i % 89 == 3
            else b'{"operation": "UPDATE", "expiration_duration": 0, "compartment_id": "1000", '
            b'"segment_id": "12", "user_account_id": "u%d", "x": "%s"}\n' % (i, pad)
        )
    return b"".join(lines)


@pytest.mark.parametrize("validate", [False, True])
@pytest.mark.parametrize("kind", ["csv", "ndjson", "csv.gz"])
@pytest.mark.parametrize("max_bytes,max_lines", [(10**8, 0), (50_000, 0), (30_000, 170)])
def test_every_batch_digest_is_the_zlib_crc_of_its_body(tmp_path: Path, kind, validate, max_bytes, max_lines):
    rng = random.Random(f"{kind}-{validate}-{max_bytes}")  # a str seed: the same data in every process
    data = _ndjson(rng, 3000) if kind == "ndjson" else _csv(rng, 6000)
    path = tmp_path / f"in.{kind}"
    path.write_bytes(gzip.compress(data) if kind.endswith(".gz") else data)
    options = ReaderOptions(
        document_type="USER_SEGMENT",
        mime_type=formats.NDJSON if kind == "ndjson" else formats.CSV,
        validate=validate,
        workers=0,
        max_bytes=max_bytes,
        max_lines=max_lines,
        spool_dir=tmp_path,
    )
    batches = list(BatchReader([path], options, on_reject=lambda reject: None))
    assert len(batches) > (1 if max_bytes < 10**8 else 0)
    for batch in batches:
        body = batch.read_body()
        assert batch.digest == f"crc32:{zlib.crc32(body):08x}:{len(body)}" == body_digest([body])

"""CSV with validation off, scanned ahead by the workers (``reading.csv_ahead.ScanAhead``): the
batches, their counts and the rejects are those of the scan in the reader's thread, wherever the
chunks fall, whenever the pool becomes ready, with records skipped for their size, an open quote
at the end, CRLF or no final newline."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline.reading.reader as reader
from pipeline import formats
from pipeline.reading import csv_ahead
from pipeline.reading.reader import BatchReader, ReaderOptions

HEADER = b"operation,expiration_duration,user_agent_id,segment_id,data_bag\n"


class InlinePool:
    """A pool that answers at once in this process, ready only after ``late`` questions (the
    reader scans the first reads itself meanwhile, as it does while the real workers start)."""

    def __init__(self, late: int) -> None:
        self._late = late
        self.tasks = 0

    @property
    def ready(self) -> bool:
        self._late -= 1
        return self._late < 0

    def submit(self, fn, *args):
        self.tasks += 1
        value = fn(*args)

        class Done:
            def result(self):
                return value

        return Done()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


def read(path: Path, *, workers: int, max_bytes: int, max_lines: int = 0):
    opts = ReaderOptions(
        document_type="USER_SEGMENT", mime_type=formats.CSV, validate=False, workers=workers, max_bytes=max_bytes,
        max_lines=max_lines,
    )  # fmt: skip
    rejects = []
    reading = BatchReader([path], opts, rejects.append)
    batches = list(reading)
    return batches, rejects, reading.stats[path]


def summary(batches, rejects, stats):
    return (
        [(b.ranges, b.records, b.first_line, b.last_line, b.size, b.digest) for b in batches],
        [(r.line, r.reason) for r in rejects],
        (stats.records, stats.rejected, stats.bytes),
    )


FIELDS = ["a", "", '"x,y"', '"say ""hi"""', '"line\nbreak"', '"cr\r\nlf"', '"\n\n"', '"' + "long " * 30 + '"']


@st.composite
def csv_body(draw):
    rows = draw(st.lists(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4), max_size=60))
    ends = [draw(st.sampled_from(["\n", "\r\n"])) for _ in rows]
    text = "".join(",".join(r) + e for r, e in zip(rows, ends, strict=True))
    if text and draw(st.booleans()):
        text = text.rstrip("\r\n")
    if draw(st.integers(0, 4)) == 0:
        text += 'UPDATE,"never closed\nx,y\n'
    return text.encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=csv_body(),
    chunk=st.sampled_from([16, 37, 100, 256]),
    buffer=st.sampled_from([128, 300, 1024]),
    late=st.integers(0, 6),
    max_bytes=st.sampled_from([150, 400, 3000]),
    max_lines=st.sampled_from([0, 0, 3]),
    own_every=st.sampled_from([0, 2, 3]),
)
def test_scanned_ahead_as_in_the_reader_thread(body, chunk, buffer, late, max_bytes, max_lines, own_every):
    """(``own_every``: the reader scans one chunk in so many itself, from its own buffer.)"""
    pools = []
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
        mp.setattr(csv_ahead, "OWN_EVERY", own_every)
        mp.setattr(reader, "BUFFER_SIZE", buffer)
        mp.setattr(reader, "POOL_MIN_BYTES", 0)
        mp.setattr(csv_ahead, "MIN_CPUS", 1)
        mp.setattr(reader, "WorkerPool", lambda n: pools.append(InlinePool(late)) or pools[-1])
        mp.setattr(csv_ahead, "CHUNK", chunk)
        path = Path(tmp) / "in.csv"
        path.write_bytes(HEADER + body)
        inline = summary(*read(path, workers=0, max_bytes=max_bytes, max_lines=max_lines))
        ahead = summary(*read(path, workers=2, max_bytes=max_bytes, max_lines=max_lines))
    assert ahead == inline
    assert len(pools) == 1


@pytest.mark.parametrize("own_every", [0, 3])
def test_the_chunks_do_the_scanning(monkeypatch, tmp_path, own_every):
    """Once the pool is ready, the runs are cut and counted from the chunks' answers: the reader's
    thread scans nothing but its own chunks (one in ``own_every``), the end of the file and the
    batches' own cuts."""
    monkeypatch.setattr(csv_ahead, "OWN_EVERY", own_every)
    scanned = []
    real = csv_ahead.last_record_end
    monkeypatch.setattr(csv_ahead, "last_record_end", lambda *a: scanned.append(a[1:]) or real(*a))
    pools = []
    monkeypatch.setattr(reader, "BUFFER_SIZE", 4096)
    monkeypatch.setattr(reader, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(csv_ahead, "MIN_CPUS", 1)
    monkeypatch.setattr(reader, "WorkerPool", lambda n: pools.append(InlinePool(0)) or pools[-1])
    monkeypatch.setattr(csv_ahead, "CHUNK", 1024)
    rows = [
        f'UPDATE,0,"vec:{i}",1,"{{""a"": ""b\nc""}}"\n' if i % 3 == 0 else f"UPDATE,0,vec:{i},1,x\n"
        for i in range(3000)
    ]
    path = tmp_path / "in.csv"
    path.write_bytes(HEADER + "".join(rows).encode())
    batches, rejects, stats = read(path, workers=2, max_bytes=20000)
    assert stats.records == sum(b.records for b in batches) == 3000 and not rejects
    chunks = path.stat().st_size // 1024
    assert pools[0].tasks >= (chunks * (own_every - 1) // own_every - 1 if own_every else chunks)
    assert scanned == []


def test_with_the_real_workers(monkeypatch, tmp_path):
    """The chunks go to worker processes (fresh interpreters): the same batches as inline."""
    monkeypatch.setattr(reader, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(csv_ahead, "MIN_CPUS", 1)
    monkeypatch.setattr(csv_ahead, "CHUNK", 64 << 10)
    rows = [
        f'UPDATE,0,"vec:{i}",1,"{{""a"": ""b\nc""}}"\n' if i % 7 == 0 else f'UPDATE,0,"v{i}",1,x\n'
        for i in range(200_000)
    ]
    path = tmp_path / "in.csv"
    path.write_bytes(HEADER + "".join(rows).encode())
    inline = summary(*read(path, workers=0, max_bytes=1_000_000))
    ahead = summary(*read(path, workers=2, max_bytes=1_000_000))
    assert ahead == inline
    assert inline[2][0] == 200_000


def test_not_on_a_machine_of_two_cores(monkeypatch, tmp_path):
    """There the reader's thread scans: the workers' start and pipes cost more than they save."""
    monkeypatch.setattr(reader, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(reader.os, "cpu_count", lambda: 2)
    pools = []
    monkeypatch.setattr(reader, "WorkerPool", lambda n: pools.append(InlinePool(0)) or pools[-1])
    path = tmp_path / "in.csv"
    path.write_bytes(HEADER + b'UPDATE,0,vec:1,1,"a\nb"\n' * 1000)
    batches, _, stats = read(path, workers=2, max_bytes=20000)
    assert stats.records == 1000 and pools == []
    monkeypatch.setattr(reader.os, "cpu_count", lambda: 4)
    assert read(path, workers=2, max_bytes=20000)[2].records == 1000 and len(pools) == 1

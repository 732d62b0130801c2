"""CSV with validation off: the record cuts and counts of a plain file scanned ahead by the worker
processes, so that the reader's thread only reads, CRCs and cuts.

The quote-aware scan (:func:`~pipeline.reading.csvscan.scan`) is most of the reader's work on
CSV (about 1.3 CPU s per GB, where reading and CRC take about 0.45): done in the reader's thread,
it is in the way of everything else the process does. Here the file is cut into chunks of
:data:`CHUNK` bytes from a record start, and the workers scan them (each reads its chunk itself,
``os.pread``) before the reader gets there, under both hypotheses on the parity at a chunk's start
(:func:`~pipeline.reading.csvscan.scan_both`: a chunk can be scanned before the one in front of
it). The reader then settles the chunks in file order, each with the parity the previous one left
(a few integer additions), and cuts each read at the last record end of the chunks it holds
whole: the runs come out counted. One chunk in :data:`OWN_EVERY` the reader scans itself, in its own
buffer, when its turn comes: on two cores shared with the upload loop, the server and whatever
else runs, a reader that only waited for the workers would wait for them to be scheduled.

When the pool is not started yet, when a read holds no whole chunk with a record end, or after a
record was skipped (longer than ``max_bytes``: the counts would have to skip it too), the read is
scanned in the reader's thread as :class:`~pipeline.reading.csvscan.CountingCuts` does: the cuts
may fall elsewhere, the batches do not (the cutter's batches do not depend on how the file was
read), and the counts are exact either way.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from pipeline.reading.csvscan import BothScan, csv_counts, last_record_end, scan_both

if TYPE_CHECKING:
    from pipeline.reading.block_settler import Waiting
    from pipeline.reading.blocks import Pool

#: bytes per chunk scanned by a worker: a task costs about 50 us of pipe and pickling each side
CHUNK = 1 << 20
#: chunks in flight: the workers stay this far ahead of the reader (8 MiB, read twice from the
#: page cache: once by a worker, once by the reader)
DEPTH = 8
#: the reader scans one chunk in this many itself (0: none; see the module docstring)
OWN_EVERY = 3
#: cores it takes for the scan ahead to pay: the reader's thread, the uploads (with, on loopback, the
#: server) and the workers each want one. On 2 cores (1 GB, loopback, light emulator, validation
#: off, 5 rounds, medians) it did not: 356 MB/s and 3.09 CPU s against 360 MB/s and 2.47 CPU s
#: for the scan in the reader's thread, quiet; 228 against 273 MB/s when other work took the cores
MIN_CPUS = 4


def worth_it(workers: int) -> bool:
    """Scan ahead in ``workers`` processes (the reader's ``workers`` setting) on this machine?"""
    return workers >= 2 and (os.cpu_count() or 1) >= MIN_CPUS


#: Where a point of the file stands: ``(offset, lines, records)`` from the first record scanned.
Point: TypeAlias = tuple[int, int, int]


def read_chunk(path: str, offset: int, length: int) -> bytes:
    """``length`` bytes of ``path`` at ``offset`` (fewer at its end)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = []
        while length > 0:
            part = os.pread(fd, length, offset)
            if not part:
                break
            parts.append(part)
            offset += len(part)
            length -= len(part)
        return b"".join(parts)
    finally:
        os.close(fd)


def scan_file_chunk(path: str, offset: int, length: int) -> tuple[int, BothScan]:
    """In a worker: ``(bytes read, scan_both of them)`` for the chunk of ``path`` at ``offset``."""
    data = read_chunk(path, offset, length)
    return len(data), scan_both(data, 0, len(data))


#: the pool's tasks are typed as block checks: this one answers its own tuple
_SCAN_TASK = cast(Callable[..., Any], scan_file_chunk)


class ScanAhead:
    """The ``cuts`` of :func:`~pipeline.reading.csvscan.iter_runs` for a plain CSV file of ``size``
    bytes at ``path``, with the chunk scans done by ``pool`` (see the module docstring)."""

    def __init__(self, pool: Pool, path: str, size: int, own_every: int | None = None) -> None:
        self._pool = pool
        self._own_every = OWN_EVERY if own_every is None else own_every  # the reader's chunks: 1 in so many
        self._chunks = 0  # chunks handed out so far
        self._path = path
        self._size = size
        self._at: Point | None = None  # where the next run starts (None before the first)
        self._next_chunk = -1  # offset of the next chunk to hand out; -1: no chunks yet
        self._pending: deque[tuple[int, int, Waiting | None]] = deque()  # (offset, length, answer)
        self._settled: tuple[int, int, int, int] = (0, 0, 0, 0)  # (offset, lines, records, parity)
        self._known: Point = (0, 0, 0)  # the last record end the settled chunks hold
        self._memo: tuple[int, int, int, int] | None = None  # (lo, end, lines, records) of the last cut
        self._inline_only = False

    def cut(self, data: bytes | bytearray, lo: int, hi: int, base: int, last: bool = False) -> int:
        """The end of the run of whole records from ``data[lo]`` (a record start, at file offset
        ``base + lo``) within ``data[lo:hi]``, or -1; the run's counts are kept for :meth:`counts`.
        ``last`` (the end of the file: the last record end is wanted, not the last the chunks
        know): scanned here."""
        start = base + lo
        at = self._at
        if at is None:
            at = self._at = (start, 0, 0)
        elif at[0] != start:  # a record was skipped: its lines and records are not ours to count
            self._inline_only = True
        if not self._inline_only and not last:
            self._start_chunks(at)
            if self._next_chunk >= 0:
                self._settle_up_to(data, base, base + hi)
                end = self._known
                if end[0] > start:
                    return self._cut_at(lo, end[0] - base, end, at)
        end_here, lines, records = last_record_end(data, lo, hi)
        if end_here < 0:
            return -1
        return self._cut_at(lo, end_here, (base + end_here, at[1] + lines, at[2] + records), at)

    def counts(self, data: bytes | bytearray, lo: int, hi: int, base: int) -> tuple[int, int]:
        """Physical lines and records of the run ``data[lo:hi]`` just yielded (asked once per run)."""
        memo, self._memo = self._memo, None
        if memo is not None and memo[0] == lo and memo[1] == hi:
            return memo[2], memo[3]
        lines, records = csv_counts(data, lo, hi)  # a run not cut here: the end of the file
        if self._at is not None:
            self._at = (base + hi, self._at[1] + lines, self._at[2] + records)
        return lines, records

    def _cut_at(self, lo: int, end: int, point: Point, at: Point) -> int:
        self._memo = (lo, end, point[1] - at[1], point[2] - at[2])
        self._at = point
        return end

    def _start_chunks(self, at: Point) -> None:
        """Once the pool is ready, the chunks start at the next run's start (a record start)."""
        if self._next_chunk < 0 and self._pool.ready:
            self._next_chunk = at[0]
            self._settled = (*at, 0)
            self._known = at

    def _settle_up_to(self, data: bytes | bytearray, base: int, stop: int) -> None:
        """Hand out chunks up to :data:`DEPTH` ahead, and settle, in order, those that end by
        ``stop`` (the bytes the reader holds: ``data`` from file offset ``base``). The reader's own
        chunks (one in ``own_every``: the reader's thread would otherwise wait for the workers when
        other work takes the cores) it scans in ``data`` when their turn comes."""
        pending = self._pending
        while len(pending) < DEPTH and self._next_chunk < self._size:
            offset = self._next_chunk
            length = min(CHUNK, self._size - offset)
            self._chunks += 1
            own = self._own_every and self._chunks % self._own_every == 0
            answer = None if own else self._pool.submit(_SCAN_TASK, self._path, offset, length)
            pending.append((offset, length, answer))
            self._next_chunk = offset + length
        while pending and pending[0][0] + pending[0][1] <= stop:
            offset, length, answer = pending.popleft()
            if answer is None and offset >= base:
                read, both = length, scan_both(data, offset - base, offset + length - base)
            elif answer is None:  # cut past it in the reader's thread: no longer in the buffer
                read, both = scan_file_chunk(self._path, offset, length)
            else:
                read, both = cast(tuple[int, BothScan], answer.result())  # this task's answer, not a block's
            if read != length:  # the file changed under us: the reader's own bytes decide
                self._inline_only = True
                return
            self._settle(offset, length, both)

    def _settle(self, offset: int, length: int, both: BothScan) -> None:
        settled_at, lines, records, parity = self._settled
        assert settled_at == offset  # chunks are settled in file order
        newlines, inside, quotes_parity, if_record_start, if_inside_quotes = both
        end, end_lines, end_records = if_inside_quotes if parity else if_record_start
        if end >= 0:
            self._known = (offset + end, lines + end_lines, records + end_records)
        records += inside if parity else newlines - inside
        self._settled = (offset + length, lines + newlines, records, parity ^ quotes_parity)

"""Batches as descriptions of where their bytes are, and the cutter that plans them.

A :class:`Batch` never holds its body: it names a file and byte ranges in it (the input itself, or
for compressed input a spool file holding just that batch's records) and streams the body from disk
when asked (:meth:`Batch.iter_chunks`). The :class:`Cutter` packs runs of good records greedily
into batches of about their target size (``sizing.BatchSizes``: the next batch's target, at most
``max_bytes`` bytes, header included) and at most ``max_lines`` records; a record larger than the
target but within ``max_bytes`` gets a batch of its own. Since the packing is greedy, cuts only at
record ends and the targets follow one another in a fixed order, the same input and options always
give the same batches, however the input was read.

Digest: ``"crc32:<8 hex>:<size>"``, the CRC-32 of the exact body (header included) and its size.
CRC-32 runs at about 3 GB/s with ``zlib``, 13 GB/s with ``zlib-ng`` (:mod:`pipeline.reading.crc`;
blake2b under 1 GB/s) and is only used to notice, on resume, that an input changed; it is not a
security check.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import InputError, LocalError
from pipeline.reading.crc import crc32
from pipeline.reading.csvscan import REJECT_KEEP, CsvGrammar, NdjsonGrammar, csv_counts
from pipeline.reading.sizing import BatchSizes
from pipeline.reading.sources import Input, RemoteObject


@dataclass(frozen=True, slots=True)
class Batch:
    number: int  # 1-based, global over the run
    source: Input  # the input as given (a local file, a remote object, stdin)
    data_path: Input  # what the ranges refer to (the source, or the spool file for .gz, stdin...)
    ranges: tuple[tuple[int, int], ...]  # [start, end) offsets in data_path, records only
    header: bytes  # CSV header row with its line end, put in front; b"" for NDJSON
    first_line: int  # 1-based physical line in source where the first record starts
    last_line: int  # physical line where the last record ends
    records: int  # records in the body (physical lines when validation is off)
    size: int  # exact body size in bytes, header included
    byte_start: int  # offset in the uncompressed source of the first record
    byte_end: int  # offset just past the last record
    digest: str  # "crc32:<hex>:<size>" of the body

    @property
    def spooled(self) -> bool:
        """True when the body lives in a spool file (compressed input)."""
        return self.data_path != self.source

    def iter_chunks(self, chunk_size: int = 1 << 20) -> Generator[bytes, None, None]:
        """The body, read from disk (or with ranged reads of a remote object): exactly ``size`` bytes.
        Each call starts a fresh stream."""
        if self.header:
            yield self.header
        if isinstance(self.data_path, RemoteObject):
            for start, end in self.ranges:
                yield from self.data_path.iter_range(start, end, chunk_size)
            return
        assert isinstance(self.data_path, Path)  # a local input or a spool file
        with open(self.data_path, "rb") as f:
            for start, end in self.ranges:
                f.seek(start)
                left = end - start
                while left:
                    chunk = f.read(min(chunk_size, left))
                    if not chunk:
                        raise InputError(
                            self.data_path,
                            f"shorter than planned for batch {self.number} (changed since it was read?)",
                        )
                    left -= len(chunk)
                    yield chunk

    def read_body(self) -> bytes:
        """The whole body in memory (for tests and small batches)."""
        return b"".join(self.iter_chunks())

    def discard_spool(self) -> None:
        """Remove the spool file of a compressed input's batch; a no-op for plain files."""
        if self.spooled and isinstance(self.data_path, Path):
            self.data_path.unlink(missing_ok=True)


def body_digest(chunks: Iterable[bytes]) -> str:
    """The digest of a body given as chunks (what :attr:`Batch.digest` holds)."""
    crc = 0
    size = 0
    for chunk in chunks:
        crc = crc32(chunk, crc)
        size += len(chunk)
    return f"crc32:{crc:08x}:{size}"


def is_file_skip(reason: str) -> bool:
    """The reject entry of a file skipped whole (binary, bad CSV header): not one record's."""
    return reason.endswith("file skipped")


@dataclass(frozen=True, slots=True)
class Reject:
    file: str
    line: int  # 1-based physical line where the record starts
    reason: str
    record: str  # decoded with errors="replace", cut to ~4 KB with a marker

    @classmethod
    def make(cls, file: str, line: int, reason: str, raw: bytes, length: int | None = None) -> Reject:
        """Build a reject from the record's first bytes; ``length`` is its full size if longer."""
        length = len(raw) if length is None else length
        kept = raw[:REJECT_KEEP]
        if length <= REJECT_KEEP:
            kept = kept.rstrip(b"\r\n") if kept.endswith(b"\n") else kept
            return cls(file, line, reason, kept.decode("utf-8", errors="replace"))
        text = kept.decode("utf-8", errors="replace")
        return cls(file, line, reason, f"{text}...[truncated: {length} bytes in all]")

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "reason": self.reason, "record": self.record}


@dataclass
class FileStats:
    path: Input
    bytes: int = 0  # uncompressed bytes read
    records: int = 0  # records put in batches
    rejected: int = 0  # rejected records; a CSV quote never closed counts for every line it swallowed
    blank_lines: int = 0
    batches: int = 0
    skipped: str | None = None  # why the whole file was skipped (binary file, bad CSV header)
    unread: str | None = None  # why the end of the file was not read (a truncated or corrupt .gz)
    notes: list[str] = field(default_factory=list)  # harmless oddities worth telling (trailing garbage)


Grammar = type[NdjsonGrammar] | type[CsvGrammar]
RejectFn = Callable[[int, int, bytes, int], None]  # (offset, line, first bytes, length)


class Cutter:
    """Packs runs of good records of one file into batches, greedily, in order.

    ``add_run`` takes a run of whole records: each physical line is a record unless the caller
    says how many records the run holds (CSV, whose quoted fields may hold newlines). Closed
    batches collect in ``done``; the caller takes them after each call.
    """

    def __init__(
        self,
        *,
        source: Input,
        header: bytes,
        grammar: Grammar,
        max_bytes: int,
        max_lines: int,
        numbers: count[int],
        stats: FileStats,
        on_oversize: RejectFn,
        spool_dir: Path | None = None,
        sizes: BatchSizes | None = None,
    ) -> None:
        self.source = source
        self.header = header
        self.grammar = grammar
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        self.limit = max_bytes - len(header)  # the largest record that fits
        self.sizes = sizes  # each batch's target (None: max_bytes), shared by the files of a run
        self._target: int | None = None  # the open (or next) batch's target, drawn when first needed
        self.numbers = numbers
        self.stats = stats
        self.on_oversize = on_oversize
        self.spool_dir = spool_dir
        self.done: deque[Batch] = deque()
        self._spool: BinaryIO | None = None
        self._spool_path: Path | None = None
        self._records = 0

    # --- the open batch ---------------------------------------------------------------------

    def _open(self, offset: int, line: int) -> None:
        self._records = 0
        self._size = len(self.header)
        self._crc = crc32(self.header, 0)
        self._ranges: list[list[int]] = []
        self._first_line = line
        self._byte_start = offset
        if self.spool_dir is not None:
            try:
                fd, name = tempfile.mkstemp(prefix=f"{self.source.name}.", suffix=".batch", dir=self.spool_dir)
            except OSError as exc:
                raise LocalError.from_os_error("cannot create a spool file in", self.spool_dir, exc) from exc
            self._spool = os.fdopen(fd, "wb", buffering=1 << 20)
            self._spool_path = Path(name)

    def _append(self, mv: memoryview, lo: int, hi: int, base: int, line: int, lines: int, records: int) -> None:
        if not self._records:
            self._open(base + lo, line)
        piece = mv[lo:hi]
        self._crc = crc32(piece, self._crc)
        n = hi - lo
        if self._spool is not None:
            self._write_spool(piece)
        else:
            off = base + lo
            if self._ranges and self._ranges[-1][1] == off:
                self._ranges[-1][1] = off + n
            else:
                self._ranges.append([off, off + n])
        self._size += n
        self._records += records
        self._last_line = line + lines - 1
        self._byte_end = base + hi

    def close(self) -> None:
        """Close the open batch, if any, and add it to ``done``."""
        if not self._records:
            return
        data_path: Input
        if self._spool is not None:
            spool, self._spool = self._spool, None
            try:
                spool.close()  # writes what is buffered: a full disk shows here too
            except OSError as exc:
                raise self._spool_error(exc) from exc
            assert self._spool_path is not None  # set together with _spool, in _open
            data_path = self._spool_path
            ranges: tuple[tuple[int, int], ...] = ((0, self._size - len(self.header)),)
        else:
            data_path = self.source
            ranges = tuple((a, b) for a, b in self._ranges)
        self.done.append(
            Batch(
                number=next(self.numbers),
                source=self.source,
                data_path=data_path,
                ranges=ranges,
                header=self.header,
                first_line=self._first_line,
                last_line=self._last_line,
                records=self._records,
                size=self._size,
                byte_start=self._byte_start,
                byte_end=self._byte_end,
                digest=f"crc32:{self._crc:08x}:{self._size}",
            )
        )
        self.stats.batches += 1
        self.stats.records += self._records
        self._records = 0
        self._target = None

    def _write_spool(self, piece: memoryview) -> None:
        assert self._spool is not None
        try:
            self._spool.write(piece)
        except OSError as exc:  # a full disk (ENOSPC): a local failure, not a crash (exit 2 or 3)
            raise self._spool_error(exc) from exc

    def _spool_error(self, exc: OSError) -> LocalError:
        return LocalError.from_os_error("cannot write the spool file", self._spool_path, exc)

    @property
    def target(self) -> int:
        """The open (or next) batch's target size, header included, at most ``max_bytes``."""
        if self._target is None:
            wanted = self.sizes.next() if self.sizes is not None else self.max_bytes
            self._target = max(len(self.header) + 1, min(wanted, self.max_bytes))
        return self._target

    def abort(self) -> None:
        """Drop the open batch (the reader was closed early): remove its spool file."""
        if self._spool is not None:
            spool, self._spool = self._spool, None
            with contextlib.suppress(OSError):  # dropped anyway (a full disk may fail the flush)
                spool.close()
            if self._spool_path is not None:
                self._spool_path.unlink(missing_ok=True)
        self._records = 0

    # --- feeding ----------------------------------------------------------------------------

    def add_run(
        self, data: bytes | bytearray, lo: int, hi: int, base: int, line: int, lines: int = -1, records: int = -1
    ) -> int:
        """Add the whole records of ``data[lo:hi]`` (``base`` is the source offset of ``data[0]``,
        ``line`` the physical line at ``lo``; ``lines``, if known, the physical lines in the run,
        which saves counting them again). Each line is a record unless ``records`` says otherwise
        (validated CSV whose quoted fields hold newlines). Returns the physical lines consumed."""
        mv = memoryview(data)
        if 0 <= records != lines:
            return self._add_records(data, mv, lo, hi, base, line, lines, records)
        g = self.grammar
        max_lines = self.max_lines
        start_line = line
        pos = lo
        while pos < hi:
            cut, skipped = self._cut_or_skip(data, mv, pos, hi, base, line)
            if skipped:  # a record longer than max_bytes: rejected, the batch goes on
                line, pos = line + skipped, cut
                continue
            if cut == hi and pos == lo and lines >= 0:
                pass  # the whole run fits: its line count is known
            else:
                lines = data.count(b"\n", pos, cut) + (data[cut - 1] != 10)
            if max_lines and self._records + lines > max_lines:
                k = max_lines - self._records
                c = g.nth_boundary(data, pos, cut, k) if k else -1
                if c < 0:
                    if self._records:
                        self.close()
                        continue
                    c = g.first_boundary(data, pos, cut)[0]  # one record longer than max_lines lines
                    c = cut if c < 0 else c
                cut = c
                lines = data.count(b"\n", pos, cut) + (data[cut - 1] != 10)
            self._append(mv, pos, cut, base, line, lines, lines)
            line += lines
            pos = cut
            if self._size >= self.target or (max_lines and self._records >= max_lines):
                self.close()
        return line - start_line

    def _add_records(
        self, data: bytes | bytearray, mv: memoryview, lo: int, hi: int, base: int, line: int, lines: int, records: int
    ) -> int:
        """A CSV run whose quoted fields hold newlines (``records`` records in ``lines`` lines):
        whole if it fits, else cut where the open batch fills, each part counted exactly."""
        start_line = line
        pos = lo
        while pos < hi:
            cut, skipped = self._cut_or_skip(data, mv, pos, hi, base, line)
            if skipped:
                line, lines, records, pos = line + skipped, lines - skipped, records - 1, cut
                continue
            part_lines, part_records = (lines, records) if cut == hi else csv_counts(data, pos, cut)
            if self.max_lines and self._records + part_records > self.max_lines:
                if self._records >= self.max_lines:
                    self.close()
                    continue
                cut = self._nth_record_end(data, pos, cut, self.max_lines - self._records)
                part_lines, part_records = csv_counts(data, pos, cut)
            self._append(mv, pos, cut, base, line, part_lines, part_records)
            line, lines, records, pos = line + part_lines, lines - part_lines, records - part_records, cut
            if self._size >= self.target or (self.max_lines and self._records >= self.max_lines):
                self.close()
        return line - start_line

    def _cut_or_skip(
        self, data: bytes | bytearray, mv: memoryview, pos: int, hi: int, base: int, line: int
    ) -> tuple[int, int]:
        """``(cut, 0)``: the end of the longest run of whole records from ``pos`` (up to ``hi``)
        that fits the open batch, closing it first if not even the next record fits; or
        ``(end, lines)`` when that next record is larger than any batch: it is rejected here
        (``on_oversize``), and ``end`` and its ``lines`` (> 0) say how far to skip."""
        g = self.grammar
        while True:
            room = self.target - (self._size if self._records else len(self.header))
            cut = hi if hi - pos <= room else g.last_boundary(data, pos, pos + room)
            if cut < 0 and not self._records and room < self.limit:  # one record over the target
                cut = g.first_boundary(data, pos, min(hi, pos + self.limit))[0]
                cut = hi if cut < 0 and hi - pos <= self.limit else cut
            if cut >= 0:
                return cut, 0
            end = g.first_boundary(data, pos, hi)[0]
            end = hi if end < 0 else end
            if end - pos <= self.limit:
                self.close()
                continue
            lines = data.count(b"\n", pos, end) + (data[end - 1] != 10)
            self.on_oversize(base + pos, line, bytes(mv[pos : min(end, pos + REJECT_KEEP)]), end - pos)
            return end, lines

    def _nth_record_end(self, data: bytes | bytearray, lo: int, hi: int, k: int) -> int:
        """End of the ``k``-th record of ``data[lo:hi]`` (or ``hi``): one record at a time, only
        when ``max_lines`` cuts a run of multi-line records."""
        pos = lo
        for _ in range(k):
            end = self.grammar.first_boundary(data, pos, hi)[0]
            if end < 0:
                return hi
            pos = end
        return pos

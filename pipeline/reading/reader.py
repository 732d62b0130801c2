"""Input files -> batch descriptions (a :class:`~pipeline.reading.batch.Batch` is a description of
byte ranges, not a buffer).

Each file is streamed once through one reused buffer (2 MiB, so that each read is counted and
CRC'd while it is still in the CPU cache; grown only to hold a single record of up to
``max_bytes``, or a CSV header row of up to 8 MiB). Records are cut only at record ends; good
records become byte ranges of the source, rejected ones go to ``on_reject`` and leave a gap in
the ranges. Choices:

- **No trailer.** A last line without its ``\\n`` is a valid record and is sent as it is: it is
  always the last record of its file, hence of its batch, and a body that ends without a line end
  is well-formed NDJSON / CSV. Batches stay pure byte ranges. (Not so at the end of a ``.gz`` cut
  short: that last line was cut, not written so; it is not sent, see below.)
- **Binary files.** If the first 8 KB (after a BOM) hold a NUL byte, the whole file is skipped
  with ONE reject entry (line 1, "binary file ...") rather than a reject per line; ``FileStats.skipped``
  says why, and the entry is not counted in ``FileStats.rejected`` (a file is not a record). This
  applies with validation off too.
- **Bad CSV header.** The file is skipped with one reject entry for line 1 naming the problem (not
  counted as a rejected record; nothing of it is uploaded, ``FileStats.skipped`` is set); the run
  goes on with the other files. An
  ``InputError`` halfway through a run (after other files' batches were sent) would be worse.
- **Empty files** (or only a BOM / only a CSV header) give no batch and ``records == 0``; the
  caller warns.
- **A CSV quote never closed** swallows the rest of the file (nothing says where the field was
  meant to end): ONE reject at its line, "line N opens a quote that is never closed: lines N-M not
  sent", that counts for its M - N + 1 lines in ``FileStats.rejected``, so that the file's lines are
  its records sent plus its rejected (when no good record spans lines), validation on or off.
- **Validation off**: no per-line Python work for NDJSON: cuts use ``rfind``/``count``, blank
  lines are sent, ``records`` counts physical lines. CSV is cut at record ends found by a
  quote-aware scan, which also counts its records exactly (a quoted field may hold newlines, so a
  record may span lines): otherwise the report would claim more records sent than the server can
  count. The scan runs in the reader's thread, one per read
  (:class:`pipeline.reading.csvscan.CountingCuts`): at about 0.75 GB/s it is no longer worth the
  worker processes (scanning ahead in them was measured slower on 2 cores shared with the server).
  Records over ``max_bytes`` and binary files are still rejected, the CSV header is still checked.
- **Validation on**: records are checked in blocks of about 1 MiB (:mod:`pipeline.reading.blocks`;
  NDJSON: :func:`pipeline.reading.validate.validate_block`; CSV:
  :func:`pipeline.reading.validate_csv.validate_csv_counted`),
  in a process pool when ``workers >= 2`` and the file is at least ``POOL_MIN_BYTES``; results are
  consumed in order, so batches and rejects are the same as inline. Pool workers read their block
  of a plain file themselves (``os.pread``); blocks of a ``.gz`` file are sent to them. The
  workers are fresh interpreters (:mod:`~pipeline.reading.worker_process`: safe when the caller
  runs threads) that never import the caller's main module: a script needs no
  ``if __name__ == "__main__":`` guard, whatever the size of its input.
- **gzip** (``.gz``): decompressed while streaming (:class:`GzipStream`: every member, like
  ``gzip -dc``); each batch's records are written to a spool file in ``spool_dir`` (``data_path``,
  one range); call :meth:`Batch.discard_spool` once its upload settled. ``byte_start`` /
  ``byte_end`` / lines always refer to the uncompressed source. A truncated or corrupt stream is
  not an error: all it decoded is read like any data, except a last record cut short, and
  ``FileStats.unread`` says from which line (and how many compressed bytes) the rest was not
  read; the next input follows. Bytes after the last member that do not start another one are
  ignored, as ``gzip -d`` does, with a note in ``FileStats.notes``. An empty ``.gz`` is not gzip
  (``unread`` says so), not an empty file.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from io import FileIO
from itertools import count
from pathlib import Path
from typing import Any

from pipeline.reading.batch import Batch, Cutter, FileStats, Reject
from pipeline.reading.block_settler import BlockSettler
from pipeline.reading.blocks import BlockChecks, BlockWindow, WorkerPool
from pipeline.reading.csvscan import (
    REJECT_KEEP,
    CountingCuts,
    CsvGrammar,
    grammar_for,
    line_count,
    open_quote,
    too_large,
)
from pipeline.reading.discover import INPUT_SUFFIXES, discover_inputs
from pipeline.reading.gzstream import GzipStream, is_gzip
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.record_runs import Cuts, Readable, Run, Skip, fill_buffer, iter_runs, never
from pipeline.reading.sizing import BatchSizes
from pipeline.reading.sources import Input, RemoteObject, StdinInput, size_of, streams_ranges
from pipeline.reading.validate_csv import csv_header_columns

__all__ = [
    "Batch",
    "BatchReader",
    "FileStats",
    "GzipStream",
    "INPUT_SUFFIXES",
    "Reject",
    "discover_inputs",
]

BOM = b"\xef\xbb\xbf"
SNIFF = 8192
BUFFER_SIZE = 2 << 20  # reads of 2 MiB: counted and CRC'd while still in cache (+5-11 % over 8 MiB)
HEADER_LIMIT = 8 << 20  # how far a CSV header row is looked for
BLOCK_SIZE = 1 << 20  # lines validated per task (about 1 MiB: the split lines stay in cache)
POOL_MIN_BYTES = 32 << 20  # smaller files are validated inline: a pool costs more than it saves


# --- reading --------------------------------------------------------------------------------------

#: Where reading a file ended: ``(next line, held bytes, held lines)``, or ``None`` if skipped.
End = tuple[int, int, int] | None


@dataclass(slots=True)
class _Start:
    """Where the records of a file start: the read buffer so far, and the CSV header row."""

    buf: bytearray
    fill: int
    eof: bool
    pos: int
    header: bytes = b""
    columns: list[str] | None = None


def _open(path: Input) -> FileIO | GzipStream | Any:
    """A local file as a raw file; a remote object or stdin as its source's stream (``.gz``, or stdin
    that starts as gzip: decoded)."""
    if isinstance(path, Path):
        return GzipStream(path) if is_gzip(path) else open(path, "rb", buffering=0)
    stream = path.open_stream()
    if is_gzip(path) or (isinstance(path, StdinInput) and path.starts_gzip()):
        return GzipStream(path, raw=stream, size=path.size if isinstance(path, RemoteObject) else None)
    return stream


class BatchReader:
    """Plans the batches of ``paths`` lazily, streaming each file once, in order.

    ``on_reject`` receives every rejected record (in file and line order). ``stats`` holds one
    :class:`FileStats` per file, filled as the file is read.
    """

    def __init__(
        self, paths: Sequence[Input | str], options: ReaderOptions, on_reject: Callable[[Reject], None]
    ) -> None:
        self.paths: list[Input] = [Path(p) if isinstance(p, str) else p for p in paths]
        self.options = options
        self.on_reject = on_reject
        self.stats: dict[Input, FileStats] = {}
        self._numbers = count(1)
        self._pool: WorkerPool | None = None
        plan = options.sizes
        self._sizes = BatchSizes(plan.first, plan.then) if plan is not None else None  # drawn from the start

    def __iter__(self) -> Iterator[Batch]:
        try:
            for path in self.paths:
                yield from self._read_file(path)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    # --- one file ---------------------------------------------------------------------------

    def _reject(
        self, st: FileStats, line: int, reason: str, raw: bytes, length: int | None = None, lines: int = 1
    ) -> None:
        """One reject entry; ``lines``: how many it counts for (the lines an open quote swallowed)."""
        st.rejected += lines
        self.on_reject(Reject.make(str(st.path), line, reason, raw, length))

    def _skip_file(self, st: FileStats, reason: str, raw: bytes) -> None:
        """The whole file skipped: listed with the rejects (line 1, the reason), but not counted as a
        rejected record (``FileStats.skipped`` says it; the run reports skipped files apart)."""
        st.skipped = reason
        self.on_reject(Reject.make(str(st.path), 1, reason, raw[:REJECT_KEEP], len(raw)))

    def _read_file(self, path: Input) -> Iterator[Batch]:
        st = self.stats[path] = FileStats(path)
        with _open(path) as f:
            end = yield from self._read_stream(f, path, st)
        if isinstance(f, GzipStream):
            if f.garbage:
                st.notes.append(f"trailing garbage after the gzip data ignored ({f.garbage:,} bytes)")
            if end is not None:
                st.unread = f.unread(*end)

    def _read_stream(self, f: Readable, path: Input, st: FileStats) -> Generator[Batch, None, End]:
        """The batches of one file; returns where reading ended, ``(next line, held bytes, held
        lines)`` (see :func:`iter_runs`), or ``None`` if the file was skipped before its end."""
        opts = self.options
        broken: Callable[[], bool] = (lambda: f.problem is not None) if isinstance(f, GzipStream) else never
        start = self._start(f, st, broken)
        if not isinstance(start, _Start):
            return start
        grammar = grammar_for(opts.is_csv)
        cutter = Cutter(
            source=path,
            header=start.header,
            grammar=grammar,
            max_bytes=opts.max_bytes,
            max_lines=opts.max_lines,
            numbers=self._numbers,
            stats=st,
            on_oversize=lambda off, line, raw, n: self._reject(st, line, too_large(n, cutter.limit), raw, n),
            # a batch is ranges of the input when it can be re-read by ranges; else it is spooled
            spool_dir=None if streams_ranges(path) else (opts.spool_dir or Path(_tempdir())),
            sizes=self._sizes,
        )
        first_line = 1 + start.header.count(b"\n")
        done = cutter.done
        held = [0, 0]

        def on_end(n: int, held_bytes: int, held_lines: int) -> None:
            st.bytes = n
            held[:] = held_bytes, held_lines

        # CSV, validation off: each run is counted by the scan that cuts it
        counting = CountingCuts() if opts.is_csv and not opts.validate else None
        items = iter_runs(
            f, start.buf, start.fill, start.eof, start.pos, grammar, cutter.limit, on_end, broken, counting
        )
        try:
            if not opts.validate:
                consume = self._consume_fast(items, cutter, st, first_line, counting)
            else:
                consume = self._consume_blocks(items, cutter, st, first_line, path, start.columns)
            line = yield from consume
            cutter.close()
            while done:
                yield done.popleft()
        finally:
            cutter.abort()
            for batch in done:  # planned but never handed out (the reader was closed early)
                batch.discard_spool()
        return line, held[0], held[1]

    def _start(self, f: Readable, st: FileStats, broken: Callable[[], bool]) -> _Start | End:
        """The first buffer of a file, past its BOM and CSV header, or where reading ended: the
        file is empty, binary, or its CSV header is bad (see :meth:`_read_stream`)."""
        buf = bytearray(BUFFER_SIZE)
        fill, eof = fill_buffer(f, memoryview(buf), 0)
        pos = 3 if buf.startswith(BOM) else 0
        if fill <= pos:
            st.bytes = fill
            return 1, 0, 0
        if buf.find(b"\x00", pos, min(fill, pos + SNIFF)) >= 0:
            st.bytes = fill
            self._skip_file(
                st,
                "binary file (NUL bytes in its first 8 KB): file skipped",
                bytes(buf[pos : min(fill, pos + 256)]),
            )
            return None
        start = _Start(buf, fill, eof, pos)
        return self._csv_header(f, st, start, broken) if self.options.is_csv else start

    def _csv_header(self, f: Readable, st: FileStats, start: _Start, broken: Callable[[], bool]) -> _Start | End:
        """``start`` past the CSV header row, which it holds, or where reading ended (no header)."""
        buf, fill, eof, pos = start.buf, start.fill, start.eof, start.pos
        end, _ = CsvGrammar.first_boundary(buf, pos, fill)
        while end < 0 and not eof and len(buf) < HEADER_LIMIT:  # a long header: look further
            bigger = bytearray(min(2 * len(buf), HEADER_LIMIT))
            bigger[:fill] = buf[:fill]
            buf = bigger
            fill, eof = fill_buffer(f, memoryview(buf), fill)
            end, _ = CsvGrammar.first_boundary(buf, pos, fill)
        if end < 0:
            if not eof:
                self._skip_file(st, "CSV header row not found in the first 8 MiB: file skipped", bytes(buf))
                return None
            if broken():  # the header row itself was cut short
                st.bytes = fill
                return 1, fill - pos, line_count(buf, pos, fill)
            end = fill
        header = bytes(buf[pos:end])
        columns, reason = csv_header_columns(header)
        if reason:
            self._skip_file(st, reason + ": file skipped", header)
            return None
        if len(header) >= self.options.max_bytes:
            self._skip_file(st, "CSV header row alone reaches max_bytes: file skipped", header)
            return None
        return _Start(buf, fill, eof, end, header, columns)

    def _skipped(self, st: FileStats, item: Skip, line: int) -> int:
        if item.open_quote:  # the rest of the file: one entry, every line counted
            self._reject(st, line, open_quote(line, item.lines), item.prefix, item.length, item.lines)
        else:
            self._reject(st, line, item.reason, item.prefix, item.length)
        return line + item.lines

    def _consume_fast(
        self, items: Iterator[Run | Skip], cutter: Cutter, st: FileStats, line: int, counting: Cuts | None
    ) -> Generator[Batch, None, int]:
        """Feed the runs to the cutter as they are, handing out the batches it closes; returns the
        line after the last one read. ``counting``: CSV, whose runs it counts (records, not lines)."""
        done = cutter.done
        for item in items:
            if isinstance(item, Skip):
                line = self._skipped(st, item, line)
            elif counting is not None:
                data, lo, hi, base = item
                lines, records = counting.counts(data, lo, hi, base)
                line += cutter.add_run(data, lo, hi, base, line, lines, records)
            else:
                data, lo, hi, base = item
                line += cutter.add_run(data, lo, hi, base, line)
            while done:
                yield done.popleft()
        return line

    def _consume_blocks(
        self,
        items: Iterator[Run | Skip],
        cutter: Cutter,
        st: FileStats,
        line: int,
        path: Input,
        columns: list[str] | None,
    ) -> Generator[Batch, None, int]:
        """Check runs in blocks (:mod:`pipeline.reading.blocks`, in a pool if worth it) and feed
        the good records to the cutter in order, so the result does not depend on the pool. Hands out the
        batches the cutter closes; returns the line after the last one read."""
        opts = self.options
        pool = self._get_pool() if opts.workers >= 2 and _size_hint(path) >= POOL_MIN_BYTES else None
        settler = BlockSettler(cutter, st, partial(self._reject, st), partial(self._skipped, st), line)
        window = BlockWindow(
            settler,
            BlockChecks.choose(opts.document_type, columns),
            pool=pool,
            # workers read plain local files themselves
            path=str(path) if isinstance(path, Path) and not is_gzip(path) else None,
            depth=4 * opts.workers,
            # counting needs no cache-sized blocks: a whole run per task spares a quote count per block
            block_size=BLOCK_SIZE if opts.validate else BUFFER_SIZE,
            grammar=cutter.grammar,
            limit=cutter.limit,
        )
        done = cutter.done
        for item in items:
            if isinstance(item, Skip):
                window.add_skip(item)
            else:
                window.add_run(item)
            window.settle_due()
            while done:
                yield done.popleft()
        while window.settle_next():
            while done:
                yield done.popleft()
        return settler.line

    def _get_pool(self) -> WorkerPool:
        if self._pool is None:
            # fresh interpreters that import the checks, never the caller's main module
            self._pool = WorkerPool(self.options.workers)
        return self._pool


def _tempdir() -> str:
    import tempfile

    return tempfile.gettempdir()


def _size_hint(path: Input) -> int:
    size = size_of(path)
    if size is None:
        return POOL_MIN_BYTES  # stdin: as large as worth a pool
    return size * 4 if is_gzip(path) else size

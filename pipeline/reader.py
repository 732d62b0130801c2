"""Input files -> batch descriptions (see ``shared/DESIGN.md``: a batch is a description, not a buffer).

Each file is streamed once through one reused buffer (2 MiB, so that each read is counted and
CRC'd while it is still in the CPU cache; grown only to hold a single record of up to
``max_bytes``, or a CSV header row of up to 8 MiB). Records are cut only at record ends; good
records become byte ranges of the source, rejected ones go to ``on_reject`` and leave a gap in
the ranges. Choices:

- **No trailer.** A last line without its ``\\n`` is a valid record and is sent as it is: it is
  always the last record of its file, hence of its batch, and a body that ends without a line end
  is well-formed NDJSON / CSV. Batches stay pure byte ranges.
- **Binary files.** If the first 8 KB (after a BOM) hold a NUL byte, the whole file is skipped
  with ONE reject (line 1, "binary file ...") rather than a reject per line; ``FileStats.skipped``
  says why. This applies with validation off too.
- **Bad CSV header.** The file is skipped with one reject for line 1 naming the problem (nothing of
  it is uploaded, ``FileStats.skipped`` is set); the run goes on with the other files. An
  ``InputError`` halfway through a run (after other files' batches were sent) would be worse.
- **Empty files** (or only a BOM / only a CSV header) give no batch and ``records == 0``; the
  caller warns.
- **Validation off**: no per-line Python work for NDJSON: cuts use ``rfind``/``count``, blank
  lines are sent, ``records`` counts physical lines. CSV is cut the same way (quote parity via
  ``count(b'"')``) but its records are counted exactly (a quoted field may hold newlines, so a
  record may span lines: :func:`pipeline.csvscan.csv_counts`), in blocks, in the pool like
  validation: otherwise the report would claim more records sent than the server can count.
  Records over ``max_bytes`` and binary files are still rejected, the CSV header is still checked.
- **Validation on**: records are checked in blocks of about 1 MiB (NDJSON:
  :func:`pipeline.validate.validate_block`; CSV: :func:`pipeline.validate.validate_csv_counted`),
  in a process pool when ``workers >= 2`` and the file is at least ``POOL_MIN_BYTES``; results are
  consumed in order, so batches and rejects are the same as inline. Pool workers read their block
  of a plain file themselves (``os.pread``); blocks of a ``.gz`` file are sent to them. The pool
  uses the ``forkserver`` start method (safe when the caller runs threads): like any
  multiprocessing code, a script calling the reader with ``workers >= 2`` needs the
  ``if __name__ == "__main__":`` guard.
- **gzip** (``.gz``): decompressed while streaming; each batch's records are written to a spool
  file in ``spool_dir`` (``data_path``, one range); call :meth:`Batch.discard_spool` once its
  upload settled. ``byte_start`` / ``byte_end`` / lines always refer to the uncompressed source.
"""

from __future__ import annotations

import gzip
import os
import signal
import stat
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from itertools import count
from pathlib import Path
from typing import BinaryIO

from pipeline import formats
from pipeline.batch import Batch, Cutter, FileStats, Reject
from pipeline.csvscan import REJECT_KEEP, CsvGrammar, Skip, fill_buffer, grammar_for, iter_runs, too_large
from pipeline.errors import ConfigError, InputError
from pipeline.validate import (
    count_csv_block,
    count_csv_file_block,
    csv_header_columns,
    validate_counted,
    validate_csv_counted,
    validate_csv_file_block,
    validate_file_block,
)

__all__ = [
    "Batch",
    "BatchReader",
    "FileStats",
    "ReaderOptions",
    "Reject",
    "discover_inputs",
    "MAX_BYTES",
]

MAX_BYTES = 100_000_000
INPUT_SUFFIXES = (".ndjson", ".jsonl", ".csv")
BOM = b"\xef\xbb\xbf"
SNIFF = 8192
BUFFER_SIZE = 2 << 20  # reads of 2 MiB: counted and CRC'd while still in cache (+5-11 % over 8 MiB)
HEADER_LIMIT = 8 << 20  # how far a CSV header row is looked for
BLOCK_SIZE = 1 << 20  # lines validated per task (about 1 MiB: the split lines stay in cache)
POOL_MIN_BYTES = 32 << 20  # smaller files are validated inline: a pool costs more than it saves


def _default_workers() -> int:
    return min(2, os.cpu_count() or 1)


@dataclass(frozen=True, kw_only=True)
class ReaderOptions:
    document_type: str
    mime_type: str  # formats.NDJSON or formats.CSV
    max_bytes: int = MAX_BYTES  # body size limit, CSV header included
    max_lines: int = 0  # records per batch, 0 = no limit
    validate: bool = True
    workers: int = field(default_factory=_default_workers)  # 0/1 = validate inline
    spool_dir: Path | None = None  # for .gz input; None = the system temp dir

    def __post_init__(self) -> None:
        if self.document_type not in formats.DOCUMENT_TYPES:
            raise ConfigError("document_type", f"unknown document type {self.document_type!r}")
        if self.mime_type not in formats.CONTENT_TYPES:
            raise ConfigError("mime_type", f"unknown mime type {self.mime_type!r}")
        if not 1 <= self.max_bytes <= MAX_BYTES:
            raise ConfigError("max_bytes", f"must be between 1 and {MAX_BYTES} (got {self.max_bytes})")
        if self.max_lines < 0:
            raise ConfigError("max_lines", f"must be >= 0, 0 meaning no limit (got {self.max_lines})")
        if self.workers < 0:
            raise ConfigError("workers", f"must be >= 0 (got {self.workers})")

    @property
    def is_csv(self) -> bool:
        return self.mime_type == formats.CSV

    def replace(self, **changes: object) -> ReaderOptions:
        return replace(self, **changes)  # type: ignore[arg-type]


# --- discovery ------------------------------------------------------------------------------------


def _is_input_name(name: str) -> bool:
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(INPUT_SUFFIXES)


def _check_readable(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except PermissionError:
        raise InputError(path, "not readable (permission denied)") from None
    except OSError as exc:
        raise InputError(path, f"not readable ({exc.strerror or exc})") from None
    if path.name.endswith(".gz") and magic and magic != b"\x1f\x8b":
        raise InputError(path, "named .gz but not a gzip file")


def discover_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """The input files named by ``paths``: files (plain or ``.gz``) and directories (their
    ``*.ndjson``, ``*.jsonl``, ``*.csv`` files and the ``.gz`` of those, in name order, not recursive).

    Raises :class:`InputError` naming the path for a missing path, a directory without input files,
    an unreadable file, or something that is not a regular file. Duplicates are dropped.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise InputError(path, "no such file or directory") from None
        except OSError as exc:
            raise InputError(path, f"cannot access ({exc.strerror or exc})") from None
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(p.name for p in path.iterdir())
            except PermissionError:
                raise InputError(path, "directory not readable (permission denied)") from None
            files = [path / n for n in names if _is_input_name(n) and (path / n).is_file()]
            if not files:
                raise InputError(path, "directory holds no input files (*.ndjson, *.jsonl, *.csv, or those .gz)")
            found.extend(files)
        elif stat.S_ISREG(st.st_mode):
            found.append(path)
        else:
            raise InputError(path, "not a regular file")
    result: list[Path] = []
    seen: set[Path] = set()
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            _check_readable(path)
            result.append(path)
    return result


# --- reading --------------------------------------------------------------------------------------


def _open(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=0)


class BatchReader:
    """Plans the batches of ``paths`` lazily, streaming each file once, in order.

    ``on_reject`` receives every rejected record (in file and line order). ``stats`` holds one
    :class:`FileStats` per file, filled as the file is read.
    """

    def __init__(self, paths: Sequence[Path], options: ReaderOptions, on_reject: Callable[[Reject], None]) -> None:
        self.paths = [Path(p) for p in paths]
        self.options = options
        self.on_reject = on_reject
        self.stats: dict[Path, FileStats] = {}
        self._numbers = count(1)
        self._pool: Executor | None = None

    def __iter__(self) -> Iterator[Batch]:
        try:
            for path in self.paths:
                yield from self._read_file(path)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    # --- one file ---------------------------------------------------------------------------

    def _reject(self, st: FileStats, line: int, reason: str, raw: bytes, length: int | None = None) -> None:
        st.rejected += 1
        self.on_reject(Reject.make(str(st.path), line, reason, raw, length))

    def _skip_file(self, st: FileStats, reason: str, raw: bytes) -> None:
        st.skipped = reason
        self._reject(st, 1, reason, raw[:REJECT_KEEP], len(raw))

    def _read_file(self, path: Path) -> Iterator[Batch]:
        opts = self.options
        st = self.stats[path] = FileStats(path)
        grammar = grammar_for(opts.is_csv)
        with _open(path) as f:
            buf = bytearray(BUFFER_SIZE)
            fill, eof = fill_buffer(f, memoryview(buf), 0)
            pos = 3 if buf.startswith(BOM) else 0
            if fill <= pos:
                st.bytes = fill
                return
            if buf.find(b"\x00", pos, min(fill, pos + SNIFF)) >= 0:
                st.bytes = fill
                self._skip_file(
                    st,
                    "binary file (NUL bytes in its first 8 KB): file skipped",
                    bytes(buf[pos : min(fill, pos + 256)]),
                )
                return
            header = b""
            columns: list[str] | None = None
            if opts.is_csv:
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
                        return
                    end = fill
                header = bytes(buf[pos:end])
                columns, reason = csv_header_columns(header)
                if reason:
                    self._skip_file(st, reason + ": file skipped", header)
                    return
                if len(header) >= opts.max_bytes:
                    self._skip_file(st, "CSV header row alone reaches max_bytes: file skipped", header)
                    return
                pos = end
            cutter = Cutter(
                source=path,
                header=header,
                grammar=grammar,
                max_bytes=opts.max_bytes,
                max_lines=opts.max_lines,
                numbers=self._numbers,
                stats=st,
                on_oversize=lambda off, line, raw, n: self._reject(st, line, too_large(n, cutter.limit), raw, n),
                spool_dir=(opts.spool_dir or Path(_tempdir())) if path.name.endswith(".gz") else None,
            )
            first_line = 1 + header.count(b"\n")
            done = cutter.done
            items = iter_runs(f, buf, fill, eof, pos, grammar, cutter.limit, lambda n: setattr(st, "bytes", n))
            try:
                if not opts.validate and not opts.is_csv:
                    consume = self._consume_fast(items, cutter, st, first_line)
                else:
                    consume = self._consume_blocks(items, cutter, st, first_line, path, columns)
                for _ in consume:
                    while done:
                        yield done.popleft()
                cutter.close()
                while done:
                    yield done.popleft()
            finally:
                cutter.abort()
                for batch in done:  # planned but never handed out (the reader was closed early)
                    batch.discard_spool()

    def _skipped(self, st: FileStats, item: Skip, line: int) -> int:
        self._reject(st, line, item.reason, item.prefix, item.length)
        return line + item.lines

    def _consume_fast(self, items: Iterator, cutter: Cutter, st: FileStats, line: int) -> Iterator[None]:
        for item in items:
            if isinstance(item, Skip):
                line = self._skipped(st, item, line)
            else:
                data, lo, hi, base = item
                line += cutter.add_run(data, lo, hi, base, line)
            yield

    def _consume_blocks(
        self, items: Iterator, cutter: Cutter, st: FileStats, line: int, path: Path, columns: list[str] | None
    ) -> Iterator[None]:
        """Validate runs in blocks of about ``BLOCK_SIZE`` (in a pool if worth it) and feed the
        good records to the cutter in order, so the result does not depend on the pool. CSV with
        validation off comes here too: its blocks are only counted (records are not lines when
        quoted fields hold newlines, and counting them is worth the pool)."""
        opts = self.options
        pool = self._get_pool() if opts.workers >= 2 and _size_hint(path) >= POOL_MIN_BYTES else None
        from_file = not path.name.endswith(".gz")  # workers read plain files themselves
        window: deque[tuple[object, Future | tuple[int, list] | None]] = deque()
        depth = 4 * opts.workers
        limit = cutter.limit
        if not opts.validate:
            key: object = None
            check, check_file = count_csv_block, count_csv_file_block
        elif columns is None:
            key = opts.document_type
            check, check_file = validate_counted, validate_file_block
        else:
            key = columns
            check, check_file = validate_csv_counted, validate_csv_file_block
        grammar = cutter.grammar
        # counting needs no cache-sized blocks: a whole run per task spares a quote count per block
        block_size = BLOCK_SIZE if opts.validate else BUFFER_SIZE

        def settle(item: object, res: Future | tuple[int, list]) -> None:
            nonlocal line
            if isinstance(item, Skip):
                line = self._skipped(st, item, line)
                return
            count, entries = res.result() if isinstance(res, Future) else res
            data, lo, hi, base = item  # type: ignore[misc]
            if not opts.validate:  # counted only: the answer is (lines, records)
                records = entries
                cutter.add_run(data, lo, hi, base, line, count, records)
                line += count
                return
            pos = lo
            ln = first = line
            line += count
            extra = 0  # lines beyond the first of the multi-line records in the current run
            for off, length, rel, reason, *more in entries:
                if reason == "":  # a good CSV record of several lines: part of the run
                    extra += more[0] - 1
                    continue
                off += lo
                line_no = first + rel
                if off > pos:
                    cutter.add_run(data, pos, off, base, ln, line_no - ln, line_no - ln - extra)
                    extra = 0
                if reason is None:
                    st.blank_lines += 1
                else:
                    self._reject(st, line_no, reason, data[off : off + min(length, REJECT_KEEP)], length)
                pos = off + length
                ln = line_no + (more[0] if more else 1)
            if hi > pos:
                cutter.add_run(data, pos, hi, base, ln, line - ln, line - ln - extra)

        for item in items:
            if isinstance(item, Skip):
                window.append((item, None))
            else:
                buf, lo, hi, base = item
                region = bytes(memoryview(buf)[lo:hi])
                base += lo
                pos = 0
                while pos < len(region):
                    end = len(region)
                    if end - pos > block_size:
                        end = grammar.last_boundary(region, pos, pos + block_size)
                        if end < 0:
                            end = grammar.first_boundary(region, pos, len(region))[0]
                            end = len(region) if end < 0 else end
                    res: Future | tuple[int, list]
                    if pool is None:
                        res = check(key, region[pos:end], limit)  # type: ignore[arg-type]
                    elif from_file:
                        res = pool.submit(check_file, key, str(path), base + pos, end - pos, limit)
                    else:
                        res = pool.submit(check, key, region[pos:end], limit)
                    window.append(((region, pos, end, base), res))
                    pos = end
                    while window and (pool is None or len(window) >= depth):
                        settle(*window.popleft())
            while window and (pool is None or len(window) >= depth):
                settle(*window.popleft())
            yield
        while window:
            settle(*window.popleft())
            yield

    def _get_pool(self) -> Executor:
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor  # multiprocessing: only with validation
            from multiprocessing import get_context

            self._pool = ProcessPoolExecutor(
                self.options.workers, mp_context=get_context("forkserver"), initializer=ignore_sigint
            )
        return self._pool


def ignore_sigint() -> None:
    """In a pool worker: Ctrl-C at a terminal reaches the whole process group, and a worker that
    died of it would break the pool and fail the run; the run itself decides how to stop (it
    finishes in-flight uploads, then shuts the pool down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _tempdir() -> str:
    import tempfile

    return tempfile.gettempdir()


def _size_hint(path: Path) -> int:
    try:
        size = path.stat().st_size
    except OSError:
        return 0
    return size * 4 if path.name.endswith(".gz") else size

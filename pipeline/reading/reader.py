"""Input files -> batch descriptions (see ``shared/DESIGN.md``: a batch is a description, not a buffer).

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
  with ONE reject (line 1, "binary file ...") rather than a reject per line; ``FileStats.skipped``
  says why. This applies with validation off too.
- **Bad CSV header.** The file is skipped with one reject for line 1 naming the problem (nothing of
  it is uploaded, ``FileStats.skipped`` is set); the run goes on with the other files. An
  ``InputError`` halfway through a run (after other files' batches were sent) would be worse.
- **Empty files** (or only a BOM / only a CSV header) give no batch and ``records == 0``; the
  caller warns.
- **A CSV quote never closed** swallows the rest of the file (nothing says where the field was
  meant to end): ONE reject at its line, "line N opens a quote that is never closed: lines N-M not
  sent", that counts for its M - N + 1 lines in ``FileStats.rejected``, so that the file's lines are
  its records sent plus its rejected (when no good record spans lines), validation on or off.
- **Validation off**: no per-line Python work for NDJSON: cuts use ``rfind``/``count``, blank
  lines are sent, ``records`` counts physical lines. CSV is cut the same way (quote parity via
  ``count(b'"')``) but its records are counted exactly (a quoted field may hold newlines, so a
  record may span lines: :func:`pipeline.reading.csvscan.csv_counts`), in blocks, in the pool like
  validation: otherwise the report would claim more records sent than the server can count.
  Records over ``max_bytes`` and binary files are still rejected, the CSV header is still checked.
- **Validation on**: records are checked in blocks of about 1 MiB (NDJSON:
  :func:`pipeline.reading.validate.validate_block`; CSV: :func:`pipeline.reading.validate.validate_csv_counted`),
  in a process pool when ``workers >= 2`` and the file is at least ``POOL_MIN_BYTES``; results are
  consumed in order, so batches and rejects are the same as inline. Pool workers read their block
  of a plain file themselves (``os.pread``); blocks of a ``.gz`` file are sent to them. The pool
  uses the ``forkserver`` start method (safe when the caller runs threads): like any
  multiprocessing code, a script calling the reader with ``workers >= 2`` needs the
  ``if __name__ == "__main__":`` guard.
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

import errno
import os
import signal
import stat
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from functools import partial
from io import FileIO
from itertools import count
from pathlib import Path
from typing import TypeAlias

from pipeline import formats
from pipeline.errors import ConfigError, InputError
from pipeline.reading.batch import Batch, Cutter, FileStats, Reject
from pipeline.reading.csvscan import (
    REJECT_KEEP,
    CsvGrammar,
    Readable,
    Skip,
    fill_buffer,
    grammar_for,
    iter_runs,
    line_count,
    never,
    open_quote,
    too_large,
)
from pipeline.reading.validate import (
    CsvEntry,
    Problem,
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
GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib reads the gzip header and checks the trailer (CRC-32, size)
GZIP_CHUNK = 1 << 16  # compressed bytes fed to zlib at a time

#: A run of whole records streamed by :func:`iter_runs`: ``(buffer, lo, hi, base)``.
Run: TypeAlias = tuple[bytes | bytearray, int, int, int]
#: What a block check answers: ``(lines, records)`` when only counted (CSV, validation off), else
#: ``(lines, entries)``, the entries worth telling (:data:`Problem` or :data:`CsvEntry`).
Checked: TypeAlias = tuple[int, int] | tuple[int, list[Problem]] | tuple[int, list[CsvEntry]]
#: A block of a run, copied out of the read buffer for checking: ``(region, lo, hi, base)``.
Block: TypeAlias = tuple[bytes, int, int, int]
BlockCheck: TypeAlias = Callable[[bytes, int], Checked]  # (block, max record size)
FileBlockCheck: TypeAlias = Callable[[str, int, int, int], Checked]  # (path, offset, length, max)


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
        # the changes are checked by __post_init__, not typed: mypy cannot match **object to the fields
        return replace(self, **changes)  # type: ignore[arg-type]


# --- discovery ------------------------------------------------------------------------------------


def _is_input_name(name: str) -> bool:
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(INPUT_SUFFIXES)


def _stat(path: Path) -> os.stat_result:
    """``path.stat()`` (symbolic links followed), or an ``InputError`` saying why it cannot be."""
    try:
        return path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            try:
                target = f" {os.readlink(path)!r}"
            except OSError:
                target = ""
            raise InputError(path, f"broken symbolic link (its target{target} does not exist)") from None
        raise InputError(path, "no such file or directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(path, "symbolic link loop (too many levels of symbolic links)") from None
        raise InputError(path, f"cannot access ({exc.strerror or exc})") from None


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_a_file(mode: int) -> str:
    kind = next((name for test, name in _FILE_KINDS if test(mode)), None)
    return f"not a regular file ({kind})" if kind else "not a regular file"


def _check_readable(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except PermissionError:
        raise InputError(path, "not readable (permission denied)") from None
    except OSError as exc:
        raise InputError(path, f"not readable ({exc.strerror or exc})") from None
    if path.name.endswith(".gz") and magic and magic != GZIP_MAGIC:
        raise InputError(path, "named .gz but not a gzip file")


def discover_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """The input files named by ``paths``: files (plain or ``.gz``) and directories (their
    ``*.ndjson``, ``*.jsonl``, ``*.csv`` files and the ``.gz`` of those, in name order, not recursive).

    Raises :class:`InputError` naming the path for a missing path, a directory without input files,
    an unreadable file, or something that is not a regular file (a broken symbolic link, a link
    loop, a FIFO...), given or in a directory under an input name (``x.ndjson`` being a directory,
    say: directories are not searched recursively); in a directory, entries under other names are
    ignored whatever they are. Duplicates are dropped.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        st = _stat(path)
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(p.name for p in path.iterdir())
            except PermissionError:
                raise InputError(path, "directory not readable (permission denied)") from None
            files = [path / n for n in names if _is_input_name(n)]
            for entry in files:
                mode = _stat(entry).st_mode
                if stat.S_ISDIR(mode):
                    raise InputError(entry, "not a regular file (a directory: directories in a directory are not read)")
                if not stat.S_ISREG(mode):
                    raise InputError(entry, _not_a_file(mode))
            if not files:
                raise InputError(path, "directory holds no input files (*.ndjson, *.jsonl, *.csv, or those .gz)")
            found.extend(files)
        elif stat.S_ISREG(st.st_mode):
            found.append(path)
        else:
            raise InputError(path, _not_a_file(st.st_mode))
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


def _open(path: Path) -> FileIO | GzipStream:
    if path.name.endswith(".gz"):
        return GzipStream(path)
    return open(path, "rb", buffering=0)


class GzipStream:
    """The decompressed bytes of a ``.gz`` file (all its members, as ``gzip -dc`` writes them) for
    :func:`~pipeline.reading.csvscan.fill_buffer`, read with ``zlib``.

    Unlike ``gzip.GzipFile``, bad data raises nothing and loses nothing: ``readinto`` hands out all
    that zlib decoded, then returns 0 (the end), and the stream says why it ended: cleanly, or
    with ``garbage`` bytes after the last member that do not start another one (ignored, as
    ``gzip -d`` does, with a warning), or with a ``problem`` (a truncated or corrupt stream: decoding
    stopped after ``consumed`` of ``size`` compressed bytes). Disk errors still raise ``OSError``.

    When zlib raises, the bytes of that call are fed again one at a time, from a copy of the
    decompressor taken before it (about 1 us per call of up to ``GZIP_CHUNK`` bytes), so that what
    they decode before the error is kept too.
    """

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._raw = open(path, "rb", buffering=0)
        self.size = os.fstat(self._raw.fileno()).st_size
        self._zlib = self._saved = zlib.decompressobj(GZIP_WBITS)
        self._data = b""  # compressed bytes being fed (file offset ``_at``); ``_off``: the next one
        self._at = self._off = 0
        self._eof = False  # the file was read to its end
        self._careful = False  # feeding one byte at a time: zlib raised on these bytes
        self.members = 0  # gzip members decoded whole
        self.consumed = 0  # at the end: the compressed bytes decoded
        self.garbage = 0
        self.problem: str | None = None  # why decoding stopped before the end of the gzip data
        self.not_gzip = False  # ... before the start: the file is not gzip at all
        self.done = False
        try:
            while len(self._data) < 2 and not self._eof:
                self._refill()
        except OSError as exc:  # as fill_buffer says it
            self._raw.close()
            raise InputError(path, f"read failed: {exc}") from None
        if self._data[:2] != GZIP_MAGIC:
            self.not_gzip = True
            self._stop("empty .gz: not a gzip file" if not self._data else "not a gzip file (no gzip header)")

    def __enter__(self) -> GzipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def readinto(self, buffer: memoryview | bytearray) -> int:
        out = memoryview(buffer)
        want = len(out)
        n = 0
        while n < want and not self.done:
            if self._off == len(self._data) and not self._eof:
                self._refill()
            piece = memoryview(self._data)[self._off : self._off + 1 if self._careful else None]
            z = self._zlib
            if not self._careful:
                self._saved = z.copy()
            try:
                data = z.decompress(piece, want - n)
            except zlib.error as exc:
                if self._careful:
                    self._stop(str(exc))
                    break
                self._zlib, self._careful = self._saved, True
                continue
            self._off += len(piece) - len(z.unused_data if z.eof else z.unconsumed_tail)  # at eof both may be set
            if data:
                out[n : n + len(data)] = data
                n += len(data)
            if z.eof:
                self._next_member()
            elif not data and self._eof and self._off == len(self._data):
                where = f"member {self.members + 1}" if self.members else "data"
                self._stop(f"the file ends inside the gzip {where}")
        return n

    def _refill(self) -> None:
        """Read the next compressed bytes of the file, after those of ``_data`` not fed yet."""
        rest = self._data[self._off :]
        more = self._raw.read(GZIP_CHUNK)
        self._at += self._off
        self._data, self._off = rest + more if rest else more, 0
        self._careful = False
        self._eof = not more

    def _next_member(self) -> None:
        self.members += 1
        while len(self._data) - self._off < 2 and not self._eof:
            self._refill()
        head = self._data[self._off : self._off + 2]
        if head == GZIP_MAGIC:  # another member (``cat a.gz b.gz``)
            self._zlib = zlib.decompressobj(GZIP_WBITS)
            return
        at = self._at + self._off
        self.garbage = max(self.size - at, len(self._data) - self._off)
        self.consumed = at
        self.done = True

    def _stop(self, problem: str) -> None:
        self.problem = problem
        self.consumed = self._at + self._off
        self.done = True

    def unread(self, next_line: int, held: int, held_lines: int) -> str | None:
        """What of the file was not read, in a sentence for the report (``None``: all was):
        ``next_line`` is the line after the last one read whole, ``held`` the bytes of a last
        record cut short (``held_lines`` lines), which were decoded but not sent."""
        if self.problem is None:
            return None
        if self.not_gzip:
            return self.problem
        after = f"after line {next_line - 1}" if next_line > 1 else "before line 1"
        if not held:
            rest = "the rest was not sent"
        elif held_lines <= 1:
            rest = f"the partial line {next_line} ({held:,} bytes decoded) and the rest were not sent"
        else:
            last = next_line + held_lines - 1
            rest = f"the partial record of lines {next_line}-{last} ({held:,} bytes decoded) and the rest were not sent"
        return (
            f"gzip data is truncated/corrupt ({self.problem}): decoding stopped {after} "
            f"({self.consumed:,} of {self.size:,} compressed bytes read); {rest}"
        )


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

    def _reject(
        self, st: FileStats, line: int, reason: str, raw: bytes, length: int | None = None, lines: int = 1
    ) -> None:
        """One reject entry; ``lines``: how many it counts for (the lines an open quote swallowed)."""
        st.rejected += lines
        self.on_reject(Reject.make(str(st.path), line, reason, raw, length))

    def _skip_file(self, st: FileStats, reason: str, raw: bytes) -> None:
        st.skipped = reason
        self._reject(st, 1, reason, raw[:REJECT_KEEP], len(raw))

    def _read_file(self, path: Path) -> Iterator[Batch]:
        st = self.stats[path] = FileStats(path)
        with _open(path) as f:
            end = yield from self._read_stream(f, path, st)
        if isinstance(f, GzipStream):
            if f.garbage:
                st.notes.append(f"trailing garbage after the gzip data ignored ({f.garbage:,} bytes)")
            if end is not None:
                st.unread = f.unread(*end)

    def _read_stream(
        self, f: Readable, path: Path, st: FileStats
    ) -> Generator[Batch, None, tuple[int, int, int] | None]:
        """The batches of one file; returns where reading ended, ``(next line, held bytes, held
        lines)`` (see :func:`iter_runs`), or ``None`` if the file was skipped before its end."""
        opts = self.options
        grammar = grammar_for(opts.is_csv)
        broken: Callable[[], bool] = (lambda: f.problem is not None) if isinstance(f, GzipStream) else never
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
            if len(header) >= opts.max_bytes:
                self._skip_file(st, "CSV header row alone reaches max_bytes: file skipped", header)
                return None
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
        held = [0, 0]

        def on_end(n: int, held_bytes: int, held_lines: int) -> None:
            st.bytes = n
            held[:] = held_bytes, held_lines

        items = iter_runs(f, buf, fill, eof, pos, grammar, cutter.limit, on_end, broken)
        try:
            if not opts.validate and not opts.is_csv:
                consume = self._consume_fast(items, cutter, st, first_line)
            else:
                consume = self._consume_blocks(items, cutter, st, first_line, path, columns)
            line = yield from consume
            cutter.close()
            while done:
                yield done.popleft()
        finally:
            cutter.abort()
            for batch in done:  # planned but never handed out (the reader was closed early)
                batch.discard_spool()
        return line, held[0], held[1]

    def _skipped(self, st: FileStats, item: Skip, line: int) -> int:
        if item.open_quote:  # the rest of the file: one entry, every line counted
            self._reject(st, line, open_quote(line, item.lines), item.prefix, item.length, item.lines)
        else:
            self._reject(st, line, item.reason, item.prefix, item.length)
        return line + item.lines

    def _consume_fast(
        self, items: Iterator[Run | Skip], cutter: Cutter, st: FileStats, line: int
    ) -> Generator[Batch, None, int]:
        """Feed the runs to the cutter as they are, handing out the batches it closes; returns the
        line after the last one read."""
        done = cutter.done
        for item in items:
            if isinstance(item, Skip):
                line = self._skipped(st, item, line)
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
        path: Path,
        columns: list[str] | None,
    ) -> Generator[Batch, None, int]:
        """Validate runs in blocks of about ``BLOCK_SIZE`` (in a pool if worth it) and feed the
        good records to the cutter in order, so the result does not depend on the pool. CSV with
        validation off comes here too: its blocks are only counted (records are not lines when
        quoted fields hold newlines, and counting them is worth the pool). Hands out the batches
        the cutter closes; returns the line after the last one read."""
        opts = self.options
        done = cutter.done
        pool = self._get_pool() if opts.workers >= 2 and _size_hint(path) >= POOL_MIN_BYTES else None
        from_file = not path.name.endswith(".gz")  # workers read plain files themselves
        window: deque[tuple[Block, Future[Checked] | Checked] | tuple[Skip, None]] = deque()
        depth = 4 * opts.workers
        limit = cutter.limit
        check: BlockCheck
        check_file: FileBlockCheck
        if not opts.validate:
            check, check_file = partial(count_csv_block, None), partial(count_csv_file_block, None)
        elif columns is None:
            key = opts.document_type
            check, check_file = partial(validate_counted, key), partial(validate_file_block, key)
        else:
            check, check_file = partial(validate_csv_counted, columns), partial(validate_csv_file_block, columns)
        grammar = cutter.grammar
        # counting needs no cache-sized blocks: a whole run per task spares a quote count per block
        block_size = BLOCK_SIZE if opts.validate else BUFFER_SIZE

        def settle(item: Block | Skip, res: Future[Checked] | Checked | None) -> None:
            nonlocal line
            if isinstance(item, Skip):
                line = self._skipped(st, item, line)
                return
            assert res is not None  # a run always has its check
            count, entries = res.result() if isinstance(res, Future) else res
            data, lo, hi, base = item
            if isinstance(entries, int):  # counted only: the answer is (lines, records)
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
                    res: Future[Checked] | Checked
                    if pool is None:
                        res = check(region[pos:end], limit)
                    elif from_file:
                        res = pool.submit(check_file, str(path), base + pos, end - pos, limit)
                    else:
                        res = pool.submit(check, region[pos:end], limit)
                    window.append(((region, pos, end, base), res))
                    pos = end
                    while window and (pool is None or len(window) >= depth):
                        settle(*window.popleft())
            while window and (pool is None or len(window) >= depth):
                settle(*window.popleft())
            while done:
                yield done.popleft()
        while window:
            settle(*window.popleft())
            while done:
                yield done.popleft()
        return line

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

"""Per-line processing of an upload as it streams in. Pure code: no I/O, no event loop.

Three consumers share one interface (``feed(chunk)``, ``finish()``, then the counters):
- ``LineCounter`` (light mode): counts newline bytes with ``bytes.count``; no parsing, no digests
  (so a CSV record whose quoted fields hold newlines counts as several successes: light mode is
  for measuring the client, and an exact count would cost the emulator about 2 CPU s per GB).
- ``NdjsonChecker``: splits lines across chunk boundaries and checks each with
  ``formats.check_ndjson_line``.
- ``CsvChecker``: quote-aware records (a quoted field may hold newlines, so a record may span
  several physical lines); the first record is the header (``formats.check_csv_header``), each
  following record is checked with ``formats.check_csv_row``.

Only counts, the 16-byte ``formats.record_digest`` of each good record, and the failed records
(line number, reason, text) are kept: never the body. Choices (api.md leaves them open):
- line numbers are 1-based physical line numbers of the uploaded file; a CSV record is numbered by
  the line it starts on (the header is line 1);
- blank lines (empty or whitespace only) are skipped: neither a success nor a failure;
- a line end is ``\\n`` or ``\\r\\n``; a last line without a line end is a record; a UTF-8 BOM at
  the start of the file is ignored;
- a record longer than ``max_record_bytes`` (16 MiB by default) fails with "record longer than ...";
- a failed record's text is kept up to ``MAX_FAILED_TEXT`` bytes (longer ones are truncated and
  marked so in the error file).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from pipeline import formats

BOM = b"\xef\xbb\xbf"
MAX_FAILED_TEXT = 64 * 1024


@dataclass(frozen=True, slots=True)
class FailedLine:
    line: int
    reason: str
    record: bytes
    truncated: bool = False


class LineCounter:
    """Light mode: counts lines only. Every line counts as a success (a CSV header does not)."""

    def __init__(self, *, header: bool = False) -> None:
        self._header = header
        self.size = 0
        self._newlines = 0
        self._last = b""
        self.digests = bytearray()
        self.failures: list[FailedLine] = []

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self.size += len(chunk)
            self._newlines += chunk.count(b"\n")
            self._last = chunk[-1:]

    def finish(self) -> None:
        pass

    @property
    def lines(self) -> int:
        return self._newlines + (1 if self._last not in (b"", b"\n") else 0)

    @property
    def ok(self) -> int:
        return max(0, self.lines - (1 if self._header else 0))

    @property
    def failed(self) -> int:
        return 0

    @property
    def records(self) -> int:
        return self.ok

    @property
    def problem(self) -> str | None:
        return None


class _LineSplitter:
    """Splits a byte stream into physical lines (without line ends), bounded in memory."""

    def __init__(self, max_record_bytes: int, keep_digests: bool = True) -> None:
        self.max_record_bytes = max_record_bytes
        self.keep_digests = keep_digests
        self.size = 0
        self.lines = 0
        self.digests = bytearray()
        self.failures: list[FailedLine] = []
        self.ok = 0
        self.failed = 0
        self._tail = b""
        self._skipping = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self._skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                return
            self._skipping = False
            chunk = chunk[cut + 1 :]
        data = self._tail + chunk if self._tail else chunk
        parts = data.split(b"\n")
        self._tail = parts.pop()
        for line in parts:
            self.lines += 1
            self._line(line)
        if len(self._tail) > self.max_record_bytes:
            self.lines += 1
            self._too_long(self._tail)
            self._tail = b""
            self._skipping = True

    def finish(self) -> None:
        if self._tail:
            tail, self._tail = self._tail, b""
            self.lines += 1
            self._line(tail)
        self._end()

    def _fail(self, line_no: int, reason: str, record: bytes) -> None:
        self.failed += 1
        truncated = len(record) > MAX_FAILED_TEXT
        self.failures.append(FailedLine(line_no, reason, record[:MAX_FAILED_TEXT], truncated))

    def _succeed(self, record: bytes) -> None:
        self.ok += 1
        if self.keep_digests:
            self.digests += formats.record_digest(record)

    @property
    def records(self) -> int:
        return self.ok + self.failed

    def _line(self, line: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _too_long(self, head: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _end(self) -> None:
        pass


class NdjsonChecker(_LineSplitter):
    """Checks each NDJSON line with the shared per-document-type rules."""

    def __init__(self, document_type: str, *, max_record_bytes: int, keep_digests: bool = True) -> None:
        super().__init__(max_record_bytes, keep_digests)
        self.document_type = document_type
        self.problem: str | None = None

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.lines == 1 and line.startswith(BOM):
            line = line[3:]
        if not line or line.isspace():
            return
        reason = formats.check_ndjson_line(self.document_type, line)
        if reason is None:
            self._succeed(line)
        else:
            self._fail(self.lines, reason, line)

    def _too_long(self, head: bytes) -> None:
        self._fail(self.lines, f"record longer than {self.max_record_bytes} bytes", head)


class CsvChecker(_LineSplitter):
    """Quote-aware CSV records; the first non-blank record is the header row."""

    def __init__(self, *, max_record_bytes: int, keep_digests: bool = True) -> None:
        super().__init__(max_record_bytes, keep_digests)
        self.header: list[str] | None = None
        self.problem: str | None = None  # header problem: every data record fails with it
        self._parts: list[bytes] = []
        self._start = 0
        self._pending = 0
        self._quotes = 0

    def _line(self, line: bytes) -> None:
        if self.lines == 1 and line.startswith(BOM):
            line = line[3:]
        if not self._parts:
            if not line or line.isspace():
                return
            self._start = self.lines
        self._parts.append(line)
        self._pending += len(line) + 1
        self._quotes += line.count(b'"')
        if self._quotes % 2 == 0:
            record = b"\n".join(self._parts)
            self._record(record[:-1] if record.endswith(b"\r") else record)
            self._reset()
        elif self._pending > self.max_record_bytes:
            self._record_failure(self._start, f"record longer than {self.max_record_bytes} bytes")
            self._reset()

    def _reset(self) -> None:
        self._parts, self._pending, self._quotes = [], 0, 0

    def _too_long(self, head: bytes) -> None:
        start = self._start if self._parts else self.lines
        self._parts.append(head)
        self._record_failure(start, f"record longer than {self.max_record_bytes} bytes")
        self._reset()

    def _end(self) -> None:
        if self._parts:
            self._record_failure(self._start, "unterminated quoted field at end of file")
            self._reset()

    def _record_failure(self, line_no: int, reason: str) -> None:
        record = b"\n".join(self._parts)
        if self.header is None and self.problem is None:
            self.problem = f"CSV header row (line {line_no}): {reason}"
            return
        self._fail(line_no, reason, record)

    def _record(self, record: bytes) -> None:
        try:
            text = record.decode("utf-8")
            fields = next(csv.reader([text], strict=True))
        except UnicodeDecodeError:
            self._record_failure(self._start, "invalid UTF-8")
            return
        except csv.Error as exc:
            self._record_failure(self._start, f"malformed CSV record: {exc}")
            return
        if self.header is None and self.problem is None:
            columns = [c.strip() for c in fields]
            reason = formats.check_csv_header(columns)
            if reason:
                self.problem = f"CSV header row (line {self._start}): {reason}"
            else:
                self.header = columns
            return
        if self.header is None:
            self._fail(self._start, f"no valid header: {self.problem}", record)
            return
        reason = formats.check_csv_row(self.header, fields)
        if reason is None:
            self._succeed(record)
        else:
            self._fail(self._start, reason, record)


def make_checker(
    document_type: str, mime_type: str, *, light: bool, max_record_bytes: int, keep_digests: bool = True
) -> LineCounter | NdjsonChecker | CsvChecker:
    """The right consumer for an import's mime type and the emulator's mode."""
    if light:
        return LineCounter(header=mime_type == formats.CSV)
    if mime_type == formats.CSV:
        return CsvChecker(max_record_bytes=max_record_bytes, keep_digests=keep_digests)
    return NdjsonChecker(document_type, max_record_bytes=max_record_bytes, keep_digests=keep_digests)

"""Client-side checks of CSV records (USER_SEGMENT), pure functions for a process pool like those
of :mod:`pipeline.reading.validate` (NDJSON): the header row, the records of a block (found by
quote parity, parsed by ``csv.reader``, checked by :func:`pipeline.formats.check_csv_row`), and the
mere counting of lines and records when validation is off.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from itertools import accumulate, compress, count, repeat
from operator import itemgetter

from pipeline import formats
from pipeline.reading.csvscan import split_record, strip_line_end, too_large
from pipeline.reading.validate import read_slice


def segment_row_check(columns: list[str]) -> Callable[[list[str]], bool]:
    """Fast pre-check of USER_SEGMENT CSV rows under the header ``columns``: True only if
    ``formats.check_csv_row(columns, row)`` is ``None`` (tests hold it to that). False means "ask
    formats", which also gives the reason. Column positions are looked up once, not per row, and
    no dict is built: a CSV field is always a string, so "present" is "not empty"."""
    width = len(columns)
    where = {name: i for i, name in enumerate(columns)}
    op, duration = where.get("operation"), where.get("expiration_duration")
    segments = [where[c] for c in ("segment_id", "segment_technical_name") if c in where]
    identifiers = [where[c] for c in ("user_account_id", "email_hash", "user_agent_id") if c in where]
    account, compartment = where.get("user_account_id"), where.get("compartment_id")
    if op is None or duration is None or not segments or not identifiers:
        return lambda row: False
    # itemgetter of one index returns the bare value, of several a tuple: the first index is asked
    # twice so that the answer is always a tuple, one item longer than the columns
    segment_values = itemgetter(*segments, segments[0])
    identifier_values = itemgetter(*identifiers, identifiers[0])
    no_segment = len(segments) + 1
    one_identifier = len(identifiers) - 1  # empty ones among the columns (the repeat not counted)

    def ok(row: list[str]) -> bool:
        if len(row) != width or row[op] not in ("UPDATE", "DELETE") or not row[duration].isdigit():
            return False
        if segment_values(row).count("") == no_segment:
            return False
        if identifier_values(row)[:-1].count("") != one_identifier:
            return False
        return account is None or row[account] == "" or (compartment is not None and row[compartment] != "")

    return ok


def csv_header_columns(raw: bytes) -> tuple[list[str] | None, str | None]:
    """Parse and check a USER_SEGMENT CSV header row. Returns ``(columns, None)`` or ``(None, reason)``."""
    try:
        text = strip_line_end(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None, "CSV header: invalid UTF-8"
    try:
        columns = split_record(text)
    except csv.Error as exc:
        return None, f"CSV header: malformed row ({exc})"
    reason = formats.check_csv_header(columns)
    if reason:
        return None, f"bad CSV header: {reason}"
    return columns, None


#: A CSV block entry: (offset, length, line, reason, physical lines). ``reason``: ``None`` for a
#: blank line, ``""`` for GOOD records spanning several lines (the cutter must count each as one
#: record: only ``physical lines - 1``, the extra lines, matters; one entry may sum several
#: records), else why the record is rejected.
CsvEntry = tuple[int, int, int, "str | None", int]


def validate_csv_counted(
    columns: list[str], data: bytes, max_len: int = 0, first_line: int = 0
) -> tuple[int, list[CsvEntry]]:
    """Check the CSV records of ``data`` (whole records; only the last may lack its line end).

    Returns the number of physical lines and the entries worth telling (bad, blank, and good
    records of several lines: these may come aggregated, one ``""`` entry whose line count holds
    the extra lines of several), in order. Records are found by quote parity, parsed by
    ``csv.reader`` and checked with :func:`pipeline.formats.check_csv_row`: in one pass over the
    decoded block when it is plain (:func:`_validate_csv_block`), else record by record.
    """
    if not (max_len and len(data) > max_len):  # no record can be too large
        whole = _validate_csv_block(columns, data, first_line)
        if whole is not None:
            return whole
    return _validate_csv_records(columns, data, max_len, first_line)


def _validate_csv_block(columns: list[str], data: bytes, first_line: int) -> tuple[int, list[CsvEntry]] | None:
    """The common case at C speed: the block decoded once and parsed by one ``csv.reader``.

    ``None`` sends the block to the record-by-record path, which tells every case apart: invalid
    UTF-8, a malformed record, a bare CR, a line of spaces only (blank, or a quoted blank field?),
    or csv and quote parity disagreeing on where a record ends (a stray quote in an unquoted
    field): the cutter cuts by quote parity, so the records checked must be the same.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    odd = _odd_quote_lines(lines)
    if len(odd) & 1:
        return None
    by_parity = dict(zip(odd[0::2], odd[1::2], strict=True))  # first line -> last line of a multi-line record
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    fast, check = segment_row_check(columns), formats.check_csv_row
    found: list[tuple[int, int, str | None, int]] = []  # (first line, lines, reason, extra lines before)
    extra = multi = start = 0
    try:
        for row in reader:
            end = reader.line_num
            k = end - start
            if k > 1:
                if by_parity.get(start) != end - 1:
                    return None
                multi += 1
            if not row:
                found.append((start, k, None, extra))
                extra = 0
            elif len(row) == 1 and not row[0].strip():
                return None
            elif fast(row) or (reason := check(columns, row)) is None:
                extra += k - 1
            else:
                found.append((start, k, reason, extra))
                extra = 0
            start = end
    except csv.Error:
        return None
    if start != len(lines) or multi != len(by_parity):
        return None
    return len(lines), _block_entries(lines, len(data), first_line, found, extra)


def _odd_quote_lines(lines: list[bytes]) -> list[int]:
    """Indexes of the lines holding an odd number of quotes: each opens a quoted field that the
    next such line closes (the lines between are inside it). C-level loops only."""
    return list(compress(count(), map((1).__and__, map(bytes.count, lines, repeat(b'"')))))


def _block_entries(
    lines: list[bytes], size: int, first_line: int, found: list[tuple[int, int, str | None, int]], tail_extra: int
) -> list[CsvEntry]:
    """The entries of :func:`validate_csv_counted` for the told records ``found``, each preceded
    by one ``""`` entry carrying the extra lines of the good multi-line records before it."""
    out: list[CsvEntry] = []
    ends = list(accumulate(map(len, lines))) if found else []  # offset of line i: ends[i - 1] + i
    for i, k, reason, extra in found:
        pos = ends[i - 1] + i if i else 0
        if extra:
            out.append((pos, 0, first_line + i, "", extra + 1))
        out.append((pos, min(ends[i + k - 1] + i + k, size) - pos, first_line + i, reason, k))
    if tail_extra:
        out.append((size, 0, first_line + len(lines), "", tail_extra + 1))
    return out


def _validate_csv_records(
    columns: list[str], data: bytes, max_len: int = 0, first_line: int = 0
) -> tuple[int, list[CsvEntry]]:
    """:func:`validate_csv_counted` record by record (records found by quote parity)."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    n = len(lines)
    if not n:
        return 0, []
    ends = list(accumulate(map(len, lines)))  # offset of line i: ends[i - 1] + i
    size = len(data)
    # records: (first line index, number of lines); a line with an odd number of quotes opens a
    # quoted field that the next such line closes
    odd = _odd_quote_lines(lines) if b'"' in data else []
    spans: list[tuple[int, int]] = []
    i = 0
    for k in range(0, len(odd), 2):
        a = odd[k]
        b = odd[k + 1] if k + 1 < len(odd) else n - 1
        spans.extend((j, 1) for j in range(i, a))
        spans.append((a, b - a + 1))
        i = b + 1
    spans.extend((j, 1) for j in range(i, n))

    out: list[CsvEntry] = []
    texts: list[str] = []
    pending: list[tuple[int, int, int, int]] = []  # (offset, length, line, lines) awaiting a parse
    for i, k in spans:
        pos = ends[i - 1] + i if i else 0
        end = min(ends[i + k - 1] + i + k, size)
        raw = lines[i] if k == 1 else b"\n".join(lines[i : i + k])
        if max_len and end - pos > max_len:
            out.append((pos, end - pos, first_line + i, too_large(end - pos, max_len), k))
            continue
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            out.append((pos, end - pos, first_line + i, None, k))
            continue
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append((pos, end - pos, first_line + i, "invalid UTF-8", k))
            continue
        pending.append((pos, end - pos, first_line + i, k))
    out.extend(_check_csv_texts(columns, texts, pending))
    out.sort()
    return n, out


def _check_csv_texts(columns: list[str], texts: list[str], pending: list[tuple[int, int, int, int]]) -> list[CsvEntry]:
    out: list[CsvEntry] = []
    reader = csv.reader(texts, strict=True)
    check = formats.check_csv_row
    fast = segment_row_check(columns)
    for pos, length, line, k in pending:
        before = reader.line_num
        try:
            row = next(reader)
            reason = None if fast(row) else check(columns, row)
        except csv.Error as exc:
            reason = f"malformed CSV record ({exc})"
        except StopIteration:
            reason = "?"
        if reader.line_num != before + 1:  # csv and quote parity disagree: parse one by one
            return _check_csv_one_by_one(columns, texts, pending)
        if reason is not None:
            out.append((pos, length, line, reason, k))
        elif k > 1:
            out.append((pos, length, line, "", k))
    return out


def _check_csv_one_by_one(
    columns: list[str], texts: list[str], pending: list[tuple[int, int, int, int]]
) -> list[CsvEntry]:
    out: list[CsvEntry] = []
    for text, (pos, length, line, k) in zip(texts, pending, strict=True):
        try:
            reason = formats.check_csv_row(columns, split_record(text))
        except csv.Error as exc:
            reason = f"malformed CSV record ({exc})"
        if reason is not None:
            out.append((pos, length, line, reason, k))
        elif k > 1:
            out.append((pos, length, line, "", k))
    return out


def validate_csv_file_block(
    columns: list[str], path: str, offset: int, length: int, max_len: int = 0
) -> tuple[int, list[CsvEntry]]:
    """:func:`validate_csv_counted` on a slice of a file, read by the worker."""
    return validate_csv_counted(columns, read_slice(path, offset, length), max_len)

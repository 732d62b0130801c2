"""Client-side record checks, written as pure functions so a process pool can run them.

The rules themselves live in :mod:`pipeline.formats` (shared with the emulator); this module adds
what a reader needs around them: blank-line detection, size limits, and hints that explain the
usual mistakes (a JSON array, pretty-printed JSON) in the reason written to the rejects file.
"""

from __future__ import annotations

import csv

from pipeline import formats
from pipeline.csvscan import split_record, strip_line_end, too_large

#: One problem found in a block: (offset in block, length with line end, physical line, reason).
#: ``reason`` is ``None`` for a blank line (skipped and counted, not a reject).
Problem = tuple[int, int, int, "str | None"]

ARRAY_HINT = "is this a JSON array? NDJSON wants one object per line"
PRETTY_HINT = "is this pretty-printed JSON? NDJSON wants each object whole on one line"


def _not_object(reason: str) -> str:
    if reason.startswith("not valid JSON: "):
        return f"not a JSON object (invalid JSON: {reason[16:]})"
    return reason


def explain(line: bytes, reason: str) -> str:
    """Add a hint to the reason of a bad NDJSON line when it looks like a known mistake."""
    s = line.strip()
    if s[:1] in (b"[", b"]"):
        return f"{_not_object(reason)}; {ARRAY_HINT}"
    if s[:1] == b"{" and s.endswith((b"},", b"],")):
        return f"{reason}; a trailing comma: {ARRAY_HINT}, without commas between lines"
    if reason.startswith("not valid JSON") and (s[:1] in (b"{", b"}") or (s[:1] == b'"' and b'":' in s)):
        return f"{_not_object(reason)}; {PRETTY_HINT}"
    return reason


def validate_block(document_type: str, data: bytes, first_line: int, max_len: int = 0) -> list[Problem]:
    """Check every NDJSON line of ``data`` (whole lines; only the last may lack its ``\\n``).

    Returns the bad and the blank lines only, in order. ``max_len`` (if > 0) is the largest record
    size, line end included, that fits in a batch; longer lines are rejected without parsing.
    """
    check = formats.check_ndjson_line
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out: list[Problem] = []
    size = len(data)
    pos = 0
    line_no = first_line
    for line in lines:
        end = pos + len(line) + 1
        length = end - pos if end <= size else size - pos
        if max_len and length > max_len:
            out.append((pos, length, line_no, too_large(length, max_len)))
        else:
            reason = check(document_type, line)
            if reason is not None:
                out.append((pos, length, line_no, None if not line.strip() else explain(line, reason)))
        pos = end
        line_no += 1
    return out


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


def check_csv_record(columns: list[str], raw: bytes) -> str | None:
    """Check one raw CSV record (its line end included). ``""`` means blank, ``None`` valid."""
    body = strip_line_end(raw)
    if not body.strip():
        return ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    try:
        row = split_record(text)
    except csv.Error as exc:
        return f"malformed CSV record ({exc})"
    return formats.check_csv_row(columns, row)

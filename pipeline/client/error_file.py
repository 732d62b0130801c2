"""Reading an execution's error file (``result.error_file_uri``), whose format is undocumented.

Tolerated shapes, one entry per line (blank lines are skipped):

- an NDJSON object carrying the line number within the uploaded file (``line``, ``line_number``,
  ``lineNumber``, ``row``) and/or the record's text (``record``, ``line_content``, ``content``,
  ``text``, ``raw``, ``data``), with the reason under ``reason``, ``error`` or ``message`` (a
  non-string reason is kept as its JSON); ``truncated: true`` says the text was cut;
- anything else (a raw failed line: an NDJSON record, a CSV row, or garbage): the entry's text is
  the line itself, with no number and no reason. Whether it is a failed record is for the mapper
  to say (it looks for it in the batch); what matches nothing is kept as it came, with a warning.

The file is read line by line from disk (it was downloaded there, streamed): a line longer than
``MAX_ENTRY_BYTES`` is cut and marked truncated, never held whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

MAX_ENTRY_BYTES = 16 << 20
LINE_KEYS = ("line", "line_number", "lineNumber", "row")
TEXT_KEYS = ("record", "line_content", "content", "text", "raw", "data")
REASON_KEYS = ("reason", "error", "message")


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One entry of an error file, as far as it can be read."""

    line: int | None  # 1-based line within the uploaded file, when the entry says
    text: str | None  # the record's text (or the raw line), when there is one
    reason: str | None
    raw: str  # the entry as it came (decoded, cut at MAX_ENTRY_BYTES)
    truncated: bool = False  # the text is the record's start only
    structured: bool = False  # an object with known keys (not a raw line)


def _first(obj: dict[str, Any], keys: tuple[str, ...], kind: type) -> Any:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, kind) and not isinstance(value, bool):
            return value
    return None


def _reason(obj: dict[str, Any]) -> str | None:
    for key in REASON_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
        if value is not None and not isinstance(value, str):
            return orjson.dumps(value).decode()
    return None


def parse_entry(raw: bytes, *, cut: bool = False) -> ErrorEntry | None:
    """One line of an error file, or ``None`` for a blank line."""
    raw = raw.rstrip(b"\r\n")
    if not raw.strip():
        return None
    text = raw.decode("utf-8", errors="replace")
    obj: Any = None
    if not cut:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
    if isinstance(obj, dict):
        line = _first(obj, LINE_KEYS, int)
        record = _first(obj, TEXT_KEYS, str)
        reason = _reason(obj)
        if line is not None or record is not None or (reason is not None and len(obj) <= 3):
            return ErrorEntry(
                line=line if line is not None and line >= 0 else None,
                text=record,
                reason=reason,
                raw=text,
                truncated=obj.get("truncated") is True,
                structured=True,
            )
    return ErrorEntry(line=None, text=text, reason=None, raw=text, truncated=cut)


def iter_error_entries(path: Path) -> Iterator[ErrorEntry]:
    """The entries of a downloaded error file, in its order."""
    with open(path, "rb") as f:
        while True:
            raw = f.readline(MAX_ENTRY_BYTES)
            if not raw:
                return
            cut = not raw.endswith(b"\n") and len(raw) >= MAX_ENTRY_BYTES
            if cut:  # skip the rest of a line too long to keep
                while True:
                    more = f.readline(MAX_ENTRY_BYTES)
                    if not more or more.endswith(b"\n"):
                        break
            entry = parse_entry(raw, cut=cut)
            if entry is not None:
                yield entry

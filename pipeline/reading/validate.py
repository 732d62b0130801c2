"""Client-side checks of NDJSON records (CSV: :mod:`pipeline.reading.validate_csv`), written as pure
functions so a process pool can run them.

The rules themselves live in :mod:`pipeline.formats` (shared with the emulator); this module adds
what a reader needs around them: blank-line detection, size limits, and hints that explain the
usual mistakes (a JSON array, pretty-printed JSON) in the reason written to the rejects file.

Speed: a line is decided in up to three stages, each passing on only what it cannot vouch for.

1. **Typed decoding** (msgspec, :mod:`pipeline.reading.typed_checks`): each line is decoded into a
   ``Struct`` of its document type whose fields are typed so that decoding checks most rules, and
   a short comprehension checks the rest; a line it vouches for is one ``formats`` accepts. Any
   other line (a field the type does not document, an odd type, a syntax error, a number or a
   nesting orjson would refuse) goes on to stage 2.
   ``tests/reading/test_validate_differential.py`` holds the three stages to the reference.
2. **orjson and a pre-check** on the dict (:data:`FAST_CHECKS`; USER_ACTIVITY only), the former
   fast path: lines with extra fields are not slower than before.
3. **The reference**, :func:`pipeline.formats.check_ndjson_line`, which decides and gives the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from itertools import accumulate

import orjson

from pipeline import formats
from pipeline.reading.csvscan import too_large
from pipeline.reading.typed_checks import typed_check, typed_suspects

#: One problem found in a block: (offset in block, length with line end, physical line, reason).
#: ``reason`` is ``None`` for a blank line (skipped and counted, not a reject).
Problem = tuple[int, int, int, "str | None"]

ARRAY_HINT = "is this a JSON array? NDJSON wants one object per line"
PRETTY_HINT = "is this pretty-printed JSON? NDJSON wants each object whole on one line"


def _not_object(reason: str) -> str:
    if reason.startswith("not valid JSON: "):
        return f"not a JSON object (invalid JSON: {reason[16:]})"
    return reason


def _looks_like_a_piece_of_pretty_json(s: bytes) -> bool:
    """A lone brace, a ``"key": value`` line, or an object opened and left open at the line's end:
    not a whole (if broken) object on one line, which is just invalid JSON."""
    if s in (b"{", b"}", b"},", b"[", b"]", b"],"):
        return True
    if s[:1] == b'"' and b'":' in s:
        return True
    return s[:1] == b"{" and s.endswith((b"{", b"["))


def explain(line: bytes, reason: str) -> str:
    """Add a hint to the reason of a bad NDJSON line when it looks like a known mistake."""
    s = line.strip()
    if s[:1] in (b"[", b"]"):
        return f"{_not_object(reason)}; {ARRAY_HINT}"
    if s[:1] == b"{" and s.endswith((b"},", b"],")):
        return f"{reason}; a trailing comma: {ARRAY_HINT}, without commas between lines"
    if reason.startswith("not valid JSON") and _looks_like_a_piece_of_pretty_json(s):
        return f"{_not_object(reason)}; {PRETTY_HINT}"
    return reason


def _activity_ok(r: dict[str, object]) -> bool:
    """Fast path for the commonest valid USER_ACTIVITY line: True only if
    ``formats.check_record("USER_ACTIVITY", r)`` is ``None`` (tests hold it to that).
    False means "ask formats", which also gives the reason."""
    if r.get("$ts").__class__ is not int:
        return False
    t = r.get("$type")
    if t is None or t == "":
        return False
    ev = r.get("$events")
    if ev is not None and ev.__class__ is not list:
        return False
    ua = r.get("$user_agent_id")
    acc = r.get("$user_account_id")
    em = r.get("$email_hash")
    if acc is None and em is None:
        return ua is not None and ua != ""
    if ua is None and em is None:
        return acc != ""  # compartment_id is optional: the datamart's default compartment
    if ua is None and acc is None:
        return em.__class__ is str and em != "" or em.__class__ is dict
    return False


#: Fast pre-checks by document type on orjson's dict (a True answer must agree with ``formats``).
FAST_CHECKS = {"USER_ACTIVITY": _activity_ok}


def validate_block(document_type: str, data: bytes, first_line: int, max_len: int = 0) -> list[Problem]:
    """Check every NDJSON line of ``data`` (whole lines; only the last may lack its ``\\n``).

    Returns the bad and the blank lines only, in order. ``max_len`` (if > 0) is the largest record
    size, line end included, that fits in a batch; longer lines are rejected without parsing.
    Lines go through the three stages of the module docstring: any line the first two do not pass
    is checked by :func:`pipeline.formats.check_ndjson_line`, which decides.
    """
    return validate_counted(document_type, data, max_len, first_line)[1]


def validate_counted(
    document_type: str, data: bytes, max_len: int = 0, first_line: int = 0
) -> tuple[int, list[Problem]]:
    """:func:`validate_block` that also returns the number of lines in ``data`` (line numbers in the
    problems count from ``first_line``, by default 0: relative to the block)."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if not lines:
        return 0, []
    suspects: Sequence[int]
    if max_len and len(data) >= max_len and max(map(len, lines)) >= max_len:
        suspects = range(len(lines))
    else:
        typed = typed_check(document_type)
        suspects = range(len(lines)) if typed is None else typed_suspects(typed, data, lines)
        fast = FAST_CHECKS.get(document_type)
        if fast is not None and suspects:
            suspects = _prechecked(fast, lines, suspects)
    if not suspects:
        return len(lines), []
    ends = list(accumulate(map(len, lines)))  # offset of line i: ends[i - 1] + i
    size = len(data)
    check = formats.check_ndjson_line
    out: list[Problem] = []
    for i in suspects:
        line = lines[i]
        pos = ends[i - 1] + i if i else 0
        length = min(len(line) + 1, size - pos)
        if max_len and length > max_len:
            out.append((pos, length, first_line + i, too_large(length, max_len)))
            continue
        reason = check(document_type, line)
        if reason is not None:
            out.append((pos, length, first_line + i, None if not line.strip() else explain(line, reason)))
    return len(lines), out


def _prechecked(fast: Callable[[dict[str, object]], bool], lines: list[bytes], suspects: Sequence[int]) -> list[int]:
    """Stage 2: the ``suspects`` that orjson and ``fast`` do not pass."""
    out: list[int] = []
    loads = orjson.loads
    error = orjson.JSONDecodeError
    for i in suspects:
        try:
            rec = loads(lines[i])
        except error:
            out.append(i)
            continue
        if rec.__class__ is not dict or not fast(rec):
            out.append(i)
    return out


def read_slice(path: str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    if len(data) != length:
        raise OSError(f"{path}: short read at {offset}")
    return data


def validate_file_block(
    document_type: str, path: str, offset: int, length: int, max_len: int = 0
) -> tuple[int, list[Problem]]:
    """:func:`validate_counted` on ``length`` bytes of the file at ``offset`` (read by the worker,
    so that a pool gets a few numbers instead of megabytes through a pipe)."""
    return validate_counted(document_type, read_slice(path, offset, length), max_len)

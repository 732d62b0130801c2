"""Client-side checks of NDJSON records (CSV: :mod:`pipeline.reading.validate_csv`), written as pure
functions so a process pool can run them.

The rules themselves live in :mod:`pipeline.formats` (shared with the emulator); this module adds
what a reader needs around them: blank-line detection, size limits, and hints that explain the
usual mistakes (a JSON array, pretty-printed JSON) in the reason written to the rejects file.

Speed: a line is decided in up to three stages, each passing on only what it cannot vouch for.

1. **Typed decoding** (msgspec): each line is decoded into a ``Struct`` of its document type that
   names every field the API documents for it, with the fields the rules read typed so that
   decoding itself checks most of them (``$ts`` an integer, ``operation`` one of its values, an
   identifier object of a known ``type`` with its id field...); a short comprehension checks the
   rest (one identifier per line). A line is *vouched for* only if it decodes and passes: then
   ``formats`` accepts it too. Anything else (a field the type does not document, an odd type, a
   syntax error) goes on to stage 2. Why this agrees with orjson, which ``formats`` parses with:
   nothing of a line is skipped (unknown fields are refused, free-form values are decoded whole),
   so every string's UTF-8, every escape and every float is checked as orjson checks them; the one
   number orjson refuses that msgspec takes, an integer too large for a double (309 digits and
   more), is looked for apart, and so are lines that may nest deeper than orjson allows
   (:func:`_odd_lines`); integers the rules read are typed to the 64-bit range in which orjson
   keeps them integers.
   ``tests/reading/test_validate_differential.py`` holds the three stages to the reference.
2. **orjson and a pre-check** on the dict (:data:`FAST_CHECKS`; USER_ACTIVITY only), the former
   fast path: lines with extra fields are not slower than before.
3. **The reference**, :func:`pipeline.formats.check_ndjson_line`, which decides and gives the reason.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from functools import cache
from itertools import accumulate
from typing import Any, NamedTuple

import orjson

from pipeline import formats
from pipeline.reading.csvscan import too_large

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


def _present(value: object) -> bool:
    return value is not None and value != ""


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


# --- stage 1: typed decoding -------------------------------------------------------------------

#: Lines decoded before their records are checked and dropped: a block's worth of live records
#: costs more in allocations than decoding them (measured: 64 lines 255 MB/s, a whole block 180).
CHUNK = 64

#: Records of a chunk (``None`` where a line did not decode) -> indexes of those not vouched for,
#: plus ``base``.
Vouch = Callable[[list[Any], int], list[int]]


class TypedCheck(NamedTuple):
    """Stage 1 for one document type: decode one line, vouch for a chunk of decoded records."""

    decode: Callable[[bytes], Any]
    vouch: Vouch


def _decode_all(decode: Callable[[bytes], Any], lines: Sequence[bytes]) -> list[Any]:
    """``decode`` of each line, ``None`` where it raised. The loop over the lines stays in C
    (``map``, ``list.extend``): an exception stops ``extend`` with what it already appended kept,
    and the ``map`` goes on with the next line when asked again."""
    out: list[Any] = []
    it = map(decode, lines)
    while True:
        try:
            out.extend(it)
            return out
        except Exception:  # anything the decoder refuses (or a nesting too deep) is for stage 2
            out.append(None)


def typed_check(document_type: str) -> TypedCheck | None:
    """The stage-1 check of ``document_type`` (built on first use: msgspec is imported then)."""
    return _typed_checks().get(document_type)


@cache
def _typed_checks() -> dict[str, TypedCheck]:
    # Typing conventions, each at most as permissive as ``formats`` (a value typed more strictly
    # than the rule only sends its line to stage 2):
    #   Present    a value ``formats`` counts as present: not null, not "" (any JSON type)
    #   Any        a value the rules do not read (decoded whole, so still checked as JSON)
    #   Int64      an integer in the 64-bit range (orjson makes integers beyond it floats)
    #   X | None   an optional field: ``None`` when absent or null
    # Every Struct refuses the fields it does not name (``forbid_unknown_fields``): nothing of a
    # line is skipped. The Structs are made with ``defstruct`` (real types, not the string
    # annotations of this module) when first needed, so that importing the module stays cheap.
    from types import GenericAlias
    from typing import Annotated, Literal, Union

    import msgspec
    from msgspec import Meta, field

    Text = Annotated[str, Meta(min_length=1)]
    Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
    NonNegative = Annotated[int, Meta(ge=0, le=2**63 - 1)]
    Present = Union[Text, int, float, bool, list[Any], dict[str, Any]]  # noqa: UP007 (a runtime value)
    Optional = Union[Present, None]  # noqa: UP007

    def struct(name: str, fields: list[Any], **config: Any) -> Any:
        """A Struct refusing unknown fields; no GC tracking (JSON values hold no cycles)."""
        return msgspec.defstruct(name, fields, forbid_unknown_fields=True, gc=False, kw_only=True, **config)

    def list_of(kind: Any) -> Any:
        return GenericAlias(list, (kind,))

    def dollar(name: str, kind: Any, required: bool = False) -> tuple[str, Any, Any]:
        return (name, kind, field(name="$" + name) if required else field(name="$" + name, default=None))

    ids: list[Any] = [
        ("user_account_id", Optional, None),
        ("email_hash", Optional, None),
        ("user_agent_id", Optional, None),
        ("compartment_id", Optional, None),
    ]

    # --- USER_ACTIVITY: the fields of docs/API.md, "$"-prefixed, in the order of its example line
    # (msgspec looks a key up from the field after the one it last matched: keys in the Struct's
    # order are found at the first try; 4.35 -> 4.12 ms per MB of the benchmark's records)
    event = struct("Event", [dollar("event_name", Any), dollar("ts", Any), dollar("properties", Any)])
    activity = struct(
        "Activity",
        [
            dollar("user_agent_id", Optional),
            dollar("user_account_id", Optional),
            dollar("compartment_id", Optional),
            dollar("email_hash", Union[Text, dict[str, Any], None]),  # noqa: UP007
            dollar("type", Present, required=True),
            dollar("session_status", Any),
            dollar("ts", Int64, required=True),
            dollar("events", list_of(event) | None),
            dollar("location", Any),
            dollar("origin", Any),
            dollar("ttl", Any),
            dollar("unique_key", Any),
        ],
    )

    # Not exactly one identifier of the three, written as branches: 2-3 % faster per line than
    # counting them, ``(a is None) + (b is None) + (c is None) != 2``, which it replaces.
    def vouch_activity(recs: list[Any], base: int) -> list[int]:
        return [
            base + i
            for i, r in enumerate(recs)
            if r is None
            or (
                (r.user_account_id is not None or r.email_hash is not None)
                if r.user_agent_id is not None
                else (r.user_account_id is None) is (r.email_hash is None)
            )
        ]

    # --- the commands with one flat identifier: profile, segment, choice
    profile = struct(
        "Profile",
        [
            ("operation", Literal["UPSERT", "DELETE"]),
            *ids,
            ("user_profile", Union[dict[str, Any], None], None),  # noqa: UP007
            ("force_replace", Any, None),
            ("merge_objects", Any, None),
            ("update_strategy", Any, None),
        ],
    )

    def vouch_profile(recs: list[Any], base: int) -> list[int]:
        return [
            base + i
            for i, r in enumerate(recs)
            if r is None
            or (
                (r.user_account_id is not None or r.email_hash is not None)
                if r.user_agent_id is not None
                else (r.user_account_id is None) is (r.email_hash is None)
            )
            or (r.user_profile is None and r.operation == "UPSERT")
        ]

    segment = struct(
        "Segment",
        [
            ("operation", Literal["UPDATE", "DELETE"]),
            ("expiration_duration", Union[NonNegative, str]),  # noqa: UP007
            *ids,
            ("expiration_ts", Any, None),
            ("segment_id", Optional, None),
            ("segment_technical_name", Optional, None),
            ("data_bag", Any, None),
        ],
    )

    def vouch_segment(recs: list[Any], base: int) -> list[int]:
        return [
            base + i
            for i, r in enumerate(recs)
            if r is None
            or (
                (r.user_account_id is not None or r.email_hash is not None)
                if r.user_agent_id is not None
                else (r.user_account_id is None) is (r.email_hash is None)
            )
            or (r.segment_id is None and r.segment_technical_name is None)
            or (r.expiration_duration.__class__ is str and not r.expiration_duration.isdigit())
        ]

    choice = struct(
        "Choice",
        [
            ("operation", Literal["UPSERT", "DELETE"]),
            ("user_choice", dict[str, Any]),
            *ids,
            ("force_replace", Any, None),
        ],
    )

    def vouch_choice(recs: list[Any], base: int) -> list[int]:
        return [
            base + i
            for i, r in enumerate(recs)
            if r is None
            or (
                (r.user_account_id is not None or r.email_hash is not None)
                if r.user_agent_id is not None
                else (r.user_account_id is None) is (r.email_hash is None)
            )
            or (p := r.user_choice.get("$processing_id")) is None
            or p == ""
            or (r.operation == "UPSERT" and (r.force_replace is None or r.force_replace == ""))
            or (r.operation == "UPSERT" and ((t := r.user_choice.get("$choice_ts")) is None or t == ""))
        ]

    # --- identifier objects: "type" picks the Struct (a tagged union), whose id field is required
    id_fields = ("user_account_id", "compartment_id", "hash", "user_agent_id", "user_point_id")

    def identifier(tag: str, required: str) -> Any:
        fields: list[Any] = [(required, Present), *((f, Any, None) for f in id_fields if f != required)]
        return struct(tag.title().replace("_", ""), fields, tag_field="type", tag=tag)

    account = identifier("USER_ACCOUNT", "user_account_id")
    email = identifier("USER_EMAIL", "hash")
    agent = identifier("USER_AGENT", "user_agent_id")
    point = identifier("USER_POINT", "user_point_id")
    one_of_three = account | email | agent  # a tagged union: "type" names the Struct
    association = struct("Association", [("identifiers", list_of(one_of_three))])
    device = struct(
        "Device",
        [
            ("type", Literal["USER_AGENT"]),
            ("user_agent_id", str),
            *((f, Any, None) for f in id_fields if f != "user_agent_id"),
        ],
    )

    def vouch_decoded(recs: list[Any], base: int) -> list[int]:
        return [base + i for i, r in enumerate(recs) if r is None]

    def vouch_association(recs: list[Any], base: int) -> list[int]:
        return [base + i for i, r in enumerate(recs) if r is None or len(r.identifiers) < 2]

    def vouch_device(recs: list[Any], base: int) -> list[int]:
        return [base + i for i, r in enumerate(recs) if r is None or not r.user_agent_id.startswith(("vec:", "udp:"))]

    def check(kind: Any, vouch: Vouch) -> TypedCheck:
        return TypedCheck(msgspec.json.Decoder(kind).decode, vouch)

    return {
        "USER_ACTIVITY": check(activity, vouch_activity),
        "USER_PROFILE": check(profile, vouch_profile),
        "USER_SEGMENT": check(segment, vouch_segment),
        "USER_CHOICE": check(choice, vouch_choice),
        "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS": check(association, vouch_association),
        "USER_IDENTIFIERS_DELETION": check(one_of_three, vouch_decoded),
        "USER_DEVICE_POINTS_DELETION": check(device, vouch_device),
        "USER_POINTS_DELETION": check(one_of_three | point, vouch_decoded),
    }


#: Every ``STRIDE``-th byte is looked at for a run of digits long enough to be an integer that
#: overflows a double (orjson refuses it; msgspec makes it a Python int): such a run of 309 digits
#: or more covers at least 3 consecutive looks.
STRIDE = 100
LONG_DIGITS = 309
_DIGIT_MARKS = bytes(0x31 if 0x30 <= b <= 0x39 else 0x30 for b in range(256))
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{%d}" % LONG_DIGITS)
#: orjson refuses objects and arrays nested deeper than this; msgspec's limit is Python's recursion
#: limit (1000 unless raised, less the frames in use): when a program raised it, lines with more
#: brackets than this are left to the reference.
MAX_DEPTH = 1024


def _odd_lines(data: bytes, lines: list[bytes]) -> list[int]:
    """Indexes of the lines that stage 1 must not decide: a run of 309 digits or more (found through
    a sample of every 100th byte, so that a block without one costs a few microseconds), or more
    than ``MAX_DEPTH`` brackets when the recursion limit lets msgspec nest that deep (only a line
    of over 2 KB can have them)."""
    found: set[int] = set()
    sample = data[::STRIDE].translate(_DIGIT_MARKS)
    hit = sample.find(b"111")
    while hit >= 0:  # a candidate in a megabyte or two of usual data: look at its line
        pos = hit * STRIDE
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos)
        if _LONG_DIGIT_RUN.search(data, start, len(data) if end < 0 else end):
            found.add(data.count(b"\n", 0, start))
        hit = sample.find(b"111", hit + 1)
    if sys.getrecursionlimit() > MAX_DEPTH:  # else msgspec refuses what orjson refuses, and more
        found.update(
            i
            for i, line in enumerate(lines)
            if len(line) > 2 * MAX_DEPTH and line.count(b"[") + line.count(b"{") > MAX_DEPTH
        )
    return sorted(found)


def typed_suspects(check: TypedCheck, data: bytes, lines: list[bytes]) -> list[int]:
    """Indexes of the lines of ``data`` that stage 1 does not vouch for, in order."""
    decode, vouch = check
    out: list[int] = []
    for start in range(0, len(lines), CHUNK):
        out += vouch(_decode_all(decode, lines[start : start + CHUNK]), start)
    odd = _odd_lines(data, lines)
    return sorted(set(out).union(odd)) if odd else out


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

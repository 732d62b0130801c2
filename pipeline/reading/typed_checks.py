"""Stage 1 of the NDJSON record checks (:mod:`pipeline.reading.validate`): typed decoding with
msgspec, which vouches for most valid lines of a block and passes on the others.

Apart from ``validate`` because it is a schema of its own: one ``Struct`` per document type, built
on first use (msgspec is imported then, so that importing ``validate`` stays cheap), and the
comprehensions that check what decoding cannot.

Each line is decoded into a ``Struct`` of its document type that names every field the API
documents for it, with the fields the rules read typed so that decoding itself checks most of them
(``$ts`` an integer, ``operation`` one of its values, an identifier object of a known ``type`` with
its id field...); a short comprehension per type checks the rest (one identifier per line). A line
is *vouched for* only if it decodes and passes: then ``formats`` accepts it too. Anything else (a
field the type does not document, an odd type, a syntax error) goes on to stage 2. Why this agrees
with orjson, which ``formats`` parses with: nothing of a line is skipped (unknown fields are
refused, free-form values are decoded whole), so every string's UTF-8, every escape and every float
is checked as orjson checks them; the one number orjson refuses that msgspec takes, an integer too
large for a double (309 digits and more), is looked for apart, and so are lines that may nest
deeper than orjson allows (:func:`_odd_lines`); integers the rules read are typed to the 64-bit
range in which orjson keeps them integers. ``tests/reading/test_validate_differential.py`` holds
the three stages to the reference.

Typing conventions of the Structs, each at most as permissive as ``formats`` (a value typed more
strictly than the rule only sends its line to stage 2):

- ``present``: a value ``formats`` counts as present: not null, not "" (any JSON type)
- ``Any``: a value the rules do not read (decoded whole, so still checked as JSON)
- ``int64``: an integer in the 64-bit range (orjson makes integers beyond it floats)
- ``X | None``: an optional field: ``None`` when absent or null

Every Struct refuses the fields it does not name (``forbid_unknown_fields``): nothing of a line is
skipped. The Structs are made with ``defstruct`` (real types, not the string annotations of this
module).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from functools import cache
from types import GenericAlias
from typing import Annotated, Any, Literal, NamedTuple, Union

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
    import msgspec

    def check(kind: Any, vouch: Vouch) -> TypedCheck:
        return TypedCheck(msgspec.json.Decoder(kind).decode, vouch)

    k = _kinds()
    activity, profile, segment, choice = _activity_struct(k), _profile_struct(k), _segment_struct(k), _choice_struct(k)
    association, deletion, device, points = _identifier_structs(k)
    return {
        "USER_ACTIVITY": check(activity, _vouch_activity),
        "USER_PROFILE": check(profile, _vouch_profile),
        "USER_SEGMENT": check(segment, _vouch_segment),
        "USER_CHOICE": check(choice, _vouch_choice),
        "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS": check(association, _vouch_association),
        "USER_IDENTIFIERS_DELETION": check(deletion, _vouch_decoded),
        "USER_DEVICE_POINTS_DELETION": check(device, _vouch_device),
        "USER_POINTS_DELETION": check(points, _vouch_decoded),
    }


# --- the typing conventions (module docstring) -------------------------------------------------


class _Kinds(NamedTuple):
    """The field types of the conventions, made once msgspec is imported."""

    text: Any  # a non-empty string
    int64: Any
    non_negative: Any
    present: Any
    optional: Any


def _kinds() -> _Kinds:
    from msgspec import Meta

    Text = Annotated[str, Meta(min_length=1)]
    Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
    NonNegative = Annotated[int, Meta(ge=0, le=2**63 - 1)]
    Present = Union[Text, int, float, bool, list[Any], dict[str, Any]]  # noqa: UP007 (a runtime value)
    Optional = Union[Present, None]  # noqa: UP007
    return _Kinds(Text, Int64, NonNegative, Present, Optional)


def _struct(name: str, fields: list[Any], **config: Any) -> Any:
    """A Struct refusing unknown fields; no GC tracking (JSON values hold no cycles)."""
    import msgspec

    return msgspec.defstruct(name, fields, forbid_unknown_fields=True, gc=False, kw_only=True, **config)


def _list_of(kind: Any) -> Any:
    return GenericAlias(list, (kind,))


def _dollar(name: str, kind: Any, required: bool = False) -> tuple[str, Any, Any]:
    from msgspec import field

    return (name, kind, field(name="$" + name) if required else field(name="$" + name, default=None))


def _flat_ids(k: _Kinds) -> list[Any]:
    """The flat identifier fields of the commands (profile, segment, choice), all optional."""
    return [
        ("user_account_id", k.optional, None),
        ("email_hash", k.optional, None),
        ("user_agent_id", k.optional, None),
        ("compartment_id", k.optional, None),
    ]


# --- USER_ACTIVITY -----------------------------------------------------------------------------


def _activity_struct(k: _Kinds) -> Any:
    """The fields of docs/API.md, "$"-prefixed, in the order of its example line (msgspec looks a
    key up from the field after the one it last matched: keys in the Struct's order are found at
    the first try; 4.35 -> 4.12 ms per MB of the benchmark's records)."""
    event = _struct("Event", [_dollar("event_name", Any), _dollar("ts", Any), _dollar("properties", Any)])
    return _struct(
        "Activity",
        [
            _dollar("user_agent_id", k.optional),
            _dollar("user_account_id", k.optional),
            _dollar("compartment_id", k.optional),
            _dollar("email_hash", Union[k.text, dict[str, Any], None]),  # noqa: UP007
            _dollar("type", k.present, required=True),
            _dollar("session_status", Any),
            _dollar("ts", k.int64, required=True),
            _dollar("events", _list_of(event) | None),
            _dollar("location", Any),
            _dollar("origin", Any),
            _dollar("ttl", Any),
            _dollar("unique_key", Any),
        ],
    )


# Not exactly one identifier of the three, written as branches: 2-3 % faster per line than
# counting them, ``(a is None) + (b is None) + (c is None) != 2``, which it replaces. The same
# branches are written out in each command's vouch below: no call per record.
def _vouch_activity(recs: list[Any], base: int) -> list[int]:
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


# --- the commands with one flat identifier: profile, segment, choice ----------------------------


def _profile_struct(k: _Kinds) -> Any:
    return _struct(
        "Profile",
        [
            ("operation", Literal["UPSERT", "DELETE"]),
            *_flat_ids(k),
            ("user_profile", Union[dict[str, Any], None], None),  # noqa: UP007
            ("force_replace", Any, None),
            ("merge_objects", Any, None),
            ("update_strategy", Any, None),
        ],
    )


def _vouch_profile(recs: list[Any], base: int) -> list[int]:
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


def _segment_struct(k: _Kinds) -> Any:
    return _struct(
        "Segment",
        [
            ("operation", Literal["UPDATE", "DELETE"]),
            ("expiration_duration", Union[k.non_negative, str]),  # noqa: UP007
            *_flat_ids(k),
            ("expiration_ts", Any, None),
            ("segment_id", k.optional, None),
            ("segment_technical_name", k.optional, None),
            ("data_bag", Any, None),
        ],
    )


def _vouch_segment(recs: list[Any], base: int) -> list[int]:
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


def _choice_struct(k: _Kinds) -> Any:
    return _struct(
        "Choice",
        [
            ("operation", Literal["UPSERT", "DELETE"]),
            ("user_choice", dict[str, Any]),
            *_flat_ids(k),
            ("force_replace", Any, None),
        ],
    )


def _vouch_choice(recs: list[Any], base: int) -> list[int]:
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


# --- identifier objects: "type" picks the Struct (a tagged union), whose id field is required ---

_ID_FIELDS = ("user_account_id", "compartment_id", "hash", "user_agent_id", "user_point_id")


def _identifier(k: _Kinds, tag: str, required: str) -> Any:
    fields: list[Any] = [(required, k.present), *((f, Any, None) for f in _ID_FIELDS if f != required)]
    return _struct(tag.title().replace("_", ""), fields, tag_field="type", tag=tag)


def _identifier_structs(k: _Kinds) -> tuple[Any, Any, Any, Any]:
    """The kinds of the association declarations, the identifier deletions, the device point
    deletions and the point deletions."""
    account = _identifier(k, "USER_ACCOUNT", "user_account_id")
    email = _identifier(k, "USER_EMAIL", "hash")
    agent = _identifier(k, "USER_AGENT", "user_agent_id")
    point = _identifier(k, "USER_POINT", "user_point_id")
    one_of_three = account | email | agent  # a tagged union: "type" names the Struct
    association = _struct("Association", [("identifiers", _list_of(one_of_three))])
    device = _struct(
        "Device",
        [
            ("type", Literal["USER_AGENT"]),
            ("user_agent_id", str),
            *((f, Any, None) for f in _ID_FIELDS if f != "user_agent_id"),
        ],
    )
    return association, one_of_three, device, one_of_three | point


def _vouch_decoded(recs: list[Any], base: int) -> list[int]:
    return [base + i for i, r in enumerate(recs) if r is None]


def _vouch_association(recs: list[Any], base: int) -> list[int]:
    return [base + i for i, r in enumerate(recs) if r is None or len(r.identifiers) < 2]


def _vouch_device(recs: list[Any], base: int) -> list[int]:
    return [base + i for i, r in enumerate(recs) if r is None or not r.user_agent_id.startswith(("vec:", "udp:"))]


# --- the lines stage 1 must not decide ----------------------------------------------------------

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

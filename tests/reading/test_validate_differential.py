"""The record checks against the checker they replaced: the same accept/reject answer, the same
reason text, line for line (issue 12: faster, with every answer exactly as before).

The ``reference_*`` functions are the NDJSON block check as it was before the typed fast path
(``pipeline/reading/validate.py`` at 27a514c), copied verbatim; the rules themselves
(``pipeline.formats``) did not change. Lines are generated for every document type: valid records,
then mutated (fields dropped, values of the wrong type, fields the type does not document) and
broken as bytes (invalid UTF-8, duplicate keys, numbers orjson refuses or keeps as floats, NaN,
deep nesting, trailing garbage, a BOM, CRLF, blank lines, pretty-printed pieces).
"""

from __future__ import annotations

import json
from itertools import accumulate

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline import formats
from pipeline.reading import typed_checks, validate
from pipeline.reading.csvscan import too_large
from pipeline.reading.typed_checks import typed_check, typed_suspects
from pipeline.reading.validate import explain, validate_counted

# --- the reference: the checker before the typed fast path, verbatim -------------------------------


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
        return acc != ""
    if ua is None and acc is None:
        return em.__class__ is str and em != "" or em.__class__ is dict
    return False


#: Fast pre-checks by document type (a True answer must agree with ``formats``).
FAST_CHECKS = {"USER_ACTIVITY": _activity_ok}


def reference_validate_counted(
    document_type: str, data: bytes, max_len: int = 0, first_line: int = 0
) -> tuple[int, list[validate.Problem]]:
    """:func:`validate_block` that also returns the number of lines in ``data`` (line numbers in the
    problems count from ``first_line``, by default 0: relative to the block)."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if not lines:
        return 0, []
    fast = FAST_CHECKS.get(document_type)
    suspects: list[int]
    if fast is None or (max_len and max(map(len, lines)) >= max_len):
        suspects = list(range(len(lines)))
    else:
        suspects = []
        loads = orjson.loads
        error = orjson.JSONDecodeError
        for i, line in enumerate(lines):
            try:
                rec = loads(line)
            except error:
                suspects.append(i)
                continue
            if rec.__class__ is not dict or not fast(rec):
                suspects.append(i)
    if not suspects:
        return len(lines), []
    ends = list(accumulate(map(len, lines)))  # offset of line i: ends[i - 1] + i
    size = len(data)
    check = formats.check_ndjson_line
    out: list[validate.Problem] = []
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


# --- valid records of every document type ----------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
IDS = st.one_of(st.text("abcdef0123456789-:", min_size=1, max_size=12), st.integers(0, 10**6))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), TEXT
)
JSONISH = st.recursive(
    SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(TEXT, kids, max_size=3)), max_leaves=8
)


@st.composite
def identifier(draw, prefix=""):
    kind = draw(st.sampled_from(["agent", "account", "email"]))
    if kind == "agent":
        return {prefix + "user_agent_id": draw(st.sampled_from(["vec:1", "udp:9"]) | IDS)}
    if kind == "account":
        account = {prefix + "user_account_id": draw(IDS)}
        if draw(st.booleans()):  # optional: the datamart's default compartment
            account[prefix + "compartment_id"] = draw(st.sampled_from(["1000", 1000]))
        return account
    email = draw(
        st.one_of(st.just("ab12cd"), st.fixed_dictionaries({"$email": st.just("jane@example.com")}), TEXT.filter(bool))
    )
    return {prefix + "email_hash": email}


def identifier_object(kinds=("USER_ACCOUNT", "USER_EMAIL", "USER_AGENT")):
    fields = {
        "USER_ACCOUNT": "user_account_id",
        "USER_EMAIL": "hash",
        "USER_AGENT": "user_agent_id",
        "USER_POINT": "user_point_id",
    }

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(kinds))
        obj = {"type": kind, fields[kind]: draw(st.sampled_from(["vec:89998434", "udp:1", "u1", "ab12cd"]) | IDS)}
        if kind == "USER_ACCOUNT" and draw(st.booleans()):
            obj["compartment_id"] = "1000"
        return obj

    return build()


@st.composite
def activity(draw):
    ts = draw(st.integers(0, 2**63 - 1))
    event = {
        "$event_name": draw(st.sampled_from(["page-view", "store-visit"])),
        "$ts": ts,
        "$properties": draw(st.dictionaries(TEXT, JSONISH, max_size=3)),
    }
    rec = {**draw(identifier("$")), "$type": draw(st.sampled_from(["SITE_VISIT", "TOUCH", "EMAIL"])), "$ts": ts}
    if draw(st.booleans()):
        rec["$session_status"] = "NO_SESSION"
    if draw(st.booleans()):
        rec["$events"] = [event] * draw(st.integers(0, 2))
    if draw(st.booleans()):
        rec["$location"] = {"$country": "france", "$city": "paris", "$zip_code": "75001"}
    return rec


@st.composite
def profile(draw):
    op = draw(st.sampled_from(["UPSERT", "DELETE"]))
    rec = {"operation": op, **draw(identifier())}
    if op == "UPSERT" or draw(st.booleans()):
        rec["user_profile"] = draw(st.dictionaries(TEXT, JSONISH, max_size=3))
    if draw(st.booleans()):
        rec["force_replace"] = draw(st.booleans())
    return rec


@st.composite
def segment(draw):
    rec = {"operation": draw(st.sampled_from(["UPDATE", "DELETE"])), **draw(identifier())}
    rec["expiration_duration"] = draw(st.sampled_from([0, 43200, "43200", "0", "²"]) | st.integers(0, 2**64))
    seg = draw(st.sampled_from(["segment_id", "segment_technical_name"]))
    rec[seg] = draw(st.sampled_from(["123", "seg, 1"]) | IDS)
    if draw(st.booleans()):
        rec["data_bag"] = '{"a": 1}'
    return rec


@st.composite
def choice(draw):
    rec = {"operation": draw(st.sampled_from(["UPSERT", "DELETE"])), **draw(identifier())}
    rec["user_choice"] = {"$processing_id": draw(st.sampled_from(["p1", 7, ""]))}
    if draw(st.booleans()):
        rec["user_choice"]["$choice_ts"] = draw(st.sampled_from([1, "", None]))
    if draw(st.booleans()):
        rec["force_replace"] = draw(st.sampled_from([True, False, "", None]))
    return rec


@st.composite
def association(draw):
    return {"identifiers": draw(st.lists(identifier_object(), min_size=2, max_size=4))}


RECORDS = {
    "USER_ACTIVITY": activity(),
    "USER_PROFILE": profile(),
    "USER_SEGMENT": segment(),
    "USER_CHOICE": choice(),
    "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS": association(),
    "USER_IDENTIFIERS_DELETION": identifier_object(),
    "USER_DEVICE_POINTS_DELETION": identifier_object(("USER_AGENT",)),
    "USER_POINTS_DELETION": identifier_object(("USER_ACCOUNT", "USER_EMAIL", "USER_AGENT", "USER_POINT")),
}
DOCUMENT_TYPES = sorted(RECORDS)
assert set(DOCUMENT_TYPES) == set(formats.DOCUMENT_TYPES)

#: Every field a rule reads, so that mutations hit them often.
READ_FIELDS = [
    "$ts", "$type", "$events", "$user_agent_id", "$user_account_id", "$compartment_id", "$email_hash",
    "operation", "user_account_id", "email_hash", "user_agent_id", "compartment_id", "user_profile",
    "expiration_duration", "segment_id", "segment_technical_name", "user_choice", "identifiers",
    "type", "hash", "user_point_id", "$location", "force_replace", "unknown_field",
]  # fmt: skip
ODD_VALUES = st.sampled_from(
    [None, "", " ", 0, -1, 1, True, False, 1.0, 1.5, -0.0, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, 1e308,
     "x", "vec:1", "udp:", "²", "5", "UPSERT", "UPDATE", "DELETE", "USER_AGENT", "USER_EMAIL", "USER_POINT",
     [], [1], [{}], [{"type": "USER_AGENT", "user_agent_id": "vec:1"}] * 2, {}, {"$processing_id": ""},
     {"$email": "a@b"}, {"a": [1, {"b": None}]}]
)  # fmt: skip


@st.composite
def mutated(draw, rec):
    """``rec`` with a few fields dropped, set to odd values, or nested ones changed."""
    rec = dict(rec)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(READ_FIELDS + sorted(rec)))
        action = draw(st.sampled_from(["drop", "set", "set", "nest"]))
        if action == "drop":
            rec.pop(key, None)
        elif action == "set":
            rec[key] = draw(ODD_VALUES)
        elif isinstance(rec.get(key), list) and rec[key]:
            items = list(rec[key])
            items[draw(st.integers(0, len(items) - 1))] = draw(ODD_VALUES)
            rec[key] = items
        elif isinstance(rec.get(key), dict):
            rec[key] = {**rec[key], draw(st.sampled_from(["$processing_id", "$ts", "x", "type"])): draw(ODD_VALUES)}
    return rec


def dumps(rec: object) -> bytes:
    """Compact JSON, as most writers make it (the stdlib, for integers beyond 64 bits)."""
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode()


def _in_first_value(line: bytes, piece: bytes) -> bytes:
    """``piece`` put into the line's first string value (or at its end if it has none)."""
    at = line.find(b'":"')
    return line[: at + 3] + piece + line[at + 3 :] if at >= 0 else line + piece


#: Byte-level breakages: each takes a serialized record, returns the broken line.
BREAKS = {
    "invalid utf-8": lambda line, draw: _in_first_value(
        line, draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]))
    ),
    "utf-8": lambda line, draw: _in_first_value(line, "é€😀".encode()),
    "escapes": lambda line, draw: _in_first_value(
        line,
        draw(
            st.sampled_from(
                [
                    b"\\u00e9",
                    b"\\ud83d\\ude00",
                    b"\\ud800",
                    b"\\udc00",
                    b"\\ud83d\\u0041",
                    b"\\n\\t\\/",
                    b"\\x",
                    b"\\u12",
                ]
            )
        ),
    ),
    "control char": lambda line, draw: _in_first_value(line, draw(st.sampled_from([b"\t", b"\x00", b"\x1f", b"\x7f"]))),
    "duplicate key": lambda line, draw: (
        b"{" + draw(st.sampled_from(DUPLICATES)) + b"," + line[1:] if line.startswith(b"{") and len(line) > 2 else line
    ),
    "duplicate key after": lambda line, draw: (
        line[:-1] + b"," + draw(st.sampled_from(DUPLICATES)) + b"}" if line.endswith(b"}") and len(line) > 2 else line
    ),
    "escaped key": lambda line, draw: (
        line.replace(b'"$ts"', b'"\\u0024ts"')
        .replace(b'"type"', b'"typ\\u0065"')
        .replace(b'"operation"', b'"op\\u0065ration"')
    ),
    "big number": lambda line, draw: (
        line[:-1] + b',"$location":' + draw(st.sampled_from(BIG_NUMBERS)) + b"}" if line.endswith(b"}") else line
    ),
    "big number read": lambda line, draw: line.replace(
        b'"$ts":', b'"$ts":' + draw(st.sampled_from(BIG_NUMBERS)) + b',"x":', 1
    ),
    "nan": lambda line, draw: (
        line[:-1] + b',"$ttl":' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"nan"])) + b"}"
        if line.endswith(b"}")
        else line
    ),
    "deep": lambda line, draw: (
        line[:-1] + b',"$location":' + _nested(draw(st.sampled_from([10, 900, 1000, 1022, 1023, 1024, 1100]))) + b"}"
        if line.endswith(b"}")
        else line
    ),
    "garbage": lambda line, draw: (
        line + draw(st.sampled_from([b"x", b",", b"}", b" {}", b"\x00", b" ", b"\t", b"\x0c", b"\r"]))
    ),
    "bom": lambda line, draw: b"\xef\xbb\xbf" + line,
    "cut": lambda line, draw: line[: draw(st.integers(0, max(0, len(line) - 1)))],
    "pretty": lambda line, draw: draw(st.sampled_from(_pretty(line))),
    "array": lambda line, draw: b"[" + line + b"]",
    "comma": lambda line, draw: line + b",",
    "spaces": lambda line, draw: line.replace(b",", b" , ").replace(b":", b" :\t"),
    "json": lambda line, draw: draw(
        st.sampled_from([b"[]", b"1", b"null", b'"x"', b"true", b"{}", b" ", b"", b"\r", b"\x0b"])
    ),
}
DUPLICATES = [
    b'"$ts":"x"', b'"$ts":1', b'"$type":""', b'"$user_agent_id":"vec:2"', b'"$email_hash":5', b'"operation":"X"',
    b'"operation":"DELETE"', b'"type":"USER_EMAIL"', b'"type":"USER_AGENT"', b'"user_agent_id":null', b'"hash":"h"',
    b'"identifiers":[]', b'"user_profile":[]', b'"expiration_duration":-1', b'"segment_id":"1"',
    b'"user_account_id":"u"',
]  # fmt: skip
BIG_NUMBERS = [
    b"1" + b"0" * 308, b"1" + b"0" * 309, b"9" * 309, b"-" + b"9" * 400, b"1" + b"0" * 350 + b".5", b"1e308", b"1e309",
    b"1.7976931348623157e308", b"1.7976931348623159e308", b"1E+400", b"-1e400", b"1e-400", b"0." + b"0" * 400 + b"1",
    b"18446744073709551615", b"18446744073709551616", b"9223372036854775808", b"-9223372036854775809", b"123456789" * 3,
]  # fmt: skip


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _pretty(line: bytes) -> list[bytes]:
    """The lines of ``line`` pretty-printed (``[line]`` if it cannot be)."""
    try:
        return orjson.dumps(orjson.loads(line), option=orjson.OPT_INDENT_2).split(b"\n")
    except (orjson.JSONDecodeError, TypeError):
        return [line]


@st.composite
def lines_of(draw, document_type):
    rec = draw(RECORDS[document_type])
    if draw(st.integers(0, 2)):
        rec = draw(mutated(rec))
    line = dumps(rec)
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            line = BREAKS[draw(st.sampled_from(sorted(BREAKS)))](line, draw)
    return line


def _same(document_type: str, data: bytes, max_len: int = 0, first_line: int = 0) -> None:
    assert validate_counted(document_type, data, max_len, first_line) == reference_validate_counted(
        document_type, data, max_len, first_line
    )


def _typed_vouches_only_good_lines(document_type: str, lines: list[bytes]) -> None:
    """Stage 1 alone: a line it vouches for is one the reference accepts."""
    check = typed_check(document_type)
    assert check is not None
    data = b"\n".join(lines)
    suspects = set(typed_suspects(check, data, lines))
    for i, line in enumerate(lines):
        if i not in suspects:
            assert formats.check_ndjson_line(document_type, line) is None, line


@pytest.mark.parametrize("document_type", DOCUMENT_TYPES)
def test_typed_stage_accepts_the_usual_records(document_type):
    """The generated records the reference accepts are vouched for by the typed stage (so the
    differential tests below exercise it), but for integers beyond 64 bits, which go to stage 2."""

    @settings(max_examples=100, deadline=None)
    @given(rec=RECORDS[document_type])
    def run(rec):
        line = dumps(rec)
        check = typed_check(document_type)
        assert check is not None
        if formats.check_ndjson_line(document_type, line) is None and not _beyond_64_bits(rec):
            assert typed_suspects(check, line, [line]) == [], line

    run()


def _beyond_64_bits(value: object) -> bool:
    if isinstance(value, dict):
        return any(map(_beyond_64_bits, value.values()))
    if isinstance(value, list):
        return any(map(_beyond_64_bits, value))
    return isinstance(value, int) and not -(2**63) <= value < 2**63


@pytest.mark.parametrize("document_type", DOCUMENT_TYPES)
def test_differential(document_type):
    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(
        lines=st.lists(lines_of(document_type), min_size=1, max_size=12),
        crlf=st.booleans(),
        last_nl=st.booleans(),
        blanks=st.lists(st.integers(0, 12), max_size=2),
        max_len=st.sampled_from([0, 0, 0, 60, 10_000]),
        first=st.integers(0, 99),
    )
    def run(lines, crlf, last_nl, blanks, max_len, first):
        for at in blanks:
            lines.insert(min(at, len(lines)), b"")
        _typed_vouches_only_good_lines(document_type, [line for line in lines if b"\n" not in line])
        end = b"\r\n" if crlf else b"\n"
        data = end.join(lines) + (end if last_nl else b"")
        if data:
            _same(document_type, data, max_len, first)

    run()


@pytest.mark.parametrize("document_type", DOCUMENT_TYPES)
@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_breakage(document_type, name):
    """Each byte-level breakage on valid records, so that none is left to chance."""

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(rec=RECORDS[document_type], data=st.data())
    def run(rec, data):
        line = BREAKS[name](dumps(rec), data.draw)
        if b"\n" not in line:
            _typed_vouches_only_good_lines(document_type, [line])
        _same(document_type, line + b"\n")

    run()


#: Lines on the edges of what the typed stage vouches for, one by one.
EDGES = [
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1"}',
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$user_agent_id":""}',
    b'{"$ts":1,"$type":"T","$user_agent_id":"","$user_agent_id":"vec:1"}',
    b'{"$ts":"1","$type":"T","$user_agent_id":"vec:1"}',
    b'{"$ts":true,"$type":"T","$user_agent_id":"vec:1"}',
    b'{"$ts":1.0,"$type":"T","$user_agent_id":"vec:1"}',
    b'{"$ts":18446744073709551615,"$type":"T","$user_agent_id":"vec:1"}',
    b'{"$ts":18446744073709551616,"$type":"T","$user_agent_id":"vec:1"}',
    b'{"$ts":-9223372036854775808,"$type":"T","$user_agent_id":"vec:1"}',
    b'{"$ts":-9223372036854775809,"$type":"T","$user_agent_id":"vec:1"}',
    b'{"$ts":1,"$type":0,"$user_agent_id":false}',
    b'{"$ts":1,"$type":"T","$user_account_id":"u"}',
    b'{"$ts":1,"$type":"T","$user_account_id":"u","$compartment_id":""}',
    b'{"$ts":1,"$type":"T","$user_account_id":"u","$compartment_id":0}',
    b'{"$ts":1,"$type":"T","$email_hash":5}',
    b'{"$ts":1,"$type":"T","$email_hash":{}}',
    b'{"$ts":1,"$type":"T","$email_hash":""}',
    b'{"$ts":1,"$type":"T","$email_hash":"h","$user_agent_id":null}',
    b'{"$ts":1,"$type":"T","$email_hash":"h","$user_agent_id":"vec:1"}',
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$events":{}}',
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$events":[1]}',
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$events":[{"$x":1}]}',
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","other":1}',
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$location":{"a":"\xff"}}',
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$location":' + b"1" * 309 + b"}",
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$location":' + b"1" * 308 + b"}",
    b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$location":"' + b"1" * 400 + b'"}',
    b'{"operation":"UPSERT","user_agent_id":"a"}',
    b'{"operation":"DELETE","user_agent_id":"a"}',
    b'{"operation":"DELETE","user_agent_id":"a","user_profile":[]}',
    b'{"operation":"UPSERT","user_agent_id":"a","user_profile":{}}',
    b'{"operation":"UPSERT","email_hash":5,"user_profile":{}}',
    b'{"operation":"UPDATE","expiration_duration":"\xc2\xb2","user_agent_id":"a","segment_id":1}',
    b'{"operation":"UPDATE","expiration_duration":"","user_agent_id":"a","segment_id":1}',
    b'{"operation":"UPDATE","expiration_duration":-1,"user_agent_id":"a","segment_id":1}',
    b'{"operation":"UPDATE","expiration_duration":9223372036854775808,"user_agent_id":"a","segment_id":1}',
    b'{"operation":"UPDATE","expiration_duration":1e3,"user_agent_id":"a","segment_id":1}',
    b'{"operation":"UPDATE","expiration_duration":0,"user_agent_id":"a","segment_id":""}',
    b'{"operation":"UPSERT","user_agent_id":"a","user_choice":{"$processing_id":""}}',
    b'{"operation":"UPSERT","user_agent_id":"a","user_choice":{"$processing_id":0}}',
    b'{"operation":"UPSERT","user_agent_id":"a","force_replace":true,"user_choice":{"$processing_id":0}}',
    b'{"operation":"UPSERT","user_agent_id":"a","force_replace":false,"user_choice":{"$processing_id":0,"$choice_ts":1}}',
    b'{"operation":"UPSERT","user_agent_id":"a","force_replace":"","user_choice":{"$processing_id":0,"$choice_ts":1}}',
    b'{"operation":"UPSERT","user_agent_id":"a","force_replace":true,"user_choice":{"$processing_id":0,"$choice_ts":""}}',
    b'{"operation":"DELETE","user_agent_id":"a","user_choice":{"$processing_id":0}}',
    b'{"operation":"DELETE","user_account_id":"u","user_choice":{"$processing_id":0}}',
    b'{"operation":"UPSERT","user_account_id":"u","user_profile":{}}',
    b'{"operation":"UPDATE","expiration_duration":0,"user_account_id":"u","segment_id":1}',
    b'{"identifiers":[{"type":"USER_AGENT","user_agent_id":"a"},{"type":"USER_EMAIL","hash":"h"}]}',
    b'{"identifiers":[{"type":"USER_AGENT","user_agent_id":"a"},{"type":"USER_POINT","user_point_id":"p"}]}',
    b'{"identifiers":[{"type":"USER_AGENT","type":"USER_EMAIL","user_agent_id":"a"},{"type":"USER_EMAIL","hash":"h"}]}',
    b'{"identifiers":[{"type":"USER_EMAIL","type":"USER_AGENT","user_agent_id":"a"},{"type":"USER_EMAIL","hash":"h"}]}',
    b'{"type":"USER_AGENT","user_agent_id":"vec:1"}',
    b'{"type":"USER_AGENT","user_agent_id":"abc"}',
    b'{"type":"USER_AGENT","user_agent_id":5}',
    b'{"user_agent_id":"vec:1","type":"USER_AGENT"}',
    b'{"type":"USER_POINT","user_point_id":"p"}',
    b'{"type":"USER_POINT","user_point_id":""}',
    b'{"\\u0074ype":"USER_EMAIL","hash":"h"}',
]


@pytest.mark.parametrize("document_type", DOCUMENT_TYPES)
@example(line=EDGES[0])
@given(line=st.sampled_from(EDGES))
@settings(max_examples=len(EDGES) * 3, deadline=None)
def test_edges(document_type, line):
    _typed_vouches_only_good_lines(document_type, [line])
    _same(document_type, line + b"\n")


@pytest.mark.parametrize("offset", range(0, typed_checks.STRIDE + 3))
def test_a_huge_integer_is_found_wherever_it_falls(offset):
    """A 309-digit integer in a field the rules do not read: orjson refuses the line, msgspec would
    take it; the sampled search finds it at every offset."""
    good = b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$ttl":"' + b"x" * offset + b'"}'
    huge = b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$location":' + b"9" * typed_checks.LONG_DIGITS + b"}"
    data = b"\n".join([good, huge, good]) + b"\n"
    assert validate_counted("USER_ACTIVITY", data)[1] == reference_validate_counted("USER_ACTIVITY", data)[1] != []


def test_decode_all_keeps_the_order_and_marks_failures():
    def decode(line: bytes) -> int:
        if line == b"bad":
            raise ValueError(line)
        return len(line)

    assert typed_checks._decode_all(decode, [b"a", b"bad", b"ccc", b"bad", b"bad", b"dd"]) == [
        1,
        None,
        3,
        None,
        None,
        2,
    ]
    assert typed_checks._decode_all(decode, []) == []


@pytest.mark.parametrize("depth", [1000, 1022, 1023, 1024, 1030, 5000])
def test_nesting_is_judged_as_orjson_does_whatever_the_recursion_limit(depth):
    """msgspec's nesting limit is Python's recursion limit: with it raised, a line nested deeper
    than orjson allows must still be rejected."""
    import sys

    line = b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1","$location":' + _nested(depth) + b"}"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        _typed_vouches_only_good_lines("USER_ACTIVITY", [line])
        _same("USER_ACTIVITY", line + b"\n")
    finally:
        sys.setrecursionlimit(limit)

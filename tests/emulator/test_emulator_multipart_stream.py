"""The emulator's streaming multipart/form-data parser, fed with chunk boundaries everywhere."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.client.multipart import MultipartBody
from pipeline.emulator.multipart_stream import (
    DATA,
    END,
    PART,
    MultipartError,
    MultipartParser,
    TruncatedMultipart,
    check_boundary,
    parse_part_headers,
)


def parse(boundary: bytes | str, chunks, *, finish: bool = True) -> list[tuple]:
    """Feed ``chunks``; return [(PartInfo, data bytes), ...], checking the event order and bounds."""
    parser = MultipartParser(boundary)
    parts: list[tuple] = []
    current: list[bytes] | None = None
    for chunk in chunks:
        for kind, value in parser.feed(chunk):
            if kind is PART:
                assert current is None
                current = []
                parts.append((value, current))
            elif kind is DATA:
                assert current is not None and value
                assert len(value) <= len(chunk) + len(parser.delimiter)  # never a joined part
                current.append(value)
            else:
                assert kind is END and current is not None
                current = None
        if current is not None:  # inside a part: only a possible delimiter start is held back
            assert parser.held < len(parser.delimiter)
    if finish:
        parser.finish()
        assert current is None
    return [(info, b"".join(data)) for info, data in parts]


def split(body: bytes, cuts) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def pipeline_body(payload: bytes, boundary: str = "pipeline-0123abcd") -> bytes:
    mb = MultipartBody(
        filename="run-0001.ndjson", content_type="application/x-ndjson", type_value="application/x-ndjson",
        boundary=boundary,
    )  # fmt: skip
    return mb.preamble + payload + mb.epilogue


PAYLOAD = b'{"a":1}\n{"b":"\\r\\n--x"}\r\n\r\n--pipeline-0123abc\r\n-- pipeline-0123abcd\n{"c":3}'


def test_the_pipelines_body_at_every_single_and_double_cut() -> None:
    body = pipeline_body(PAYLOAD)
    expected = parse("pipeline-0123abcd", [body])
    assert [(i.name, i.filename, i.content_type) for i, _ in expected] == [
        ("type", None, None),
        ("file", "run-0001.ndjson", "application/x-ndjson"),
    ]
    assert [data for _, data in expected] == [b"application/x-ndjson", PAYLOAD]
    for a in range(len(body) + 1):
        assert parse("pipeline-0123abcd", split(body, [a])) == expected, a
    for a in range(0, len(body) + 1, 3):
        for b in range(a, len(body) + 1, 2):
            assert parse("pipeline-0123abcd", split(body, [a, b])) == expected, (a, b)


def test_one_byte_chunks() -> None:
    body = pipeline_body(PAYLOAD)
    assert parse("pipeline-0123abcd", [body[i : i + 1] for i in range(len(body))]) == parse("pipeline-0123abcd", [body])


def test_file_data_is_handed_on_without_copies() -> None:
    parser = MultipartParser("bnd")
    head = b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
    assert [k for k, _ in parser.feed(head)] == [PART]
    block = b"line\n" * 1000
    events = parser.feed(block)
    assert len(events) == 1 and events[0][1] is block  # the received object itself
    crlf = b"line\r\n" * 1000
    events = parser.feed(crlf)  # ends with CR LF: may begin a delimiter, so held back
    assert events[0][1] == crlf[:-2] and parser.held == 2
    events = parser.feed(b"more\r\n--bnd--\r\n")
    assert [(k, v) for k, v in events] == [(DATA, b"\r\nmore"), (END, None)]
    assert parser.done
    parser.finish()


def test_preamble_epilogue_padding_and_parts_without_headers() -> None:
    body = (
        b"This is the preamble.\r\nIt may say --bnd anywhere but at a line start.\r\n"
        b"--bnd \t\r\n"
        b"\r\n"
        b"no headers at all\r\n"
        b"--bnd\r\n"
        b'content-disposition: form-data; name="file"; filename="a\\"b;c.ndjson"\r\n'
        b"CONTENT-TYPE:   application/x-ndjson  \r\n"
        b"\r\n"
        b"{}\n\r\n"
        b"--bnd\r\n"
        b'Content-Disposition: form-data; name="type"\r\n'
        b"\r\n"
        b"APPLICATION_X_NDJSON\r\n"
        b"--bnd--\r\n"
        b"epilogue, ignored even with \r\n--bnd\r\n in it"
    )
    for size in (1, 2, 5, 7, 64, len(body)):
        parts = parse(b"bnd", [body[i : i + size] for i in range(0, len(body), size)])
        assert [(i.name, i.filename, i.content_type, d) for i, d in parts] == [
            (None, None, None, b"no headers at all"),
            ("file", 'a"b;c.ndjson', "application/x-ndjson", b"{}\n"),
            ("type", None, None, b"APPLICATION_X_NDJSON"),
        ]


def test_empty_parts_and_a_body_that_starts_with_its_boundary() -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="e"\r\n\r\n\r\n--b--'
    assert [(i.name, d) for i, d in parse("b", [body])] == [("file", b"")]
    assert parse("b", [b"--b--\r\n"]) == []


@pytest.mark.parametrize("cut", [0, 1, 10, -30, -12, -9, -8, -7, -5, -3, -2, -1])
def test_missing_close_delimiter_is_truncated(cut: int) -> None:
    body = pipeline_body(b"x\n" * 20)[: cut or None]
    if cut not in (0, -1, -2):  # the epilogue's final CRLF is not needed
        with pytest.raises(TruncatedMultipart, match="truncated multipart body"):
            parse("pipeline-0123abcd", split(body, [len(body) // 2]))
    else:
        parse("pipeline-0123abcd", [body])


def test_no_part_end_is_truncated_even_after_a_final_crlf() -> None:
    body = pipeline_body(b"x\n")
    with pytest.raises(TruncatedMultipart):
        parse("pipeline-0123abcd", [body.replace(b"--pipeline-0123abcd--", b"--pipeline-0123abcd")])
    with pytest.raises(TruncatedMultipart):
        parse("b", [])


@pytest.mark.parametrize(
    "body, message",
    [
        (b"--bXY\r\n\r\nx\r\n--b--", "after a boundary"),
        (b"--b\r\n\r\nx\r\n--b-x\r\n", "after a boundary"),
        (b"--b" + b" " * 2000, "CRLF"),
        (b"--b\r\nContent-Disposition: form-data\r\nx" + b"y" * 20000, "headers longer"),
        (b"--b\r\nno colon here\r\n\r\nx\r\n--b--", "malformed part header"),
        (b"--b\r\n: empty name\r\n\r\nx\r\n--b--", "malformed part header"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse("b", [body], finish=False)


@pytest.mark.parametrize("boundary", [None, "", "é", "a\r\nb", "x" * 201])
def test_unusable_boundaries(boundary) -> None:
    with pytest.raises(MultipartError):
        check_boundary(boundary)


def test_header_parsing() -> None:
    info = parse_part_headers(
        b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''%C3%A9t%C3%A9.csv\r\nContent-Type: text/csv"
    )
    assert (info.name, info.filename, info.content_type) == ("file", "été.csv", "text/csv")
    raw_utf8 = parse_part_headers('Content-Disposition: form-data; name="file"; filename="été.csv"'.encode())
    assert raw_utf8.filename == "été.csv"
    assert parse_part_headers(b"Content-Type: text/plain").name is None


@pytest.mark.parametrize(
    "header, expected",
    [
        ('form-data; name="file"; filename="a\\"b.nd"', ("file", 'a"b.nd')),
        ('form-data; name="file"; filename=";;"', ("file", ";;")),
        ('form-data; name="file"; filename="C:\\\\dir\\\\f.nd"', ("file", "C:\\dir\\f.nd")),
        ("form-data; name=type", ("type", None)),
        ("Form-Data ; NAME = file ; Filename = x.nd ", ("file", "x.nd")),
        ('form-data; name="file"; filename="x%22y.nd"', ("file", "x%22y.nd")),
        ('form-data; name="file"; filename="plain.csv"; filename*=UTF-8\'\'%C3%A9.csv', ("file", "é.csv")),
        ('form-data; name="a"; name="b"', ("a", None)),
        ('form-data; name="file"; garbage; filename="late.nd"', ("file", None)),
        ("form-data", (None, None)),
    ],
)
def test_content_disposition(header: str, expected: tuple) -> None:
    info = parse_part_headers(b"Content-Disposition: " + header.encode())
    assert (info.name, info.filename) == expected


# --- property: any well-formed body, cut anywhere, parses to the same parts -------------------------

BOUNDARY = b"bnd"
DELIMITER = b"\r\n--" + BOUNDARY
# small alphabets, so that near-delimiters (\r\n--bn, \r\n-, --bnd without CRLF...) are frequent
content = st.lists(st.sampled_from([b"\r", b"\n", b"-", b"b", b"n", b"d", b"x", b"\r\n--bn", b"--bnd"]), max_size=40)
filenames = st.text(alphabet='ab"\\; .é-', min_size=1, max_size=12).filter(lambda f: f[0] not in "\\/")


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def bodies(draw):
    parts = []
    for i in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["file", "type", "other"])) + str(i)
        filename = draw(st.none() | filenames)
        ctype = draw(st.none() | st.sampled_from(["application/x-ndjson", "text/csv; charset=utf-8"]))
        data = b"".join(draw(content))
        assume(DELIMITER not in data)  # the one rule a sender must keep
        parts.append((name, filename, ctype, data))
    preamble = b"".join(draw(content))
    body = preamble + b"\r\n--bnd" if preamble else b"--bnd"
    assume((b"\r\n" + body).find(DELIMITER) == len(b"\r\n" + body) - len(DELIMITER))
    for name, filename, ctype, data in parts:
        body += draw(st.sampled_from([b"", b" ", b"\t "])) + b"\r\n"
        disposition = f"form-data; name={quote(name)}" + (f"; filename={quote(filename)}" if filename else "")
        body += f"Content-Disposition: {disposition}\r\n".encode()
        if ctype:
            body += f"Content-Type: {ctype}\r\n".encode()
        body += b"\r\n" + data + DELIMITER
    body += b"--" + (b"\r\n" + b"".join(draw(content)) if draw(st.booleans()) else b"")
    return parts, body


@settings(max_examples=400, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(bodies(), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_body_cut_anywhere_parses_the_same(case, cuts) -> None:
    parts, body = case
    got = parse(BOUNDARY, split(body, cuts))
    assert [(i.name, i.filename, i.content_type, d) for i, d in got] == parts


@settings(max_examples=200, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(bodies(), st.integers(0, 10_000), st.lists(st.integers(0, 10_000), max_size=6))
def test_any_body_cut_short_is_truncated(case, keep, cuts) -> None:
    _, body = case
    close = (b"\r\n" + body).index(DELIMITER + b"--") + len(DELIMITER + b"--") - 2  # the epilogue may repeat it
    short = body[: keep % close]  # ends before the close delimiter is complete
    with pytest.raises(TruncatedMultipart):
        parse(BOUNDARY, split(short, cuts))

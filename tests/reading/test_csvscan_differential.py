"""The bit-parallel CSV scan (``csvscan.scan``: ``csv_counts``, ``last_record_end``,
``CountingCuts``) against the algorithms it replaced, kept here as the reference: the counts of
the translate/replace/split pass, and the boundary of ``CsvGrammar.last_boundary``. Generated CSV
with quotes, doubled quotes, quoted newlines, CRLF, a missing final newline and unterminated
quotes, cut at every kind of place and across the scan's pieces."""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.reading import csvscan
from pipeline.reading.csvscan import CountingCuts, CsvGrammar, csv_counts, last_record_end
from pipeline.reading.record_runs import Skip, iter_runs

_ALL_BUT_QUOTE_AND_NL = bytes(b for b in range(256) if b not in (0x22, 0x0A))


def reference_counts(data: bytes | bytearray, lo: int = 0, hi: int | None = None) -> tuple[int, int]:
    """The counting ``csv_counts`` did before the scan: drop all but quotes and newlines, drop
    pairs of quotes, then the newlines between the 1st and 2nd quote left, 3rd and 4th... are
    inside quoted fields."""
    hi = len(data) if hi is None else hi
    if hi <= lo:
        return 0, 0
    unterminated = data[hi - 1] != 10
    if data.find(b'"', lo, hi) < 0:
        lines = data.count(b"\n", lo, hi) + unterminated
        return lines, lines
    marks = bytes(data[lo:hi]).translate(None, _ALL_BUT_QUOTE_AND_NL).replace(b'""', b"")
    lines = marks.count(b"\n") + unterminated
    inside = sum(map(len, marks.split(b'"')[1::2]))
    return lines, lines - inside


def reference_end(data: bytes | bytearray, lo: int, hi: int) -> tuple[int, int, int]:
    end = CsvGrammar.last_boundary(data, lo, hi)
    if end < 0:
        return -1, 0, 0
    return (end, *reference_counts(data, lo, end))


FIELDS = ["a", "bc", "", '""', '"x,y"', '"say ""hi"""', '"line\nbreak"', '"cr\r\nlf"', '"""', '"\n\n"', "é"]


@st.composite
def csv_text(draw: st.DrawFn) -> bytes:
    """Records of quoted and plain fields, with CRLF or LF ends, perhaps no final newline, perhaps
    a stray quote (an unterminated quoted field: the rest of the text is inside it)."""
    records = draw(st.lists(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=5), max_size=30))
    ends = draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=len(records), max_size=len(records)))
    text = "".join(",".join(r) + e for r, e in zip(records, ends, strict=True))
    if text and draw(st.booleans()):
        text = text.rstrip("\r\n")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + '"' + text[at:]
    return text.encode()


@settings(max_examples=400, deadline=None)
@given(data=csv_text(), cut=st.integers(0, 10**6))
def test_counts_and_ends_match_the_reference(data, cut):
    for piece in (csvscan.PIECE, 1, 5, 64):
        old = csvscan.PIECE
        csvscan.PIECE = piece
        try:
            hi = cut % (len(data) + 1)
            assert csv_counts(data) == reference_counts(data)
            assert csv_counts(bytearray(data), 0, hi) == reference_counts(data, 0, hi)
            assert last_record_end(data, 0, len(data)) == reference_end(data, 0, len(data))
            assert last_record_end(bytearray(data), 0, hi) == reference_end(data, 0, hi)
        finally:
            csvscan.PIECE = old


@settings(max_examples=200, deadline=None)
@given(data=csv_text(), prefix=st.sampled_from([b"", b"x,y\n", b'h,"a\nb"\r\n']))
def test_from_a_record_start_inside_a_buffer(data, prefix):
    """``lo`` is a record start in the middle of a buffer."""
    buf = bytearray(prefix + data)
    lo = len(prefix)
    assert csv_counts(buf, lo, len(buf)) == reference_counts(data)
    end, lines, records = reference_end(data, 0, len(data))
    assert last_record_end(buf, lo, len(buf)) == (end + lo if end >= 0 else -1, lines, records)


def test_the_bench_shape_over_many_pieces():
    """Quote-dense rows, one in seven with a quoted newline (benchmarks/bench_data.py), a few MiB:
    the default pieces, the carry between them, and an end found past many inside newlines."""
    rng = random.Random(5)
    rows = []
    for i in range(40000):
        bag = '"{""note"": ""one\ntwo""}"' if i % 7 == 0 else f'"{{""score"": {rng.randrange(100)}}}"'
        rows.append(f'UPDATE,43200,"acc-{rng.randrange(10**7)}","seg, {i % 50}",{bag}\n')
    data = "".join(rows).encode()
    assert csv_counts(data) == reference_counts(data) == (40000 + 40000 // 7 + 1, 40000)
    for hi in (len(data), len(data) - 3, len(data) // 2 + 11, csvscan.PIECE * 3 + 1):
        assert last_record_end(data, 0, hi) == reference_end(data, 0, hi)
    long_field = b'a,"' + b"x\n" * 100 + b'"\nb,"' + b"y\n" * 100  # the last end is 100 newlines back
    assert last_record_end(long_field, 0, len(long_field)) == reference_end(long_field, 0, len(long_field))


@settings(max_examples=150, deadline=None)
@given(data=csv_text(), size=st.sampled_from([8, 33, 256]))
def test_counting_cuts_cut_and_count_the_runs_as_the_grammar_does(data, size):
    """``iter_runs`` with a :class:`CountingCuts` yields the runs it yields with the grammar, and
    the counts of each are those of the reference."""

    def runs(cuts):
        out = []
        buf = bytearray(size)
        items = iter_runs(io.BytesIO(data), buf, 0, False, 0, CsvGrammar, 10**6, lambda *a: None, cuts=cuts)
        for item in items:
            if isinstance(item, Skip):
                out.append(("skip", item.offset, item.length, item.lines))
            else:
                b, lo, hi, base = item
                counts = cuts.counts(b, lo, hi, base) if cuts is not None else None
                out.append((base + lo, base + hi, bytes(b[lo:hi]), counts))
        return out

    counted = runs(CountingCuts())
    plain = runs(None)
    assert [x[:3] for x in counted] == [x[:3] for x in plain]
    for item in counted:
        if item[0] != "skip":
            assert item[3] == reference_counts(item[2])


@settings(max_examples=300, deadline=None)
@given(marks=st.text(alphabet="01", max_size=200).map(str.encode))
def test_marks_value_is_the_binary_number(marks):
    """``marks_value`` (unhexlify and translate in three rounds) reads the marks as ``int(m, 2)``."""
    assert csvscan.marks_value(marks) == (int(marks, 2) if marks else 0)


def test_marks_value_of_long_strings():
    rng = random.Random(9)
    for n in (1, 7, 8, 9, 15, 16, 17, 4095, 4096, 4097, 98311):
        marks = bytes(rng.choice(b"01") for _ in range(n))
        assert csvscan.marks_value(marks) == int(marks, 2)

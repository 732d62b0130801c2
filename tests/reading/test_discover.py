"""Discovery that tells: every directory entry not taken is listed once with why; --recursive;
``.json`` taken when it is NDJSON; extensions in any case, ``.gz`` told by one test (is_gzip)."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from pipeline.engine.pool import spool_bytes
from pipeline.errors import InputError
from pipeline.reading.discover import SkipReason, discover
from pipeline.reading.gzstream import is_gzip
from pipeline.reading.reader import BatchReader
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.sizing import total_input_bytes

from ..helpers import activity


def ndjson(n: int, start: int = 0) -> bytes:
    return b"".join(orjson.dumps(activity(i)) + b"\n" for i in range(start, start + n))


def spark_like(root: Path) -> Path:
    """The issue's directory: part-00000.json, A.NDJSON, notes.txt and a subdirectory."""
    root.mkdir()
    (root / "part-00000.json").write_bytes(ndjson(3))
    (root / "A.NDJSON").write_bytes(ndjson(2, 100))
    (root / "notes.txt").write_text("not data\n")
    (root / "sub").mkdir()
    (root / "sub" / "b.ndjson").write_bytes(ndjson(1, 200))
    return root


def listed(found) -> list[tuple[str, SkipReason, str]]:
    return [(s.path.name, s.reason, s.message) for s in found.skipped]


def test_the_issue_directory_takes_the_data_and_lists_the_rest(tmp_path):
    root = spark_like(tmp_path / "export")
    found = discover([str(root)])
    assert [p.name for p in found.files] == ["A.NDJSON", "part-00000.json"]
    assert listed(found) == [
        ("notes.txt", SkipReason.EXTENSION, "skipped: extension .txt"),
        ("sub", SkipReason.DIRECTORY, "skipped: directory (use --recursive)"),
    ]
    found = discover([str(root)], recursive=True)
    assert [p.relative_to(root).as_posix() for p in found.files] == ["A.NDJSON", "part-00000.json", "sub/b.ndjson"]
    assert listed(found) == [("notes.txt", SkipReason.EXTENSION, "skipped: extension .txt")]


def test_a_directory_given_twice_lists_its_skipped_entries_once(tmp_path):
    root = spark_like(tmp_path / "export")
    found = discover([root, root / "."])
    assert len(found.files) == 2 and [s.path.name for s in found.skipped] == ["notes.txt", "sub"]


@pytest.mark.parametrize(
    "content, why",
    [
        (b'{\n  "$type": "TOUCH"\n}\n', "one pretty-printed JSON document: its first line is not a whole object"),
        (b'[{"a": 1}]\n', "a .json file starting with '[', not '{'"),
        (b"  \n\n", "empty .json file"),
        (b'{"a": 1', "one pretty-printed JSON document: its first line is not a whole object"),
    ],
)
def test_a_json_file_that_is_not_ndjson_is_skipped_with_why(tmp_path, content, why):
    (tmp_path / "a.ndjson").write_bytes(ndjson(1))
    (tmp_path / "doc.json").write_bytes(content)
    found = discover([tmp_path])
    assert [p.name for p in found.files] == ["a.ndjson"]
    assert listed(found) == [("doc.json", SkipReason.NOT_NDJSON, f"skipped: not NDJSON ({why})")]


def test_json_ndjson_is_taken_with_blank_lines_first_a_bom_and_gzipped(tmp_path):
    (tmp_path / "a.json").write_bytes(b"\n  \n" + ndjson(2))
    (tmp_path / "b.json").write_bytes(b"\xef\xbb\xbf" + ndjson(1))
    (tmp_path / "c.JSON.GZ").write_bytes(gzip.compress(ndjson(2)))
    (tmp_path / "d.json.gz").write_bytes(gzip.compress(b'{\n "pretty": true\n}\n'))
    found = discover([tmp_path])
    assert [p.name for p in found.files] == ["a.json", "b.json", "c.JSON.GZ"]
    assert [s.path.name for s in found.skipped] == ["d.json.gz"]


def test_a_json_is_sniffed_in_small_reads_up_to_its_first_line(tmp_path, monkeypatch):
    import pipeline.reading.discover as discover_module

    monkeypatch.setattr(discover_module, "JSON_SNIFF_CHUNK", 16)
    monkeypatch.setattr(discover_module, "JSON_SNIFF_BYTES", 64)
    long_line = b'{"a": "' + b"x" * 200 + b'"}\n'
    (tmp_path / "long.json").write_bytes(long_line)  # a first line longer than the sniff: one long record
    (tmp_path / "short.json").write_bytes(b'{"a": 1}\n' + b"y" * 10_000)
    assert discover_module._head(tmp_path / "short.json") == b'{"a": 1}\nyyyyyyy'  # one 16-byte read
    assert [p.name for p in discover([tmp_path]).files] == ["long.json", "short.json"]


def test_a_json_given_by_name_is_taken_whatever_it_holds(tmp_path):
    doc = tmp_path / "doc.json"
    doc.write_bytes(b'{\n "a": 1\n}\n')
    assert discover([doc]).files == [doc]  # the user named it: the reader says what is wrong


def test_extensions_in_any_case_and_gzip_told_by_one_test(tmp_path):
    names = ["A.NDJSON", "b.Jsonl", "x.CSV", "y.NDJSON.GZ", "z.ndjson.Gz"]
    for name in names[:3]:
        (tmp_path / name).write_bytes(ndjson(1))
    for name in names[3:]:
        (tmp_path / name).write_bytes(gzip.compress(ndjson(4)))
    (tmp_path / "other.TXT.GZ").write_bytes(gzip.compress(b"x"))
    (tmp_path / "README").write_text("x")
    found = discover([tmp_path])
    assert [p.name for p in found.files] == sorted(names)
    assert listed(found) == [
        ("README", SkipReason.EXTENSION, "skipped: no extension"),
        ("other.TXT.GZ", SkipReason.EXTENSION, "skipped: extension .TXT.GZ"),
    ]
    upper = tmp_path / "y.NDJSON.GZ"
    assert is_gzip(upper) and is_gzip(tmp_path / "z.ndjson.Gz") and not is_gzip(tmp_path / "A.NDJSON")
    # the reader decompresses it (4 records, not gzip bytes), the sizing and the spool count it as gzip
    reader = BatchReader([upper], ReaderOptions(document_type="USER_ACTIVITY", mime_type="APPLICATION_X_NDJSON"), print)
    assert sum(b.records for b in reader) == 4
    assert total_input_bytes([upper]) is None and total_input_bytes([tmp_path / "A.NDJSON"]) is not None
    assert spool_bytes([upper], 1, 100) > 0 and spool_bytes([tmp_path / "A.NDJSON"], 1, 100) == 0


def test_named_gz_in_upper_case_but_not_gzip_is_refused(tmp_path):
    bad = tmp_path / "a.NDJSON.GZ"
    bad.write_bytes(b"plain\n")
    with pytest.raises(InputError, match="named .gz but not a gzip file"):
        discover([tmp_path])


def test_a_directory_with_no_input_says_what_it_skipped(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError) as exc:
        discover([tmp_path])
    assert exc.value.path == str(tmp_path)
    assert "no input files" in exc.value.message
    assert "notes.txt (extension .txt), sub (directory (use --recursive))" in exc.value.message


def test_recursion_walks_a_link_back_up_the_tree_once(tmp_path):
    root = spark_like(tmp_path / "export")
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)
    found = discover([root], recursive=True)
    assert [p.relative_to(root).as_posix() for p in found.files] == ["A.NDJSON", "part-00000.json", "sub/b.ndjson"]

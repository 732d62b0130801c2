"""The tolerant reading of error files (their format is undocumented)."""

from __future__ import annotations

from pipeline.client.error_file import MAX_ENTRY_BYTES, iter_error_entries, parse_entry


def test_objects_with_line_text_and_reason_under_any_known_key():
    e = parse_entry(b'{"line": 7, "reason": "bad", "record": "{\\"a\\":1}"}\n')
    assert (e.line, e.text, e.reason, e.structured) == (7, '{"a":1}', "bad", True)
    e = parse_entry(b'{"line_number": 3, "error": "no id"}')
    assert (e.line, e.text, e.reason) == (3, None, "no id")
    e = parse_entry(b'{"record": "x,y", "message": "wrong"}\r\n')
    assert (e.line, e.text, e.reason) == (None, "x,y", "wrong")
    e = parse_entry(b'{"line": 2, "error": {"code": 12, "why": "schema"}}')
    assert e.reason == '{"code":12,"why":"schema"}', "a non-string reason is kept as its JSON"
    assert parse_entry(b'{"line": 2, "record": "r", "truncated": true}').truncated


def test_anything_else_is_a_raw_line_kept_as_it_came():
    for raw in (b'{"$user_agent_id": "vec:1", "$type": "TOUCH"}', b"UPDATE,0,1000,u1", b"[1, 2]", b"ERROR v0"):
        e = parse_entry(raw)
        assert (e.line, e.reason, e.structured, e.text, e.raw) == (None, None, False, raw.decode(), raw.decode())
    assert parse_entry(b"   \n") is None
    assert parse_entry(b'{"line": true, "reason": "x"}').line is None, "a boolean is not a line number"


def test_a_line_longer_than_the_bound_is_cut_not_held(tmp_path):
    path = tmp_path / "errors"
    path.write_bytes(b"A" * (MAX_ENTRY_BYTES + 10) + b"\n" + b'{"line": 1, "reason": "r"}\n')
    entries = list(iter_error_entries(path))
    assert len(entries) == 2
    assert entries[0].truncated and len(entries[0].raw) == MAX_ENTRY_BYTES and entries[0].line is None
    assert entries[1].line == 1

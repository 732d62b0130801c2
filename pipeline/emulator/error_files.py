"""The body of an execution's error file, in the shape the emulator is asked to play.

The platform's format is undocumented (api.md), so the client must tolerate several; the emulator
serves each (``EmulatorOptions.error_files``, ``--error-files``):

- ``ndjson`` (default): ``{"line": N, "reason": "...", "record": "<text>"}`` per failed record
  (plus ``"truncated": true`` when the text was cut at 64 KiB);
- ``text``: ``{"record": "<text>", "message": "..."}``: the text, no line number;
- ``line``: ``{"line_number": N, "error": "..."}``: the line number, no text;
- ``raw``: the failed records' text as they were uploaded, one after another (a CSV record whose
  quoted fields hold newlines spans several lines), no reason;
- ``garbage``: the ``ndjson`` shape with, before each entry, a line that is none of the above
  (a bare word, and an object with unknown keys): the client keeps those as they came.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.emulator.intake import FailedLine

ERROR_FILE_SHAPES = ("ndjson", "text", "line", "raw", "garbage")


def _entry(f: FailedLine, shape: str) -> bytes:
    text = f.record.decode("utf-8", "replace")
    if shape == "raw":
        return f.record
    if shape == "text":
        return orjson.dumps({"record": text, "message": f.reason})
    if shape == "line":
        return orjson.dumps({"line_number": f.line, "error": f.reason})
    item: dict[str, Any] = {"line": f.line, "reason": f.reason, "record": text}
    if f.truncated:
        item["truncated"] = True
    line = orjson.dumps(item)
    if shape == "garbage":
        return b'ERROR-REPORT v0\n{"job": "import", "level": "warn"}\n' + line
    return line


def error_file_body(failures: list[FailedLine], shape: str) -> bytes:
    """The whole error file (the emulator keeps at most 64 KiB of each failed record)."""
    lines = [_entry(f, shape) for f in failures]
    return b"\n".join(lines) + b"\n" if lines else b""

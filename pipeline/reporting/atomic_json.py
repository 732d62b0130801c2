"""JSON files a reader never sees half of: ``report.json`` and the others of a run (``platform.json``,
``retry.json``, ``bench.json``), owner-readable only.

Apart from ``report`` because writing is not building: the engine and the bench write JSON files
that are not reports. A long list (a report's 20,000 executions) is serialised a few hundred items at
a time, the same bytes as ``orjson`` writes whole.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from pipeline.engine.rundir import make_missing_dirs

JSON_OPTIONS = orjson.OPT_INDENT_2
CHUNK_ITEMS = 256  # items of a long list serialised per write


def json_chunks(data: Any) -> Iterator[bytes]:
    """``orjson.dumps(data, option=OPT_INDENT_2)``, the same bytes, in pieces: the items of a long
    list at the top level of a dict (a report's 20,000 executions) are serialised a few hundred at a
    time, so the whole document (20 MB) is never in memory at once."""
    if not isinstance(data, dict) or not data:
        yield orjson.dumps(data, option=JSON_OPTIONS)
        return
    yield b"{\n"
    last = len(data) - 1
    for i, (key, value) in enumerate(data.items()):
        head = b"  " + orjson.dumps(key) + b": "
        tail = b",\n" if i < last else b"\n"
        if isinstance(value, list) and len(value) > CHUNK_ITEMS:
            yield head + b"[\n"
            for start in range(0, len(value), CHUNK_ITEMS):
                items = value[start : start + CHUNK_ITEMS]
                text = b",\n".join(b"    " + _indented(orjson.dumps(item, option=JSON_OPTIONS), 4) for item in items)
                yield text + (b",\n" if start + CHUNK_ITEMS < len(value) else b"\n")
            yield b"  ]" + tail
        else:
            yield head + _indented(orjson.dumps(value, option=JSON_OPTIONS), 2) + tail
    yield b"}"


def _indented(text: bytes, spaces: int) -> bytes:
    """A JSON text as it reads ``spaces`` deeper (a JSON string never holds a raw newline)."""
    return text.replace(b"\n", b"\n" + b" " * spaces)


def write_json_atomically(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` (owner-readable only) so a reader never sees half a file;
    the parents it creates are 0700 (``LocalError`` when it cannot)."""
    make_missing_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb", buffering=1 << 16) as fh:
            for chunk in json_chunks(data):
                fh.write(chunk)
            fh.write(b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""The report's ``refused`` section, read from the run directory's ``failed.ndjson``: how many
records the server refused, where the list is, and the first few (``file:line: reason``) for
people. Read from the file (streamed, counted) rather than from the state, so that ``status`` and a
resumed finished run say the same as the run that wrote it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import orjson

from pipeline.engine.rundir import FAILED_NAME, UNMAPPED_NAME
from pipeline.reporting.types import RefusedEntry, RefusedSection

SAMPLE_SIZE = 5


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return n


def refused_section(run_dir: Path) -> RefusedSection | None:
    """The section, or ``None`` when the run has no ``failed.ndjson`` (no refusal mapped)."""
    path = run_dir / FAILED_NAME
    if not path.exists():
        return None
    sample: list[RefusedEntry] = []
    count = 0
    with open(path, "rb") as f:
        for raw in f:
            count += 1
            if len(sample) < SAMPLE_SIZE:
                with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                    row = orjson.loads(raw)
                    sample.append({"file": str(row["file"]), "line": int(row["line"]), "reason": str(row["reason"])})
    unmapped_path = run_dir / UNMAPPED_NAME
    unmapped = _count_lines(unmapped_path)
    return {
        "count": count,
        "path": str(path),
        "sample": sample,
        "unmapped": unmapped,
        "unmapped_path": str(unmapped_path) if unmapped else None,
    }

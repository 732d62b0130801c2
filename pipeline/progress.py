"""What a run prints while it works: plain lines for people and logs, or one JSON object per event.

Events come from ``Run.emit(name, **fields)``. Text mode prints the important ones to stderr (the
summary goes to stdout); ``-v`` adds retries and status changes; ``-q`` prints nothing but errors.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson

EventSink = Callable[[str, dict[str, Any]], None]

_DEFAULT_EVENTS = {
    "target",
    "import_ready",
    "batch_uploaded",
    "upload_failed",
    "execution_finished",
    "reading_finished",
    "stop_requested",
}
_VERBOSE_EVENTS = _DEFAULT_EVENTS | {"retry", "execution_status", "poll_error", "upload_started"}
_ERROR_EVENTS = {"upload_failed"}


def _text(name: str, f: dict[str, Any]) -> str:
    if name == "target":
        where = "the embedded emulator at " if f.get("embedded") else ""
        return f"uploading to {where}{f['url']}"
    if name == "import_ready":
        return f"document import {f['id']} '{f.get('name')}' ({f.get('document_type')}, {f.get('mime_type')})"
    if name == "batch_uploaded":
        return (
            f"batch {f['batch']}: {f['records']:,} records, {f['bytes'] / 1e6:,.1f} MB -> execution "
            f"{f['execution_id']}" + (f" after {f['attempts']} attempts" if f.get("attempts", 1) > 1 else "")
        )
    if name == "execution_finished":
        return (
            f"batch {f['batch']}: execution {f['execution_id']} {f['status']} "
            f"({f.get('total_success') or 0:,} ok, {f.get('total_failure') or 0:,} failed)"
        )
    if name == "upload_failed":
        return f"batch {f['batch']}: upload failed: {f['error']}"
    if name == "reading_finished":
        total = sum(x["records"] for x in f["files"])
        rejected = sum(x["rejected"] for x in f["files"])
        return f"read {len(f['files'])} file(s): {total:,} records, {rejected:,} rejected"
    if name == "stop_requested":
        if f.get("abandon"):
            return f"{f['signal']} again: abandoning in-flight uploads"
        return f"{f['signal']}: stopping; in-flight uploads finish (press Ctrl-C again to abandon them)"
    if name == "retry":
        delay = f.get("delay_s") or 0
        where = f"{f.get('method')} {f.get('path')}"
        return f"retry {where} (attempt {f.get('attempt')}) in {delay:.1f} s: {f.get('reason')}"
    if name == "execution_status":
        return f"batch {f['batch']}: execution {f['execution_id']} is {f['status']}"
    return f"{name}: " + ", ".join(f"{k}={v}" for k, v in f.items())


def make_event_printer(
    *, quiet: bool = False, verbose: bool = False, log_format: str = "text", stream: TextIO | None = None
) -> EventSink:
    out = stream or sys.stderr

    def print_json(name: str, fields: dict[str, Any]) -> None:
        if quiet and name not in _ERROR_EVENTS and name != "run_finished":
            return
        record = {"ts": round(time.time(), 3), "event": name, **fields}
        out.write(orjson.dumps(record, default=str).decode() + "\n")
        out.flush()

    def print_text(name: str, fields: dict[str, Any]) -> None:
        wanted = _ERROR_EVENTS if quiet else (_VERBOSE_EVENTS if verbose else _DEFAULT_EVENTS)
        if name in wanted:
            out.write(_text(name, fields) + "\n")
            out.flush()

    return print_json if log_format == "json" else print_text

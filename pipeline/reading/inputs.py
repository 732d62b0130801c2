"""The inputs of a run as given (paths, URLs, ``-``), their fingerprints, and back from a journal.

``resolve_inputs`` sends URLs to :mod:`pipeline.reading.remote`, ``-`` to stdin and the rest to
:func:`pipeline.reading.discover.discover` (which also says what it skipped in directories), keeping the
order given. A fingerprint is what
``resume`` and the checks before each upload compare: size and modification time for a local
file, size, ETag and version id for an object, nothing for stdin (it cannot be read twice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, UsageError
from pipeline.reading import remote
from pipeline.reading.discover import Skipped, discover
from pipeline.reading.sources import STDIN, Input, RemoteObject, StdinInput, display_url, is_url


class InputKind(StrEnum):
    """The journal's ``kind`` of an input (absent in journals of local files only)."""

    FILE = "file"
    OBJECT = "object"
    STDIN = "stdin"


@dataclass
class Resolved:
    """The inputs to read, in order, and the directory entries that were not taken (and why)."""

    files: list[Input] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def resolve_inputs(given: Sequence[str | Path], *, recursive: bool = False) -> list[Input]:
    """The inputs named by ``given`` (see :func:`resolve`), for callers that report no skipped entries."""
    return resolve(given, recursive=recursive).files


def resolve(given: Sequence[str | Path], *, recursive: bool = False) -> Resolved:
    """The inputs named by ``given``, in order, duplicates dropped (see the module docstring)."""
    found: list[Input] = []
    skipped: list[Skipped] = []
    local: list[str | Path] = []

    def flush() -> None:
        if local:
            discovery = discover(local, recursive=recursive)
            found.extend(discovery.files)
            skipped.extend(discovery.skipped)
        local.clear()

    for item in given:
        text = str(item) if isinstance(item, str) else None
        if text == "-":
            flush()
            found.append(STDIN)
        elif text is not None and is_url(text):
            flush()
            found.extend(remote.expand_url(text))
        else:
            local.append(item)
    flush()
    if STDIN in found and len(found) > 1:
        raise UsageError("'-' (stdin) must be the only input of a run: it is read once, as it comes")
    result: list[Input] = []
    seen: set[object] = set()
    for source in found:
        key = source.resolve() if isinstance(source, Path) else str(source)
        if key not in seen:
            seen.add(key)
            result.append(source)
    return Resolved(result, skipped)


def fingerprint(source: Input) -> dict[str, Any]:
    """What is journaled of an input when a run starts (``path``: how it is named everywhere)."""
    if isinstance(source, StdinInput):
        return {"path": str(source), "kind": InputKind.STDIN, "size": -1, "mtime_ns": -1}
    if isinstance(source, RemoteObject):
        reopenable = display_url(source.url) == source.url  # no user info, no signed query: kept whole
        return {
            "path": str(source),
            "kind": InputKind.OBJECT,
            "url": source.url if reopenable else None,
            "size": source.size if source.size is not None else -1,
            "etag": source.etag,
            "version_id": source.version_id,
            "ranges": source.serves_ranges,
            "mtime_ns": -1,
        }
    try:
        st = source.stat()
    except FileNotFoundError:
        return {"path": str(source), "size": -1, "mtime_ns": -1}
    return {"path": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def from_journal(recorded: Mapping[str, Any]) -> Input:
    """The input a journaled fingerprint describes, as it was planned."""
    kind = recorded.get("kind", InputKind.FILE)
    if kind == InputKind.STDIN:
        return STDIN
    if kind == InputKind.OBJECT:
        size = recorded.get("size")
        return RemoteObject(
            url=recorded.get("url") or recorded["path"],
            size=size if isinstance(size, int) and size >= 0 else None,
            etag=recorded.get("etag"),
            version_id=recorded.get("version_id"),
            serves_ranges=bool(recorded.get("ranges", True)),
            _shown=str(recorded["path"]),
        )
    return Path(recorded["path"])


def object_change(recorded: Mapping[str, Any], source: RemoteObject) -> str | None:
    """Why a remote input is not the object fingerprinted as ``recorded`` (``None``: it is)."""
    return remote.changed(recorded, remote.refreshed(source))


def check_remote_for_resume(recorded: Mapping[str, Any], *, needed: bool) -> str | None:
    """Resume's check of a remote or stdin input: raises ``InputError`` naming the object when the
    resume would read it and it changed (or cannot be re-read); a warning when it would not."""
    source = from_journal(recorded)
    if isinstance(source, StdinInput):
        return None  # the run polls and settles what was sent; it never reads stdin again
    assert isinstance(source, RemoteObject)
    if recorded.get("url") is None:
        why = "its URL carried credentials (user info or a signed query) that the journal does not keep"
        if needed:
            raise InputError(source, f"cannot resume: {why}; start a new run")
        return None
    change = object_change(recorded, source)
    if change is None:
        return None
    if needed:
        raise InputError(source, f"cannot resume: the object {change} since the run started; start a new run")
    return f"{source} {change} since the run started; every batch of it had been uploaded: nothing was read"


def rereadable(inputs: Sequence[Input]) -> bool:
    """Whether a resume can read the inputs again (stdin cannot)."""
    return not any(isinstance(source, StdinInput) for source in inputs)


STDIN_RESUME_NOTE = (
    "the input was stdin, which cannot be read again: this resume polls the executions of what was "
    "sent and settles the uploads whose answer was lost (the journal knows them); it cannot send the rest: "
    "the batches read but not sent are listed as not delivered (lines of the stream), and what follows "
    "the last of them was never read: pipe those lines to a new run"
)

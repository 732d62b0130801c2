"""An input still holds what the run read from it: checked before each upload, at the end of
reading, and for each batch a resumed run meets again.

Apart from the stages because it is one rule applied at three points of a run (the upload
target's check, the reading stage's end and its resume), against the fingerprints the run
journaled of its inputs: a changed input stops the run rather than send records it never read.
"""

from __future__ import annotations

import os
from typing import Any

from pipeline.engine.recorder import fingerprint
from pipeline.engine.state import BatchState
from pipeline.errors import InputError
from pipeline.reading.inputs import object_change
from pipeline.reading.reader import Batch
from pipeline.reading.sources import Input, RemoteObject, StdinInput

#: What to do after a change: a new run is right when nothing was delivered; when some was, the new
#: run is refused (``imported_before``: the records delivered are still in the file) and says how to
#: send only the rest.
START_AGAIN = (
    "start a new run once it is complete (if this run delivered part of it, that run is refused and "
    "says how to send only the rest)"
)


class InputChangedError(InputError):
    """An input no longer holds what a resumed run already planned from it."""


def check_source(fingerprints: dict[str, dict[str, Any]], batch: Batch) -> None:
    """Before an upload: the input still is what was read (sendfile sends the file as it is now;
    a batch of a remote object is read from it again, by ranges)."""
    recorded = fingerprints.get(str(batch.source))
    if recorded is None or isinstance(batch.source, StdinInput):
        return
    if isinstance(batch.source, RemoteObject):
        # a spooled batch is read from the spool; a conditional read refuses a changed object itself
        checked = batch.spooled or batch.source.conditional_reads
        change = None if checked else object_change(recorded, batch.source)
        if change is not None:
            raise InputChangedError(
                batch.source, f"{change} before batch {batch.number} was sent: the run stops; {START_AGAIN}"
            )
        return
    try:
        st = os.stat(batch.source)  # a local file (or the .gz a spooled batch was decoded from)
    except OSError as exc:
        raise InputChangedError(
            batch.source, f"is gone ({exc.strerror}) before batch {batch.number} was sent"
        ) from None
    if st.st_size != recorded["size"] or st.st_mtime_ns != recorded["mtime_ns"]:
        raise InputChangedError(
            batch.source,
            f"changed while the run was reading or sending it (size or modification time), before batch "
            f"{batch.number} (lines {batch.first_line}-{batch.last_line}) was sent: the run stops; resume if "
            f"it is back as it was, else {START_AGAIN}",
        )


def check_unchanged_input(fingerprints: dict[str, dict[str, Any]], path: Input) -> None:
    """At the end of reading: the input is as it was when the run started (not still being written)."""
    recorded = fingerprints.get(str(path))
    if recorded is None or isinstance(path, StdinInput):
        return
    if isinstance(path, RemoteObject):
        change = object_change(recorded, path)
        if change is not None:
            raise InputChangedError(path, f"{change} while the run was reading it: the run stops; {START_AGAIN}")
        return
    now = fingerprint(path) if path.exists() else {"size": -1, "mtime_ns": -1}
    if (now["size"], now["mtime_ns"]) != (recorded["size"], recorded["mtime_ns"]):
        raise InputChangedError(
            path,
            "changed while the run was reading it (size or modification time): it may still be being "
            f"written; the run stops; {START_AGAIN}",
        )


def check_batch_unchanged(prior: BatchState, batch: Batch) -> None:
    """On resume: a batch read again is the one the run journaled (digest and size)."""
    if prior.digest != batch.digest or prior.size != batch.size:
        raise InputChangedError(
            batch.source,
            f"changed since the run started: batch {batch.number} (lines {batch.first_line}-"
            f"{batch.last_line}) no longer has the same content; {START_AGAIN}",
        )

"""What the emulator accepted, for tests: a digest per accepted record and the execution that
carried it, every upload that created an execution, and request counts per route; and what its
conditions did: the 429s by reason (``throttled``: ``max_uploads``, ``rate_limit``, ``throttle``),
the uploads in flight now (``uploads_in_flight``: received or handled) and at most so far
(``peak_uploads``).

Memory: for each SUCCEEDED execution the accounting keeps its good records' 16-byte digests in
one ``bytes`` blob (16 bytes per record, never the body). ``accepted`` builds the mapping
``digest -> [execution ids]`` on demand. In light mode, or with ``keep_digests=False`` (the
command's setting: no one can read a separate process's accounting), no digest is computed, so
nothing per record is kept and ``accepted`` stays empty; ``accepted_records`` still counts.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

DIGEST_SIZE = 16


class Upload(NamedTuple):
    execution_id: str
    filename: str
    size: int
    lines: int
    content_type: str


class Accounting:
    def __init__(self) -> None:
        self.uploads: list[Upload] = []
        self.requests: Counter[tuple[str, str]] = Counter()
        self.accepted_records = 0
        #: 429 answers by reason: ``max_uploads``, ``rate_limit``, ``throttle`` (the fault).
        self.throttled: Counter[str] = Counter()
        self.uploads_in_flight = 0
        self.peak_uploads = 0
        self._blobs: list[tuple[str, bytes]] = []
        self._cache: dict[bytes, list[str]] | None = None

    def upload_started(self) -> None:
        self.uploads_in_flight += 1
        self.peak_uploads = max(self.peak_uploads, self.uploads_in_flight)

    def upload_ended(self) -> None:
        self.uploads_in_flight -= 1

    def record_upload(self, upload: Upload) -> None:
        self.uploads.append(upload)

    def accept(self, execution_id: str, digests: bytes | bytearray, count: int) -> None:
        """Called once when an execution ends SUCCEEDED with its good records' digests."""
        self.accepted_records += count
        if digests:
            self._blobs.append((execution_id, bytes(digests)))
            self._cache = None

    @property
    def accepted(self) -> dict[bytes, list[str]]:
        """Record digest -> ids of the SUCCEEDED executions that accepted it (in acceptance order)."""
        if self._cache is None:
            out: dict[bytes, list[str]] = {}
            for exe_id, blob in self._blobs:
                for i in range(0, len(blob), DIGEST_SIZE):
                    out.setdefault(blob[i : i + DIGEST_SIZE], []).append(exe_id)
            self._cache = out
        return self._cache

    def duplicates(self) -> dict[bytes, list[str]]:
        """The digests accepted more than once."""
        return {d: ids for d, ids in self.accepted.items() if len(ids) > 1}

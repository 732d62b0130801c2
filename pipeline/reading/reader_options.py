"""What a reader is asked to read and how (:class:`ReaderOptions`): the document type and mime type,
the batch limits, validation and its workers, the spool, the planned batch sizes; checked when made.

Apart from :mod:`pipeline.reading.reader` because both readers take them: the
:class:`~pipeline.reading.reader.BatchReader` of whole inputs and a retry's
:class:`~pipeline.reading.selection_reader.SelectionReader`, which has no need of the reader itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline import formats
from pipeline.errors import ConfigError
from pipeline.reading.sizing import BatchSizes

MAX_BYTES = formats.MAX_UPLOAD_BYTES


def _default_workers() -> int:
    return min(2, os.cpu_count() or 1)


@dataclass(frozen=True, kw_only=True)
class ReaderOptions:
    document_type: str
    mime_type: str  # formats.NDJSON or formats.CSV
    max_bytes: int = MAX_BYTES  # body size limit, CSV header included
    max_lines: int = 0  # records per batch, 0 = no limit
    validate: bool = True
    workers: int = field(default_factory=_default_workers)  # 0/1 = validate inline
    spool_dir: Path | None = None  # for .gz input; None = the system temp dir
    #: each batch's target size in order (``sizing.plan_sizes``: a copy is drawn from per reader);
    #: None: every batch is cut at ``max_bytes``, which stays the ceiling either way
    sizes: BatchSizes | None = None

    def __post_init__(self) -> None:
        if self.document_type not in formats.DOCUMENT_TYPES:
            raise ConfigError("document_type", f"unknown document type {self.document_type!r}")
        if self.mime_type not in formats.CONTENT_TYPES:
            raise ConfigError("mime_type", f"unknown mime type {self.mime_type!r}")
        if not 1 <= self.max_bytes <= MAX_BYTES:
            raise ConfigError("max_bytes", f"must be between 1 and {MAX_BYTES} (got {self.max_bytes})")
        if self.max_lines < 0:
            raise ConfigError("max_lines", f"must be >= 0, 0 meaning no limit (got {self.max_lines})")
        if self.workers < 0:
            raise ConfigError("workers", f"must be >= 0 (got {self.workers})")

    @property
    def is_csv(self) -> bool:
        return self.mime_type == formats.CSV

    def replace(self, **changes: object) -> ReaderOptions:
        # the changes are checked by __post_init__, not typed: mypy cannot match **object to the fields
        return replace(self, **changes)  # type: ignore[arg-type]

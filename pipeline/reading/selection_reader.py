"""The batches of a retry, from its plan: what a :class:`~pipeline.reading.reader.BatchReader` is
to a run over whole inputs (the same ``__iter__`` and ``stats``), for planned pieces of them.

Every batch is checked against its planned digest as it is made (the input must not have changed
since the retry was planned, nor since the original run: the plan's digests were read from it
then); a plain input's batch is byte ranges of the input, a ``.gz`` input's batch a spool file
holding its records (decompressed again, forward). The records the plan found still bad are told
to ``on_reject`` first, so the retry's ``rejects.ndjson`` lists them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from pipeline.errors import InputError
from pipeline.reading.batch import Batch, FileStats, Reject
from pipeline.reading.crc import crc32
from pipeline.reading.gzstream import is_gzip
from pipeline.reading.planned_batch import PlannedBatch
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.source_view import SourceView
from pipeline.reading.sources import Input


class BatchSource(Protocol):
    """What a run reads its batches from: a ``BatchReader`` over whole inputs, or a retry's
    ``SelectionReader``."""

    stats: dict[Input, FileStats]

    def __iter__(self) -> Iterator[Batch]: ...


#: Makes a run's batch source from the reader options and the rejects' sink.
ReaderFactory = Callable[[ReaderOptions, Callable[[Reject], None]], BatchSource]


class SelectionReader:
    """Yields the planned batches, in order, each checked against its digest."""

    def __init__(
        self,
        batches: Sequence[PlannedBatch],
        rejects: Sequence[Reject],
        on_reject: Callable[[Reject], None],
        *,
        spool_dir: Path | None = None,
    ) -> None:
        self.batches, self.rejects, self.on_reject = list(batches), list(rejects), on_reject
        self.spool_dir = spool_dir
        self.stats: dict[Input, FileStats] = {}
        for path in dict.fromkeys([*(b.path for b in self.batches), *(r.file for r in self.rejects)]):
            self.stats[Path(path)] = FileStats(Path(path))

    def __iter__(self) -> Iterator[Batch]:
        for reject in self.rejects:
            self.stats[Path(reject.file)].rejected += 1
            self.on_reject(reject)
        views: dict[str, SourceView] = {}
        try:
            for planned in self.batches:
                view = views.get(planned.path)
                if view is None:
                    view = views[planned.path] = SourceView(Path(planned.path))
                batch = self._batch(planned, view)
                st = self.stats[batch.source]
                st.bytes += batch.size - len(batch.header)
                st.records += batch.records
                st.batches += 1
                yield batch
        finally:
            for view in views.values():
                view.close()

    def _batch(self, planned: PlannedBatch, view: SourceView) -> Batch:
        source = Path(planned.path)
        if is_gzip(source):
            data_path, ranges, digest = self._spool(planned, view)
        else:
            data_path, ranges = source, tuple((p.start, p.end) for p in planned.pieces)
            crc = crc32(planned.header, 0)
            for p in planned.pieces:
                for chunk in view.chunks(p.start, p.end):
                    crc = crc32(chunk, crc)
            digest = f"crc32:{crc:08x}:{planned.size}"
        if digest != planned.digest:
            if data_path != source:
                data_path.unlink(missing_ok=True)
            first, last = planned.pieces[0], planned.pieces[-1]
            raise InputError(
                source,
                f"changed since the retry was planned: lines {first.first_line}-{last.last_line} (batch "
                f"{planned.number}) no longer hold the same records; nothing more is sent from it",
            )
        return Batch(
            number=planned.number,
            source=source,
            data_path=data_path,
            ranges=ranges,
            header=planned.header,
            first_line=planned.pieces[0].first_line,
            last_line=planned.pieces[-1].last_line,
            records=planned.records,
            size=planned.size,
            byte_start=planned.pieces[0].start,
            byte_end=planned.pieces[-1].end,
            digest=digest,
        )

    def _spool(self, planned: PlannedBatch, view: SourceView) -> tuple[Path, tuple[tuple[int, int], ...], str]:
        """The records of a ``.gz`` input's batch, decompressed into a spool file of its own."""
        directory = self.spool_dir or Path(tempfile.gettempdir())
        fd, name = tempfile.mkstemp(prefix=f"{Path(planned.path).name}.", suffix=".batch", dir=directory)
        crc = crc32(planned.header, 0)
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                for p in planned.pieces:
                    for chunk in view.chunks(p.start, p.end):
                        crc = crc32(chunk, crc)
                        out.write(chunk)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        body = planned.size - len(planned.header)
        return Path(name), ((0, body),), f"crc32:{crc:08x}:{planned.size}"

"""The server's refusals, mapped: ``failed.ndjson``, one object per record the server refused.

At the end of every run and resume, every execution that ended with ``total_failure > 0`` has its
error file downloaded (streamed to a private temporary file: never held in memory, the token only
in the header) and each entry mapped to its source file and line (``refusal_map``). The file is
**rebuilt whole** each time, from every such execution the journal knows, written to
``failed.ndjson.part`` and then put in place atomically: an interruption at any point leaves the
previous whole file (or none), and the next resume rebuilds it, so it is exact (no duplicate,
nothing missing) whatever stopped the runs before.

Each row has the shape of ``rejects.ndjson`` plus the execution: ``file`` (the input path as the
run was given it), ``line`` (1-based physical line where the record starts), ``reason``,
``record`` (the record's text, cut like a reject's), ``execution_id``. What cannot be mapped (an
entry that matches no record of its batch, an error file that could not be downloaded) goes to
``failed_unmapped.ndjson`` as it came, with a warning.

A run made by ``pipeline retry`` sent batches made of pieces of its inputs far apart: its plan
(``retry.json``, read from the run directory) says which, and those pieces are re-read (and
checked by the digest) instead of the range from a batch's first byte to its last.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from pipeline import formats
from pipeline.client.api import ApiClient
from pipeline.client.error_file import ErrorEntry, iter_error_entries
from pipeline.engine.refusal_map import BatchMapper, BatchSource, SourceRecord, Span, read_csv_header
from pipeline.engine.retry_plan import RetryPlan
from pipeline.engine.rundir import FAILED_NAME, REJECTS_NAME, UNMAPPED_NAME, make_private_dir, open_private
from pipeline.engine.state import BatchState, RunState
from pipeline.errors import ApiError, LocalError, PipelineError
from pipeline.reading.batch import Reject
from pipeline.reading.gzstream import GzipStream, is_gzip
from pipeline.reading.planned_batch import PlannedBatch

WORK_DIR = "refusals.tmp"
HEAD_BYTES = 8 << 20  # how much of a .gz input's start is kept for its CSV header row (as the reader)
NO_REASON = "refused by the server (its error file gives no reason)"


def refused_batches(state: RunState) -> list[BatchState]:
    """The batches whose execution ended with failed records and names an error file."""
    return sorted(
        (
            b
            for b in state.batches.values()
            if b.execution_id and formats.is_terminal(b.status) and (b.total_failure or 0) > 0 and b.error_file_uri
        ),
        key=lambda b: b.number,
    )


class RowSink(Protocol):
    """Where mapped rows (or unmapped entries) go: a file, or the terminal."""

    def write(self, obj: dict[str, Any]) -> None: ...


class CommittedNdjson:
    """A private (0600) NDJSON file written to ``.part`` and put in place by ``commit``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._part = path.with_name(path.name + ".part")
        self._fh: BinaryIO = open_private(self._part, "wb")
        self.count = 0

    def write(self, obj: dict[str, Any]) -> None:
        self._fh.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
        self.count += 1

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._part, self.path)

    def discard(self) -> None:
        """Close and remove the ``.part`` (a no-op after ``commit``)."""
        if not self._fh.closed:
            self._fh.close()
        with contextlib.suppress(OSError):
            self._part.unlink()


@dataclass
class RefusalsWritten:
    """What the rebuild of ``failed.ndjson`` did."""

    mapped: int = 0
    unmapped: int = 0
    warnings: list[str] = field(default_factory=list)


# --- downloads and the rebuild (async) -------------------------------------------------------------


async def download_error_file(client: ApiClient, batch: BatchState, work_dir: Path) -> Path:
    """A batch's error file, streamed to a private file in ``work_dir``. Raises ``PipelineError``
    (the server or the connection) or ``OSError`` (the disk)."""
    assert batch.error_file_uri is not None  # refused_batches keeps those only
    make_private_dir(work_dir)
    path = work_dir / f"{batch.number}.errors"
    with open_private(path, "wb") as sink:
        async for chunk in client.download_data_file(batch.error_file_uri):
            sink.write(chunk)
    return path


async def map_batches(client: ApiClient, batches: list[BatchState], work_dir: Path, mapper: RefusalMapper) -> None:
    """Each batch's error file downloaded and mapped in turn (one error file on disk at a time; the
    mapping, file work, in a thread)."""
    for batch in mapper.in_order(batches):
        try:
            path = await download_error_file(client, batch, work_dir)
        except (ApiError, PipelineError, OSError) as exc:
            mapper.not_downloaded(batch, str(exc))
            continue
        try:
            await asyncio.to_thread(mapper.map_batch, batch, path)
        finally:
            path.unlink(missing_ok=True)


async def rebuild_failed_file(client: ApiClient, state: RunState, run_dir: Path, *, validated: bool) -> RefusalsWritten:
    """Download every error file the run's executions name and rebuild ``failed.ndjson``."""
    batches = refused_batches(state)
    if not batches:
        return RefusalsWritten()
    work_dir = run_dir / WORK_DIR
    csv = state.document_import.get("mime_type") == formats.CSV
    failed = CommittedNdjson(run_dir / FAILED_NAME)
    unmapped = CommittedNdjson(run_dir / UNMAPPED_NAME)
    try:
        mapper = RefusalMapper(run_dir, batches, csv=csv, validated=validated, failed=failed, unmapped=unmapped)
        try:
            await map_batches(client, batches, work_dir, mapper)
        finally:
            mapper.close()
        await asyncio.to_thread(_commit, run_dir, failed, unmapped)
    except OSError as exc:
        raise LocalError.from_os_error("cannot write the refused records", run_dir / FAILED_NAME, exc) from exc
    finally:
        failed.discard()
        unmapped.discard()
        shutil.rmtree(work_dir, ignore_errors=True)
    return mapper.result(failed.count, unmapped.count)


def _commit(run_dir: Path, failed: CommittedNdjson, unmapped: CommittedNdjson) -> None:
    failed.commit()
    if unmapped.count:
        unmapped.commit()
    else:
        (run_dir / UNMAPPED_NAME).unlink(missing_ok=True)  # a previous run's, now mapped


# --- the mapping (file work: called in a thread) --------------------------------------------------


def _rejected_lines(rejects: Path, paths: set[str]) -> dict[str, set[int]]:
    """The lines of ``rejects.ndjson`` in the given inputs (those were not sent)."""
    out: dict[str, set[int]] = defaultdict(set)
    if not rejects.exists():
        return out
    with open(rejects, "rb") as f:
        for raw in f:
            with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError):
                obj = orjson.loads(raw)
                if obj["file"] in paths and isinstance(obj["line"], int):
                    out[obj["file"]].add(obj["line"])
    return out


@dataclass(frozen=True)
class _Range:
    """Where one batch's records can be re-read: ``data_path``, in its ``spans``."""

    data_path: Path
    spans: tuple[Span, ...]
    header: bytes


def _spans(batch: BatchState, planned: PlannedBatch | None) -> tuple[Span, ...]:
    """Where a batch's records are in its input: its range, or a retry's planned pieces."""
    if planned is None:
        return (Span(batch.byte_start, batch.byte_end, batch.first_line),)
    return tuple(Span(p.start, p.end, p.first_line) for p in planned.pieces)


class _PlainInput:
    """The batches of a plain input, read where they are."""

    def __init__(self, source: Path, csv: bool) -> None:
        self.source = source
        self.size = source.stat().st_size  # moved or deleted: OSError, before any row is written
        self.header = b""
        if csv:
            with open(source, "rb") as f:
                self.header = read_csv_header(f)

    def range_of(self, batch: BatchState, planned: PlannedBatch | None) -> _Range:
        spans = _spans(batch, planned)
        if self.size < max(s.end for s in spans):
            raise OSError(f"{self.size:,} bytes, shorter than batch {batch.number} (changed since it was read?)")
        return _Range(self.source, spans, planned.header if planned is not None else self.header)

    def release(self, batch: BatchState) -> None:
        pass

    def close(self) -> None:
        pass


class _GzInput:
    """The batches of a ``.gz`` input, in byte order: each one's uncompressed range copied to a
    private spool file, removed once mapped (one sequential decompression for all the batches of
    the file, one batch on disk at a time)."""

    def __init__(self, source: Path, work_dir: Path, csv: bool) -> None:
        self.stream = GzipStream(source)
        self.work_dir, self.csv = work_dir, csv
        self.pos = 0
        self.buf = bytearray(1 << 20)
        self.head = bytearray()  # the start of the file: its CSV header row

    def range_of(self, batch: BatchState, planned: PlannedBatch | None) -> _Range:
        make_private_dir(self.work_dir)
        path = self.work_dir / f"{batch.number}.data"
        spooled: list[Span] = []
        at = 0  # where the next span starts in the spool file
        with open_private(path, "wb") as out:
            for span in _spans(batch, planned):
                if span.start < self.pos:
                    raise OSError(f"{self.stream.name}: batch {batch.number} asked out of order")
                self._copy(span.start, span.end, out)
                spooled.append(Span(at, at + span.end - span.start, span.first_line))
                at = spooled[-1].end
        if planned is not None:
            header = planned.header
        else:
            header = read_csv_header(io.BytesIO(bytes(self.head))) if self.csv else b""
        return _Range(path, tuple(spooled), header)

    def _copy(self, start: int, end: int, out: BinaryIO) -> None:
        """Read the stream up to ``end``, writing what is from ``start`` on to ``out``."""
        buf = self.buf
        while self.pos < end:
            n = self.stream.readinto(memoryview(buf)[: min(len(buf), end - self.pos)])
            if n == 0:
                raise OSError(f"{self.stream.name}: ends before byte {end:,} (changed since it was read?)")
            if len(self.head) < HEAD_BYTES:
                self.head += buf[: min(n, HEAD_BYTES - len(self.head))]
            lo = max(start - self.pos, 0)
            if lo < n:
                out.write(buf[lo:n])
            self.pos += n

    def release(self, batch: BatchState) -> None:
        (self.work_dir / f"{batch.number}.data").unlink(missing_ok=True)

    def close(self) -> None:
        self.stream.close()


class RefusalMapper:
    """Maps the error files of a run's batches, one batch at a time, in input and byte order (see
    ``in_order``): each row to ``failed``, each entry that maps to no source line to ``unmapped``.
    Raises ``OSError`` when a sink cannot write."""

    def __init__(
        self,
        run_dir: Path,
        batches: list[BatchState],
        *,
        csv: bool,
        validated: bool,
        failed: RowSink,
        unmapped: RowSink,
    ) -> None:
        self.run_dir, self.csv, self.validated = run_dir, csv, validated
        self.failed, self.unmapped = failed, unmapped
        self.warnings: list[str] = []
        self._rejected = {
            p: frozenset(v) for p, v in _rejected_lines(run_dir / REJECTS_NAME, {b.path for b in batches}).items()
        }
        self._input: _PlainInput | _GzInput | None = None
        self._input_path: str | None = None
        self._input_problem: str | None = None
        plan = RetryPlan.load(run_dir)  # a retry: its batches are the planned pieces
        self._planned = {p.number: p for p in plan.batches} if plan is not None else {}

    @staticmethod
    def in_order(batches: Iterable[BatchState]) -> list[BatchState]:
        return sorted(batches, key=lambda b: (b.path, b.byte_start, b.number))

    def not_downloaded(self, b: BatchState, why: str) -> None:
        self.warnings.append(
            f"the error file of execution {b.execution_id} (batch {b.number}, {b.path} lines "
            f"{b.first_line}-{b.last_line}) could not be downloaded: {why}; its "
            f"{b.total_failure or 0:,} refused records are not in {FAILED_NAME}"
        )

    def map_batch(self, batch: BatchState, error_file: Path) -> None:
        """Map one batch's error file (batches in ``in_order``)."""
        try:
            reader = self._reader(batch.path)
            planned = self._planned.get(batch.number)
            where = reader.range_of(batch, planned if planned is not None and planned.path == batch.path else None)
        except OSError as exc:  # the input cannot be read again (moved, changed): entries as they came
            self.warnings.append(
                f"{batch.path} could not be read again to map the refusals of batch {batch.number}: {exc}"
            )
            for entry in iter_error_entries(error_file):
                self.unmapped.write(_unmapped_row(batch, entry))
            return
        try:
            self._map(batch, error_file, where)
        finally:
            reader.release(batch)

    def _reader(self, path: str) -> _PlainInput | _GzInput:
        if path != self._input_path:
            self.close()
            self._input_path, self._input_problem = path, None
            try:
                source = Path(path)
                work_dir = self.run_dir / WORK_DIR
                self._input = _GzInput(source, work_dir, self.csv) if is_gzip(source) else _PlainInput(source, self.csv)
            except (OSError, PipelineError) as exc:
                self._input_problem = str(exc)
        if self._input is None:
            raise OSError(self._input_problem or "cannot be read")
        return self._input

    def close(self) -> None:
        if self._input is not None:
            self._input.close()
            self._input = None

    def _source(self, batch: BatchState, where: _Range, skip_blank: bool) -> BatchSource:
        return BatchSource(
            where.data_path,
            0,
            0,
            first_line=batch.first_line,
            header=where.header,
            csv=self.csv,
            rejected=self._rejected.get(batch.path, frozenset()),
            skip_blank=skip_blank,
            spans=where.spans,
        )

    def _map(self, batch: BatchState, error_file: Path, where: _Range) -> None:
        source = self._source(batch, where, self.validated)
        by_line = source.digest() == batch.digest
        if not by_line:
            other = self._source(batch, where, not self.validated)
            if other.digest() == batch.digest:
                source, by_line = other, True
            else:
                self.warnings.append(
                    f"batch {batch.number} ({batch.path} lines {batch.first_line}-{batch.last_line}) does not "
                    "read as it was sent (the input changed since?): its refusals were mapped by their text only"
                )
        mapper = BatchMapper(source, by_line=by_line)
        mapped = 0
        for entry in iter_error_entries(error_file):
            rec = mapper.map(entry)
            if isinstance(rec, SourceRecord):
                self.failed.write(_row(batch, rec, entry))
                mapped += 1
            elif rec is None:
                self.unmapped.write(_unmapped_row(batch, entry))
        if batch.total_failure is not None and mapped != batch.total_failure:
            self.warnings.append(
                f"execution {batch.execution_id} (batch {batch.number}) reports {batch.total_failure:,} failed "
                f"records; its error file maps to {mapped:,} source lines"
            )

    def result(self, mapped: int, unmapped: int) -> RefusalsWritten:
        warnings = list(self.warnings)
        if unmapped:
            warnings.append(
                f"{unmapped:,} entries of the server's error files could not be mapped to a source line: "
                f"kept as they came in {self.run_dir / UNMAPPED_NAME}"
            )
        return RefusalsWritten(mapped, unmapped, warnings)


def _row(batch: BatchState, rec: SourceRecord, entry: ErrorEntry) -> dict[str, Any]:
    reject = Reject.make(batch.path, rec.source_line, entry.reason or NO_REASON, rec.data)
    return reject.as_dict() | {"execution_id": batch.execution_id}


def _unmapped_row(batch: BatchState, entry: ErrorEntry) -> dict[str, Any]:
    return {
        "execution_id": batch.execution_id,
        "file": batch.path,
        "first_line": batch.first_line,
        "last_line": batch.last_line,
        "entry": entry.raw[:4096],
    }

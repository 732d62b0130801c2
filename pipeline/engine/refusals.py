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
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from pipeline import formats
from pipeline.client.api import ApiClient
from pipeline.client.error_file import ErrorEntry, iter_error_entries
from pipeline.engine.refusal_map import SKIPPED, BatchMapper, BatchSource, SourceRecord, read_csv_header
from pipeline.engine.rundir import FAILED_NAME, REJECTS_NAME, UNMAPPED_NAME, make_private_dir, open_private
from pipeline.engine.state import BatchState, RunState
from pipeline.errors import ApiError, LocalError, PipelineError
from pipeline.reading.batch import Reject
from pipeline.reading.gzstream import GzipStream, is_gzip

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


# --- downloads (async) ----------------------------------------------------------------------------


async def download_error_files(
    client: ApiClient, batches: Iterable[BatchState], work_dir: Path
) -> tuple[dict[int, Path], dict[int, str]]:
    """Each batch's error file on disk (private), or why it could not be had."""
    make_private_dir(work_dir)
    files: dict[int, Path] = {}
    problems: dict[int, str] = {}
    for batch in batches:
        assert batch.error_file_uri is not None  # refused_batches keeps those only
        path = work_dir / f"{batch.number}.errors"
        try:
            with open_private(path, "wb") as sink:
                async for chunk in client.download_data_file(batch.error_file_uri):
                    sink.write(chunk)
        except (ApiError, PipelineError, OSError) as exc:
            problems[batch.number] = str(exc)
            continue
        files[batch.number] = path
    return files, problems


async def rebuild_failed_file(client: ApiClient, state: RunState, run_dir: Path, *, validated: bool) -> RefusalsWritten:
    """Download every error file the run's executions name and rebuild ``failed.ndjson``."""
    batches = refused_batches(state)
    if not batches:
        return RefusalsWritten()
    work_dir = run_dir / WORK_DIR
    try:
        files, problems = await download_error_files(client, batches, work_dir)
        csv = state.document_import.get("mime_type") == formats.CSV
        return await asyncio.to_thread(
            write_failed_file, run_dir, batches, files, problems, csv=csv, validated=validated
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


# --- the mapping (sync, in a thread) --------------------------------------------------------------


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
    """Where one batch's records can be re-read: ``data_path`` from ``start`` to ``end``."""

    batch: BatchState
    data_path: Path
    start: int
    end: int
    header: bytes


def _gz_ranges(source: Path, batches: list[BatchState], work_dir: Path, csv: bool) -> Iterator[_Range]:
    """The uncompressed range of each batch of a ``.gz`` input, in order, copied to a private spool
    file that is removed once the caller has mapped it: one sequential decompression for all the
    batches of the file, one batch on disk at a time."""
    buf = bytearray(1 << 20)
    head = bytearray()  # the start of the file: its CSV header row
    with GzipStream(source) as stream:
        pos = 0
        for batch in sorted(batches, key=lambda b: b.byte_start):
            path = work_dir / f"{batch.number}.data"
            try:
                with open_private(path, "wb") as out:
                    pos = _copy_range(stream, buf, pos, batch.byte_start, batch.byte_end, out, head)
                header = read_csv_header(io.BytesIO(bytes(head))) if csv else b""
                yield _Range(batch, path, 0, batch.byte_end - batch.byte_start, header)
            finally:
                path.unlink(missing_ok=True)


def _copy_range(
    stream: GzipStream, buf: bytearray, pos: int, start: int, end: int, out: BinaryIO, head: bytearray
) -> int:
    """Read ``stream`` (at ``pos``) up to ``end``, writing what is from ``start`` on to ``out``."""
    while pos < end:
        n = stream.readinto(memoryview(buf)[: min(len(buf), end - pos)])
        if n == 0:
            raise OSError(f"{stream.name}: ends before byte {end:,} (changed since it was read?)")
        if len(head) < HEAD_BYTES:
            head += buf[: min(n, HEAD_BYTES - len(head))]
        lo = max(start - pos, 0)
        if lo < n:
            out.write(buf[lo:n])
        pos += n
    return pos


def _plain_ranges(source: Path, batches: list[BatchState], csv: bool) -> Iterator[_Range]:
    header = _plain_header(source, csv)
    for batch in batches:
        yield _Range(batch, source, batch.byte_start, batch.byte_end, header)


def _plain_header(source: Path, csv: bool) -> bytes:
    if not csv:
        return b""
    with open(source, "rb") as f:
        return read_csv_header(f)


def write_failed_file(
    run_dir: Path,
    batches: list[BatchState],
    files: dict[int, Path],
    problems: dict[int, str],
    *,
    csv: bool,
    validated: bool,
) -> RefusalsWritten:
    """Map every downloaded error file and write ``failed.ndjson`` (and ``failed_unmapped.ndjson``)."""
    done = RefusalsWritten()
    failed = CommittedNdjson(run_dir / FAILED_NAME)
    unmapped = CommittedNdjson(run_dir / UNMAPPED_NAME)
    try:
        map_refusals(
            run_dir, batches, files, problems, csv=csv, validated=validated, failed=failed, unmapped=unmapped, done=done
        )
        failed.commit()
        if unmapped.count:
            unmapped.commit()
        else:
            unmapped.discard()
            with contextlib.suppress(OSError):
                (run_dir / UNMAPPED_NAME).unlink()
    except OSError as exc:
        failed.discard()
        unmapped.discard()
        raise LocalError.from_os_error("cannot write the refused records", run_dir / FAILED_NAME, exc) from exc
    except BaseException:
        failed.discard()
        unmapped.discard()
        raise
    done.mapped, done.unmapped = failed.count, unmapped.count
    if done.unmapped:
        done.warnings.append(
            f"{done.unmapped:,} entries of the server's error files could not be mapped to a source line: "
            f"kept as they came in {run_dir / UNMAPPED_NAME}"
        )
    return done


def map_refusals(
    run_dir: Path,
    batches: list[BatchState],
    files: dict[int, Path],
    problems: dict[int, str],
    *,
    csv: bool,
    validated: bool,
    failed: RowSink,
    unmapped: RowSink,
    done: RefusalsWritten,
) -> None:
    """Map the downloaded error files of ``batches``: each row to ``failed``, each entry that maps to
    no source line to ``unmapped``; warnings to ``done``. Raises ``OSError`` when a sink cannot write."""
    rejected = _rejected_lines(run_dir / REJECTS_NAME, {b.path for b in batches})
    by_path: dict[str, list[BatchState]] = defaultdict(list)
    for b in batches:
        by_path[b.path].append(b)
    for path, group in by_path.items():
        _map_file(
            Path(path),
            group,
            files,
            problems,
            rejected.get(path, set()),
            run_dir,
            csv,
            validated,
            failed,
            unmapped,
            done,
        )


def _map_file(
    source: Path,
    batches: list[BatchState],
    files: dict[int, Path],
    problems: dict[int, str],
    rejected: set[int],
    run_dir: Path,
    csv: bool,
    validated: bool,
    failed: RowSink,
    unmapped: RowSink,
    done: RefusalsWritten,
) -> None:
    """The refusals of the batches of one input."""
    wanted = [b for b in batches if b.number in files]
    for b in batches:
        if b.number in problems:
            done.warnings.append(
                f"the error file of execution {b.execution_id} (batch {b.number}, {b.path} lines "
                f"{b.first_line}-{b.last_line}) could not be downloaded: {problems[b.number]}; its "
                f"{b.total_failure:,} refused records are not in {FAILED_NAME}"
            )
    if not wanted:
        return
    ranges = (
        _gz_ranges(source, wanted, run_dir / WORK_DIR, csv) if is_gzip(source) else _plain_ranges(source, wanted, csv)
    )
    frozen = frozenset(rejected)
    left = {b.number: b for b in wanted}
    try:
        for r in ranges:

            def source_of(skip_blank: bool, r: _Range = r) -> BatchSource:
                return BatchSource(
                    r.data_path,
                    r.start,
                    r.end,
                    first_line=r.batch.first_line,
                    header=r.header,
                    csv=csv,
                    rejected=frozen,
                    skip_blank=skip_blank,
                )

            _map_batch(r.batch, files[r.batch.number], source_of, validated, failed, unmapped, done)
            del left[r.batch.number]
    except OSError as exc:  # the input cannot be read again (moved, changed): its entries as they came
        for b in left.values():
            done.warnings.append(f"{source} could not be read again to map the refusals of batch {b.number}: {exc}")
            _keep_unmapped(b, iter_error_entries(files[b.number]), unmapped)


def _map_batch(
    batch: BatchState,
    error_file: Path,
    source_of: Callable[[bool], BatchSource],
    validated: bool,
    failed: RowSink,
    unmapped: RowSink,
    done: RefusalsWritten,
) -> None:
    source = source_of(validated)
    by_line = source.digest() == batch.digest
    if not by_line:
        other = source_of(not validated)
        if other.digest() == batch.digest:
            source, by_line = other, True
        else:
            done.warnings.append(
                f"batch {batch.number} ({batch.path} lines {batch.first_line}-{batch.last_line}) does not read "
                "as it was sent (the input changed since?): its refusals were mapped by their text only"
            )
    mapper = BatchMapper(source, by_line=by_line)
    mapped = 0
    for entry in iter_error_entries(error_file):
        rec = mapper.map(entry)
        if rec == SKIPPED:
            continue
        if isinstance(rec, SourceRecord):
            failed.write(_row(batch, rec, entry))
            mapped += 1
        else:
            unmapped.write(_unmapped_row(batch, entry))
    if batch.total_failure is not None and mapped != batch.total_failure:
        done.warnings.append(
            f"execution {batch.execution_id} (batch {batch.number}) reports {batch.total_failure:,} failed records; "
            f"its error file maps to {mapped:,} source lines"
        )


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


def _keep_unmapped(batch: BatchState, entries: Iterable[ErrorEntry], unmapped: RowSink) -> None:
    for entry in entries:
        unmapped.write(_unmapped_row(batch, entry))

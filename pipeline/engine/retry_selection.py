"""Which records of a finished run a retry sends again, found again in the run's inputs.

Apart from ``retry_plan`` (the plan, ``retry.json``, and what is taken: see its docstring) because
it is the search: each input opened again and checked against what the run journaled of it, each
batch not delivered found again from its first line and byte offset (or, for a retry's batches, the
pieces of its plan) and proved by its digest, each refused record by its line and kept text, each
fixed reject read and checked again; then the records taken, once each, cut into batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from pipeline import formats
from pipeline.config import Config
from pipeline.engine.journal import JournaledRun
from pipeline.engine.rundir import FAILED_NAME, REJECTS_NAME
from pipeline.engine.state import UPLOAD_FAILED, BatchState, RunState
from pipeline.errors import InputError
from pipeline.reading.batch import Reject
from pipeline.reading.csvscan import grammar_for, strip_line_end
from pipeline.reading.planned_batch import Piece, PlannedBatch, body_digest_of, pack
from pipeline.reading.selection import (
    BLANK,
    InputStart,
    LineLocator,
    Record,
    count_lines,
    input_start,
    recheck,
    record_at,
    same_text,
    scan_batch,
    scan_lines,
)
from pipeline.reading.source_view import SourceView

SKIPPED_MARK = "file skipped"  # the reason of the one reject of a file skipped whole
OPEN_QUOTE_MARK = "opens a quote that is never closed"


class PriorPlan(Protocol):
    """What the selection reads of the plan of a run that is itself a retry (a ``RetryPlan``)."""

    batches: list[PlannedBatch]
    line_counts: dict[str, int]


def not_delivered(batch: BatchState) -> bool:
    """The batch's records did not get in at all: refused upload, or an execution that failed."""
    if batch.upload == UPLOAD_FAILED:
        return not batch.ambiguous
    return formats.is_terminal(batch.status) and not formats.is_success(batch.status)


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of an NDJSON file of records (rejects, failed), in order; none if it is missing."""
    if not path.is_file():
        return
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise InputError(path, f"line {n} is not JSON") from None
            if isinstance(row, dict) and "file" in row and isinstance(row.get("line"), int):
                yield row


def _position(row: dict[str, Any]) -> tuple[str, int]:
    return str(row["file"]), int(row["line"])


class _Input:
    """One input of the run being retried: its view, header, line anchors and what is chosen of it."""

    def __init__(self, path: str, view: SourceView, start: InputStart, anchors: list[tuple[int, int]]) -> None:
        self.path, self.view, self.start = path, view, start
        self.locator = LineLocator(view, [(1, 0), (start.line, start.offset), *anchors])
        self.pieces: list[Piece] = []
        self.lines: set[int] = set()  # lines taken (first line of each record)
        self.checked_lines = False  # its line count was checked (an input fixed in place)
        self.moved = False  # its size changed since the run: offsets are found again by line

    def take(self, pieces: list[Piece]) -> None:
        fresh = [p for p in pieces if p.first_line not in self.lines]
        self.lines.update(p.first_line for p in fresh)
        self.pieces.extend(fresh)


class RetrySelection:
    """The records of one finished run to send again, as planned batches (``prior``: the run's plan,
    when it is itself a retry). What is chosen ends in ``batches``, ``rejects`` (still bad once read
    again), ``selected`` (records by kind), ``warnings``, ``line_counts``, ``rejects_left``."""

    def __init__(
        self,
        run_dir: Path,
        journaled: JournaledRun,
        state: RunState,
        config: Config,
        prior: PriorPlan | None,
    ) -> None:
        self.run_dir, self.state, self.config, self.prior = run_dir, state, config, prior
        self.batches: list[PlannedBatch] = []
        self.rejects: list[Reject] = []
        self.selected: dict[str, int] = {"not_delivered": 0, "refused": 0, "rejected": 0}
        self.warnings: list[str] = []
        self.line_counts: dict[str, int] = {}
        self.rejects_left = 0
        self.recorded = {str(i["path"]): i for i in journaled.started["inputs"]}
        self.is_csv = config.import_.mime_type == formats.CSV
        self.grammar = grammar_for(self.is_csv)
        self.inputs: dict[str, _Input] = {}
        self.prior_batches = {b.number: b for b in prior.batches} if prior else {}
        self.rejected_lines: dict[str, set[int]] = {}
        self._rejected = False
        for row in read_rows(run_dir / REJECTS_NAME):
            self.rejected_lines.setdefault(str(row["file"]), set()).add(int(row["line"]))

    # --- inputs ---------------------------------------------------------------------------------

    def _input(self, path: str, *, may_have_changed: bool = False) -> _Input:
        known = self.inputs.get(path)
        if known is not None:
            return known
        recorded = self.recorded.get(path)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            where = "" if Path(path).is_absolute() else " (a path relative to where the run started: retry from there)"
            raise InputError(path, f"cannot retry: the input is gone ({exc.strerror}){where}") from None
        same_size = recorded is not None and size == recorded.get("size")
        if not same_size and not may_have_changed:
            was = f"{recorded['size']:,} bytes" if recorded else "not an input of the run"
            raise InputError(
                path,
                f"cannot retry: the input changed since the run ({was}, now {size:,}): the records to send "
                "again can no longer be found in it",
            )
        view = SourceView(Path(path))
        start = input_start(view, is_csv=self.is_csv)
        anchors = self._anchors(path) if same_size else []
        known = self.inputs[path] = _Input(path, view, start, anchors)
        known.moved = not same_size
        return known

    def _anchors(self, path: str) -> list[tuple[int, int]]:
        """Known record starts: each batch's first line (each piece's, for a retry's batches)."""
        if self.prior is not None:
            return [(p.first_line, p.start) for b in self.prior.batches if b.path == path for p in b.pieces]
        return [(b.first_line, b.byte_start) for b in self.state.batches.values() if b.path == path]

    @property
    def limit(self) -> int:
        return self.config.batch.max_bytes

    # --- the selection --------------------------------------------------------------------------

    def select(self, *, rejected: bool) -> None:
        self._rejected = rejected
        try:
            for batch in sorted(self.state.batches.values(), key=lambda b: b.number):
                if not_delivered(batch):
                    self._take_batch(batch)
            self._take_refused()
            self._check_refusals_listed()
            if rejected:
                self._take_rejected()
            else:
                self.rejects_left = sum(len(lines) for lines in self.rejected_lines.values())
            self._plan_batches()
        finally:
            for item in self.inputs.values():
                item.view.close()

    def _take_batch(self, batch: BatchState) -> None:
        item = self._input(batch.path, may_have_changed=self._may_change(batch.path))
        prior = self.prior_batches.get(batch.number)
        if prior is not None:
            pieces = self._relocated(item, prior.pieces)
            digest = body_digest_of(item.view, item.start.header, pieces)
        else:
            pieces, digest = self._scan(item, batch)
        if digest != batch.digest:
            raise InputError(
                batch.path,
                f"cannot retry: the input changed since the run: batch {batch.number} (lines {batch.first_line}-"
                f"{batch.last_line}) no longer holds the same records",
            )
        item.take(pieces)
        self.selected["not_delivered"] += sum(p.records for p in pieces)

    def _relocated(self, item: _Input, pieces: tuple[Piece, ...]) -> list[Piece]:
        """A retry's pieces where their first lines are now (moved when records before them were
        fixed in place; the digest then says whether they still hold the same records)."""
        if not item.moved:
            return list(pieces)
        out = []
        for p in pieces:
            start = item.locator.offset_of(p.first_line)
            out.append(Piece(start, start + p.size, p.first_line, p.last_line, p.records))
        return out

    def _may_change(self, path: str) -> bool:
        """An input may differ from the run's only with ``--rejected``, where the user fixed records in
        place (its batches' digests and, for NDJSON, its line count still prove the rest in place)."""
        return self._rejected

    def _scan(self, item: _Input, batch: BatchState) -> tuple[list[Piece], str]:
        """The pieces of a batch of a run over whole inputs (see :func:`scan_batch`); blank lines
        were left out when the run validated (then they are neither sent nor rejected)."""
        gaps = self.rejected_lines.get(batch.path, set())
        start = item.locator.offset_of(batch.first_line)
        result: tuple[list[Piece], str] = ([], "")
        for drop_blank in dict.fromkeys([self.config.batch.validate, not self.config.batch.validate]):
            if not self.is_csv:  # every line a record: the fast scan
                result = scan_lines(
                    item.view,
                    start=start,
                    first_line=batch.first_line,
                    last_line=batch.last_line,
                    gaps=gaps,
                    drop_blank=drop_blank,
                    limit=self.limit,
                )
                if result[1] == batch.digest:
                    break
                continue

            def is_gap(rec: Record, drop_blank: bool = drop_blank) -> bool:
                return rec.line in gaps or (drop_blank and not strip_line_end(rec.raw).strip())

            result = scan_batch(
                item.view,
                start=start,
                first_line=batch.first_line,
                last_line=batch.last_line,
                header=item.start.header,
                grammar=self.grammar,
                is_gap=is_gap,
                limit=self.limit,
            )
            if result[1] == batch.digest:
                break
        return result

    def _batch_of(self, row: dict[str, Any]) -> BatchState | None:
        execution_id = row.get("execution_id")
        path, line = str(row["file"]), int(row["line"])
        for batch in self.state.batches.values():
            if execution_id is not None and batch.execution_id == str(execution_id):
                return batch
        for batch in self.state.batches.values():
            if batch.path == path and batch.first_line <= line <= batch.last_line and batch.execution_id:
                return batch
        return None

    def _take_refused(self) -> None:
        for row in sorted(read_rows(self.run_dir / FAILED_NAME), key=_position):
            path, line = str(row["file"]), int(row["line"])
            batch = self._batch_of(row)
            if batch is None or batch.path != path:
                self._warn(f"{path}:{line}: refused by the server, but in no batch of the run: not sent again")
                continue
            if not_delivered(batch) or not formats.is_success(batch.status):
                continue  # the whole batch is sent again (or its end is not known: not ours to send)
            item = self._input(path, may_have_changed=self._may_change(path))
            if line in item.lines:
                continue  # listed twice: sent (and counted) once
            rec = record_at(item.locator, line, self.grammar, self.limit)
            if same_text(rec.raw, row.get("record")) and self._in_batch(rec, batch):
                item.take([Piece.of(rec)])
                self.selected["refused"] += 1
            elif self._rejected and self._in_batch(rec, batch):  # fixed in place: checked again
                self._take_fixed(item, rec, "refused")
            else:
                raise InputError(
                    path,
                    f"cannot retry: line {line} no longer holds the record the server refused in batch "
                    f"{batch.number} (the input changed since the run? fixed records need --rejected)",
                )

    def _in_batch(self, rec: Record, batch: BatchState) -> bool:
        if rec.line < batch.first_line or rec.line + rec.lines - 1 > batch.last_line:
            return False
        prior = self.prior_batches.get(batch.number)
        if prior is not None:
            return any(p.start <= rec.start and rec.end <= p.end for p in prior.pieces)
        return True

    def _take_rejected(self) -> None:
        for row in sorted(read_rows(self.run_dir / REJECTS_NAME), key=_position):
            path, line, reason = str(row["file"]), int(row["line"]), str(row.get("reason", ""))
            if SKIPPED_MARK in reason or OPEN_QUOTE_MARK in reason:
                self._warn(f"{path}: {reason}: not retried (fix the file, then run it on its own)")
                continue
            item = self._input(path, may_have_changed=True)
            if line in item.lines:
                continue
            rec = record_at(item.locator, line, self.grammar, self.limit - len(item.start.header))
            self._take_fixed(item, rec, "rejected")

    def _take_fixed(self, item: _Input, rec: Record, kind: str) -> None:
        """A record the user fixed in place: checked again; still bad, it is rejected again."""
        self._check_line_count(item)
        why = recheck(
            rec,
            document_type=self.config.import_.document_type,
            columns=item.start.columns,
            limit=self.limit - len(item.start.header),
        )
        if why is None:
            item.take([Piece.of(rec)])
            self.selected[kind] += 1
        elif why != BLANK:
            self.rejects.append(Reject.make(item.path, rec.line, why, rec.raw, rec.end - rec.start))

    def _check_line_count(self, item: _Input) -> None:
        """An NDJSON input fixed in place still has its lines where they were: as many lines as
        the run read (its records, rejects and blank lines), or its line numbers name other records."""
        expected = self._line_count(item.path)
        if expected is None or item.checked_lines or not self._may_change(item.path):
            return
        now = count_lines(item.view)
        if now != expected:
            raise InputError(
                item.path,
                f"cannot retry: it has {now:,} lines, the run read {expected:,}: fix records in place, one "
                "record per line, without adding or removing lines (their line numbers name them)",
            )
        item.checked_lines = True

    def _line_count(self, path: str) -> int | None:
        """The physical lines of an NDJSON input as the first run read it (None: not known, CSV)."""
        if self.prior is not None:
            return self.prior.line_counts.get(path)
        counts = self.state.files.get(path)
        if self.is_csv or counts is None:
            return None
        return counts.records + counts.rejected + counts.blank_lines

    def _check_refusals_listed(self) -> None:
        """Records the server refused that no ``failed.ndjson`` row names are not sent again: say so."""
        refused = sum(b.total_failure or 0 for b in self.state.batches.values() if formats.is_success(b.status))
        listed = self.selected["refused"]
        if refused > listed:
            where = "is missing" if not (self.run_dir / FAILED_NAME).is_file() else f"lists {listed:,}"
            self._warn(
                f"the server refused {refused:,} records but {FAILED_NAME} {where}: only the records it lists "
                "are sent again"
            )

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # --- batches --------------------------------------------------------------------------------

    def _plan_batches(self) -> None:
        order = {str(p): n for n, p in enumerate(self.recorded)}
        number = 0
        for item in sorted(self.inputs.values(), key=lambda i: order.get(i.path, len(order))):
            lines = self._line_count(item.path)
            if lines is not None:
                self.line_counts[item.path] = lines
            cut = pack(
                item.path,
                item.start.header,
                item.pieces,
                max_bytes=self.config.batch.max_bytes,
                max_lines=self.config.batch.max_lines,
            )
            for pieces in cut:
                number += 1
                digest = body_digest_of(item.view, item.start.header, pieces)
                self.batches.append(PlannedBatch(number, item.path, item.start.header, tuple(pieces), digest))

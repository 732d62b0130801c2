"""The reading stage of one run: the reader, in a thread, feeding the upload feed.

Apart from ``stages`` because it is the one stage that runs off the loop: it plans the batch
targets (journaled before the first batch is read, or the journaled ones on a resume), runs the
reader in a thread, hands each batch to the loop when the feed has room, keeps the reading error
budget, and, on a resume, skips the batches that have their execution and sends those that may
have one to be settled by name first. ``Stages`` wires it to the feed, the settler and the stop request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.engine.budget import ReadingBudget, parse_max_errors
from pipeline.engine.input_checks import InputChangedError, check_batch_unchanged, check_unchanged_input
from pipeline.engine.platform_profile import fitted_plan
from pipeline.engine.pool import UploadFeed
from pipeline.engine.recorder import Recorder
from pipeline.engine.rundir import REJECTS_NAME, RejectsFile, make_private_dir
from pipeline.engine.settle import Settler
from pipeline.engine.state import UPLOADED, UPLOADING, RunState
from pipeline.errors import InputError
from pipeline.reading.batch import Reject, is_file_skip
from pipeline.reading.inputs import STDIN_RESUME_NOTE, rereadable
from pipeline.reading.reader import Batch, BatchReader
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.selection_reader import BatchSource, ReaderFactory
from pipeline.reading.sizing import (
    LEGACY_MIN_BATCHES,
    MIN_BATCHES,
    BatchSizes,
    plan_sizes,
    small_files_note,
    total_input_bytes,
)
from pipeline.reading.sources import Input


class Handled(Enum):
    """What a resumed run does with a batch the reader meets again."""

    NO = "send it"
    DONE = "it has an execution"
    UNSETTLED = "it may have one: settle it by name"


class ReadingStage:
    """Reads the run's inputs into the upload feed (see the module docstring).

    ``make_reader``: the batch source (``None``: the inputs read whole; a retry reads its plan's
    batches); ``on_unsettled``: a batch met again on resume that may have its execution (called on
    the loop); ``settler``: where a resume that cannot read its input again (stdin) settles what it
    sent; ``stop_requested``, ``stop_flag``: the run's stop request, on the loop and for the thread."""

    def __init__(
        self,
        *,
        config: Config,
        state: RunState,
        record: Recorder,
        inputs: list[Input],
        run_dir: Path,
        stop_requested: asyncio.Event,
        stop_flag: threading.Event,
        fingerprints: dict[str, dict[str, Any]],
        settler: Settler,
        on_unsettled: Callable[[Batch], None],
        reader_workers: int | None,
        make_reader: ReaderFactory | None,
        resumed: bool,
    ) -> None:
        self.config, self.state, self.record, self.inputs = config, state, record, inputs
        self.run_dir, self._fingerprints = run_dir, fingerprints
        self._stop_requested, self._stop_flag = stop_requested, stop_flag  # the run's ``Stop``
        self._settler, self._on_unsettled = settler, on_unsettled
        self._reader_workers, self._make_reader, self.resumed = reader_workers, make_reader, resumed
        self._loop = asyncio.get_running_loop()
        self.budget = ReadingBudget(parse_max_errors(config.batch.max_errors), None)  # set by read

    def _batch_plan(self) -> BatchSizes:
        """The batch targets: the journaled ones on a resume, else planned (and journaled before the
        first batch is read). A resume of a journal from before the plan was journaled, with
        batches in it, re-plans with that time's constants, so it cuts the batches it cut then."""
        journaled = BatchSizes.from_description(self.state.batch_plan)
        if journaled is not None:
            return journaled
        old_journal = bool(self.state.batches) or self.state.reading_done
        total = total_input_bytes(self.inputs)
        plan = plan_sizes(
            total,
            max_bytes=self.config.batch.max_bytes,
            concurrency=self.config.upload.concurrency,
            sizing=self.config.batch.sizing,
            min_batches=LEGACY_MIN_BATCHES if old_journal else MIN_BATCHES,
        )
        if self._make_reader is not None:  # a retry's batches are planned by its own plan
            return plan
        learned = None if old_journal else fitted_plan(self.config, total, plan)
        if learned is not None:
            plan = learned.sizes
        self.record.batch_plan(plan.describe(), learned.describe() if learned else None)
        note = small_files_note(self.inputs, plan, total)
        if note is not None:
            self.record.warn(note)
        return plan

    async def read(self, feed: UploadFeed) -> None:
        """Run the reader in a thread (it is CPU and disk work) feeding the bounded hand-off."""
        if self.state.nothing_to_send():  # a resume of a run whose every batch has its execution
            feed.reading_finished()
            return
        if self.resumed and not rereadable(self.inputs):  # stdin: settle what was sent, read nothing
            self._settle_without_reading()
            feed.reading_finished()
            return
        rejects = RejectsFile(self.run_dir / REJECTS_NAME)
        options = ReaderOptions(
            document_type=self.config.import_.document_type,
            mime_type=self.config.import_.mime_type,
            max_bytes=self.config.batch.max_bytes,
            sizes=self._batch_plan(),
            max_lines=self.config.batch.max_lines,
            validate=self.config.batch.validate,
            spool_dir=make_private_dir(self.run_dir / "spool"),
            **({"workers": self._reader_workers} if self._reader_workers is not None else {}),
        )
        budget = self.budget = ReadingBudget(
            parse_max_errors(self.config.batch.max_errors), total_input_bytes(self.inputs)
        )

        def on_reject(reject: Reject) -> None:
            rejects.write(reject)
            if not is_file_skip(reject.reason):  # a file skipped whole is not a rejected record
                budget.rejected()

        reader: BatchSource
        if self._make_reader is not None:
            reader = self._make_reader(options, on_reject)
        else:
            reader = BatchReader(self.inputs, options, on_reject=on_reject)
        keep_old_rejects = self.state.reading_done  # a resume re-reads; keep the old list until it is whole
        try:
            try:
                await asyncio.to_thread(self._read_batches, reader, feed)
            except InputChangedError:
                raise
            except InputError as exc:  # e.g. an unreadable input: what was read is sent, the rest is not
                self.record.read_failed(exc)
            if budget.exceeded() and self.state.too_many_errors:  # stopped sending: what was read is kept
                rejects.commit()
                self.record.reading_finished(reader.stats, rejects)  # the counts so far (resume reads again)
                self.record.warn(self.state.too_many_errors)
            elif not self._stop_requested.is_set():
                for path in self.inputs:  # a file still being written: what was read is not all of it
                    check_unchanged_input(self._fingerprints, path)
                rejects.commit()
                self.record.reading_finished(reader.stats, rejects)
            elif not keep_old_rejects:
                rejects.commit()  # a first run stopped early: the rejects found so far
        finally:
            rejects.close()
            feed.reading_finished()

    def _settle_without_reading(self) -> None:
        """A resume whose input cannot be read again (stdin): what it can do, and says what it cannot."""
        self.record.warn(STDIN_RESUME_NOTE)
        for state in sorted(self.state.batches.values(), key=lambda b: b.number):
            if state.upload == UPLOADING or state.ambiguous:
                self._settler.add(None, state)

    def _read_batches(self, reader: BatchSource, feed: UploadFeed) -> None:
        """In the reader thread: hand each batch to the loop, waiting for a credit while the feed is full."""
        loop = self._loop
        offsets = _input_offsets(self.inputs)
        for batch in reader:
            if self._stop_flag.is_set():
                batch.discard_spool()
                return
            self.budget.batch_read(batch.records, offsets.get(batch.source, 0) + batch.byte_end)
            if self.budget.exceeded():  # over the error budget: nothing more is sent
                batch.discard_spool()
                self.state.too_many_errors = self.budget.message()
                return
            handled = self._already_handled(batch)
            if handled is Handled.DONE:
                batch.discard_spool()
                loop.call_soon_threadsafe(self.record.batch_skipped, batch)
                continue
            if handled is Handled.UNSETTLED:  # resume: look it up by name before sending it again
                loop.call_soon_threadsafe(self._on_unsettled, batch)
                continue
            while not feed.credits.acquire(timeout=0.1):
                if self._stop_flag.is_set():
                    batch.discard_spool()
                    return
            loop.call_soon_threadsafe(self.record.batch_read, batch)
            loop.call_soon_threadsafe(feed.put, batch)

    def _already_handled(self, batch: Batch) -> Handled:
        """On resume: this batch has an execution, or may have one (then it is settled by name first)."""
        prior = self.state.batches.get(batch.number)
        if prior is None:
            return Handled.NO
        check_batch_unchanged(prior, batch)
        if prior.upload == UPLOADED:
            return Handled.DONE
        if prior.upload == UPLOADING or prior.ambiguous:
            return Handled.UNSETTLED
        if prior.resent:  # due to be sent again when the run stopped: the late original may be listed by now
            return Handled.UNSETTLED
        return Handled.NO


def _input_offsets(inputs: Sequence[Input]) -> dict[Input, int]:
    """Where each input starts in the bytes of all the inputs (sizes on disk or in the store: for the
    budget's estimate; stdin counts for nothing)."""
    offsets: dict[Input, int] = {}
    at = 0
    for source in inputs:
        offsets[source] = at
        if isinstance(source, Path):
            try:
                at += source.stat().st_size
            except OSError:
                pass
        else:
            at += getattr(source, "size", None) or 0
    return offsets

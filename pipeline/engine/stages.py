"""The stages of one run, wired: reader thread -> upload feed -> upload workers -> settler ->
reconciliation -> poller.

``Stages`` is built once the run's journal, recorder, client and document import are ready
(``runner.Run`` does that), so every collaborator is there from construction on. It decides when
the streaming part of a run is over: reading done, no upload in flight, nothing left to settle,
every execution terminal (or the poll timeout), or a stop request.

``upload.concurrency`` upload workers run (the most uploads in flight); the client's
``UploadLimiter`` (``Stages.limiter``, built by the runner) decides how many attempts are in flight
at once. A stop request closes it with the feed: a worker waiting for a slot sends nothing more.

The reader thread is ``reading_stage.ReadingStage``; the checks that an input still is what the run
read, before each upload among them, are ``input_checks``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pipeline import formats
from pipeline.client.api import LOOKUP_PAGE_SIZE, ApiClient
from pipeline.client.limiter import UploadLimiter
from pipeline.config import Config
from pipeline.engine.events import Event
from pipeline.engine.input_checks import check_source
from pipeline.engine.platform_profile import profile_of
from pipeline.engine.poll import Poller
from pipeline.engine.poll_plan import PollCadence
from pipeline.engine.pool import SPOOLED_READ_AHEAD, UploadFeed, UploadTarget, spooled, upload_worker
from pipeline.engine.reading_stage import ReadingStage
from pipeline.engine.reconcile import reconcile
from pipeline.engine.recorder import Recorder
from pipeline.engine.settle import Settler, Unsettled
from pipeline.engine.state import UPLOADED, RunState
from pipeline.engine.throughput import throughput_of
from pipeline.errors import ServiceError
from pipeline.reading.platform_model import PlatformProfile
from pipeline.reading.reader import Batch
from pipeline.reading.selection_reader import ReaderFactory
from pipeline.reading.sources import Input

MAX_RESENDS = 10  # a batch is sent again after at most this many settle windows without a sighting


@dataclass
class Stop:
    """Stop requests: the first stops reading and waits for in-flight uploads; the second abandons."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    abandon: asyncio.Event = field(default_factory=asyncio.Event)
    thread_flag: threading.Event = field(default_factory=threading.Event)
    #: told at once, in the signal handler's turn of the loop (before any worker takes another batch)
    on_request: list[Callable[[], None]] = field(default_factory=list)

    def request(self) -> None:
        if self.requested.is_set():
            self.abandon.set()
        self.requested.set()
        self.thread_flag.set()
        for callback in self.on_request:
            callback()


class Stages:
    """The streaming part of one run (see the module docstring)."""

    def __init__(
        self,
        *,
        config: Config,
        state: RunState,
        record: Recorder,
        client: ApiClient,
        inputs: list[Input],
        run_dir: Path,
        stop: Stop,
        fingerprints: dict[str, dict[str, Any]],
        emit: Callable[..., None],
        reader_workers: int | None,
        make_reader: ReaderFactory | None = None,
        resumed: bool = False,
    ) -> None:
        self.config, self.state, self.record, self.client = config, state, record, client
        self.inputs, self.run_dir, self.stop = inputs, run_dir, stop
        self._fingerprints, self.emit = fingerprints, emit
        self.import_id = str(state.document_import.get("id") or "")  # none: nothing to send (runner)
        #: the adaptive limit on upload attempts in flight (``snapshot()``: limit, timeline, 429s,
        #: pauses); ``None`` when the client has none (every worker's attempt goes at once)
        self.limiter: UploadLimiter | None = client.limiter
        if self.limiter is not None:
            self.limiter.on_limit = self._limit_changed
        cfg = config
        self.poller = Poller(
            client,
            cfg.import_.datamart_id,
            self.import_id,
            cadence=PollCadence(interval_s=cfg.poll.interval_s, max_interval_s=cfg.poll.max_interval_s),
            timeout_s=cfg.poll.timeout_s,
            on_status=record.execution_status,
            on_poll_error=lambda key, exc: emit(Event.POLL_ERROR, batch=key, error=str(exc)),
            on_warning=self._warn,
            on_listing_error=lambda exc: emit(Event.LOOKUP_FAILED, error=f"a listing of the executions failed: {exc}"),
        )
        self.settler = self._settler(client)
        read_ahead = SPOOLED_READ_AHEAD if spooled(inputs) else cfg.upload.concurrency
        self.feed = UploadFeed(read_ahead, settling=lambda: self.settler.busy)
        self.reading = ReadingStage(
            config=config,
            state=state,
            record=record,
            inputs=inputs,
            run_dir=run_dir,
            stop_requested=stop.requested,
            stop_flag=stop.thread_flag,
            fingerprints=fingerprints,
            settler=self.settler,
            on_unsettled=self._on_unsettled,
            reader_workers=reader_workers,
            make_reader=make_reader,  # None: the inputs read whole (a retry reads its plan's batches)
            resumed=resumed,
        )
        record.track = self._track
        record.saw_answer = self.settler.saw_upload_answer

    async def run(self) -> None:
        """Read, upload, settle, reconcile and poll until the run is over or stopped."""
        client, feed = self.client, self.feed
        cfg = self.config
        no_more_executions = asyncio.Event()
        self._settle_prior_uploads()
        target = UploadTarget(
            datamart_id=cfg.import_.datamart_id,
            import_id=self.import_id,
            mime_type=cfg.import_.mime_type,
            form=cfg.upload.body,
            filename_of=self.record.filename,
            check_source=partial(check_source, self._fingerprints),
        )
        workers = [
            asyncio.create_task(upload_worker(client, target, feed, self.record, self._on_unsettled))
            for _ in range(cfg.upload.concurrency)
        ]
        poller_task = asyncio.create_task(self.poller.run(no_more_executions))
        settler_task = asyncio.create_task(self.settler.run())
        reader_task = asyncio.create_task(self.reading.read(feed))
        tasks = [reader_task, *workers, poller_task, settler_task]
        stopping = asyncio.ensure_future(self.stop.requested.wait())
        self.stop.on_request.append(self._stop_sending)
        if self.stop.requested.is_set():  # a stop while the run was starting
            self._stop_sending()
        try:
            uploads = asyncio.gather(reader_task, *workers)
            await _first_of(uploads, self.stop.abandon.wait(), settler_task)
            if settler_task.done():
                settler_task.result()  # a settler that crashed fails the run here
            if uploads.done():
                uploads.result()  # a reader or worker that crashed fails the run here
            if not self.stop.requested.is_set():
                await self._reconcile()
                no_more_executions.set()
                await self._poll_to_the_end(poller_task, stopping)
            if not self.stop.requested.is_set() and not self.poller.timed_out:
                await self._reconcile()  # copies created while the run polled
                if self.poller.tracking:  # the batch now follows the kept copy
                    await self._poll_to_the_end(asyncio.create_task(self.poller.run(no_more_executions)), stopping)
        finally:
            await self._wind_down(tasks, uploads, stopping)
        self._note_the_end()

    async def _wind_down(
        self, tasks: list[asyncio.Task[None]], uploads: asyncio.Future[Any], stopping: asyncio.Future[Any]
    ) -> None:
        """The run's tasks cancelled and retrieved, the feed drained, the batches left unsettled released."""
        stopping.cancel()
        self.stop.thread_flag.set()  # the reader thread stops at its next batch or credit wait
        for task in tasks:
            task.cancel()
        self.feed.close()
        if self.limiter is not None:
            self.limiter.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(uploads, return_exceptions=True)  # settled with its children; retrieved
        self.feed.drain()
        for left in self.settler.drop_all():
            if left.batch is not None:
                left.batch.discard_spool()

    def _note_the_end(self) -> None:
        """What the state keeps of the streaming part: interrupted, timed out, throughput, the platform."""
        self.state.interrupted = self.stop.requested.is_set() and _unfinished(self.state)
        self.state.poll_timed_out = bool(self.poller.timed_out)
        if self.limiter is not None:
            self.state.throughput = throughput_of(
                self.limiter.snapshot(),
                poll_requests=self.poller.requests,
                poll_listings=self.poller.listings,
            )
        learned = profile_of(
            self.state.batches.values(),
            self.state.throughput,
            run_id=self.state.run_id,
            planned_from=PlatformProfile.from_json(
                self.state.plan_learned["profile"] if self.state.plan_learned else None
            ),
        )
        self.state.platform_profile = learned.to_json() if learned is not None else None

    async def _poll_to_the_end(self, poller_task: asyncio.Task[None], stopping: asyncio.Future[Any]) -> None:
        try:
            await _first_of(poller_task, stopping)
            if poller_task.done():
                poller_task.result()
        finally:
            poller_task.cancel()

    def _track(
        self, execution_id: str, key: Any, *, first_delay: float | None = None, answer: dict[str, Any] | None = None
    ) -> None:
        """Follow an execution with its batch's records and bytes (they sharpen its expected end) and
        the upload's answer (its creation date sets the server's clock against ours)."""
        batch = self.state.batches.get(key)
        records, size = (batch.records, batch.size) if batch is not None else (None, None)
        self.poller.track(execution_id, key, first_delay=first_delay, records=records, size=size, answer=answer)

    def _limit_changed(self, old: int, new: int) -> None:
        limiter = self.limiter
        in_flight = limiter.in_flight if limiter is not None else 0
        self.emit(Event.UPLOAD_LIMIT, previous=old, limit=new, in_flight=in_flight)

    def _warn(self, message: str) -> None:
        self.record.warn(message)

    def _settler(self, client: ApiClient) -> Settler:
        cfg = self.config
        return Settler(
            client,
            cfg.import_.datamart_id,
            self.import_id,
            window_s=cfg.upload.settle_window_s or max(60.0, cfg.api.timeout_s),
            max_pages=self._max_pages(),
            on_found=self._settled_found,
            on_resend=self._settled_resend,
            on_unknowable=self._settled_unknowable,
            on_lookup_error=lambda exc: self.emit(Event.LOOKUP_FAILED, error=str(exc)),
        )

    def _stop_sending(self) -> None:
        """A stop request: nothing new is sent, nothing more is settled (the unsettled batches stay
        ambiguous in the journal: ``resume`` looks them up); in-flight uploads end as they will, and
        the uploads waiting for a slot of the limiter are not sent (``resume`` sends them)."""
        self.feed.close()
        if self.limiter is not None:
            self.limiter.close()
        for left in self.settler.drop_all():
            if left.batch is not None:
                left.batch.discard_spool()

    def _max_pages(self) -> int:
        """Pages a listing of the import may take: its executions are mostly this run's."""
        return 20 + 2 * len(self.state.batches) // LOOKUP_PAGE_SIZE + (1000 if self.config.import_.id else 0)

    def _on_unsettled(self, batch: Batch) -> None:
        """An upload may have created its execution: settle it by name (raw uploads carry none)."""
        state = self.state.batches[batch.number]
        if self.config.upload.body != "multipart":  # cannot be looked up: sent again (marked), a few times
            if state.resent >= MAX_RESENDS:
                self._settled_unknowable(
                    Unsettled(batch, state, 0.0), f"sent {state.resent + 1} times, never answered", final=True
                )
                return
            self.record.not_found_by_name(state, resend=True)
            self.feed.send_again(batch)
            return
        self.settler.add(batch, state)
        self.feed.changed()

    def _settled_found(self, item: Unsettled, execution: dict[str, Any]) -> None:
        self._track(self.record.found_by_name(item.state, execution), item.state.number)
        if item.batch is not None:
            item.batch.discard_spool()
        self.feed.changed()

    def _settled_resend(self, item: Unsettled) -> None:
        if item.state.resent >= MAX_RESENDS or item.batch is None:
            reason = f"no sighting after {item.state.resent + 1} settle window(s) and re-sends"
            self._settled_unknowable(item, reason, final=True)
            return
        self.record.not_found_by_name(item.state, resend=True)
        self.feed.send_again(item.batch)

    def _settled_unknowable(self, item: Unsettled, reason: str, final: bool) -> None:
        self.record.left_unsettled(item.state, reason, final=final)
        then = (
            "no later lookup of this server can tell either: check them on the platform"
            if final
            else "`pipeline resume` looks them up again"
        )
        self._warn(
            f"{reason}: uploads whose answer was lost are not sent again (that could import their records "
            f"twice); the report lists them; {then}"
        )
        if item.batch is not None:
            item.batch.discard_spool()
        self.feed.changed()

    def _settle_prior_uploads(self) -> None:
        """On resume: poll every known execution; unanswered uploads are settled as the reader meets them."""
        for batch in sorted(self.state.batches.values(), key=lambda b: b.number):
            if batch.upload == UPLOADED and batch.execution_id and not formats.is_terminal(batch.status):
                self._track(batch.execution_id, batch.number, first_delay=0)

    async def _reconcile(self) -> None:
        if self.config.upload.body != "multipart" or not self.import_id:
            return
        try:
            await reconcile(
                self.client,
                self.config.import_.datamart_id,
                self.import_id,
                self.state,
                self.record,
                names_echoed=self.settler.names_echoed,
                max_pages=self._max_pages(),
                warn=self._warn,
            )
        except ServiceError as exc:
            self._warn(f"the end-of-run check for duplicates failed ({exc}); batches sent again stay marked")


async def _first_of(*aws: Any) -> None:
    """Wait until the first of ``aws`` is done; the others (futures we created) are cancelled."""
    futures = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f, a in zip(futures, aws, strict=True):
            if f is not a and not f.done():
                f.cancel()


def _unfinished(state: RunState) -> bool:
    """Something is left for a resume: reading did not end, or a batch is not settled."""
    return not state.reading_done or any(not b.done for b in state.batches.values())

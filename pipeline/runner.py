"""One run of the pipeline: reader thread -> bounded queue -> upload workers -> poller -> report.

``Run`` wires the stages together and decides when to stop; every step is applied to the run state
and journaled by its ``Recorder`` (see ``recorder.py``), so that ``resume`` can rebuild the run from
the journal after any kind of stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import formats
from .api import ApiClient, RetryPolicy
from .config import Config, check_transport_security, read_token
from .errors import ConfigError, InputError, ServiceError, UsageError
from .journal import Journal
from .poll import PollCadence, Poller
from .reader import Batch, BatchReader, ReaderOptions
from .recorder import Recorder
from .report import build_report, write_json_atomically
from .report_html import write_report_html
from .rundir import REJECTS_NAME, REPORT_NAME, RejectsFile, RunLock, make_private_dir
from .state import UPLOADED, UPLOADING, BatchState, RunState
from .summary import plain_summary, summary_details
from .upload import END, UploadTarget, upload_worker

EventSink = Callable[[str, dict[str, Any]], None]
FINAL_OUTCOMES = ("succeeded", "completed_with_failures")  # a resume of such a run changes nothing


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How to run, beyond the config: where to copy the report, how to report progress."""

    report_path: Path | None = None
    token: str | None = field(default=None, repr=False)  # overrides the variable named by api.token_env
    allow_insecure_http: bool = False
    emulator: Any = None  # EmulatorOptions for the embedded emulator (defaults when None)
    on_event: EventSink | None = None
    handle_signals: bool = False  # install SIGINT/SIGTERM handlers (the CLI does)
    reader_workers: int | None = None  # validation processes; None = the reader's default
    retry_policy: RetryPolicy | None = None  # None: RetryPolicy(max_attempts=upload.max_attempts)


@dataclass
class _Stop:
    """Stop requests: the first stops reading and waits for in-flight uploads; the second abandons."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    abandon: asyncio.Event = field(default_factory=asyncio.Event)
    thread_flag: threading.Event = field(default_factory=threading.Event)

    def request(self) -> None:
        if self.requested.is_set():
            self.abandon.set()
        self.requested.set()
        self.thread_flag.set()


class Run:
    """A run over ``inputs`` into ``run_dir``; ``prior`` is the journal's state when resuming."""

    def __init__(
        self,
        config: Config,
        inputs: list[Path],
        run_dir: Path,
        run_id: str,
        options: RunOptions,
        prior: RunState | None = None,
    ) -> None:
        self.config, self.inputs, self.run_dir, self.options = config, inputs, run_dir, options
        self.state = prior or RunState(run_id=run_id)
        self.resumed = prior is not None
        self.stop = _Stop()
        self.record: Recorder | None = None  # set once the journal is open
        self.poller: Poller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, event: str, **fields: Any) -> None:
        if self.options.on_event:
            self.options.on_event(event, fields)

    # --- the whole run -----------------------------------------------------------------------

    async def execute(self) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        lock = RunLock(self.run_dir)
        try:
            if self.resumed and self.state.finished_outcome in FINAL_OUTCOMES:
                return self._report_again()
            async with contextlib.AsyncExitStack() as stack:
                base_url, token = await self._target(stack)
                journal = stack.enter_context(Journal(self.run_dir))
                self.record = Recorder(self.state, journal, self.config, self.options.on_event)
                client = await stack.enter_async_context(self._client(base_url, token))
                self.record.run_started(base_url, self.inputs, self.resumed)
                await self._ensure_import(client)
                self._install_signal_handlers(stack)
                try:
                    await self._pipeline(client)
                except (UsageError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # a crash: report what is known; the outcome is unknown (exit 3)
                    self.state.failure = f"{type(exc).__name__}: {exc}"
                    self.emit("run_failed", error=self.state.failure)
                return self._finish()
        finally:
            lock.release()

    async def _target(self, stack: contextlib.AsyncExitStack) -> tuple[str, str]:
        """Where to upload, and the token: the embedded emulator, or the configured API."""
        if self.config.uses_embedded_emulator:
            from .emulator import EmulatorOptions, running_emulator

            token = self.options.token or os.environ.get(self.config.api.token_env) or "embedded-token"
            emu_options = self.options.emulator or EmulatorOptions(token=token)
            if emu_options.token != token:
                token = emu_options.token
            emu = await stack.enter_async_context(running_emulator(emu_options))
            self.emit("target", url=emu.base_url, embedded=True)
            return emu.base_url, token
        url = self.config.api.url.rstrip("/")
        check_transport_security(url, self.options.allow_insecure_http)
        token = self.options.token or read_token(self.config)
        self.emit("target", url=url, embedded=False)
        return url, token

    def _client(self, base_url: str, token: str) -> ApiClient:
        retry = self.options.retry_policy or RetryPolicy(max_attempts=self.config.upload.max_attempts)
        return ApiClient(base_url, token, timeout_s=self.config.api.timeout_s, retry=retry, on_retry=self._on_retry)

    def _on_retry(self, event: Any) -> None:
        self.emit(
            "retry",
            **{k: getattr(event, k, None) for k in ("method", "path", "attempt", "delay_s", "reason")},
        )

    async def _ensure_import(self, client: ApiClient) -> None:
        """Create the run's document import, or check the configured/journaled one."""
        imp_cfg = self.config.import_
        known = self.state.document_import.get("id") or imp_cfg.id
        if known:
            imp = await client.get_import(imp_cfg.datamart_id, known)
            for key in ("document_type", "mime_type"):
                if imp.get(key) != getattr(imp_cfg, key):
                    raise ConfigError(
                        f"import.{key}",
                        f"document import {known} has {key} {imp.get(key)}, the config says {getattr(imp_cfg, key)}",
                    )
        else:
            name = imp_cfg.name.format(date=datetime.now(UTC).date().isoformat(), run_id=self.state.run_id)
            imp = await client.create_import(
                imp_cfg.datamart_id,
                document_type=imp_cfg.document_type,
                mime_type=imp_cfg.mime_type,
                encoding=imp_cfg.encoding,
                name=name,
                priority=imp_cfg.priority,
            )
        self.record.import_ready(imp)

    def _install_signal_handlers(self, stack: contextlib.ExitStack) -> None:
        if not self.options.handle_signals:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._on_signal, sig)
            stack.callback(self._loop.remove_signal_handler, sig)

    def _on_signal(self, sig: int) -> None:
        self.emit("stop_requested", signal=signal.Signals(sig).name, abandon=self.stop.requested.is_set())
        self.stop.request()

    # --- the stages --------------------------------------------------------------------------

    async def _pipeline(self, client: ApiClient) -> None:
        imp = self.state.document_import
        cfg = self.config
        self.poller = Poller(
            client,
            cfg.import_.datamart_id,
            imp["id"],
            cadence=PollCadence(interval_s=cfg.poll.interval_s, max_interval_s=cfg.poll.max_interval_s),
            timeout_s=cfg.poll.timeout_s,
            on_status=self.record.execution_status,
            on_poll_error=lambda key, exc: self.emit("poll_error", batch=key, error=str(exc)),
        )
        self.record.track = self.poller.track
        await self._settle_prior_uploads(client)
        target = UploadTarget(
            datamart_id=cfg.import_.datamart_id,
            import_id=imp["id"],
            mime_type=cfg.import_.mime_type,
            form=cfg.upload.body,
            filename_of=self.record.filename,
        )
        queue = Handoff(cfg.upload.concurrency)
        no_more_executions = asyncio.Event()
        workers = [
            asyncio.create_task(upload_worker(client, target, queue, self.record, self.stop.requested))
            for _ in range(cfg.upload.concurrency)
        ]
        poller_task = asyncio.create_task(self.poller.run(no_more_executions))
        reader_task = asyncio.create_task(self._read(queue))
        tasks = [reader_task, *workers, poller_task]
        try:
            uploads = asyncio.gather(reader_task, *workers)
            await _first_of(uploads, self.stop.abandon.wait())
            if uploads.done():
                uploads.result()  # a reader or worker that crashed fails the run here
            if not self.stop.requested.is_set():
                await self._settle_ambiguous(client, track=True)
                no_more_executions.set()
                await _first_of(poller_task, self.stop.requested.wait())
                if poller_task.done():
                    poller_task.result()
        finally:
            self.stop.thread_flag.set()  # the reader thread stops at its next batch or credit wait
            for task in tasks:
                task.cancel()
            queue.drain()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(uploads, return_exceptions=True)  # settled with its children; retrieved
        self.state.interrupted = self.stop.requested.is_set() and _unfinished(self.state)
        self.state.poll_timed_out = bool(self.poller.timed_out)

    async def _settle_prior_uploads(self, client: ApiClient) -> None:
        """On resume: find the executions of unanswered uploads, and poll every known execution."""
        await self._settle_ambiguous(client)
        for batch in sorted(self.state.batches.values(), key=lambda b: b.number):
            if batch.upload == UPLOADED and not formats.is_terminal(batch.status):
                self.poller.track(batch.execution_id, batch.number, first_delay=0)

    async def _settle_ambiguous(self, client: ApiClient, *, track: bool = False) -> None:
        """Look up, by file name, the uploads whose answer was lost: did they create an execution?

        Found: the batch is uploaded (and polled). Not found: the upload did not arrive, for sure;
        a resume sends it again. Lookup failed: the batch stays ambiguous, the outcome unknown.
        """
        if self.config.upload.body != "multipart":
            return  # a raw upload carries no file name to look up: it stays unknown (exit 3)
        imp_id = self.state.document_import["id"]
        unsure = [b for b in self.state.batches.values() if b.upload == UPLOADING or b.ambiguous]
        for batch in sorted(unsure, key=lambda b: b.number):
            try:
                found = await client.find_execution_by_filename(self.config.import_.datamart_id, imp_id, batch.filename)
            except ServiceError as exc:
                self.emit("lookup_failed", batch=batch.number, error=str(exc))
                continue
            if found:
                self.record.found_by_name(batch, found)
                if track:
                    self.poller.track(batch.execution_id, batch.number)
            else:
                self.record.not_found_by_name(batch)

    async def _read(self, queue: Handoff) -> None:
        """Run the reader in a thread (it is CPU and disk work) feeding the bounded hand-off."""
        rejects = RejectsFile(self.run_dir / REJECTS_NAME)
        options = ReaderOptions(
            document_type=self.config.import_.document_type,
            mime_type=self.config.import_.mime_type,
            max_bytes=self.config.batch.max_bytes,
            max_lines=self.config.batch.max_lines,
            validate=self.config.batch.validate,
            spool_dir=make_private_dir(self.run_dir / "spool"),
            **({"workers": self.options.reader_workers} if self.options.reader_workers is not None else {}),
        )
        reader = BatchReader(self.inputs, options, on_reject=rejects.write)
        keep_old_rejects = self.state.reading_done  # a resume re-reads; keep the old list until it is whole
        try:
            try:
                await asyncio.to_thread(self._read_batches, reader, queue)
            except InputChangedError:
                raise
            except InputError as exc:  # e.g. a truncated .gz: what was read is sent, the rest is not
                self.record.read_failed(exc)
            if not self.stop.requested.is_set():
                rejects.commit()
                self.record.reading_finished(reader.stats, rejects)
            elif not keep_old_rejects:
                rejects.commit()  # a first run stopped early: the rejects found so far
        finally:
            rejects.close()
            for _ in range(self.config.upload.concurrency):
                queue.put_nowait(END)

    def _read_batches(self, reader: BatchReader, queue: Handoff) -> None:
        """In the reader thread: hand each batch to the loop, waiting for a credit while the queue is full."""
        for batch in reader:
            if self.stop.thread_flag.is_set():
                batch.discard_spool()
                return
            if self._already_handled(batch):
                batch.discard_spool()
                self._loop.call_soon_threadsafe(self.record.batch_skipped, batch)
                continue
            while not queue.credits.acquire(timeout=0.1):
                if self.stop.thread_flag.is_set():
                    batch.discard_spool()
                    return
            self._loop.call_soon_threadsafe(self.record.batch_read, batch)
            self._loop.call_soon_threadsafe(queue.put_nowait, batch)

    def _already_handled(self, batch: Batch) -> bool:
        """On resume: this batch has an execution, or may have one that could not be looked up."""
        prior = self.state.batches.get(batch.number)
        if prior is None:
            return False
        _check_unchanged(prior, batch)
        if prior.upload == UPLOADED:
            return True
        unsettled = prior.upload == UPLOADING or prior.ambiguous
        # multipart: the lookup by name failed, try again on the next resume; raw: cannot be looked
        # up, so it is sent again and marked as a possible duplicate
        return unsettled and self.config.upload.body == "multipart"

    # --- the end -----------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        self.state.finished_at = time.time()
        shutil.rmtree(self.run_dir / "spool", ignore_errors=True)  # batches of .gz inputs, all settled
        report = self._report()
        write_json_atomically(self.run_dir / REPORT_NAME, report)
        write_report_html(report)
        if self.options.report_path:
            write_json_atomically(Path(self.options.report_path), report)
            write_report_html(report, Path(self.options.report_path).with_suffix(".html"))
        self.record.run_finished(report, _summary(report))
        return report

    def _report_again(self) -> dict[str, Any]:
        """A finished run, resumed: nothing to send or poll; the same report again."""
        self.emit("run_started", run_id=self.state.run_id, target=self.state.target, resumed=True, inputs=[])
        report = self._report()
        self.emit(
            "run_finished",
            outcome=report["outcome"],
            exit_code=report["exit_code"],
            records=report["records"],
            summary=_summary(report),
        )
        return report

    def _report(self) -> dict[str, Any]:
        resumable = not self.config.uses_embedded_emulator
        return build_report(
            self.state, rejects_path=self.run_dir / REJECTS_NAME, run_dir=self.run_dir, resumable=resumable
        )


def _summary(report: dict[str, Any]) -> str:
    return "\n".join([plain_summary(report), *summary_details(report)])


class InputChangedError(InputError):
    """An input no longer holds what a resumed run already planned from it."""


def _check_unchanged(prior: BatchState, batch: Batch) -> None:
    if prior.digest != batch.digest or prior.size != batch.size:
        raise InputChangedError(
            batch.source,
            f"changed since the run started: batch {batch.number} (lines {batch.first_line}-"
            f"{batch.last_line}) no longer has the same content; start a new run",
        )


class Handoff(asyncio.Queue):
    """Batches from the reader thread to the upload workers.

    The thread takes a credit (a ``threading.Semaphore``, waited on with a timeout so that it sees
    a stop) before it hands a batch over; a worker gives the credit back when it takes the batch.
    The queue therefore never holds more than ``size`` batches, and the thread never blocks on the
    event loop (a cross-thread ``queue.put`` could not be cancelled without risking a batch put twice).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.credits = threading.Semaphore(size)

    async def get(self) -> Batch | None:
        item = await super().get()
        if item is not END:
            self.credits.release()
        return item

    def drain(self) -> None:
        while not self.empty():
            item = self.get_nowait()
            if item is not END:
                item.discard_spool()


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

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
from enum import Enum
from pathlib import Path
from typing import Any

from pipeline import formats
from pipeline.client.api import LOOKUP_PAGE_SIZE, ApiClient, RetryPolicy
from pipeline.config import Config, check_token, check_transport_security, read_token
from pipeline.engine.journal import Journal
from pipeline.engine.poll import PollCadence, Poller
from pipeline.engine.pool import RunStop, UploadFeed, UploadTarget, run_wide_hint, upload_worker
from pipeline.engine.reconcile import reconcile
from pipeline.engine.recorder import Recorder, fingerprint
from pipeline.engine.rundir import (
    REJECTS_NAME,
    REPORT_NAME,
    RejectsFile,
    RunLock,
    check_free_space,
    check_output_dir,
    check_output_file,
    make_private_dir,
)
from pipeline.engine.settle import Settler, Unsettled
from pipeline.engine.state import PLANNED, UPLOADED, UPLOADING, BatchState, RunState
from pipeline.errors import ApiError, ConfigError, InputError, LocalError, ServiceError, UsageError
from pipeline.reading.reader import Batch, BatchReader, ReaderOptions
from pipeline.reporting.report import build_report, write_json_atomically
from pipeline.reporting.report_html import write_report_html
from pipeline.reporting.summary import plain_summary, summary_details

EventSink = Callable[[str, dict[str, Any]], None]
FINAL_OUTCOMES = ("succeeded", "completed_with_failures", "completed_with_duplicates")  # a resume changes nothing
JOURNAL_AND_REPORTS_BYTES = 64 * 1024 * 1024  # room a run needs beside its spool, to be safe
MAX_RESENDS = 10  # a batch is sent again after at most this many settle windows without a sighting


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
    retry_policy: RetryPolicy | None = None  # None: from upload.max_attempts and upload.retry_window_s
    allow_concurrent: bool = False  # allow a second run of the same config and inputs at once


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
        *,
        lock: RunLock,
    ) -> None:
        self.config, self.inputs, self.run_dir, self.options = config, inputs, run_dir, options
        self.lock = lock  # taken by the caller before it read the journal
        self.state = prior or RunState(run_id=run_id)
        self.resumed = prior is not None
        self.stop = _Stop()
        self.record: Recorder | None = None  # set once the journal is open
        self.poller: Poller | None = None
        self.settler: Settler | None = None
        self.feed: UploadFeed | None = None
        self._fingerprints: dict[str, dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, event: str, **fields: Any) -> None:
        if self.options.on_event:
            self.options.on_event(event, fields)

    # --- the whole run -----------------------------------------------------------------------

    async def execute(self) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        lock = self.lock
        try:
            if self.resumed and self.state.finished_outcome in FINAL_OUTCOMES:
                return self._report_again()
            async with contextlib.AsyncExitStack() as stack:
                base_url, token = await self._target(stack)
                journal = stack.enter_context(Journal(self.run_dir))
                self._install_signal_handlers(stack)  # from here on, SIGTERM ends with a report
                self.record = Recorder(self.state, journal, self.config, self.options.on_event)
                client = await stack.enter_async_context(self._client(base_url, token))
                started = self.record.run_started(base_url, self.inputs, self.resumed)
                self._fingerprints = {f["path"]: f for f in started}
                await self._ensure_import_or_refuse(client)
                try:
                    await self._pipeline(client)
                except asyncio.CancelledError:
                    raise
                except (UsageError, LocalError) as exc:
                    if not self._sent_anything():
                        raise  # nothing went out: exit 2, with the message
                    self._failed(str(exc))  # e.g. an input changed mid-run, a full disk: resumable (exit 3)
                except RunStop as exc:
                    self._failed(str(exc))
                except ApiError as exc:  # the poller met a refused token or right
                    hint = run_wide_hint(exc, 0)
                    self._failed(f"{exc}; {hint}" if hint else f"{type(exc).__name__}: {exc}")
                except Exception as exc:  # a crash: report what is known; the outcome is unknown (exit 3)
                    self._failed(f"{type(exc).__name__}: {exc}")
                return self._finish_or_say_why()
        finally:
            lock.release()

    async def _ensure_import_or_refuse(self, client: ApiClient) -> None:
        """A refused token, right or import before anything was sent: a usage error (exit 2), not a
        "not known yet" (exit 3) that a scheduler would resume forever."""
        try:
            await self._ensure_import(client)
        except ApiError as exc:
            hint = run_wide_hint(exc, 0) if exc.status in (401, 403, 404) else None
            if hint is None:
                raise
            error = UsageError(f"nothing was sent: {exc}")
            error.hint = hint.replace(", then `pipeline resume` the run", "")
            raise error from None

    def _finish_or_say_why(self) -> dict[str, Any]:
        """The report. The journal records the end first (``resume`` trusts it); when the journal or
        the report files cannot be written (a full disk), the run says so and exits 3, its real
        outcome and its first failure kept in the message."""
        self.state.finished_at = time.time()
        shutil.rmtree(self.run_dir / "spool", ignore_errors=True)  # batches of .gz inputs, all settled
        report = self._report()
        try:
            self.record.run_finished(report, _summary(report))
        except LocalError as exc:
            report = self._also_failed(f"the journal could not record the end of the run ({exc})", report)
        try:
            self._write_reports(report)
        except (OSError, LocalError) as exc:
            report = self._also_failed(f"the report files could not be written ({exc})", report)
        return report

    def _also_failed(self, problem: str, report: dict[str, Any]) -> dict[str, Any]:
        outcome = report["outcome"]
        self._failed(
            f"{self.state.failure}; {problem}" if self.state.failure else f"{problem}; the outcome was {outcome}"
        )
        report = self._report()
        self.emit(
            "run_finished",
            outcome=report["outcome"],
            exit_code=report["exit_code"],
            records=report["records"],
            summary=_summary(report),
        )
        return report

    def _write_reports(self, report: dict[str, Any]) -> None:
        write_json_atomically(self.run_dir / REPORT_NAME, report)
        write_report_html(report)
        if self.options.report_path:
            write_json_atomically(Path(self.options.report_path), report)
            write_report_html(report, Path(self.options.report_path).with_suffix(".html"))

    def _failed(self, message: str) -> None:
        self.state.failure = message
        self.emit("run_failed", error=message)

    def _sent_anything(self) -> bool:
        return any(b.upload != PLANNED or b.attempts for b in self.state.batches.values())

    async def _target(self, stack: contextlib.AsyncExitStack) -> tuple[str, str]:
        """Where to upload, and the token: the embedded emulator, or the configured API."""
        if self.config.uses_embedded_emulator:
            from pipeline.emulator import EmulatorOptions, running_emulator

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
        check_token(token, env=self.config.api.token_env)
        self.emit("target", url=url, embedded=False)
        return url, token

    def _client(self, base_url: str, token: str) -> ApiClient:
        up = self.config.upload
        retry = self.options.retry_policy or RetryPolicy(max_attempts=up.max_attempts, window_s=up.retry_window_s)
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
            on_warning=self._warn,
        )
        self.record.track = self.poller.track
        self.settler = self._settler(client)
        self.record.saw_answer = self.settler.saw_upload_answer
        feed = UploadFeed(cfg.upload.concurrency, settling=lambda: self.settler.busy)
        self.feed = feed
        self._settle_prior_uploads()
        target = UploadTarget(
            datamart_id=cfg.import_.datamart_id,
            import_id=imp["id"],
            mime_type=cfg.import_.mime_type,
            form=cfg.upload.body,
            filename_of=self.record.filename,
            check_source=self._check_source,
        )
        no_more_executions = asyncio.Event()
        workers = [
            asyncio.create_task(upload_worker(client, target, feed, self._listener(), self._on_unsettled))
            for _ in range(cfg.upload.concurrency)
        ]
        poller_task = asyncio.create_task(self.poller.run(no_more_executions))
        settler_task = asyncio.create_task(self.settler.run())
        reader_task = asyncio.create_task(self._read(feed))
        tasks = [reader_task, *workers, poller_task, settler_task]
        stopping = asyncio.ensure_future(self.stop.requested.wait())
        try:
            uploads = asyncio.gather(reader_task, *workers)
            await _first_of(uploads, self.stop.abandon.wait(), settler_task)
            if settler_task.done():
                settler_task.result()  # a settler that crashed fails the run here
            if uploads.done():
                uploads.result()  # a reader or worker that crashed fails the run here
            if not self.stop.requested.is_set():
                await self._reconcile(client)
                no_more_executions.set()
                await self._poll_to_the_end(poller_task, stopping)
            if not self.stop.requested.is_set() and not self.poller.timed_out:
                await self._reconcile(client)  # copies created while the run polled
                if self.poller.tracking:  # the batch now follows the kept copy
                    await self._poll_to_the_end(asyncio.create_task(self.poller.run(no_more_executions)), stopping)
        finally:
            stopping.cancel()
            self.stop.thread_flag.set()  # the reader thread stops at its next batch or credit wait
            for task in tasks:
                task.cancel()
            feed.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(uploads, return_exceptions=True)  # settled with its children; retrieved
            feed.drain()
            for left in self.settler.drop_all():
                if left.batch is not None:
                    left.batch.discard_spool()
        self.state.interrupted = self.stop.requested.is_set() and _unfinished(self.state)
        self.state.poll_timed_out = bool(self.poller.timed_out)

    async def _poll_to_the_end(self, poller_task: asyncio.Task[None], stopping: asyncio.Future[Any]) -> None:
        try:
            await _first_of(poller_task, stopping)
            if poller_task.done():
                poller_task.result()
        finally:
            poller_task.cancel()

    def _listener(self) -> Recorder:
        return self.record

    def _warn(self, message: str) -> None:
        if message not in self.state.warnings:
            self.state.warnings.append(message)
            self.emit("warning", message=message)

    def _settler(self, client: ApiClient) -> Settler:
        cfg = self.config
        return Settler(
            client,
            cfg.import_.datamart_id,
            self.state.document_import["id"],
            window_s=cfg.upload.settle_window_s or max(60.0, cfg.api.timeout_s),
            max_pages=self._max_pages(),
            on_found=self._settled_found,
            on_resend=self._settled_resend,
            on_unknowable=self._settled_unknowable,
            on_lookup_error=lambda exc: self.emit("lookup_failed", error=str(exc)),
        )

    def _max_pages(self) -> int:
        """Pages a listing of the import may take: its executions are mostly this run's."""
        return 20 + 2 * len(self.state.batches) // LOOKUP_PAGE_SIZE + (1000 if self.config.import_.id else 0)

    def _on_unsettled(self, batch: Batch) -> None:
        """An upload may have created its execution: settle it by name (raw uploads carry none)."""
        state = self.state.batches[batch.number]
        if self.config.upload.body != "multipart":
            self.record.not_found_by_name(state, resend=True)  # cannot be looked up: sent again, marked
            self.feed.send_again(batch)
            return
        self.settler.add(batch, state)
        self.feed.changed()

    def _settled_found(self, item: Unsettled, execution: dict[str, Any]) -> None:
        self.record.found_by_name(item.state, execution)
        self.poller.track(item.state.execution_id, item.state.number)
        if item.batch is not None:
            item.batch.discard_spool()
        self.feed.changed()

    def _settled_resend(self, item: Unsettled) -> None:
        if item.state.resent >= MAX_RESENDS or item.batch is None:
            self._settled_unknowable(item, f"no sighting after {item.state.resent + 1} settle windows")
            return
        self.record.not_found_by_name(item.state, resend=True)
        self.feed.send_again(item.batch)

    def _settled_unknowable(self, item: Unsettled, reason: str) -> None:
        self.record.left_unsettled(item.state, reason)
        self._warn(
            f"{reason}: uploads whose answer was lost are not sent again (that could import their records "
            "twice); the report lists them, `pipeline resume` looks them up again"
        )
        if item.batch is not None:
            item.batch.discard_spool()
        self.feed.changed()

    def _settle_prior_uploads(self) -> None:
        """On resume: poll every known execution; unanswered uploads are settled as the reader meets them."""
        for batch in sorted(self.state.batches.values(), key=lambda b: b.number):
            if batch.upload == UPLOADED and not formats.is_terminal(batch.status):
                self.poller.track(batch.execution_id, batch.number, first_delay=0)

    async def _reconcile(self, client: ApiClient) -> None:
        if self.config.upload.body != "multipart":
            return
        try:
            await reconcile(
                client,
                self.config.import_.datamart_id,
                self.state.document_import["id"],
                self.state,
                self.record,
                names_echoed=self.settler.names_echoed,
                max_pages=self._max_pages(),
                warn=self._warn,
            )
        except ServiceError as exc:
            self._warn(f"the end-of-run check for duplicates failed ({exc}); batches sent again stay marked")

    def _check_source(self, batch: Batch) -> None:
        """Before an upload: the input still is what was read (sendfile sends the file as it is now)."""
        recorded = self._fingerprints.get(str(batch.source))
        if recorded is None:
            return
        try:
            st = os.stat(batch.source)
        except OSError as exc:
            raise InputChangedError(
                batch.source, f"is gone ({exc.strerror}) before batch {batch.number} was sent"
            ) from None
        if st.st_size != recorded["size"] or st.st_mtime_ns != recorded["mtime_ns"]:
            raise InputChangedError(
                batch.source,
                f"changed while the run was reading or sending it (size or modification time), before batch "
                f"{batch.number} (lines {batch.first_line}-{batch.last_line}) was sent: the run stops; let the "
                "file be complete, then start a new run (or resume, if it is back as it was)",
            )

    async def _read(self, feed: UploadFeed) -> None:
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
                await asyncio.to_thread(self._read_batches, reader, feed)
            except InputChangedError:
                raise
            except InputError as exc:  # e.g. an unreadable input: what was read is sent, the rest is not
                self.record.read_failed(exc)
            if not self.stop.requested.is_set():
                for path in self.inputs:  # a file still being written: what was read is not all of it
                    self._check_unchanged_input(path)
                rejects.commit()
                self.record.reading_finished(reader.stats, rejects)
            elif not keep_old_rejects:
                rejects.commit()  # a first run stopped early: the rejects found so far
        finally:
            rejects.close()
            feed.reading_finished()

    def _check_unchanged_input(self, path: Path) -> None:
        recorded = self._fingerprints.get(str(path))
        if recorded is None:
            return
        now = fingerprint(path) if path.exists() else {"size": -1, "mtime_ns": -1}
        if (now["size"], now["mtime_ns"]) != (recorded["size"], recorded["mtime_ns"]):
            raise InputChangedError(
                path,
                "changed while the run was reading it (size or modification time): it may still be being "
                "written; the run stops; let the file be complete, then start a new run",
            )

    def _read_batches(self, reader: BatchReader, feed: UploadFeed) -> None:
        """In the reader thread: hand each batch to the loop, waiting for a credit while the feed is full."""
        loop = self._loop
        for batch in reader:
            if self.stop.thread_flag.is_set():
                batch.discard_spool()
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
                if self.stop.thread_flag.is_set():
                    batch.discard_spool()
                    return
            loop.call_soon_threadsafe(self.record.batch_read, batch)
            loop.call_soon_threadsafe(feed.put, batch)

    def _already_handled(self, batch: Batch) -> Handled:
        """On resume: this batch has an execution, or may have one (then it is settled by name first)."""
        prior = self.state.batches.get(batch.number)
        if prior is None:
            return Handled.NO
        _check_unchanged(prior, batch)
        if prior.upload == UPLOADED:
            return Handled.DONE
        if prior.upload == UPLOADING or prior.ambiguous:
            return Handled.UNSETTLED
        return Handled.NO

    # --- the end -----------------------------------------------------------------------------

    def _report_again(self) -> dict[str, Any]:
        """A finished run, resumed: nothing to send or poll; the same report again (written again:
        the run may have ended on a disk too full for it)."""
        self.emit("run_started", run_id=self.state.run_id, target=self.state.target, resumed=True, inputs=[])
        report = self._report()
        self._write_reports(report)
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


def preflight(config: Config, inputs: list[Path], options: RunOptions) -> None:
    """Before anything is sent: every output path is writable and the disk has room (``LocalError``)."""
    report_dir = Path(config.report.dir)
    check_output_dir(report_dir)
    if options.report_path is not None:
        check_output_file(Path(options.report_path))
    spooled = any(p.name.endswith(".gz") for p in inputs)  # .gz batches are spooled while in flight
    spool = (config.upload.concurrency * 2 + 1) * config.batch.max_bytes if spooled else 0
    check_free_space(report_dir, JOURNAL_AND_REPORTS_BYTES + spool)


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


class Handled(Enum):
    """What a resumed run does with a batch the reader meets again."""

    NO = "send it"
    DONE = "it has an execution"
    UNSETTLED = "it may have one: settle it by name"


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

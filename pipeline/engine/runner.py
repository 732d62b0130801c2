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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.api_token import check_token, check_transport_security, read_token
from pipeline.client.api import ApiClient, RetryPolicy
from pipeline.client.limiter import UploadLimiter
from pipeline.client.request_budget import RequestBudget
from pipeline.config import Config, runs_base
from pipeline.engine.budget import parse_max_errors
from pipeline.engine.document_import import ensure_import
from pipeline.engine.events import Event, EventSink
from pipeline.engine.final_errors import final_error_of, final_hint, token_refused_hint
from pipeline.engine.first_record import inputs_hold_a_record
from pipeline.engine.input_checks import InputChangedError
from pipeline.engine.journal import Journal
from pipeline.engine.platform_profile import keep_profile
from pipeline.engine.pool import RunStop, run_wide_hint, spool_bytes
from pipeline.engine.recorder import Recorder
from pipeline.engine.refusals import rebuild_failed_file
from pipeline.engine.rundir import (
    FAILED_NAME,
    REJECTS_NAME,
    REPORT_NAME,
    RunLock,
    check_free_space,
    check_output_dir,
    check_output_file,
)
from pipeline.engine.sink import guarded
from pipeline.engine.stages import Stages, Stop
from pipeline.engine.state import PLANNED, RunState
from pipeline.errors import ApiError, LocalError, UsageError
from pipeline.reading.discover import Skipped
from pipeline.reading.sources import Input
from pipeline.reporting.atomic_json import write_json_atomically
from pipeline.reporting.report import build_report
from pipeline.reporting.report_html import write_report_html
from pipeline.reporting.summary import plain_summary, summary_details
from pipeline.reporting.types import Report

if TYPE_CHECKING:
    from pipeline.engine.retry_plan import RetryPlan

#: a resume changes nothing (completed_with_unknowns is not one: a resume asks the server again, in case it
#: now tells; a scheduler does not resume an exit 4)
FINAL_OUTCOMES = ("succeeded", "completed_with_failures", "completed_with_duplicates")
JOURNAL_AND_REPORTS_BYTES = 64 * 1024 * 1024  # room a run needs beside its spool, to be safe


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
    max_errors: str | None = None  # resume: a new error budget (batch.max_errors) for the rest of the run
    allow_concurrent: bool = False  # allow a second run of the same config and inputs at once
    #: import inputs that a run under the same report.dir already sent (``engine.imported_before``)
    again: bool = False
    recursive: bool = False  # input directories: read their subdirectories too
    #: where the settings came from, for the report: {"file", "found_as", "set_by": {key: origin}}
    config_origin: dict[str, Any] | None = None


class Run:
    """A run over ``inputs`` into ``run_dir``; ``prior`` is the journal's state when resuming."""

    def __init__(
        self,
        config: Config,
        inputs: list[Input],
        run_dir: Path,
        run_id: str,
        options: RunOptions,
        prior: RunState | None = None,
        *,
        lock: RunLock,
        retry: RetryPlan | None = None,
        skipped: Sequence[Skipped] = (),
    ) -> None:
        self.config, self.inputs, self.run_dir, self.options = config, inputs, run_dir, options
        self.retry = retry  # a retry: the planned batches are sent, not the inputs read whole
        self.lock = lock  # taken by the caller before it read the journal
        self.state = prior or RunState(run_id=run_id)
        if prior is None:
            self.state.config_origin = options.config_origin
            self.state.skipped_inputs = [
                {"path": str(s.path), "reason": s.reason.value, "message": s.message} for s in skipped
            ]
        self.resumed = prior is not None
        self.stop = Stop()
        #: the run's limit on upload attempts in flight, once its client is made (``snapshot()``)
        self.limiter: UploadLimiter | None = None
        self._sink = guarded(options.on_event)  # a callback that raises is told once, never stops the run
        self._changed_input: str | None = None  # the input whose change stopped the run, once it did

    def emit(self, event: str, **fields: Any) -> None:
        self._tell(event, fields)

    def _tell(self, event: str, fields: dict[str, Any]) -> None:
        """Every event to the listeners, with what a log line needs beside it: the source of the
        batch it is about (file and lines: the log names them) and, at the start, the run directory."""
        if not self._sink:
            return
        number = fields.get("batch")
        batch = self.state.batches.get(number) if isinstance(number, int) else None
        if batch is not None and "path" not in fields:
            fields = {**fields, "path": batch.path, "first_line": batch.first_line, "last_line": batch.last_line}
        if event == Event.RUN_STARTED:
            fields = {**fields, "run_dir": str(self.run_dir)}
        self._sink(event, fields)

    # --- the whole run -----------------------------------------------------------------------

    async def execute(self) -> Report:
        try:
            if self.resumed and self.state.finished_outcome in FINAL_OUTCOMES:
                return self._report_again()
            async with contextlib.AsyncExitStack() as stack:
                base_url, token = await self._target(stack)
                journal = stack.enter_context(Journal(self.run_dir))
                self._install_signal_handlers(stack)  # from here on, SIGTERM ends with a report
                record = Recorder(self.state, journal, self.config, self._tell)
                client = await stack.enter_async_context(self._client(base_url, token))
                started = record.run_started(base_url, self.inputs, self.resumed)
                self.state.too_many_errors = self.state.final_error = None  # a resume tries again
                if await self._something_to_send() and not await self._ensure_import_or_refuse(client, record):
                    return self._finish_or_say_why(record)  # a resume met a final error: its report says it
                stages = Stages(
                    config=self.config,
                    state=self.state,
                    record=record,
                    client=client,
                    inputs=self.inputs,
                    run_dir=self.run_dir,
                    stop=self.stop,
                    fingerprints={f["path"]: f for f in started},
                    emit=self.emit,
                    reader_workers=self.options.reader_workers,
                    make_reader=self.retry.reader if self.retry is not None else None,
                    resumed=self.resumed,
                )
                await self._run_stages(stages)
                await self._rebuild_refusals(client)
                return self._finish_or_say_why(record)
        finally:
            self.lock.release()

    async def _run_stages(self, stages: Stages) -> None:
        """The stages; what stops them early becomes the run's failure (exit 3), except a usage or
        local error before anything was sent (exit 2: raised, with its message) and an error no
        resume fixes (a 403, an unknown import: ``final_errors``, exit 1 once batches were accepted)."""
        try:
            await stages.run()
        except asyncio.CancelledError:
            raise
        except (UsageError, LocalError) as exc:
            if not self._sent_anything():
                raise  # nothing went out: exit 2, with the message
            if isinstance(exc, InputChangedError):  # journaled: a new run of that file is refused
                self._changed_input = str(exc.path)
            self._failed(str(exc))  # e.g. an input changed mid-run, a full disk: resumable (exit 3)
        except RunStop as exc:
            if not self._final(exc.cause):
                self._failed(str(exc))
        except ApiError as exc:  # the poller met a refused token or right
            if not self._final(exc):
                hint = run_wide_hint(exc, 0)
                self._failed(f"{exc}; {hint}" if hint else f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a crash: report what is known; the outcome is unknown (exit 3)
            self._failed(f"{type(exc).__name__}: {exc}")

    async def _rebuild_refusals(self, client: ApiClient) -> None:
        """``failed.ndjson`` rebuilt from every execution with refused records (``engine.refusals``),
        before the end is journaled: a run stopped before it is rebuilt by its resume. Not after a
        stop request or an error that ended the run (the server may be out of reach): the previous
        file stays whole and the resume rebuilds it."""
        if self.stop.requested.is_set() or self.state.failure:
            return
        try:
            written = await rebuild_failed_file(client, self.state, self.run_dir, validated=self.config.batch.validate)
        except Exception as exc:  # a side product: never the reason a run ends without its report
            self.state.warnings.append(f"the refused records could not be written to {FAILED_NAME}: {exc}")
            return
        self.state.warnings.extend(written.warnings)

    async def _something_to_send(self) -> bool:
        """A new run creates its document import only when the inputs hold a record to send: a run
        of only bad lines or skipped files creates none (its report says so)."""
        if self.resumed or self.config.import_.id or self.state.document_import.get("id"):
            return True
        return await asyncio.to_thread(inputs_hold_a_record, self.inputs, self.config)  # the report says so

    def _final(self, exc: ApiError) -> bool:
        """A 403 or an unknown import mid-run: final (``stopped_on_error``, exit 1); a 401 after
        earlier successes is not (an expired token: resumable, exit 3)."""
        if exc.status == 401:
            return False
        import_id = self.state.document_import.get("id")
        final = final_error_of(exc, self.config, creating=False, import_id=str(import_id) if import_id else None)
        if final is None:
            return False
        self.state.final_error = final
        self.emit(Event.RUN_FAILED, error=f"{exc}; {final_hint(final)}")
        return True

    async def _ensure_import_or_refuse(self, client: ApiClient, record: Recorder) -> bool:
        """A refused token, right or import before anything was sent: a usage error (exit 2), not a
        "not known yet" (exit 3) that a scheduler would resume forever. The run directory keeps a
        report (outcome ``nothing_sent``) whose ``final_error`` names the cause and the fix.

        On a resume of a run that sent batches: False (the run ends with its report) after a 401
        (an expired token: ``incomplete``, resumable) or a final error (``stopped_on_error``)."""
        known = self.state.document_import.get("id") or self.config.import_.id
        try:
            await self._ensure_import(client, record)
            return True
        except ApiError as exc:
            final = final_error_of(exc, self.config, creating=not known, import_id=str(known) if known else None)
            if final is None:
                raise
            if self._sent_anything():  # batches of the run were accepted before: not "nothing was sent"
                if exc.status == 401:
                    self._failed(f"{exc}; {token_refused_hint(self.config.api.token_env)}")
                else:
                    self.state.final_error = final
                    self.emit(Event.RUN_FAILED, error=f"{exc}; {final_hint(final)}")
                return False
            self.state.final_error = final
            report = self._finish_or_say_why(record)
            error = UsageError(f"nothing was sent: {exc}")
            error.hint = f"{final_hint(final)} (report: {self.run_dir / REPORT_NAME}, outcome {report['outcome']})"
            raise error from None

    def _finish_or_say_why(self, record: Recorder) -> Report:
        """The report. The journal records the end first (``resume`` trusts it); when the journal or
        the report files cannot be written (a full disk), the run says so and exits 3, its real
        outcome and its first failure kept in the message."""
        self.state.finished_at = time.time()
        shutil.rmtree(self.run_dir / "spool", ignore_errors=True)  # batches of .gz inputs, all settled
        report = self._report()
        try:
            record.run_finished(report, _summary(report), changed_input=self._changed_input)
        except LocalError as exc:
            report = self._also_failed(f"the journal could not record the end of the run ({exc})", report)
        try:
            self._write_reports(report)
        except (OSError, LocalError) as exc:
            report = self._also_failed(f"the report files could not be written ({exc})", report)
        return report

    def _also_failed(self, problem: str, report: Report) -> Report:
        outcome = report["outcome"]
        self._failed(
            f"{self.state.failure}; {problem}" if self.state.failure else f"{problem}; the outcome was {outcome}"
        )
        report = self._report()
        self._emit_finished(report)
        return report

    def _emit_finished(self, report: Report) -> None:
        """The end, told to the listeners when the recorder could not (or need not) tell it."""
        self.emit(
            Event.RUN_FINISHED,
            outcome=report["outcome"],
            exit_code=report["exit_code"],
            records=report["records"],
            summary=_summary(report),
        )

    def _write_reports(self, report: Report) -> None:
        write_json_atomically(self.run_dir / REPORT_NAME, report)
        keep_profile(self.run_dir, report)  # what the next run to the same place plans from
        write_report_html(report)
        if self.options.report_path:
            write_json_atomically(Path(self.options.report_path), report)
            write_report_html(report, Path(self.options.report_path).with_suffix(".html"))

    def _failed(self, message: str) -> None:
        self.state.failure = message
        self.emit(Event.RUN_FAILED, error=message)

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
            self.emit(Event.TARGET, url=emu.base_url, embedded=True)
            return emu.base_url, token
        url = self.config.api.url.rstrip("/")
        check_transport_security(url, self.options.allow_insecure_http)
        token = self.options.token or read_token(self.config)
        check_token(token, env=self.config.api.token_env)
        self.emit(Event.TARGET, url=url, embedded=False)
        return url, token

    def _client(self, base_url: str, token: str) -> ApiClient:
        up = self.config.upload
        retry = self.options.retry_policy or RetryPolicy(max_attempts=up.max_attempts, window_s=up.retry_window_s)
        # upload.adaptive = false: a fixed limit of upload.concurrency (a 429 still pauses new attempts)
        self.limiter = UploadLimiter(up.concurrency, adaptive=up.adaptive, pause_policy=retry)
        budget = RequestBudget(up.max_requests_per_s) if up.max_requests_per_s > 0 else None
        return ApiClient(
            base_url,
            token,
            timeout_s=self.config.api.timeout_s,
            retry=retry,
            on_retry=self._on_retry,
            limiter=self.limiter,
            budget=budget,
        )

    def _on_retry(self, event: Any) -> None:
        keys = ("method", "path", "attempt", "delay_s", "reason", "failing_s", "kind")
        self.emit(Event.RETRY, target=self.state.target or None, **{k: getattr(event, k, None) for k in keys})

    async def _ensure_import(self, client: ApiClient, record: Recorder) -> None:
        """Create the run's document import, or check the configured/journaled one."""
        known = self.state.document_import.get("id") or self.config.import_.id
        imp = await ensure_import(client, self.config.import_, str(known) if known else None, self.state.run_id)
        record.import_ready(imp)

    def _install_signal_handlers(self, stack: contextlib.AsyncExitStack) -> None:
        if not self.options.handle_signals:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
            stack.callback(loop.remove_signal_handler, sig)

    def _on_signal(self, sig: int) -> None:
        self.emit(Event.STOP_REQUESTED, signal=signal.Signals(sig).name, abandon=self.stop.requested.is_set())
        self.stop.request()

    # --- the stages --------------------------------------------------------------------------

    def _report_again(self) -> Report:
        """A finished run, resumed: nothing to send or poll; the same report again (written again:
        the run may have ended on a disk too full for it)."""
        self.emit(Event.RUN_STARTED, run_id=self.state.run_id, target=self.state.target, resumed=True, inputs=[])
        report = self._report()
        self._write_reports(report)
        self._emit_finished(report)
        return report

    def _report(self) -> Report:
        embedded = self.config.uses_embedded_emulator
        if self._sink and self._sink.error and self._sink.error not in self.state.warnings:
            self.state.warnings.append(self._sink.error)
        return build_report(
            self.state,
            rejects_path=self.run_dir / REJECTS_NAME,
            run_dir=self.run_dir,
            resumable=not embedded,
            emulator=embedded,
            retry_of=self.retry.retry_of_entry() if self.retry is not None else None,
            budget=parse_max_errors(self.config.batch.max_errors),
        )


def preflight(config: Config, inputs: list[Input], options: RunOptions) -> None:
    """Before anything is sent: every output path is writable and the disk has room (``LocalError``)."""
    report_dir = runs_base(config)
    check_output_dir(report_dir)
    if options.report_path is not None:
        check_output_file(Path(options.report_path))
    spool = spool_bytes(inputs, config.upload.concurrency, config.batch.max_bytes)  # .gz batches are spooled
    check_free_space(report_dir, JOURNAL_AND_REPORTS_BYTES + spool)


def _summary(report: Report) -> str:
    return "\n".join([plain_summary(report), *summary_details(report)])

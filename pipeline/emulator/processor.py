"""The background processor: a bounded number of slots move executions to a terminal status.

An execution waits ``PENDING`` in a FIFO queue until a slot is free. The slot keeps it
``PENDING`` for ``process_ms / 2`` (scheduling), moves it to ``RUNNING`` for
``process_ms / 2 + lines * per_line_us``, then ends it:
- a ``lost`` / ``failed`` fault decided at upload time: ``LOST`` / ``FAILED`` with ``error.message``;
- no good record (all failed, or none at all): ``FAILED`` with ``error.message`` and a ``result``;
- otherwise ``SUCCEEDED`` (even with some failed records), and only then are its records accepted.
The records were already checked while the upload streamed in, so ending is cheap.
"""

from __future__ import annotations

import asyncio
import contextlib

from pipeline.emulator.accounting import Accounting
from pipeline.emulator.options import EmulatorOptions
from pipeline.emulator.store import Execution, Store, now_ms


class Processor:
    def __init__(self, store: Store, accounting: Accounting, options: EmulatorOptions) -> None:
        self.store = store
        self.accounting = accounting
        self.options = options
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._slot(), name=f"emulator-slot-{i}") for i in range(self.options.slots)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def submit(self, exe: Execution) -> None:
        self._queue.put_nowait(exe.id)

    def _alive(self, exe: Execution) -> bool:
        return self.store.executions.get(exe.id) is exe and exe.status in ("PENDING", "RUNNING")

    async def _slot(self) -> None:
        half = self.options.process_ms / 2000
        while True:
            exe = self.store.executions.get(await self._queue.get())
            if exe is None or exe.status != "PENDING":
                continue
            if half:
                await asyncio.sleep(half)
            if not self._alive(exe):
                continue
            exe.status = "RUNNING"
            exe.start_date = now_ms()
            exe.num_tasks, exe.completed_tasks, exe.erroneous_tasks = 1, 0, 0
            delay = half + exe.lines * self.options.per_line_us / 1e6
            if delay:
                await asyncio.sleep(delay)
            if self._alive(exe):
                self.finish(exe)

    def _result(self, exe: Execution) -> dict[str, object]:
        return {
            "total_success": exe.ok,
            "total_failure": exe.failed,
            "input_file_name": exe.filename,
            "input_file_uri": exe.input_file_uri,
            "error_file_uri": exe.error_file_uri if exe.failures else None,
            "possible_issue_on_identifiers": False,
            "top_identifiers": {},
        }

    def finish(self, exe: Execution) -> None:
        """Move a running execution to its terminal status."""
        exe.end_date = max(now_ms(), exe.start_date or 0)
        if exe.fate == "LOST":
            exe.status, exe.erroneous_tasks = "LOST", 1
            exe.error = {"message": "the executor running this job was lost (emulator fault injection)"}
        elif exe.fate == "FAILED":
            exe.status, exe.erroneous_tasks = "FAILED", 1
            exe.error = {"message": "the job failed on the platform (emulator fault injection)"}
        elif exe.ok == 0:
            exe.status, exe.erroneous_tasks = "FAILED", 1
            exe.result = self._result(exe)
            if exe.records == 0:
                message = exe.problem or "the file holds no record"
            else:
                message = f"all {exe.failed} records were rejected; see result.error_file_uri"
                if exe.problem:
                    message += f" ({exe.problem})"
            exe.error = {"message": message}
        else:
            exe.status, exe.completed_tasks = "SUCCEEDED", 1
            exe.result = self._result(exe)
            self.accounting.accept(exe.id, exe.digests, exe.ok)
        if exe.failures and exe.result is not None:
            self.store.error_files[exe.error_file_uri] = exe.id
        else:
            exe.failures = []
        exe.digests = bytearray()

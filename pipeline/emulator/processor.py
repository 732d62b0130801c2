"""The background processor: a bounded number of slots move executions to a terminal status.

The model, on the event loop's clock: executions are served in arrival order (FIFO: the order of
their creation) by ``slots`` parallel slots. An execution is ``PENDING`` while it waits for a slot;
a slot takes the oldest waiting one, moves it to ``RUNNING`` and holds it for
``process_ms + lines * per_line_us`` (``lines``: its physical lines, ``number_of_lines``), then
ends it and takes the next:
- a ``lost`` / ``failed`` fault decided at upload time: ``LOST`` / ``FAILED`` with ``error.message``;
- no good record (all failed, or none at all): ``FAILED`` with ``error.message`` and a ``result``;
- otherwise ``SUCCEEDED`` (even with some failed records: then with ``error.message`` too), and only
  then are its records accepted.
The records were already checked while the upload streamed in, so ending is cheap.

The times are the model's, not the wake-ups': an execution starts at the later of its creation and
its slot's previous end, and ends exactly its hold later; a slot that wakes late (a loaded loop)
dates the next start from when it should have been free, so lateness never adds up over a queue.
Each execution keeps them on the loop clock (``started_mono``, ``ended_mono``) and as epoch ms
(``start_date``, ``end_date``; ``duration`` is their difference). A canceled execution (only while
``PENDING``) is skipped by the slots; one whose import was deleted is not ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from pipeline.emulator.accounting import Accounting
from pipeline.emulator.options import EmulatorOptions
from pipeline.emulator.store import Execution, Store, now_ms


def _epoch_ms(mono: float, loop: asyncio.AbstractEventLoop) -> int:
    """The epoch ms of a loop-clock time (now, or a moment ago)."""
    return now_ms() - round((loop.time() - mono) * 1000)


class Processor:
    def __init__(self, store: Store, accounting: Accounting, options: EmulatorOptions) -> None:
        self.store = store
        self.accounting = accounting
        self.options = options
        self._queue: asyncio.Queue[tuple[str, float]] = asyncio.Queue()  # (execution id, submitted at)
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
        self._queue.put_nowait((exe.id, asyncio.get_running_loop().time()))

    def hold_s(self, exe: Execution) -> float:
        """Seconds an execution holds its slot."""
        return self.options.process_ms / 1000 + exe.lines * self.options.per_line_us / 1e6

    def _alive(self, exe: Execution) -> bool:
        return self.store.executions.get(exe.id) is exe and exe.status in ("PENDING", "RUNNING")

    async def _slot(self) -> None:
        loop = asyncio.get_running_loop()
        free_at = -math.inf  # when this slot's previous execution ended (the model's time)
        while True:
            exe_id, submitted = await self._queue.get()
            exe = self.store.executions.get(exe_id)
            if exe is None or exe.status != "PENDING":
                continue
            start = min(loop.time(), max(free_at, submitted))
            exe.status = "RUNNING"
            exe.started_mono = start
            exe.start_date = _epoch_ms(start, loop)
            exe.num_tasks, exe.completed_tasks, exe.erroneous_tasks = 1, 0, 0
            free_at = start + self.hold_s(exe)
            left = free_at - loop.time()
            if left > 0:
                await asyncio.sleep(left)
            if self._alive(exe):
                self.finish(exe, free_at)

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

    def finish(self, exe: Execution, at: float | None = None) -> None:
        """Move a running execution to its terminal status, at loop time ``at`` (default: now)."""
        loop = asyncio.get_running_loop()
        exe.ended_mono = loop.time() if at is None else min(at, loop.time())
        exe.end_date = max(_epoch_ms(exe.ended_mono, loop), exe.start_date or 0)
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
            if exe.failed:  # the platform's "SUCCEEDED - with errors"
                exe.error = {"message": f"{exe.failed} of {exe.records} records failed; see result.error_file_uri"}
            self.accounting.accept(exe.id, exe.digests, exe.ok)
        if exe.failures and exe.result is not None:
            self.store.error_files[exe.error_file_uri] = exe.id
        else:
            exe.failures = []
        exe.digests = bytearray()

"""Checking runs of records in blocks, in worker processes when worth it, with the answers
settled in file order by a :class:`~pipeline.reading.block_settler.BlockSettler`, so that batches
and rejects do not depend on the workers.

A run is copied out of the read buffer and cut at record ends into blocks of about
``block_size`` bytes. Inline, each block is checked and settled at once; with a pool, up to
``depth`` blocks are in flight and the oldest is settled (waiting for its answer) when the window
is full. Pool workers read their block of a plain file themselves (``os.pread``: a few numbers
through the pipe instead of a megabyte); blocks of a ``.gz`` file are sent to them.

The pool is a :class:`WorkerPool`: one pipe per worker and no thread in the reader's process.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from pipeline.reading.batch import Grammar
from pipeline.reading.block_settler import Block, BlockSettler, Checked, Pending, Waiting
from pipeline.reading.record_runs import Run, Skip
from pipeline.reading.validate import validate_counted, validate_file_block
from pipeline.reading.validate_csv import validate_csv_counted, validate_csv_file_block

if TYPE_CHECKING:  # multiprocessing is imported only when a pool is started
    from multiprocessing.connection import Connection

BlockCheck: TypeAlias = Callable[[bytes, int], Checked]  # (block, largest record that fits)
FileBlockCheck: TypeAlias = Callable[[str, int, int, int], Checked]  # (path, offset, length, largest)


@dataclass(frozen=True, slots=True)
class BlockChecks:
    """The check of a block, on its bytes or on a slice of a file read by the worker."""

    on_bytes: BlockCheck
    on_file: FileBlockCheck

    @classmethod
    def choose(cls, document_type: str, columns: list[str] | None) -> BlockChecks:
        """NDJSON records of ``document_type``, or CSV records under the header ``columns``."""
        if columns is None:
            return cls(partial(validate_counted, document_type), partial(validate_file_block, document_type))
        return cls(partial(validate_csv_counted, columns), partial(validate_csv_file_block, columns))


class Pool(Protocol):
    """Where blocks are checked: a :class:`WorkerPool`. Until it is ``ready`` (its workers
    started), blocks are checked inline."""

    @property
    def ready(self) -> bool: ...

    def submit(self, fn: Callable[..., Checked], /, *args: Any) -> Waiting: ...


#: A task with a bytes argument longer than this is a whole block (``.gz`` input), not a slice.
SMALL_TASK = 1 << 14


class WorkerError(RuntimeError):
    """A validation worker process ended while a block was in its hands."""


class WorkerPool:
    """Worker processes with one pipe each, answering in order, and no thread in the reader's
    process. A task goes to the worker with the fewest tasks unanswered (in turn among equals); its
    answer is read from that worker's pipe when it is asked for (or before, when the pipe already
    holds it as the next task is sent), and since a worker answers its tasks in the order it got
    them, each answer is matched to its task. (A ``concurrent.futures`` pool runs a thread that
    hands tasks to its workers and one that sends them, which take turns with the reader thread for
    the GIL at every task: measured 0.37 -> 0.27 CPU s in the reader's process for 300 MB.)

    A task is a few numbers (a slice of a plain file) or, for ``.gz`` input, a whole block: that
    one is sent only to a worker whose answers are all read (a worker blocked on sending a long
    answer while the reader is blocked on sending it a block would wait for each other forever).

    The workers are started by a thread (each a fresh interpreter importing the checks:
    :mod:`~pipeline.reading.worker_process`, which never imports the caller's main module), so
    that the reader checks the first blocks itself meanwhile instead of waiting (:attr:`ready`).
    """

    def __init__(self, workers: int) -> None:
        self._workers: list[_Worker] = []
        self._turn = 0
        self._failed: BaseException | None = None
        self._starting = threading.Thread(
            target=self._start, args=(workers,), name="pipeline-validation-start", daemon=True
        )
        self._starting.start()

    def _start(self, workers: int) -> None:
        """Start every worker process, then wait for each to be ready: their imports run side by
        side (one after the other, the first worker idled for as long as the second took to start:
        0.1-0.2 s of a 1 GB run, measured)."""
        started: list[_Worker] = []
        try:
            for i in range(workers):
                started.append(_Worker(i))
            for worker in started:
                worker.wait_ready()
            self._workers = started
        except BaseException as exc:  # raised by the first submit
            for worker in started:
                worker.close()
            for worker in started:
                worker.join(timeout=1)
            self._failed = exc

    @property
    def ready(self) -> bool:
        """True once the workers are started (or failed to start: :meth:`submit` then raises)."""
        return not self._starting.is_alive()

    def submit(self, fn: Callable[..., Checked], /, *args: Any) -> Waiting:
        if not self._workers:
            self._starting.join()
            if self._failed is not None:
                raise WorkerError(f"validation workers did not start: {self._failed}") from self._failed
        worker = self._least_busy()
        if any(isinstance(a, bytes) and len(a) > SMALL_TASK for a in args):
            worker.receive_all()
        return worker.send(fn, args)

    def _least_busy(self) -> _Worker:
        """The worker with the fewest tasks not yet answered (the answers already sent are read
        first, without waiting), the next in turn among equals. In turn only, a worker slowed
        down (by the emulator, the reader, another process on its core) held the oldest block of
        the window while the other ran out of tasks and idled: 2 x the slower one's pace."""
        workers = self._workers
        count = len(workers)
        best: _Worker | None = None
        for k in range(count):
            worker = workers[(self._turn + k) % count]
            worker.receive_sent()
            if best is None or worker.unanswered < best.unanswered:
                best = worker
        assert best is not None  # the pool has at least one worker
        self._turn = (workers.index(best) + 1) % count
        return best

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Close the pipes: a worker ends when its pipe does, once its task in progress (a few
        milliseconds) is done; one that does not is terminated. (The arguments are those of
        ``Executor.shutdown``: tasks not yet taken are dropped either way.)"""
        self._starting.join()
        for worker in self._workers:
            worker.close()
        for worker in self._workers:
            worker.join(timeout=10 if wait else 1)


class _Answer:
    """The answer of a task sent to a worker, read from the worker's pipe when asked for."""

    __slots__ = ("_worker", "_value", "_done")

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self._value: Any = None
        self._done = False

    def result(self) -> Checked:
        while not self._done:
            self._worker.receive()
        ok, value = self._value
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def set(self, value: tuple[bool, Any]) -> None:
        self._value = value
        self._done = True


class _Worker:
    """One worker process, started by the constructor; usable once :meth:`wait_ready` returned."""

    def __init__(self, number: int) -> None:
        from pipeline.reading.worker_process import start_worker

        self.name = f"pipeline-validation-{number}"
        self._conn, self._process = start_worker()
        self._waiting: deque[_Answer] = deque()

    def wait_ready(self) -> None:
        """Wait until the worker's imports are done (``worker_process.READY``)."""
        from pipeline.reading.worker_process import READY

        try:
            said = self._conn.recv()
        except (OSError, EOFError) as exc:
            self.close()
            raise WorkerError(f"validation worker {self.name} did not start ({exc!r})") from None
        if said != READY:
            self.close()
            raise WorkerError(f"validation worker {self.name} did not start (it said {said!r})")

    def send(self, fn: Callable[..., Checked], args: tuple[Any, ...]) -> _Answer:
        answer = _Answer(self)
        try:
            self._conn.send((fn, args))
        except (OSError, EOFError) as exc:
            raise WorkerError(f"validation worker {self.name} is gone ({exc})") from None
        self._waiting.append(answer)
        return answer

    @property
    def unanswered(self) -> int:
        """Tasks sent whose answers are not read yet."""
        return len(self._waiting)

    def receive_sent(self) -> None:
        """Read the answers already in the pipe, without waiting for more."""
        while self._waiting and self._conn.poll(0):
            self.receive()

    def receive_all(self) -> None:
        """Read the answers of all the tasks sent (each is kept until asked for)."""
        while self._waiting:
            self.receive()

    def receive(self) -> None:
        """Read the answer of the oldest task still waiting."""
        try:
            value = self._conn.recv()
        except (OSError, EOFError) as exc:
            code = self._process.poll()
            raise WorkerError(f"validation worker {self.name} ended (exit code {code}, {exc!r})") from None
        self._waiting.popleft().set(value)

    def close(self) -> None:
        self._conn.close()

    def join(self, timeout: float) -> None:
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def serve(conn: Connection) -> None:
    """A worker process: run each task received on ``conn``, answer ``(True, result)`` or ``(False,
    exception)``, until the pipe is closed. SIGINT is ignored: Ctrl-C at a terminal reaches the
    whole process group, and the run itself decides how to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            fn, args = conn.recv()
        except (OSError, EOFError):
            return  # the pipe is closed: the pool is shut down
        try:
            answer: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # told to the reader, which raises it
            answer = (False, exc)
        try:
            conn.send(answer)
        except (OSError, EOFError):
            return  # the reader is gone
        except Exception as exc:  # an exception that does not pickle
            conn.send((False, RuntimeError(f"validation failed: {exc!r}")))


def block_ends(region: bytes, grammar: Grammar, block_size: int, pos: int = 0, size: int = -1) -> Iterator[int]:
    """The ends of the blocks of ``region[pos:size]`` (whole records; ``size`` -1: to its end),
    each about ``block_size`` bytes, cut at a record end; a record longer than ``block_size`` makes
    a block of its own."""
    size = len(region) if size < 0 else size
    while pos < size:
        end = size
        if end - pos > block_size:
            end = grammar.last_boundary(region, pos, pos + block_size)
            if end < 0:
                end = grammar.first_boundary(region, pos, size)[0]
                end = size if end < 0 else end
        yield end
        pos = end


class BlockWindow:
    """The blocks in flight, oldest first (and the skipped records between them, in order).

    ``pool`` None: each block is checked inline and settled at once. Else up to ``depth`` are in
    the pool (checked inline while it is not ready); ``path`` is the file the workers read their
    blocks from, None to send the bytes.
    """

    def __init__(
        self,
        settler: BlockSettler,
        checks: BlockChecks,
        *,
        pool: Pool | None,
        path: str | None,
        depth: int,
        block_size: int,
        grammar: Grammar,
        limit: int,
    ) -> None:
        self._settler = settler
        self._checks = checks
        self._pool = pool
        self._path = path
        self._depth = depth if pool is not None else 0
        self._block_size = block_size
        self._grammar = grammar
        self._limit = limit
        self._pending: deque[Pending] = deque()

    def add_run(self, run: Run) -> None:
        buf, lo, hi, base = run
        # The buffer is reused: the blocks keep a copy. Of the whole buffer when the run is most of
        # it, so that every copy has the same size: glibc then reuses the memory of the copy freed
        # before, where copies of sizes that vary by a few bytes are each mapped afresh (2 MiB of
        # page faults each: 0.18-0.26 against 0.04 CPU s per GB, measured).
        if 2 * (hi - lo) > len(buf):
            region = bytes(buf)
        else:
            region, base, hi = bytes(memoryview(buf)[lo:hi]), base + lo, hi - lo
            lo = 0
        pos = lo
        for end in block_ends(region, self._grammar, self._block_size, lo, hi):
            self._pending.append(Pending(Block(region, pos, end, base), self._check(region, pos, end, base)))
            pos = end
            self.settle_due()

    def add_skip(self, skip: Skip) -> None:
        self._pending.append(Pending(skip, None))

    def settle_due(self) -> None:
        """Settle what is due: the oldest while the window is full or it needs no waiting (checked
        inline, or a skipped record)."""
        pending = self._pending
        while pending and (len(pending) >= self._depth or not hasattr(pending[0].check, "result")):
            self._settler.settle(pending.popleft())

    def settle_next(self) -> bool:
        """Settle the oldest pending item (at the end of the file); False if there was none."""
        if not self._pending:
            return False
        self._settler.settle(self._pending.popleft())
        return True

    def _check(self, region: bytes, lo: int, hi: int, base: int) -> Waiting | Checked:
        if self._pool is None or not self._pool.ready:
            return self._checks.on_bytes(region[lo:hi], self._limit)
        if self._path is not None:
            return self._pool.submit(self._checks.on_file, self._path, base + lo, hi - lo, self._limit)
        return self._pool.submit(self._checks.on_bytes, region[lo:hi], self._limit)

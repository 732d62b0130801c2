"""Checking runs of records in blocks, in a process pool when worth it, with the answers settled
in file order by a :class:`~pipeline.reading.block_settler.BlockSettler`, so that batches and
rejects do not depend on the pool.

A run is copied out of the read buffer and cut at record ends into blocks of about
``block_size`` bytes. Inline, each block is checked and settled at once; with a pool, up to
``depth`` blocks are in flight and the oldest is settled (waiting for its future) when the window
is full. Pool workers read their block of a plain file themselves (``os.pread``: a few numbers
through the pipe instead of a megabyte); blocks of a ``.gz`` file are sent to them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias

from pipeline.reading.batch import Grammar
from pipeline.reading.block_settler import Block, BlockSettler, Checked, Pending
from pipeline.reading.csvscan import Run, Skip
from pipeline.reading.validate import validate_counted, validate_file_block
from pipeline.reading.validate_csv import (
    count_csv_block,
    count_csv_file_block,
    validate_csv_counted,
    validate_csv_file_block,
)

BlockCheck: TypeAlias = Callable[[bytes, int], Checked]  # (block, largest record that fits)
FileBlockCheck: TypeAlias = Callable[[str, int, int, int], Checked]  # (path, offset, length, largest)


@dataclass(frozen=True, slots=True)
class BlockChecks:
    """The check of a block, on its bytes or on a slice of a file read by the worker."""

    on_bytes: BlockCheck
    on_file: FileBlockCheck

    @classmethod
    def choose(cls, validate: bool, document_type: str, columns: list[str] | None) -> BlockChecks:
        """Validation off (only CSV comes here then): records counted; on: NDJSON records of
        ``document_type``, or CSV records under the header ``columns``."""
        if not validate:
            return cls(partial(count_csv_block, None), partial(count_csv_file_block, None))
        if columns is None:
            return cls(partial(validate_counted, document_type), partial(validate_file_block, document_type))
        return cls(partial(validate_csv_counted, columns), partial(validate_csv_file_block, columns))


def block_ends(region: bytes, grammar: Grammar, block_size: int) -> Iterator[int]:
    """The ends of the blocks of ``region`` (whole records), each about ``block_size`` bytes, cut
    at a record end; a record longer than ``block_size`` makes a block of its own."""
    pos = 0
    size = len(region)
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
    the pool; ``path`` is the file the workers read their blocks from, None to send the bytes.
    """

    def __init__(
        self,
        settler: BlockSettler,
        checks: BlockChecks,
        *,
        pool: Executor | None,
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
        region = bytes(memoryview(buf)[lo:hi])  # the buffer is reused: the blocks keep a copy
        base += lo
        pos = 0
        for end in block_ends(region, self._grammar, self._block_size):
            self._pending.append(Pending(Block(region, pos, end, base), self._check(region, pos, end, base)))
            pos = end
            self.settle_due()

    def add_skip(self, skip: Skip) -> None:
        self._pending.append(Pending(skip, None))

    def settle_due(self) -> None:
        """Settle what is due: everything inline, else the oldest while the window is full."""
        pending = self._pending
        while pending and len(pending) >= self._depth:
            self._settler.settle(pending.popleft())

    def settle_next(self) -> bool:
        """Settle the oldest pending item (at the end of the file); False if there was none."""
        if not self._pending:
            return False
        self._settler.settle(self._pending.popleft())
        return True

    def _check(self, region: bytes, lo: int, hi: int, base: int) -> Future[Checked] | Checked:
        if self._pool is None:
            return self._checks.on_bytes(region[lo:hi], self._limit)
        if self._path is not None:
            return self._pool.submit(self._checks.on_file, self._path, base + lo, hi - lo, self._limit)
        return self._pool.submit(self._checks.on_bytes, region[lo:hi], self._limit)

"""The copy a :class:`~pipeline.reading.blocks.BlockWindow` keeps of a run (the read buffer is
reused): the whole buffer when the run is most of it, so that copies have one size (glibc reuses
the memory of the one freed before instead of mapping each afresh), else just the run; either way
each block is the run's bytes at the run's source offsets."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.reading.block_settler import Pending
from pipeline.reading.blocks import BlockChecks, BlockWindow
from pipeline.reading.csvscan import NdjsonGrammar


class Keep:
    """A settler that keeps what it is given."""

    def __init__(self) -> None:
        self.settled: list[Pending] = []

    def settle(self, pending: Pending) -> None:
        self.settled.append(pending)


def _blocks(buf: bytearray, lo: int, hi: int, base: int) -> list[Any]:
    keep = Keep()
    checks = BlockChecks.choose("USER_ACTIVITY", None)
    window = BlockWindow(
        keep,  # type: ignore[arg-type]
        checks,
        pool=None,
        path=None,
        depth=0,
        block_size=100,
        grammar=NdjsonGrammar,
        limit=10_000,
    )
    window.add_run((buf, lo, hi, base))
    return [p.item for p in keep.settled]


LINE = b'{"$ts":1,"$type":"T","$user_agent_id":"vec:1"}\n'


@pytest.mark.parametrize(("lo", "lines"), [(0, 20), (len(LINE), 18), (0, 3), (5 * len(LINE), 2)])
def test_each_block_is_the_runs_bytes_at_their_offsets(lo, lines):
    buf = bytearray(LINE * 20 + b'{"$ts":')  # a record cut at the end of the buffer
    hi = lo + lines * len(LINE)
    blocks = _blocks(buf, lo, hi, 1000)
    assert b"".join(bytes(b.data[b.lo : b.hi]) for b in blocks) == bytes(buf[lo:hi])
    assert [b.base + b.lo for b in blocks] == [
        1000 + lo + sum(b.hi - b.lo for b in blocks[:i]) for i in range(len(blocks))
    ]
    whole = 2 * (hi - lo) > len(buf)
    assert all(len(b.data) == (len(buf) if whole else hi - lo) for b in blocks)


def test_the_buffer_changed_afterwards_does_not_change_the_blocks():
    buf = bytearray(LINE * 20)
    blocks = _blocks(buf, 0, len(buf), 0)
    buf[:] = b"x" * len(buf)
    assert b"".join(bytes(b.data[b.lo : b.hi]) for b in blocks) == LINE * 20

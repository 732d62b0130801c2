"""The executions a poller tracks, and when each is due: one heap of due times for all of them.

Apart from the poller because it is the bookkeeping under every decision: what is tracked (by
execution id, and in the order tracked, for the queue a freed slot serves), what is due next, and
what is no longer polled. An item planned again gets a new entry; its old one is stale (its
``seq`` no longer matches) and skipped, and the heap is compacted when stale entries pile up.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Entry = tuple[float, int, "Tracked"]  # (due time, seq, tracked)


@dataclass(eq=False, slots=True)
class Tracked:
    """One tracked execution: what its answers showed, and where its next poll is."""

    execution_id: str
    key: Any
    deadline: float
    tracked_at: float
    records: int | None = None  # hints of track()
    size: int | None = None
    interval: float | None = None  # the growing interval's base (before anything is learned)
    last_status: str | None = None  # normalised (or None: no status seen yet / none sent)
    not_found: int = 0  # 404 answers in a row
    last_poll: float = 0.0  # when it was tracked, or last answered
    created: float | None = None  # server seconds, from its answers
    started: float | None = None
    lines: int | None = None  # its parameters.number_of_lines
    not_started_at: float | None = None  # the last time a GET saw it waiting (our clock)
    claim: float | None = None  # when it would have started (our clock) had it taken a slot freed by an end
    get_next: bool = False  # its next poll is a GET (a listing answered the last one, or did not show it)
    fixed_first: bool = False  # its first poll was asked for at a given time (track(first_delay=))
    aimed: bool = False  # its one poll inside the floor (aimed at its expected end, uploads over) was planned
    polled: bool = False  # a poll of it was answered (or failed) since it was tracked
    seq: int = 0  # its entry in the heap (0: not waiting there)
    due: float = 0.0  # when that entry is due
    done: bool = False  # terminal, timed out or lost: no longer polled


class Schedule:
    """The live tracked executions and the heap of their next polls."""

    def __init__(self) -> None:
        self._due: list[Entry] = []  # heap of (due time, seq, tracked); stale entries skipped
        self._seq = 0
        self._by_id: dict[str, list[Tracked]] = {}  # the live items (an id tracked twice has two)
        #: in the order tracked, less those seen started (in front): the queue a freed slot serves
        self.order: deque[Tracked] = deque()
        self.live = 0

    def add(self, item: Tracked) -> None:
        self._by_id.setdefault(item.execution_id, []).append(item)
        self.order.append(item)
        self.live += 1

    def items(self) -> Iterator[Tracked]:
        """Every live item."""
        for items in self._by_id.values():
            yield from items

    def of(self, execution_id: str) -> list[Tracked]:
        """The live items of one execution id (a copy: applying an answer may drop them)."""
        return list(self._by_id.get(execution_id, ()))

    def push(self, due: float, item: Tracked) -> None:
        self._seq += 1
        item.seq, item.due = self._seq, due
        heapq.heappush(self._due, (due, self._seq, item))
        if len(self._due) > 64 + 2 * self.live:  # stale entries of items planned again or done
            self._due = [e for e in self._due if self._waiting(e)]
            heapq.heapify(self._due)

    @staticmethod
    def _waiting(entry: Entry) -> bool:
        return not entry[2].done and entry[1] == entry[2].seq

    def head(self) -> Entry | None:
        while self._due and not self._waiting(self._due[0]):
            heapq.heappop(self._due)
        return self._due[0] if self._due else None

    def pop(self) -> Tracked:
        item = heapq.heappop(self._due)[2]
        item.seq = 0
        return item

    def drop(self, item: Tracked) -> None:
        """No longer polled (terminal, lost, timed out)."""
        item.done, item.seq = True, 0
        self.live -= 1
        same = self._by_id.get(item.execution_id, [])
        if item in same:
            same.remove(item)
        if not same:
            self._by_id.pop(item.execution_id, None)

    def replan(self, plan: Callable[[Tracked], float]) -> None:
        """Every waiting item not asked for at a given time due again at ``plan(item)`` (at most
        its deadline)."""
        entries = []
        for entry in self._due:
            if not self._waiting(entry):
                continue
            due, seq, item = entry
            if not item.fixed_first:
                due = item.due = min(plan(item), item.deadline)
            entries.append((due, seq, item))
        heapq.heapify(entries)
        self._due = entries

    def take_due(self, now: float, horizon: float, more_than: int) -> list[Tracked] | None:
        """The items due by ``horizon``, when one is due by ``now`` and more than ``more_than`` are
        (otherwise they stay where they are). Those whose next poll is a GET are left to it."""
        head = self.head()
        if head is None or head[0] > now:
            return None
        taken: list[Entry] = []
        kept: list[Entry] = []
        while (head := self.head()) is not None and head[0] <= horizon:
            entry = heapq.heappop(self._due)
            (kept if entry[2].get_next else taken).append(entry)
        if len(taken) <= more_than:
            kept += taken
            taken = []
        for entry in kept:
            heapq.heappush(self._due, entry)
        for entry in taken:
            entry[2].seq = 0
        return [entry[2] for entry in taken] or None

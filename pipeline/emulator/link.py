"""The upload link: the bytes of every upload body cross one shared, paced link.

A fluid model (generalized processor sharing in virtual time) on the event loop's clock. Each
upload is a ``Flow`` (``link.open()``, ``flow.close()`` when its body ended). While ``n`` flows
are counted, each is served at ``share = min(per_connection, uplink / n)`` bytes per second
(either cap may be absent), so together they never exceed ``uplink`` and none exceeds
``per_connection``, and the link is fair between uploads whatever the sizes of their chunks.
``V``, the bytes served so far to each counted flow, grows at ``share``; a flow that asks to carry
``b`` bytes goes on once ``V`` reaches its end tag (its previous tag + ``b``, or ``V + b`` when it
was not counted).

A flow asks for its bytes after reading them (``await flow.carry(len(chunk))``). It is counted
while it waits, and for ``LINGER_S`` after each release: the time to feed its chunk and read the
next one (and the loop's lateness in waking it) is still its share, so it loses nothing to them and
the others never get more than their share meanwhile; a flow that does not come back within
``LINGER_S`` (its client stalls) stops being counted, and a flow that comes back later has no
credit: the link never lets a body catch up in a burst. One timer (the earliest end or expiry) is
set at a time.

The emulator builds a ``Link`` only when a cap is set (``uplink_mbps`` or ``bandwidth_mbps``):
without one, an upload's chunks take no pacing path at all.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import math

#: A wait this close to its end (seconds) is over: a timer may fire this much early.
EPSILON_S = 1e-6
#: How long a flow stays counted after a release, waiting for its next chunk.
LINGER_S = 0.02

_IDLE, _WAITING, _LINGERING, _CLOSED = range(4)


class Flow:
    """One upload's use of the link."""

    __slots__ = ("_link", "_state", "_end", "_future", "_released")

    def __init__(self, link: Link) -> None:
        self._link = link
        self._state = _IDLE
        self._end = 0.0  # its end tag, in V
        self._future: asyncio.Future[None] | None = None
        self._released = 0  # generation of its last release (its linger entry)

    async def carry(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more bytes of this upload crossed the link."""
        if nbytes > 0:
            await self._link._carry(self, nbytes)

    def close(self) -> None:
        """The upload is over (or abandoned): it stops being counted at once."""
        self._link._close(self)


class Link:
    """A link of ``uplink_bps`` bytes per second shared by all flows, each held to
    ``per_connection_bps`` (0: no such cap; at least one of them is set)."""

    def __init__(self, uplink_bps: float = 0.0, per_connection_bps: float = 0.0) -> None:
        if uplink_bps < 0 or per_connection_bps < 0 or not (uplink_bps or per_connection_bps):
            raise ValueError("Link: one cap at least, none negative")
        self.uplink_bps = uplink_bps
        self.per_connection_bps = per_connection_bps
        self._v = 0.0  # virtual bytes served to each counted flow
        self._t = 0.0  # loop time of the last update of _v
        self._counted = 0  # flows waiting or lingering
        self._waiters: list[tuple[float, int, Flow]] = []  # (end tag, order, flow)
        self._lingering: collections.deque[tuple[float, int, Flow]] = collections.deque()  # (expiry, gen, flow)
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        #: Bytes that crossed the link so far (every upload).
        self.carried = 0

    def open(self) -> Flow:
        """A flow for one upload; ``close()`` it when its body ended."""
        return Flow(self)

    def share(self, n: int) -> float:
        """The rate (bytes/s) of each of ``n`` counted flows."""
        rate = self.uplink_bps / n if self.uplink_bps else math.inf
        return min(rate, self.per_connection_bps) if self.per_connection_bps else rate

    @property
    def counted(self) -> int:
        """Flows sharing the link now (waiting for bytes to cross, or between two chunks)."""
        return self._counted

    # --- events ---------------------------------------------------------------------------------

    async def _carry(self, flow: Flow, nbytes: int) -> None:
        loop = asyncio.get_running_loop()
        self._advance(loop.time())
        if flow._state == _LINGERING:  # back in time: it keeps its place (and its credit)
            flow._end += nbytes
        else:
            flow._end = self._v + nbytes
            self._counted += 1
        if (flow._end - self._v) / self.share(self._counted) <= EPSILON_S:
            self._release(flow, loop.time())  # its credit covers it
            self.carried += nbytes
            self._schedule(loop)
            return
        flow._state = _WAITING
        flow._future = future = loop.create_future()
        heapq.heappush(self._waiters, (flow._end, next(self._order), flow))
        self._schedule(loop)
        try:
            await future
        except asyncio.CancelledError:
            if flow._state == _WAITING:
                self._drop(flow, loop)
            raise
        self.carried += nbytes

    def _close(self, flow: Flow) -> None:
        if flow._state in (_WAITING, _LINGERING):
            self._drop(flow, asyncio.get_running_loop())
        flow._state = _CLOSED

    def _drop(self, flow: Flow, loop: asyncio.AbstractEventLoop) -> None:
        """A flow stops being counted now (closed, or its wait cancelled)."""
        self._advance(loop.time())
        if flow._state == _WAITING:
            self._waiters = [w for w in self._waiters if w[2] is not flow]
            heapq.heapify(self._waiters)
            if flow._future is not None and not flow._future.done():
                flow._future.cancel()
        if flow._state in (_WAITING, _LINGERING):
            self._counted -= 1
        flow._state, flow._future = _IDLE, None
        self._schedule(loop)

    def _release(self, flow: Flow, now: float) -> None:
        flow._state = _LINGERING
        flow._released += 1
        self._lingering.append((now + LINGER_S, flow._released, flow))

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        self._advance(now)
        while self._waiters and (self._waiters[0][0] - self._v) / self.share(self._counted) <= EPSILON_S:
            _, _, flow = heapq.heappop(self._waiters)
            future, flow._future = flow._future, None
            self._release(flow, now)
            if future is not None and not future.done():
                future.set_result(None)
        self._schedule(loop)

    # --- the fluid clock ------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Bring ``V`` to ``now``, ending the lingering of flows whose time is up on the way."""
        while self._lingering and self._lingering[0][0] <= now:
            expiry, gen, flow = self._lingering.popleft()
            if flow._state == _LINGERING and flow._released == gen:
                self._grow(max(expiry, self._t))
                flow._state = _IDLE
                self._counted -= 1
        self._grow(now)

    def _grow(self, until: float) -> None:
        if self._counted and until > self._t:
            self._v += (until - self._t) * self.share(self._counted)
        self._t = max(self._t, until) if self._counted else until

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._lingering and not self._live(self._lingering[0]):
            self._lingering.popleft()
        when = math.inf
        if self._waiters:
            when = self._t + max(0.0, (self._waiters[0][0] - self._v) / self.share(self._counted))
        if self._lingering:
            when = min(when, self._lingering[0][0])
        if when < math.inf:
            self._timer = loop.call_at(when, self._wake, loop)

    @staticmethod
    def _live(entry: tuple[float, int, Flow]) -> bool:
        _, gen, flow = entry
        return flow._state == _LINGERING and flow._released == gen

"""What one emulator instance owns, shared by the routes of ``app`` and the upload of ``upload``.

Besides the store, the accounting and the processor, the state holds the upload link (``link``:
the shared pacer of upload bodies, ``None`` when neither ``uplink_mbps`` nor ``bandwidth_mbps`` is
set) and the service-wide faults:
- the server clock (real time + ``clock_skew``) and the ``Retry-After`` values built from it;
- token revocation (``revoke_after``): once that many executions were created every request is a
  401 ``INVALID_TOKEN``, until ``restore_token()`` (then the token stays valid for good);
- outages (``outage_after``): once that many executions were created every request is a 503 for
  ``outage_s`` seconds (once per instance); ``set_outage(True)`` starts one that lasts until
  ``set_outage(False)``, which also ends a timed one;
- the background creations of ``gateway504`` / ``slow_create`` (``pending_creations``), cancelled
  by ``stop_background()`` when the server stops.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, TypeVar

from aiohttp import web

from pipeline.emulator.accounting import Accounting, Upload
from pipeline.emulator.faults import FaultDice, FaultPlan, RateLimiter, parse_faults
from pipeline.emulator.link import Link
from pipeline.emulator.options import EmulatorOptions
from pipeline.emulator.processor import Processor
from pipeline.emulator.responses import ApiFailure
from pipeline.emulator.store import Execution, Store

T = TypeVar("T")


@dataclass
class EmulatorState:
    """Everything one emulator instance owns."""

    options: EmulatorOptions
    plan: FaultPlan = field(init=False)
    dice: FaultDice = field(init=False)
    limiter: RateLimiter = field(init=False)
    store: Store = field(default_factory=Store)
    accounting: Accounting = field(default_factory=Accounting)
    processor: Processor = field(init=False)
    #: The shared pacer of upload bodies; ``None`` without a cap (no pacing code path at all).
    link: Link | None = field(default=None, init=False)
    #: Executions created so far (what ``revoke_after`` and ``outage_after`` count).
    created: int = field(default=0, init=False)
    _token_restored: bool = field(default=False, init=False)
    _outage_until: float = field(default=0.0, init=False)  # time.monotonic()
    _outage_on: bool = field(default=False, init=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.plan = parse_faults(self.options.faults)
        self.dice = FaultDice(self.plan, self.options.seed)
        self.limiter = RateLimiter(self.options.rate_limit, time.monotonic)
        self.processor = Processor(self.store, self.accounting, self.options)
        if self.options.uplink_mbps or self.options.bandwidth_mbps:
            self.link = Link(self.options.uplink_mbps * 1e6, self.options.bandwidth_mbps * 1e6)
        if self.plan.outage_after == 0:
            self._outage_until = time.monotonic() + self.plan.outage_s

    # --- clock --------------------------------------------------------------------------------

    def server_time(self) -> float:
        """The server's clock (epoch seconds): real time + ``clock_skew``."""
        return time.time() + self.plan.clock_skew

    def http_date(self) -> str:
        """The server clock as an HTTP date (the ``Date`` header)."""
        return formatdate(self.server_time(), usegmt=True)

    def retry_after(self, seconds: float) -> str:
        """A ``Retry-After`` value: whole seconds, or (``retry_after_date``) server clock + seconds."""
        if self.plan.retry_after_date:
            return formatdate(math.ceil(self.server_time() + seconds), usegmt=True)
        return str(max(0, math.ceil(seconds)))

    # --- token and outage ---------------------------------------------------------------------

    def revoked(self) -> bool:
        """Whether the token is revoked now (``revoke_after``)."""
        after = self.plan.revoke_after
        return after is not None and self.created >= after and not self._token_restored

    def restore_token(self) -> None:
        """Lift a ``revoke_after`` revocation for good (the token is valid again)."""
        self._token_restored = True

    def in_outage(self) -> bool:
        return self._outage_on or time.monotonic() < self._outage_until

    def set_outage(self, on: bool) -> None:
        """Start an outage that lasts until ``set_outage(False)``; ``False`` also ends a timed one."""
        self._outage_on = on
        if not on:
            self._outage_until = 0.0

    def gate(self, request: web.Request) -> None:
        """Outage (503), authentication (401) and revocation (401), in that order."""
        if self.in_outage():
            headers = {"Retry-After": self.retry_after(self.options.retry_after_s)}
            raise ApiFailure(503, "service unavailable (emulator outage)", headers=headers)
        check_auth(request, self.options.token)
        if self.revoked():
            raise ApiFailure(401, "token revoked", "INVALID_TOKEN")
        forbid = self.plan.forbid_after
        if forbid is not None and self.created >= forbid:
            raise ApiFailure(403, "the user of this token may not access this datamart", "FORBIDDEN")

    # --- executions ---------------------------------------------------------------------------

    def create_execution(self, exe: Execution, content_type: str) -> None:
        """Add a new execution: store, accounting (the upload), processor; count it."""
        self.store.add_execution(exe)
        self.accounting.record_upload(Upload(exe.id, exe.filename, exe.size, exe.lines, content_type))
        self.processor.submit(exe)
        self.created += 1
        if self.created == self.plan.outage_after:
            self._outage_until = time.monotonic() + self.plan.outage_s

    def later(self, delay: float, make: Callable[[], T]) -> asyncio.Task[T]:
        """Run ``make()`` ``delay`` seconds from now in a background task (kept until it ends)."""

        async def run() -> T:
            await asyncio.sleep(delay)
            return make()

        return self.spawn(run())

    def spawn(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        """A background task, kept until it ends; its failure is retrieved (a waiter may see it)."""
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # a creation whose import was deleted meanwhile: nothing to do

    @property
    def pending_creations(self) -> int:
        """Background creations (``gateway504``, ``slow_create``) not done yet."""
        return len(self._tasks)

    async def stop_background(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


STATE: web.AppKey[EmulatorState] = web.AppKey("emulator_state", EmulatorState)


def check_auth(request: web.Request, token: str) -> None:
    """401 unless the Authorization header is exactly the token."""
    given = request.headers.get("Authorization")
    if not given:
        raise ApiFailure(401, "missing Authorization header (send the raw API token)")
    if not hmac.compare_digest(given.encode(), token.encode()):
        hint = " (send the raw token, without 'Bearer ')" if given.lower().startswith("bearer ") else ""
        raise ApiFailure(401, "invalid API token" + hint)


def find_import(request: web.Request) -> dict[str, Any]:
    st = request.app[STATE]
    import_id = request.match_info["import_id"]
    obj = st.store.get_import(request.match_info["datamart_id"], import_id)
    if obj is None:
        raise ApiFailure(404, f"document import {import_id} not found")
    return obj

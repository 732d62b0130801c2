"""One poll scheduler that follows every execution of a run to a terminal status.

**The cadence** is per execution, and learned from the executions of the run already finished.

- Before any execution has succeeded, nothing is known: the first poll comes ``interval_s`` after the
  upload and every next interval grows by half, up to ``max_interval_s``, with +-20 % jitter so that
  executions uploaded together do not poll in lockstep (``PollCadence.next_interval``). The first
  execution tracked while nothing is known (the scout) starts that growth from the floor between
  polls (``min_interval_s``) instead: the sooner an end is seen, the sooner every other execution
  is planned from it (a small run against a platform that processes in a second ended a second
  late), for a few more GETs of one execution.
- Each execution that succeeds teaches the poller, from its server fields (``creation_date``,
  ``start_date``, ``end_date``, epoch ms), how long it queued (start - creation) and how long it ran
  (end - start). Run times are fitted as ``base + rate * work`` (least squares over the last 64, both
  terms non-negative; see ``_Fit`` for work that does not vary), the work being the execution's record
  count (the ``records`` hint of ``track``, else its ``parameters.number_of_lines``, else its result's
  totals), else its size in bytes (the ``size`` hint), else nothing (then the mean run time). The
  queueing time expected is the smallest of the last 8 seen. Only successes teach, whether a GET or a
  listing saw them end (a failure may end early). Estimates lean early: a poll too early
  costs one request, one too late delays the end of the run.
- Server dates are turned into this machine's clock with the smallest offset every answer allows (a
  date in an answer is never later than the answer), so no two clocks need to agree.
- An execution's expected end is its start (once an answer showed one) plus its expected run time;
  before that, the later of its creation plus the queueing time and the last time a GET saw it waiting,
  plus its run time. It is first polled at the expected end less twice the fit's spread (plus a jitter
  of up to ``jitter`` times its tolerance); then, while within twice the spread after the expected end,
  at most the spread apart; after that, every tolerance: ``late_fraction`` (a tenth) of how long it has
  run so far. The tolerance is at least ``min_interval_s`` (0.25 s): an end is noticed within about
  0.3 s, or a tenth of the run time for long runs, and a wrong estimate costs a few polls, not a flood.
- One seen waiting is polled again no sooner than it could end (a run time later), nor than
  ``interval_s`` later, and while it waits long, at the growing interval's pace (``growth - 1`` times
  its age). When an execution ends, the oldest one not seen started yet may take its place (a queue
  served in order) after the smallest queueing time seen: it is polled when it would end if so, when
  that is sooner than planned; a GET that finds it still waiting by then passes that claim on to the
  next in line. So an execution that waits in a queue costs about what it did before, and its end is
  still noticed about as soon as one that did not wait.
- Whatever the estimate, no execution is polled twice within ``min_interval_s`` (nor within
  ``interval_s`` when that is shorter), nor left unpolled longer than ``max_interval_s``, with one
  exception once the uploads are over. Then the run waits only for the executions left, so:
  each one never polled is polled at its expected end (at once if that is past;
  ``_uploads_over``), because the floor is between polls and an upload's answer was none; and
  each may have one poll within the floor, aimed at its expected end once its start was seen or
  a slot was freed for it (``_aimed``). (Not at every tracking: executions tracked in a stream
  are better left to gather into listings.)
- The plans of waiting executions are made again when the 1st, 2nd, 4th, 8th ... sample is learned.

**Listings.** When more than ``list_threshold`` (8) executions are due within the next minimum
interval (one of them now), and the client can list the import's executions (``list_executions``, as
``ApiClient`` can; a test double without it polls by GET only), one walk of the listing answers them
instead of one GET each. Eight because ``POLL_PARALLELISM`` GETs go out together: up to eight due
polls take one round trip anyway, so a listing would save little and add a page's bytes; past eight,
GETs queue behind each other and the listing both saves requests and notices the ends sooner. A walk
(see ``answers.scan_pages``: no trust in order, ``total`` or offsets) stops as soon as it has seen
every execution it stands for, and after at most one page per ``LIST_PAGE_WORTH`` (4) of them, so it
never costs more than a quarter of the GETs it replaces. A listing can only bring good news: a known
status it shows that is further on than the one last seen (waiting < running < terminal) is applied as
a GET's would be (the callback, the end of polling, the learning), for any tracked execution it shows;
an older or unknown one is ignored (a listing may lag). An execution the walk stood for and did not
show is polled by GET (at once if it was due): a listing may omit entries, and its absence is never a
reason to call an execution lost. One it showed not terminal counts as polled, but its next poll is a
GET (a listing answers at most every other poll of an execution), so a listing stuck on old statuses
delays an end by one interval at most. A listing that fails falls back to GETs (and none is walked for
``LIST_RETRY_S`` seconds), is told to ``on_listing_error``, and never stops the run by itself (the GETs
that follow meet a refused token if there is one).

**Requests.** ``Poller.requests`` counts the GETs sent (one per ``get_execution`` call; the client's
own retries of one call are not seen here), ``Poller.listings`` the listing pages asked for.

Polling is kept apart from the retry of each poll request: the client retries a failed GET with its
own policy; if it still fails, the poller logs it and polls again later. A failed poll never changes an
execution's state (but see the 404s below).

An execution that is not terminal ``timeout_s`` after it was tracked is given up on: it stays
non-terminal in the state, and the run's outcome is ``incomplete`` (exit 3), not failed.

Statuses are compared after ``formats.normalize_status`` (the server may answer ``succeeded``), and
callbacks see a known status in upper case. An unknown status (``DONE``) is warned about once per
distinct value and polled on. Two kinds of failed GET are not just polled again later:
- ``lost_after_404s`` 404 answers in a row for one execution: the server does not know it; it is
  reported ``LOST`` (a failure) and no longer polled;
- 401 or 403: the token is expired, revoked or lacks the right; ``Poller.run`` raises that ``ApiError``
  (the run stops, resumable) rather than polling on for hours.
Each status change is applied once, whether a GET or a listing saw it first.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline import formats
from pipeline.client.answers import Page, as_page, scan_pages
from pipeline.errors import ApiError, ServiceError

POLL_PARALLELISM = 8  # requests in flight at once (GETs, and a listing walk takes one slot)
AUTH_STATUSES = frozenset({401, 403})  # a GET answered so ends the run
LIST_THRESHOLD = 8  # a listing when more than this many executions are due (see the module docstring)
LIST_PAGE_SIZE = 100  # executions asked for per listing page
LIST_PAGE_WORTH = 4  # a walk takes at most one page per this many due executions
LIST_RETRY_S = 10.0  # after a failed listing, GETs only for this long
CLOCK_SLACK_S = 0.005  # a poll due this soon is due (the loop's timers fire within their clock's resolution)
RUN_SAMPLES = 64  # run times kept for the fit
QUEUE_SAMPLES = 8  # queueing times kept (the smallest is expected)
#: at the very end of a run (uploads over, at most END_FEW executions left), the floor between two
#: polls of one execution within its fit's band (``Poller._floor``)
END_FLOOR_S = 0.05
END_FEW = 2 * POLL_PARALLELISM


@dataclass(frozen=True, kw_only=True)
class PollCadence:
    interval_s: float = 1.0
    max_interval_s: float = 60.0
    growth: float = 1.5
    jitter: float = 0.2
    min_interval_s: float = 0.25
    late_fraction: float = 0.1
    #: the scout's first poll: its growth starts from the floor between polls (False: from interval_s)
    scout: bool = True

    def next_interval(self, previous: float | None, rng: random.Random) -> tuple[float, float]:
        """``(base, delay)`` of the poll after one whose base interval was ``previous`` (None for the
        first poll). ``base`` is the un-jittered interval: pass it back as ``previous`` next time, so
        the jitter never compounds. ``delay`` is ``base`` with +-``jitter`` applied: the seconds to
        wait before that poll."""
        base = self.interval_s if previous is None else min(previous * self.growth, self.max_interval_s)
        return base, base * (1 + rng.uniform(-self.jitter, self.jitter))

    @property
    def floor_s(self) -> float:
        """The shortest time between two polls of one execution."""
        return max(0.0, min(self.min_interval_s, self.interval_s, self.max_interval_s))

    def tolerance(self, duration: float) -> float:
        """How late the end of an execution expected to take ``duration`` seconds may be noticed."""
        return min(self.max_interval_s, max(self.floor_s, self.late_fraction * duration))


class ExecutionSource(Protocol):
    async def get_execution(self, datamart_id: str, import_id: str, execution_id: str) -> dict[str, Any]: ...


class _Fit:
    """Run time = ``a + b * work`` (``a``, ``b`` >= 0), least squares over the last samples.

    When the samples' work hardly varies (under 10 %), base and rate cannot be told apart: an
    execution with less work is expected to take its share of the mean (``mean * work / mean_work``),
    one with more the mean; both lean early."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=RUN_SAMPLES)
        self._line: tuple[float, float] | None = None
        self._mean_x = self._mean_y = 0.0
        self.spread = 0.0  # root mean square of the residuals

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, x: float, y: float) -> None:
        self._samples.append((x, y))
        n = len(self._samples)
        mx = sum(s[0] for s in self._samples) / n
        my = sum(s[1] for s in self._samples) / n
        sxx = sum((s[0] - mx) ** 2 for s in self._samples)
        self._mean_x, self._mean_y, self._line = mx, my, None
        if n >= 2 and sxx > n * (0.1 * mx) ** 2:
            b = sum((s[0] - mx) * (s[1] - my) for s in self._samples) / sxx
            a = my - b * mx
            if b < 0:
                a, b = my, 0.0
            elif a < 0:
                a, b = 0.0, sum(s[0] * s[1] for s in self._samples) / sum(s[0] ** 2 for s in self._samples)
            self._line = (a, b)
        self.spread = math.sqrt(sum((s[1] - self.predict(s[0])) ** 2 for s in self._samples) / n)

    def predict(self, x: float) -> float:
        if self._line is not None:
            return self._line[0] + self._line[1] * x
        if self._mean_x > 0:
            return self._mean_y * min(1.0, x / self._mean_x)
        return self._mean_y


def _seconds(value: object) -> float | None:
    """An epoch-milliseconds field as seconds (``None`` when missing or not a positive number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return float(value) / 1000


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _work(execution: dict[str, Any]) -> int | None:
    """The records an execution says it holds: ``parameters.number_of_lines``, else its result's totals."""
    parameters, result = execution.get("parameters"), execution.get("result")
    if isinstance(parameters, dict) and (lines := _count(parameters.get("number_of_lines"))):
        return lines
    if isinstance(result, dict):
        ok, failed = result.get("total_success"), result.get("total_failure")
        if isinstance(ok, int) and isinstance(failed, int) and not isinstance(ok, bool):
            return _count(ok + failed)
    return None


def _rank(status: str | None) -> int:
    """How far on a status is: none 0, waiting or unknown 1, running 2, terminal 3."""
    if status is None:
        return 0
    if formats.is_terminal(status):
        return 3
    return 2 if status == formats.ExecutionStatus.RUNNING else 1


@dataclass(eq=False, slots=True)
class _Tracked:
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


class Poller:
    """Polls tracked executions until each is terminal (or past its deadline).

    ``on_status(key, execution)`` is called when an execution's status changes (terminal included),
    with a copy of the server's execution whose ``status`` is upper case when it is a known one;
    ``on_poll_error(key, exc)`` when a GET failed for good this round (a 401/403 is raised instead);
    ``on_warning(message)`` once per distinct unknown status the server reports;
    ``on_listing_error(exc)`` when a listing failed (its executions are polled by GET).
    ``list_threshold``: more than this many executions due make a listing (``None``: never list).
    """

    def __init__(
        self,
        client: ExecutionSource,
        datamart_id: str,
        import_id: str,
        *,
        cadence: PollCadence,
        timeout_s: float,
        on_status: Callable[[Any, dict[str, Any]], None],
        on_poll_error: Callable[[Any, Exception], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        on_listing_error: Callable[[Exception], None] | None = None,
        lost_after_404s: int = 5,
        list_threshold: int | None = LIST_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if lost_after_404s < 1:
            raise ValueError(f"lost_after_404s must be at least 1, not {lost_after_404s}")
        if list_threshold is not None and list_threshold < 1:
            raise ValueError(f"list_threshold must be at least 1 (or None), not {list_threshold}")
        self._client = client
        lister = getattr(client, "list_executions", None)
        self._lister: Callable[..., Any] | None = lister if callable(lister) and list_threshold is not None else None
        self._datamart_id, self._import_id = datamart_id, import_id
        self._cadence, self._timeout_s = cadence, timeout_s
        self._on_status, self._on_poll_error, self._on_warning = on_status, on_poll_error, on_warning
        self._on_listing_error = on_listing_error
        self._lost_after_404s = lost_after_404s
        self._list_threshold = list_threshold or 0
        self._unknown_seen: set[str] = set()  # unknown statuses already warned about (normalised)
        self._clock = clock
        self._rng = rng or random.Random()
        self._due: list[tuple[float, int, _Tracked]] = []  # heap of (due time, seq, tracked); stale entries skipped
        self._seq = 0
        self._by_id: dict[str, list[_Tracked]] = {}  # the live items (an id tracked twice has two)
        self._order: deque[_Tracked] = deque()  # in the order tracked, less those seen started (in front)
        self._live = 0
        self._wakeup = asyncio.Event()
        self._listing = False  # a listing walk is in flight
        self._list_retry_at = -math.inf
        # what finished executions taught
        self._by_records, self._by_bytes, self._plain = _Fit(), _Fit(), _Fit()
        self._queued: deque[float] = deque(maxlen=QUEUE_SAMPLES)
        self._pickup = math.inf  # the smallest queueing time seen: from a free slot to a start
        self._offset: float | None = None  # server seconds - our clock, the smallest the answers allow
        self._scout: _Tracked | None = None  # polled from the floor until something is learned
        self._uploads_done = False  # no execution will be tracked any more: the run waits only for these
        self.timed_out: list[Any] = []
        self.requests = 0  # GETs sent
        self.listings = 0  # listing pages asked for

    @property
    def tracking(self) -> int:
        return self._live

    def track(
        self,
        execution_id: str,
        key: Any,
        *,
        first_delay: float | None = None,
        records: int | None = None,
        size: int | None = None,
        answer: Mapping[str, Any] | None = None,
    ) -> None:
        """Follow ``execution_id``; ``key`` identifies it in callbacks (the batch number). ``records``
        and ``size`` (bytes) of the uploaded file, when given, sharpen the expected end. ``answer``:
        the upload's answer, just received: its ``creation_date`` is the freshest server date a run
        sees (the polls' dates are older than their answers by up to a floor), so it sets the
        server's clock against ours to within a round trip from the first upload on. Before, an
        offset learned from polls alone put starts up to 0.26 s late, and expected ends with them."""
        now = self._clock()
        if answer is not None:
            self._observe(answer, now)
        item = _Tracked(
            execution_id,
            key,
            deadline=now + self._timeout_s,
            tracked_at=now,
            records=_count(records),
            size=_count(size),
            last_poll=now,
            fixed_first=first_delay is not None,
        )
        if answer is not None:
            item.created = _seconds(answer.get("creation_date"))
        self._by_id.setdefault(execution_id, []).append(item)
        self._order.append(item)
        self._live += 1
        due = now + first_delay if first_delay is not None else self._plan(item, now)
        self._push(min(due, item.deadline), item)
        self._wakeup.set()

    # --- the heap --------------------------------------------------------------------------------

    def _push(self, due: float, item: _Tracked) -> None:
        self._seq += 1
        item.seq, item.due = self._seq, due
        heapq.heappush(self._due, (due, self._seq, item))
        if len(self._due) > 64 + 2 * self._live:  # stale entries of items planned again or done
            self._due = [e for e in self._due if self._waiting(e)]
            heapq.heapify(self._due)

    @staticmethod
    def _waiting(entry: tuple[float, int, _Tracked]) -> bool:
        return not entry[2].done and entry[1] == entry[2].seq

    def _head(self) -> tuple[float, int, _Tracked] | None:
        while self._due and not self._waiting(self._due[0]):
            heapq.heappop(self._due)
        return self._due[0] if self._due else None

    def _pop(self) -> _Tracked:
        item = heapq.heappop(self._due)[2]
        item.seq = 0
        return item

    def _drop(self, item: _Tracked) -> None:
        """No longer polled (terminal, lost, timed out)."""
        item.done, item.seq = True, 0
        self._live -= 1
        same = self._by_id.get(item.execution_id, [])
        if item in same:
            same.remove(item)
        if not same:
            self._by_id.pop(item.execution_id, None)

    # --- the run ---------------------------------------------------------------------------------

    async def run(self, no_more_executions: asyncio.Event) -> None:
        """Poll until nothing is tracked and ``no_more_executions`` is set.

        At most ``POLL_PARALLELISM`` requests are in flight; each one that ends frees its slot for the
        next due execution at once, so one slow answer delays only its own execution, not a round.
        """
        in_flight: set[asyncio.Task[None]] = set()
        finished: list[asyncio.Task[None]] = []

        def on_done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            finished.append(task)
            self._wakeup.set()

        def start(coro: Any) -> None:
            task: asyncio.Task[None] = asyncio.create_task(coro)
            in_flight.add(task)
            task.add_done_callback(on_done)

        def raise_crash() -> None:
            """A poll that raised fails the run: a bug (not a ServiceError), or a 401/403 answer. When
            several did, the first is raised and the others are retrieved (asyncio would log them)."""
            crashes = [exc for t in finished if not t.cancelled() and (exc := t.exception()) is not None]
            finished.clear()
            if crashes:
                raise crashes[0]

        uploads_over = False  # (a run of polls begun after the uploads learns it on its first turn)
        try:
            while self._head() is not None or in_flight or not no_more_executions.is_set():
                raise_crash()
                now = self._clock()
                if not uploads_over and no_more_executions.is_set():
                    uploads_over = self._uploads_done = True
                    self._uploads_over(now)
                soon = now + CLOCK_SLACK_S  # due (so no wait is ever shorter than the slack)
                if len(in_flight) < POLL_PARALLELISM and (listed := self._take_for_listing(soon)):
                    self._listing = True
                    start(self._list(listed))
                while (head := self._head()) is not None and head[0] <= soon and len(in_flight) < POLL_PARALLELISM:
                    start(self._poll_one(self._pop()))
                timeout = None  # a slot frees up, a new execution is tracked, or uploads end
                if (head := self._head()) is not None and len(in_flight) < POLL_PARALLELISM:
                    timeout = max(0.0, head[0] - now)
                await self._wait(timeout, no_more_executions)
            raise_crash()
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise_crash()  # a crash seen only now (the poller was cancelled) wins over the cancel

    async def _wait(self, timeout: float | None, no_more: asyncio.Event) -> None:
        """Sleep until ``timeout`` passes, a poll ends, a new execution is tracked, or uploads are over."""
        self._wakeup.clear()
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wakeup.wait())]
        if not no_more.is_set():
            waiters.append(asyncio.ensure_future(no_more.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    # --- one GET ---------------------------------------------------------------------------------

    async def _poll_one(self, item: _Tracked) -> None:
        self.requests += 1
        sent = self._clock()
        try:
            execution = await self._client.get_execution(self._datamart_id, self._import_id, item.execution_id)
        except ServiceError as exc:
            if isinstance(exc, ApiError) and exc.status in AUTH_STATUSES:
                raise  # an expired or revoked token: polling on would fail for hours; the run stops
            if item.done:
                return  # a listing saw it end meanwhile
            item.not_found = item.not_found + 1 if isinstance(exc, ApiError) and exc.status == 404 else 0
            if self._on_poll_error:
                self._on_poll_error(item.key, exc)
            if item.not_found >= self._lost_after_404s:
                self._drop(item)
                self._on_status(item.key, self._lost(item))
            else:
                self._reschedule(item)
            return
        if item.done:
            return  # a listing saw it end meanwhile: applied once
        now = self._clock()
        self._observe(execution, now)
        item.not_found, item.get_next = 0, False
        self._apply(item, execution, now, listed=False)
        if formats.is_terminal(item.last_status):
            return  # done
        if (claim := item.claim) is not None and (item.started is not None or sent >= claim):
            item.claim = None  # it started (the claim is settled), or still waits when it would have run
            if item.started is None and item.last_status in formats.WAITING_STATUSES:
                self._slot_freed(claim, now, skip=item)  # that slot went to another: the next in line
        self._reschedule(item)

    def _lost(self, item: _Tracked) -> dict[str, Any]:
        """The execution object reported for one the server answers 404 about, again and again."""
        message = f"the server answered 404 to {item.not_found} polls in a row: the execution is unknown to it"
        return {"id": item.execution_id, "status": formats.ExecutionStatus.LOST.value, "error": {"message": message}}

    # --- answers (a GET's or a listing's) ---------------------------------------------------------

    def _observe(self, execution: Mapping[str, Any], answered_at: float) -> None:
        """Every server date in an answer is at most the server's time when it answered."""
        for name in ("creation_date", "start_date", "end_date"):
            date = _seconds(execution.get(name))
            if date is not None:
                offset = date - answered_at
                self._offset = offset if self._offset is None else max(self._offset, offset)

    def _apply(self, item: _Tracked, execution: dict[str, Any], now: float, *, listed: bool) -> bool:
        """Apply an answer about ``item``; return whether it was news. From a listing, only a known
        status further on than the last one seen is news (a listing may lag)."""
        raw = execution.get("status")
        status = formats.normalize_status(raw)
        known = formats.is_known(status)
        news = not listed or (known and _rank(status) > _rank(item.last_status))
        if not news:
            if item.started is None:
                item.started = _seconds(execution.get("start_date"))
            return False
        if not known:
            self._warn_unknown(status, raw, item)
        item.created = _seconds(execution.get("creation_date")) or item.created
        item.started = _seconds(execution.get("start_date")) or item.started
        item.lines = _work(execution) or item.lines
        if not listed and item.started is None and status in formats.WAITING_STATUSES:
            item.not_started_at = now
        if status != item.last_status:
            item.last_status = status
            self._on_status(item.key, {**execution, "status": status} if known else execution)
        if formats.is_terminal(status):
            self._drop(item)
            if formats.is_success(status):
                self._learn(item, execution)
            ended = self._local(_seconds(execution.get("end_date")))
            if ended is not None and self._plain:  # the next in line starts after the smallest queueing
                self._slot_freed(ended + (self._pickup if self._pickup < math.inf else 0.0), now)
        return True

    def _warn_unknown(self, status: str | None, raw: object, item: _Tracked) -> None:
        """Warn once per distinct unknown status (``done`` and ``DONE`` are one; no status is one too)."""
        seen = status if status is not None else repr(raw)
        if seen in self._unknown_seen:
            return
        self._unknown_seen.add(seen)
        if self._on_warning:
            self._on_warning(
                f"the server reports an unknown execution status {raw!r} (execution {item.execution_id}): "
                "polling on until it becomes a known terminal status"
            )

    # --- learning and planning -------------------------------------------------------------------

    def _learn(self, item: _Tracked, execution: dict[str, Any]) -> None:
        created = _seconds(execution.get("creation_date"))
        started = _seconds(execution.get("start_date"))
        ended = _seconds(execution.get("end_date"))
        began = started if started is not None else created
        if ended is None or began is None or ended < began:
            return
        if started is not None and created is not None and started >= created:
            self._queued.append(started - created)
            self._pickup = min(self._pickup, started - created)
        run = ended - began
        records = item.records or _work(execution) or item.lines
        self._plain.add(0.0, run)
        if records:
            self._by_records.add(records, run)
        if item.size:
            self._by_bytes.add(item.size, run)
        learned = len(self._plain)
        if learned & (learned - 1) == 0:  # the 1st, 2nd, 4th ... sample (64 at most are kept)
            self._replan()

    def _replan(self) -> None:
        """Plan every waiting execution again with what was learned."""
        now = self._clock()
        entries = []
        for entry in self._due:
            if not self._waiting(entry):
                continue
            due, seq, item = entry
            if not item.fixed_first:
                due = item.due = min(self._plan(item, now), item.deadline)
            entries.append((due, seq, item))
        heapq.heapify(entries)
        self._due = entries

    def _run_time(self, item: _Tracked) -> tuple[float, float]:
        """``(run, spread)``: how long ``item`` is expected to run once started, and the fit's spread."""
        fit, work = self._plain, 0.0
        if (records := item.records or item.lines) and self._by_records:
            fit, work = self._by_records, float(records)
        elif item.size and self._by_bytes:
            fit, work = self._by_bytes, float(item.size)
        return max(0.0, fit.predict(work)), fit.spread

    def _local(self, server_s: float | None) -> float | None:
        """A server date on our clock (never earlier than it was: the offset is a lower bound)."""
        return None if server_s is None or self._offset is None else server_s - self._offset

    def _began(self, item: _Tracked) -> tuple[float, bool]:
        """``(began, known)``: when ``item`` started running (our clock), or the earliest it may start."""
        started = self._local(item.started)
        if started is not None:
            return started, True
        created = self._local(item.created)
        begin = item.tracked_at if created is None else min(item.tracked_at, created)
        begin += min(self._queued) if self._queued else 0.0
        return begin if item.not_started_at is None else max(begin, item.not_started_at), False

    def _plan(self, item: _Tracked, now: float) -> float:
        """When to poll ``item`` next (see the module docstring)."""
        cadence = self._cadence
        if not self._plain:  # nothing learned yet: the growing interval (the scout's from the floor)
            previous, scout = item.interval, item.interval is None and cadence.scout and self._scouts(item)
            if scout:
                previous = cadence.floor_s / cadence.growth
            base, delay = cadence.next_interval(previous, self._rng)
            if scout:  # its jitter only later: never polled within the floor after its upload
                delay = max(delay, cadence.floor_s)
            item.interval = base
            return now + delay
        jitter = cadence.jitter
        run, spread = self._run_time(item)
        began, started = self._began(item)
        end = began + run
        ref = item.last_poll
        early = end - 2 * spread  # the fit's band: [end - 2 spread, end + 2 spread]
        if not started and item.last_status in formats.WAITING_STATUSES:
            # still waiting at its last answer: it cannot end before a run time from then, and while it
            # waits long, it is polled at the growing interval's pace (the end of another brings it on)
            age = now - item.tracked_at
            due = max(early, ref + max(cadence.interval_s, (cadence.growth - 1) * age))
            if item.claim is not None:  # it may have started when another ended
                due = min(due, max(early, item.claim + run - 2 * spread, item.claim))
            due += self._rng.uniform(0, jitter) * cadence.tolerance(run)
        elif early > now:
            due = early + self._rng.uniform(0, jitter) * cadence.tolerance(run)
        else:  # it may be done by now: polled again within late_fraction of how long it has run
            step = cadence.tolerance(max(run, now - began))
            if now < end + 2 * spread:  # within the fit's band: at most the spread apart
                step = min(step, max(self._floor(ref, end, spread), spread))
            due = ref + step * (1 + self._rng.uniform(-jitter, jitter))
        start = began if started else item.claim
        if start is not None and (aimed := self._aimed(item, start + run + spread, now)) is not None:
            item.aimed = True
            return aimed
        return max(now, min(max(due, ref + self._floor(ref, end, spread)), ref + cadence.max_interval_s))

    def _floor(self, ref: float, end: float, spread: float) -> float:
        """The least time between two polls of one execution last polled at ``ref`` and expected to
        end at ``end``: ``floor_s``, except at the very end of a run (the uploads over, at most
        ``END_FEW`` executions left) while that poll is before the end of the fit's band, where it
        is ``END_FLOOR_S`` (or half the spread): the run's end waits only for these, and the floor
        saw the last of them end up to 0.25 s late. That band is four spreads wide, so this costs
        a few GETs per execution, and only for the last few."""
        floor = self._cadence.floor_s
        if self._uploads_done and self._live <= END_FEW and ref < end + 2 * spread:
            return min(floor, max(END_FLOOR_S, spread / 2))
        return floor

    def _aimed(self, item: _Tracked, end: float, now: float) -> float | None:
        """The one poll of ``item`` that may come within the floor after its last one: once the
        uploads are over (the run then waits only for the executions left), at its expected
        ``end`` (a start seen, or a slot freed for it, plus the run time and the fit's spread),
        when that is sooner than the floor allows. None: the floor holds. On a platform that runs
        an execution in 20 ms, the last ones, seen queued or running, were otherwise seen done a
        floor (0.25 s) after their end. One per execution (the caller sets ``item.aimed`` when it
        plans it), so a wrong estimate costs one GET."""
        if not self._uploads_done or item.aimed or not item.last_poll < end < item.last_poll + self._cadence.floor_s:
            return None  # (an end expected before the last answer, which showed it not done, is wrong)
        return max(now, end)

    def _scouts(self, item: _Tracked) -> bool:
        """Whether ``item`` is the scout: the first planned while no other one is live."""
        if self._scout is None or self._scout.done:
            self._scout = item
        return item is self._scout

    def _uploads_over(self, now: float) -> None:
        """The last upload was answered: each execution not polled yet is due at its expected end
        (now, if that is past) plus the fit's spread, instead of no sooner than the floor between
        polls after its upload (whose answer was no poll). The run's end waits only for these;
        those due together still go in one listing when there are more than the threshold. On
        loopback, against a platform that processes in 20 ms, that floor after the last upload was
        a tenth of a 1 GB run, and the end of the last two uploads a fifth."""
        if not self._plain:
            return
        for items in self._by_id.values():
            for item in items:
                if item.done or item.polled or item.fixed_first or not item.seq:
                    continue
                run, spread = self._run_time(item)
                began, _ = self._began(item)
                due = max(now, began + run + spread)
                if due < item.due:
                    self._push(due, item)

    def _slot_freed(self, start_at: float, now: float, *, skip: _Tracked | None = None) -> None:
        """An execution ended, and the next in line would start at ``start_at``: the oldest one still
        waiting (and not already claiming an earlier slot) may be that one (a queue served in order):
        poll it when it would end if so, if that is sooner than planned. A GET after ``start_at`` that
        still finds it waiting passes the claim on to the next in line."""
        order = self._order

        def may_wait(item: _Tracked) -> bool:
            return not item.done and item.started is None and item.last_status != formats.ExecutionStatus.RUNNING

        while order and not may_wait(order[0]):
            order.popleft()
        for item in order:
            if item is skip or item.claim is not None or not may_wait(item):
                continue
            item.claim = start_at
            if item.seq and not item.fixed_first:  # waiting in the heap (not being polled)
                run, spread = self._run_time(item)
                aimed = self._aimed(item, max(start_at, now) + run + spread, now)
                floored = max(now, start_at, start_at + run - 2 * spread, item.last_poll + self._cadence.floor_s)
                due = floored if aimed is None else min(floored, aimed)
                if due < item.due:
                    item.aimed = item.aimed or due < floored
                    self._push(min(due, item.deadline), item)
            return

    def _reschedule(self, item: _Tracked) -> None:
        now = self._clock()
        item.last_poll, item.fixed_first, item.polled = now, False, True
        if now >= item.deadline:
            self._drop(item)
            self.timed_out.append(item.key)
            return
        self._push(min(self._plan(item, now), item.deadline), item)

    # --- listings --------------------------------------------------------------------------------

    def _take_for_listing(self, now: float) -> list[_Tracked] | None:
        """The executions due within the next minimum interval, when one is due now, more than the
        threshold are, and a listing may be walked now (otherwise they stay where they are). Those
        whose last poll a listing answered, or did not, are left to their GET."""
        if self._lister is None or self._listing or now < self._list_retry_at:
            return None
        head = self._head()
        if head is None or head[0] > now:
            return None
        horizon = now + self._cadence.floor_s
        taken: list[tuple[float, int, _Tracked]] = []
        kept: list[tuple[float, int, _Tracked]] = []
        while (head := self._head()) is not None and head[0] <= horizon:
            entry = heapq.heappop(self._due)
            (kept if entry[2].get_next else taken).append(entry)
        if len(taken) <= self._list_threshold:
            kept += taken
            taken = []
        for entry in kept:
            heapq.heappush(self._due, entry)
        for entry in taken:
            entry[2].seq = 0
        return [entry[2] for entry in taken] or None

    async def _list(self, due: list[_Tracked]) -> None:
        """One walk of the import's executions for the ``due`` ones (every live one it shows is looked
        at: a terminal status ends it, news plans it again)."""
        lister = self._lister
        assert lister is not None
        began = self._clock()
        wanted = {item.execution_id for item in due}
        shown: set[str] = set()
        looked = 0

        async def fetch(first: int) -> Page:
            self.listings += 1
            params = {"first_result": first, "max_results": LIST_PAGE_SIZE}
            return as_page(await lister(self._datamart_id, self._import_id, **params), params)

        def enough(items: list[Any]) -> bool:
            nonlocal looked
            shown.update(str(e["id"]) for e in items[looked:] if isinstance(e, dict) and e.get("id") is not None)
            looked = len(items)
            return wanted <= shown

        try:
            pages = max(1, math.ceil(len(due) / LIST_PAGE_WORTH))
            scan = await scan_pages(fetch, LIST_PAGE_SIZE, max_pages=pages, enough=enough)
        except ServiceError as exc:
            now = self._clock()
            self._list_retry_at = now + LIST_RETRY_S
            if self._on_listing_error:
                self._on_listing_error(exc)
            for item in due:
                if not item.done:
                    self._after_listing(item, now, began, shown=False)
            return
        finally:
            self._listing = False
        now = self._clock()
        answered: set[_Tracked] = set()
        in_due = set(due)
        for entry in scan.items:
            if not isinstance(entry, dict):
                continue
            self._observe(entry, now)
            if entry.get("id") is None:
                continue
            for item in list(self._by_id.get(str(entry["id"]), ())):
                news = self._apply(item, entry, now, listed=True)
                if item.done:
                    continue
                if item in in_due:
                    answered.add(item)
                elif news and item.seq and self._plain and not item.fixed_first:  # planned again with the news
                    self._push(min(self._plan(item, now), item.deadline), item)
        for item in due:
            if not item.done:
                self._after_listing(item, now, began, shown=item in answered)

    def _after_listing(self, item: _Tracked, now: float, began: float, *, shown: bool) -> None:
        """Plan ``item`` after a walk that stood for its poll (and found it not terminal, or not at
        all). Its next poll is a GET either way: a listing may be stuck on an old status, or omit it."""
        item.get_next = True
        if shown:  # polled
            self._reschedule(item)
        else:  # due: a GET at once; not due yet when the walk began: at its time
            self._push(now if item.due <= began else item.due, item)

"""When to poll each tracked execution next: the cadence, per execution, learned from the
executions of the run already finished (``poll_estimates``).

Apart from the poller because it is the policy, not the requests: given what was learned and what
an execution's answers showed, it says when its next poll is due (and, when one ends, which waiting
one may have taken its slot); the poller sends the polls and applies their answers.

- Before any execution has succeeded, nothing is known: the first poll comes ``interval_s`` after the
  upload and every next interval grows by half, up to ``max_interval_s``, with +-20 % jitter so that
  executions uploaded together do not poll in lockstep (``PollCadence.next_interval``). The first
  execution tracked while nothing is known (the scout) starts that growth from the floor between
  polls (``min_interval_s``) instead: the sooner an end is seen, the sooner every other execution
  is planned from it (a small run against a platform that processes in a second ended a second
  late), for a few more GETs of one execution.
- Then run times and queueing times are learned from each success (``poll_estimates``).
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
  ``Planner.uploads_over``), because the floor is between polls and an upload's answer was none; and
  each may have one poll within the floor, aimed at its expected end once its start was seen or
  a slot was freed for it (``Planner._aimed``). (Not at every tracking: executions tracked in a stream
  are better left to gather into listings.)
- The plans of waiting executions are made again when the 1st, 2nd, 4th, 8th ... sample is learned.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline import formats
from pipeline.engine.poll_estimates import Estimates
from pipeline.engine.poll_schedule import Schedule, Tracked

#: at the very end of a run (uploads over, at most ``Planner.end_few`` executions left), the floor
#: between two polls of one execution within its fit's band (``Planner._floor``)
END_FLOOR_S = 0.05


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


class Planner:
    """The next poll of each execution of one ``Schedule`` (see the module docstring).

    ``end_few``: how few executions left, once the uploads are over, make the very end of a run
    (``_floor``)."""

    def __init__(
        self, cadence: PollCadence, estimates: Estimates, schedule: Schedule, rng: random.Random, *, end_few: int
    ) -> None:
        self._cadence, self._estimates, self._schedule, self._rng = cadence, estimates, schedule, rng
        self._end_few = end_few
        self._scout: Tracked | None = None  # polled from the floor until something is learned
        self.uploads_done = False  # no execution will be tracked any more: the run waits only for these

    def run_time(self, item: Tracked) -> tuple[float, float]:
        """``(run, spread)``: how long ``item`` is expected to run once started, and the fit's spread."""
        return self._estimates.run_time(item.records or item.lines, item.size)

    def _began(self, item: Tracked) -> tuple[float, bool]:
        """``(began, known)``: when ``item`` started running (our clock), or the earliest it may start."""
        started = self._estimates.local(item.started)
        if started is not None:
            return started, True
        created = self._estimates.local(item.created)
        begin = item.tracked_at if created is None else min(item.tracked_at, created)
        begin += self._estimates.queue_time
        return begin if item.not_started_at is None else max(begin, item.not_started_at), False

    def plan(self, item: Tracked, now: float) -> float:
        """When to poll ``item`` next (see the module docstring)."""
        cadence = self._cadence
        if not self._estimates.known:  # nothing learned yet: the growing interval (the scout's from the floor)
            previous, scout = item.interval, item.interval is None and cadence.scout and self._scouts(item)
            if scout:
                previous = cadence.floor_s / cadence.growth
            base, delay = cadence.next_interval(previous, self._rng)
            if scout:  # its jitter only later: never polled within the floor after its upload
                delay = max(delay, cadence.floor_s)
            item.interval = base
            return now + delay
        jitter = cadence.jitter
        run, spread = self.run_time(item)
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
        ``end_few`` executions left) while that poll is before the end of the fit's band, where it
        is ``END_FLOOR_S`` (or half the spread): the run's end waits only for these, and the floor
        saw the last of them end up to 0.25 s late. That band is four spreads wide, so this costs
        a few GETs per execution, and only for the last few."""
        floor = self._cadence.floor_s
        if self.uploads_done and self._schedule.live <= self._end_few and ref < end + 2 * spread:
            return min(floor, max(END_FLOOR_S, spread / 2))
        return floor

    def _aimed(self, item: Tracked, end: float, now: float) -> float | None:
        """The one poll of ``item`` that may come within the floor after its last one: once the
        uploads are over (the run then waits only for the executions left), at its expected
        ``end`` (a start seen, or a slot freed for it, plus the run time and the fit's spread),
        when that is sooner than the floor allows. None: the floor holds. On a platform that runs
        an execution in 20 ms, the last ones, seen queued or running, were otherwise seen done a
        floor (0.25 s) after their end. One per execution (the caller sets ``item.aimed`` when it
        plans it), so a wrong estimate costs one GET."""
        if not self.uploads_done or item.aimed or not item.last_poll < end < item.last_poll + self._cadence.floor_s:
            return None  # (an end expected before the last answer, which showed it not done, is wrong)
        return max(now, end)

    def _scouts(self, item: Tracked) -> bool:
        """Whether ``item`` is the scout: the first planned while no other one is live."""
        if self._scout is None or self._scout.done:
            self._scout = item
        return item is self._scout

    def replan(self, now: float) -> None:
        """Plan every waiting execution again with what was learned."""
        self._schedule.replan(lambda item: self.plan(item, now))

    def uploads_over(self, now: float) -> None:
        """The last upload was answered: each execution not polled yet is due at its expected end
        (now, if that is past) plus the fit's spread, instead of no sooner than the floor between
        polls after its upload (whose answer was no poll). The run's end waits only for these;
        those due together still go in one listing when there are more than the threshold. On
        loopback, against a platform that processes in 20 ms, that floor after the last upload was
        a tenth of a 1 GB run, and the end of the last two uploads a fifth."""
        self.uploads_done = True
        if not self._estimates.known:
            return
        for item in self._schedule.items():
            if item.done or item.polled or item.fixed_first or not item.seq:
                continue
            run, spread = self.run_time(item)
            began, _ = self._began(item)
            due = max(now, began + run + spread)
            if due < item.due:
                self._schedule.push(due, item)

    def slot_freed(self, start_at: float, now: float, *, skip: Tracked | None = None) -> None:
        """An execution ended, and the next in line would start at ``start_at``: the oldest one still
        waiting (and not already claiming an earlier slot) may be that one (a queue served in order):
        poll it when it would end if so, if that is sooner than planned. A GET after ``start_at`` that
        still finds it waiting passes the claim on to the next in line."""
        order = self._schedule.order

        def may_wait(item: Tracked) -> bool:
            return not item.done and item.started is None and item.last_status != formats.ExecutionStatus.RUNNING

        while order and not may_wait(order[0]):
            order.popleft()
        for item in order:
            if item is skip or item.claim is not None or not may_wait(item):
                continue
            item.claim = start_at
            if item.seq and not item.fixed_first:  # waiting in the heap (not being polled)
                run, spread = self.run_time(item)
                aimed = self._aimed(item, max(start_at, now) + run + spread, now)
                floored = max(now, start_at, start_at + run - 2 * spread, item.last_poll + self._cadence.floor_s)
                due = floored if aimed is None else min(floored, aimed)
                if due < item.due:
                    item.aimed = item.aimed or due < floored
                    self._schedule.push(min(due, item.deadline), item)
            return

"""What the finished executions of a run taught its poller: how long one runs, how long one
queues, and where the server's clock is against ours.

Apart from the poller because it is a model, not a schedule: it holds no execution, only samples,
and answers "how long" and "when, on our clock"; ``poll_plan`` turns its answers into poll times.

- Each execution that succeeds teaches, from its server fields (``creation_date``, ``start_date``,
  ``end_date``, epoch ms), how long it queued (start - creation) and how long it ran (end - start).
  Run times are fitted as ``base + rate * work`` (least squares over the last 64, both terms
  non-negative; see ``RunTimeFit`` for work that does not vary), the work being the execution's
  record count (the ``records`` hint of ``Poller.track``, else its ``parameters.number_of_lines``,
  else its result's totals), else its size in bytes (the ``size`` hint), else nothing (then the mean
  run time). The queueing time expected is the smallest of the last 8 seen. Only successes teach,
  whether a GET or a listing saw them end (a failure may end early). Estimates lean early: a poll
  too early costs one request, one too late delays the end of the run.
- Server dates are turned into this machine's clock with the smallest offset every answer allows (a
  date in an answer is never later than the answer), so no two clocks need to agree.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

RUN_SAMPLES = 64  # run times kept for the fit
QUEUE_SAMPLES = 8  # queueing times kept (the smallest is expected)


class RunTimeFit:
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


def epoch_seconds(value: object) -> float | None:
    """An epoch-milliseconds field as seconds (``None`` when missing or not a positive number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return float(value) / 1000


def positive_count(value: object) -> int | None:
    """``value`` when it is a positive int (not a bool), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def work_of(execution: Mapping[str, Any]) -> int | None:
    """The records an execution says it holds: ``parameters.number_of_lines``, else its result's totals."""
    parameters, result = execution.get("parameters"), execution.get("result")
    if isinstance(parameters, dict) and (lines := positive_count(parameters.get("number_of_lines"))):
        return lines
    if isinstance(result, dict):
        ok, failed = result.get("total_success"), result.get("total_failure")
        if isinstance(ok, int) and isinstance(failed, int) and not isinstance(ok, bool):
            return positive_count(ok + failed)
    return None


class Estimates:
    """The samples of one run's finished executions (see the module docstring)."""

    def __init__(self) -> None:
        self.by_records, self.by_bytes, self.plain = RunTimeFit(), RunTimeFit(), RunTimeFit()
        self._queued: deque[float] = deque(maxlen=QUEUE_SAMPLES)
        self._pickup = math.inf  # the smallest queueing time seen: from a free slot to a start
        self._offset: float | None = None  # server seconds - our clock, the smallest the answers allow

    @property
    def known(self) -> bool:
        """Whether anything was learned yet (one success at least)."""
        return bool(self.plain)

    @property
    def queue_time(self) -> float:
        """The queueing time expected: the smallest of the last ones seen (0 before any)."""
        return min(self._queued) if self._queued else 0.0

    @property
    def pickup_s(self) -> float:
        """The smallest queueing time ever seen (0 before any): from a slot freed to the next start."""
        return self._pickup if self._pickup < math.inf else 0.0

    def observe(self, execution: Mapping[str, Any], answered_at: float) -> None:
        """Every server date in an answer is at most the server's time when it answered."""
        for name in ("creation_date", "start_date", "end_date"):
            date = epoch_seconds(execution.get(name))
            if date is not None:
                offset = date - answered_at
                self._offset = offset if self._offset is None else max(self._offset, offset)

    def local(self, server_s: float | None) -> float | None:
        """A server date on our clock (never earlier than it was: the offset is a lower bound)."""
        return None if server_s is None or self._offset is None else server_s - self._offset

    def run_time(self, records: int | None, size: int | None) -> tuple[float, float]:
        """``(run, spread)``: how long an execution of ``records`` (else ``size`` bytes) is expected
        to run once started, and the fit's spread."""
        fit, work = self.plain, 0.0
        if records and self.by_records:
            fit, work = self.by_records, float(records)
        elif size and self.by_bytes:
            fit, work = self.by_bytes, float(size)
        return max(0.0, fit.predict(work)), fit.spread

    def learn(self, execution: Mapping[str, Any], *, records: int | None, lines: int | None, size: int | None) -> bool:
        """Learn from a success (``records`` and ``size``: the hints of its tracking; ``lines``: its
        number of lines seen in an answer); return whether the waiting plans are to be made again:
        at the 1st, 2nd, 4th, 8th ... sample (64 at most are kept)."""
        created = epoch_seconds(execution.get("creation_date"))
        started = epoch_seconds(execution.get("start_date"))
        ended = epoch_seconds(execution.get("end_date"))
        began = started if started is not None else created
        if ended is None or began is None or ended < began:
            return False
        if started is not None and created is not None and started >= created:
            self._queued.append(started - created)
            self._pickup = min(self._pickup, started - created)
        run = ended - began
        work = records or work_of(execution) or lines
        self.plain.add(0.0, run)
        if work:
            self.by_records.add(work, run)
        if size:
            self.by_bytes.add(size, run)
        learned = len(self.plain)
        return learned & (learned - 1) == 0

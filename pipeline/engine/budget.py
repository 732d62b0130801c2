"""The error budget (``batch.max_errors``, ``--max-errors N`` or ``N%``): how many records a run may
lose, rejected by the reader (client side) or refused by the server (the executions'
``total_failure``), and still end with exit 0, as ``bq load --max_bad_records`` and dsbulk's
``-maxErrors`` do.

- ``N``: at most N records; ``N%``: at most N percent of the records read (rounded down), the
  records read being the records put in batches plus the rejected ones.
- The default, 0, is no budget: the run reads and sends everything as it always did, and any
  rejected or refused record ends it with exit 1.
- During reading, once the rejects alone are over the budget, the run stops sending new batches
  (outcome ``too_many_errors``). For ``N%`` the total is not known yet: the reader's rejects are
  compared with N percent of the records the inputs hold, estimated from the bytes read so far
  (never fewer than the records read), so a bad first line does not stop a run of millions; with
  a ``.gz`` input (whose decoded size is not known) a percentage is checked only at the end.

What is not in records (a file skipped whole, a batch whose execution FAILED, reading stopped on
an error) is never within the budget: it always ends with exit 1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pipeline.errors import ConfigError

KEY = "batch.max_errors"
_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class ErrorBudget:
    """``count`` records, or ``percent`` of the records read (exactly one is set)."""

    count: int | None = 0
    percent: float | None = None

    @property
    def spec(self) -> str:
        """As the user writes it: ``10``, ``1%``, ``0.5%``."""
        if self.percent is not None:
            return f"{self.percent:g}%"
        return str(self.count)

    @property
    def is_zero(self) -> bool:
        return not self.count and not self.percent

    def allowed(self, read: int) -> int:
        """How many records in error a run of ``read`` records may have."""
        if self.percent is not None:
            return math.floor(read * self.percent / 100 + 1e-9)
        return self.count or 0

    def within(self, errors: int, read: int) -> bool:
        return errors <= self.allowed(read)


NO_BUDGET = ErrorBudget()


def parse_max_errors(value: object) -> ErrorBudget:
    """``"10"``, ``10``, ``"1%"``, ``"0.5%"`` -> a budget; anything else is a ``ConfigError``."""
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    match = _SPEC.match(text) if text is not None else None
    if match is None:
        raise ConfigError(
            KEY, f'must be a number of records (10) or a percentage of the records read ("1%"), got {value!r}'
        )
    number, percent = match.groups()
    if percent:
        share = float(number)
        if share > 100:
            raise ConfigError(KEY, f"a percentage must be at most 100%, got {value!r}")
        return ErrorBudget(count=None, percent=share)
    if "." in number:
        raise ConfigError(KEY, f"a number of records must be whole, got {value!r} (a share is written 1%)")
    return ErrorBudget(count=int(number))


class ReadingBudget:
    """The check made while reading: are the rejects so far already over the budget?

    Told, from the reader thread, each reject (``rejected``) and each batch read (``batch_read``:
    its records and how far into the inputs' bytes it ends); ``exceeded`` says to stop sending.
    """

    def __init__(self, budget: ErrorBudget, total_bytes: int | None) -> None:
        self.budget = budget
        self.total_bytes = total_bytes  # None: not known (a .gz input)
        self.rejects = 0
        self.records = 0
        self.bytes_done = 0  # bytes of the inputs before the end of the last batch read

    def rejected(self) -> None:
        self.rejects += 1

    def batch_read(self, records: int, bytes_done: int) -> None:
        self.records += records
        self.bytes_done = max(self.bytes_done, bytes_done)

    def estimated_total(self) -> int:
        """The records the inputs hold, as far as the bytes read so far tell."""
        read = self.records + self.rejects
        if self.budget.percent is None or self.total_bytes is None or not 0 < self.bytes_done < self.total_bytes:
            return read
        return max(read, math.ceil(read * self.total_bytes / self.bytes_done))

    def exceeded(self) -> bool:
        if self.rejects == 0 or self.budget.is_zero or (self.budget.percent is not None and self.total_bytes is None):
            return False  # no budget (0): every record read is sent, the run ends with exit 1
        return self.rejects > self.budget.allowed(self.estimated_total())

    def message(self) -> str:
        return (
            f"{self.rejects:,} records rejected while reading, over the error budget (max_errors "
            f"{self.budget.spec}): the run stopped sending new batches; the rejects are in rejects.ndjson"
        )

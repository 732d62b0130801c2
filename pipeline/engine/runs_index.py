"""The run directories under a base directory: what each one is (``list_runs``) and which may go
(``plan_prune``, ``remove_run``).

Run directories pile up (one per run, each with ``rejects.ndjson``: personal data). A run is
described from its journal's first line (``run_started``: start, inputs), its journal's last line
(``run_finished`` when it ended: outcome, exit code), its ``report.json`` (the records) and its
lock (a process holds it while the run works). Nothing reads a whole journal: a base of a thousand
runs lists in a moment.

A run's age is the time since its journal was last written (its last activity): a run started 40
days ago and resumed yesterday is one day old. Pruning never removes a run a process holds, and
removes an unfinished one (interrupted, incomplete, stopped: ``resume`` may still need it) only
when asked; each removal takes the run's lock first, so a ``resume`` that starts meanwhile is not
pulled from under.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict

import orjson

from pipeline.engine.journal import JOURNAL_NAME, read_journal
from pipeline.engine.rundir import LOCK_NAME, REPORT_NAME, RunLock
from pipeline.errors import UsageError
from pipeline.reporting.report import iso

FINAL_OUTCOMES = ("succeeded", "completed_with_failures", "completed_with_duplicates", "completed_with_unknowns")
TAIL_BYTES = 64 * 1024  # the journal's last line is within this much of its end


class RunPhase(StrEnum):
    """Where a run stands, as its directory tells."""

    RUNNING = "running"  # a process holds its lock
    FINISHED = "finished"  # ended for good (exit 0, 1, 4): a resume changes nothing
    RESUMABLE = "resumable"  # ended interrupted or incomplete (exit 3): `pipeline resume` goes on
    STOPPED = "stopped"  # no recorded end (a crash, a kill): `pipeline resume` goes on


class RecordSummary(TypedDict):
    read: int
    succeeded: int
    failed: int
    rejected: int


class RunEntry(TypedDict):
    """One run of ``pipeline runs list --json``."""

    run_id: str
    run_dir: str
    phase: str  # RunPhase
    outcome: str | None
    exit_code: int | None
    started_at: str | None
    last_activity_at: str
    records: RecordSummary | None  # from report.json (the last one the run wrote)
    inputs: list[str]
    import_id: str | None
    bytes: int  # on disk


def list_runs(base: Path) -> list[RunEntry]:
    """Every run directory directly under ``base`` (symbolic links and other entries ignored), oldest first."""
    if not base.is_dir():
        return []
    entries = [describe_run(path) for path in run_dirs(base)]
    return sorted(entries, key=lambda e: (e["started_at"] or "", e["run_id"]))


def run_dirs(base: Path) -> Iterator[Path]:
    for path in base.iterdir():
        if not path.is_symlink() and path.is_dir() and (path / JOURNAL_NAME).is_file():
            yield path


def describe_run(run_dir: Path) -> RunEntry:
    journal = run_dir / JOURNAL_NAME
    first = first_event(run_dir)
    last = last_event(journal)
    report = _read_report(run_dir / REPORT_NAME)
    ended = last is not None and last.get("event") == "run_finished"
    outcome = str(last["outcome"]) if ended and last and last.get("outcome") else None
    if is_locked(run_dir):
        phase = RunPhase.RUNNING
    elif outcome in FINAL_OUTCOMES:
        phase = RunPhase.FINISHED
    elif ended:
        phase = RunPhase.RESUMABLE
    else:
        phase = RunPhase.STOPPED
    records = report.get("records") if report else None
    return {
        "run_id": str(first.get("run_id") or run_dir.name),
        "run_dir": str(run_dir),
        "phase": phase,
        "outcome": outcome,
        "exit_code": int(last["exit_code"]) if ended and last and last.get("exit_code") is not None else None,
        "started_at": iso(first["started_at"]) if isinstance(first.get("started_at"), int | float) else None,
        "last_activity_at": iso(last_activity(run_dir)) or "",
        "records": _record_summary(records) if isinstance(records, dict) else None,
        "inputs": [str(i.get("path")) for i in first.get("inputs") or [] if isinstance(i, dict)],
        "import_id": _import_id(report),
        "bytes": disk_bytes(run_dir),
    }


def _record_summary(records: dict[str, Any]) -> RecordSummary:
    return {k: int(records.get(k) or 0) for k in ("read", "succeeded", "failed", "rejected")}  # type: ignore[return-value]


def _import_id(report: dict[str, Any] | None) -> str | None:
    imp = (report or {}).get("document_import") or {}
    return str(imp["id"]) if isinstance(imp, dict) and imp.get("id") is not None else None


def first_event(run_dir: Path) -> dict[str, Any]:
    """The journal's ``run_started`` (its first line), or {} for a journal without one."""
    with contextlib.suppress(OSError):
        for event in read_journal(run_dir):
            return event if event.get("event") == "run_started" else {}
    return {}


def last_event(journal: Path) -> dict[str, Any] | None:
    """The journal's last whole event, read from its end."""
    try:
        with journal.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line, or the cut first one
        if isinstance(event, dict) and "event" in event:
            return event
    return None


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def is_locked(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock (the lock file itself stays after a run)."""
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def last_activity(run_dir: Path) -> float:
    """When the run last wrote its journal (epoch seconds)."""
    try:
        return (run_dir / JOURNAL_NAME).stat().st_mtime
    except OSError:
        return run_dir.stat().st_mtime


def disk_bytes(run_dir: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(run_dir):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


# --- pruning -------------------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_age(text: str) -> float:
    """``30d`` -> seconds (units s, m, h, d, w); ``UsageError`` otherwise."""
    match = _AGE.match(text.lower())
    if not match:
        raise UsageError(f"--older-than {text!r}: give a number and a unit, e.g. 30d, 12h, 2w (s, m, h, d, w)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


class KeepReason(StrEnum):
    """Why prune keeps a run."""

    YOUNG = "younger than the limit"
    RUNNING = "running: a process holds it"
    UNFINISHED = "not finished: resume may need it (--include-unfinished removes it)"
    NOT_SUCCEEDED = "did not succeed (--keep-failed)"


@dataclass(frozen=True)
class PruneDecision:
    run: RunEntry
    age_s: float  # since its last activity
    keep: KeepReason | None  # None: it goes

    def describe(self) -> str:
        state = self.run["outcome"] or self.run["phase"]
        return f"{state}, {self.age_s / 86_400:.1f} days old"


def plan_prune(
    runs: list[RunEntry],
    *,
    older_than_s: float,
    keep_failed: bool = False,
    include_unfinished: bool = False,
    now: float | None = None,
) -> list[PruneDecision]:
    """What to do with each run: only runs older than ``older_than_s`` go; never a running one;
    an unfinished one only with ``include_unfinished``; with ``keep_failed``, not a finished one
    that did not succeed (exit 1 or 4: its report and rejects are what someone will look at)."""
    now = time.time() if now is None else now
    decisions = []
    for run in runs:
        age = now - last_activity(Path(run["run_dir"]))
        decisions.append(PruneDecision(run, age, _keep(run, age, older_than_s, keep_failed, include_unfinished)))
    return decisions


def _keep(run: RunEntry, age: float, older_than_s: float, keep_failed: bool, unfinished: bool) -> KeepReason | None:
    if age < older_than_s:
        return KeepReason.YOUNG
    if run["phase"] == RunPhase.RUNNING:
        return KeepReason.RUNNING
    if run["phase"] != RunPhase.FINISHED and not unfinished:
        return KeepReason.UNFINISHED
    if keep_failed and run["phase"] == RunPhase.FINISHED and run["outcome"] != "succeeded":
        return KeepReason.NOT_SUCCEEDED
    return None


def remove_run(run_dir: Path) -> None:
    """Remove a run directory under its own lock (``UsageError`` when a process took it meanwhile)."""
    lock = RunLock(run_dir)
    try:
        shutil.rmtree(run_dir)
    finally:
        lock.release()

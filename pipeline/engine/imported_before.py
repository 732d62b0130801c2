"""Inputs a run under the same ``report.dir`` already imported: a new run of them is refused.

The commonest way to import records twice is not a lost answer but a second ``pipeline run`` of
the same files: a scheduler that retries a task which had in fact finished, an operator who runs
the night's command again after an alert (exit 1) instead of ``pipeline retry``, a cron job that
takes yesterday's files with today's. The lock of active runs (``rundir.ActiveRunGuard``) only
catches two runs at once. So before a new run starts, the runs under its ``report.dir`` are read
(each journal's first line, ``run_started``: target, config, inputs' fingerprints) and a run that
sent something of the same data to the same place refuses the new one (``AlreadyImportedError``,
exit 2), naming that run and what to do instead; ``--again`` (``RunOptions.again``) imports anyway.

"The same data" is an input with the same identity: a local file with the same name, size and
modification time (to the nanosecond: a copy made with ``cp -p`` is the same data; a file written
again is new data, whatever its name), a remote object with the same URL, size and ETag or version.
stdin has none. A run that stopped because an input changed while it was sent (a file still being
written: ``stages.InputChangedError``) journals that input's path; a new run of the same path to the
same place is refused too, whatever the file's size and time are now: the records that run
delivered are still at the start of the file. "The same place": the same API URL, datamart and
document type (into another document import of the same datamart, the records would still be
there twice). Runs against the
embedded emulator are never compared: its imports end with its process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.engine.events import JournalKind
from pipeline.engine.journal import JOURNAL_NAME, read_journal
from pipeline.engine.runs_index import RunPhase, describe_run, first_event, last_event, run_dirs
from pipeline.errors import AlreadyImportedError

Identity = tuple[Any, ...]


@dataclass(frozen=True)
class PriorImport:
    """A run that sent some of the inputs of a new run to the same place."""

    run_dir: Path
    run_id: str
    phase: str  # RunPhase
    outcome: str | None
    started_at: str | None
    inputs: list[str]  # the new run's inputs it holds, as that run named them
    changed_input: bool = False  # it stopped when one of them changed: it holds a part of that file


def identity(fingerprint: Mapping[str, Any]) -> Identity | None:
    """What makes an input the same data (``reading.inputs.fingerprint``); None: nothing does."""
    size = fingerprint.get("size")
    if not isinstance(size, int) or size < 0:
        return None  # stdin, or an input that was gone
    if fingerprint.get("kind") == "object":
        tag = fingerprint.get("version_id") or fingerprint.get("etag")
        return ("object", fingerprint.get("url") or fingerprint.get("path"), size, tag) if tag else None
    mtime = fingerprint.get("mtime_ns")
    if not isinstance(mtime, int) or mtime < 0:
        return None
    return ("file", Path(str(fingerprint.get("path"))).name, size, mtime)


def place(target: str, config: Mapping[str, Any]) -> tuple[str, str, str]:
    """Where a run imports: its API URL, datamart and document type (``Config.to_dict()``)."""
    imp = config.get("import") or {}
    return target.rstrip("/"), str(imp.get("datamart_id")), str(imp.get("document_type"))


def prior_imports(
    base: Path, target: str, config: Mapping[str, Any], fingerprints: Iterable[Mapping[str, Any]]
) -> list[PriorImport]:
    """The runs under ``base`` that sent some of these inputs to this place, newest first."""
    wanted = {i: str(f.get("path")) for f in fingerprints if (i := identity(f)) is not None}
    paths = {_where(p): p for p in wanted.values()}
    if not wanted or not base.is_dir():
        return []
    here = place(target, config)
    found = []
    for run_dir in run_dirs(base):
        first = first_event(run_dir)
        if place(str(first.get("target") or ""), first.get("config") or {}) != here:
            continue
        theirs = [i for f in first.get("inputs") or [] if isinstance(f, dict) and (i := identity(f)) is not None]
        shared = [wanted[i] for i in theirs if i in wanted]
        changed = _changed_input(run_dir, paths)
        if (shared or changed) and _sent_something(run_dir):
            entry = describe_run(run_dir)
            found.append(
                PriorImport(
                    run_dir,
                    entry["run_id"],
                    entry["phase"],
                    entry["outcome"],
                    entry["started_at"],
                    shared or [changed or ""],
                    changed_input=not shared,
                )
            )
    return sorted(found, key=lambda p: p.started_at or "", reverse=True)


def refuse_if_imported_before(
    base: Path, target: str, config: Mapping[str, Any], fingerprints: Sequence[Mapping[str, Any]]
) -> None:
    """Raise ``AlreadyImportedError`` naming the newest run that sent some of these inputs."""
    found = prior_imports(base, target, config, fingerprints)
    if found:
        newest = found[0]
        raise AlreadyImportedError(
            run_id=newest.run_id,
            run_dir=str(newest.run_dir),
            finished=newest.phase == RunPhase.FINISHED,
            running=newest.phase == RunPhase.RUNNING,
            outcome=newest.outcome,
            started_at=newest.started_at,
            inputs=newest.inputs,
            others=len(found) - 1,
            changed_input=newest.changed_input,
        )


def _where(path: str) -> str:
    with contextlib.suppress(OSError, RuntimeError):
        return str(Path(path).resolve())
    return path


def _changed_input(run_dir: Path, paths: Mapping[str, str]) -> str | None:
    """The new run's input (as it names it) whose change stopped the run of ``run_dir``, if any."""
    last = last_event(run_dir / JOURNAL_NAME) or {}
    changed = last.get("changed_input") if last.get("event") == JournalKind.RUN_FINISHED else None
    return paths.get(_where(changed)) if isinstance(changed, str) else None


def _sent_something(run_dir: Path) -> bool:
    """Whether the run began an upload (read only for a run of the same inputs)."""
    with contextlib.suppress(OSError):
        return any(event.get("event") == JournalKind.UPLOAD_STARTED for event in read_journal(run_dir))
    return False

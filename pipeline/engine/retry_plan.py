"""What a retry sends again: the records of a finished run that did not make it, as planned batches.

From the run's journal and files (``pipeline retry RUN_DIR``):

- **not delivered**: every batch whose records did not get in at all (an execution FAILED,
  CANCELED or LOST, an upload refused for good): all its records, found again in its input from
  its journaled first line and byte offset, minus what the reader left out of it (its rejects and,
  with validation, blank lines); its journaled digest must match, so an input changed since the
  run is refused, never half-sent;
- **refused**: every record of ``failed.ndjson`` (the server's refusals, mapped to source lines)
  that belongs to a batch whose execution succeeded; its line must still hold the text the file
  kept of it;
- **rejected** (``--rejected``): every record of ``rejects.ndjson`` (the client's rejects), read
  again once the user fixed it in place and checked again: still bad, it is rejected again (the
  retry's own ``rejects.ndjson``); a file skipped whole is not taken (run it on its own).

A record that succeeded is never taken: whole batches are only failed ones, single records only
those listed. A record is taken once, by its input and line: the records of an execution FAILED
because the server refused all of them are both in a batch not delivered and in ``failed.ndjson``
(its error file lists them), and are sent once, with their batch. For a run that is itself a
retry, its batches' pieces are in its plan (``retry.json``), so ``pipeline retry`` of a retry works
the same way. The plan is written into the retry's run directory before anything is sent;
``pipeline resume`` of the retry reads it again, so the same batches are planned, each checked
against its digest.

The records are found again in the inputs by ``retry_selection.RetrySelection``; this module holds
the plan it fills, its file, and the checks of the run retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from pipeline.config import Config, config_from_dict
from pipeline.engine.journal import JournaledRun, load_run
from pipeline.engine.retry_selection import RetrySelection
from pipeline.errors import UsageError
from pipeline.reading.batch import Reject
from pipeline.reading.planned_batch import PlannedBatch
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.selection_reader import SelectionReader
from pipeline.reporting.exit_codes import EXIT_UNKNOWN
from pipeline.reporting.types import RetryOf

RETRY_NAME = "retry.json"


@dataclass
class RetryPlan:
    """The batches a retry sends, what it rejects again, and what it was made from."""

    retry_of: dict[str, str]  # run_id and run_dir of the run retried
    import_id: str
    batches: list[PlannedBatch] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)  # rejected records still bad once read again
    selected: dict[str, int] = field(default_factory=lambda: {"not_delivered": 0, "refused": 0, "rejected": 0})
    warnings: list[str] = field(default_factory=list)
    #: physical lines of each NDJSON input as the first run read it (an input fixed in place keeps them)
    line_counts: dict[str, int] = field(default_factory=dict)
    rejects_left: int = 0  # client-side rejects of the run not taken (no --rejected): not saved

    @property
    def inputs(self) -> list[Path]:
        """The inputs the retry reads, in the original run's order."""
        return [Path(p) for p in dict.fromkeys([*(b.path for b in self.batches), *(r.file for r in self.rejects)])]

    @property
    def records(self) -> int:
        return sum(b.records for b in self.batches)

    def reader(self, options: ReaderOptions, on_reject: Callable[[Reject], None]) -> SelectionReader:
        """The retry's batch source (``Stages``' reader): the planned batches, checked again."""
        return SelectionReader(self.batches, self.rejects, on_reject, spool_dir=options.spool_dir)

    def retry_of_entry(self) -> RetryOf:
        """The report's ``retry_of``."""
        return {
            "run_id": self.retry_of["run_id"],
            "run_dir": self.retry_of["run_dir"],
            "records": self.records,
            "not_delivered": self.selected.get("not_delivered", 0),
            "refused": self.selected.get("refused", 0),
            "rejected": self.selected.get("rejected", 0),
        }

    def save(self, run_dir: Path) -> None:
        from pipeline.reporting.atomic_json import write_json_atomically

        write_json_atomically(
            run_dir / RETRY_NAME,
            {
                "retry_of": self.retry_of,
                "import_id": self.import_id,
                "selected": self.selected,
                "warnings": self.warnings,
                "line_counts": self.line_counts,
                "rejects": [r.as_dict() for r in self.rejects],
                "batches": [b.to_dict() for b in self.batches],
            },
        )

    @classmethod
    def load(cls, run_dir: Path) -> RetryPlan | None:
        """The plan of a retry's run directory; ``None`` for a run that is not a retry."""
        path = Path(run_dir) / RETRY_NAME
        if not path.is_file():
            return None
        data = orjson.loads(path.read_bytes())
        return cls(
            retry_of=dict(data["retry_of"]),
            import_id=str(data["import_id"]),
            batches=[PlannedBatch.from_dict(b) for b in data["batches"]],
            rejects=[Reject(r["file"], int(r["line"]), r["reason"], r["record"]) for r in data.get("rejects", [])],
            selected=dict(data.get("selected", {})),
            warnings=list(data.get("warnings", [])),
            line_counts={str(k): int(v) for k, v in data.get("line_counts", {}).items()},
        )


def journaled_config(journaled: JournaledRun) -> Config:
    from pipeline.engine.start import _as_planned

    return config_from_dict(_as_planned(journaled.started["config"]))


def plan_retry(run_dir: Path, *, rejected: bool = False) -> tuple[RetryPlan, Config]:
    """The plan of a retry of the finished run in ``run_dir`` and that run's config."""
    journaled = load_run(run_dir)
    _check_finished(run_dir, journaled)
    config = journaled_config(journaled)
    state = journaled.state()
    import_id = state.document_import.get("id") or config.import_.id
    if not import_id:
        raise UsageError(f"{run_dir}: the run has no document import: nothing of it was sent")
    selection = RetrySelection(run_dir, journaled, state, config, RetryPlan.load(run_dir))
    selection.select(rejected=rejected)
    plan = RetryPlan(
        retry_of={"run_id": journaled.run_id, "run_dir": str(run_dir)},
        import_id=str(import_id),
        batches=selection.batches,
        rejects=selection.rejects,
        selected=selection.selected,
        warnings=selection.warnings,
        line_counts=selection.line_counts,
        rejects_left=selection.rejects_left,
    )
    return plan, config


def _check_finished(run_dir: Path, journaled: JournaledRun) -> None:
    """A run whose outcome is not known yet may still deliver what looks failed: resume it first."""
    end = journaled.boundary
    if end.get("event") != "run_finished" or end.get("exit_code") == EXIT_UNKNOWN:
        err = UsageError(f"{run_dir}: the run has not finished (its outcome is not known yet): nothing to retry yet")
        err.hint = f"pipeline resume {run_dir} first; then retry what did not make it"
        raise err

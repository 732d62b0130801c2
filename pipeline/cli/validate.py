"""``pipeline validate``: a dry run. Reads and checks every record with the config's batch settings,
prints the batch plan and the rejects, sends nothing, needs no token and writes no run directory.

The plan is the one a run would cut now: from the inputs' sizes and the config
(``reading.sizing.plan_sizes``), or fitted to the platform as the newest finished run to the same
place saw it (``engine.platform_profile.fitted_plan``), which the output then names.

Exit codes, like ``run``: 0 every record would be sent, 1 some would be rejected, 2 usage or config.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, TypedDict

from pipeline.cli.common import print_json, print_table
from pipeline.cli.settings import load_settings
from pipeline.config import Config
from pipeline.reading.batch import Reject
from pipeline.reading.inputs import Resolved, resolve
from pipeline.reading.platform_model import LearnedPlan, told_fields
from pipeline.reading.reader import BatchReader
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.sizing import BatchSizes, plan_sizes, small_files_note, total_input_bytes
from pipeline.reading.sources import Input
from pipeline.reporting.exit_codes import EXIT_FAILURES, EXIT_OK
from pipeline.reporting.progress import event_text


class PlanEntry(TypedDict):
    """One batch of the plan (``--json``: ``batches``)."""

    batch: int
    file: str
    first_line: int
    last_line: int
    records: int
    bytes: int


class FileEntry(TypedDict):
    """One input file (``--json``: ``files``)."""

    path: str
    bytes: int
    records: int
    rejected: int
    skipped: str | None


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split(" (")[0]


def validate_command(args: argparse.Namespace) -> int:
    from pipeline.engine.start import check_inputs_match_config

    config = _load_config(args)
    found = resolve(args.inputs, recursive=args.recursive)
    check_inputs_match_config(config, found.files)
    rejects = _Rejects(args.max_rejects)
    sizes, fitted, warnings = _batch_sizes(config, found.files)
    plan, files = _read(config, found.files, sizes, rejects)
    rejected = sum(f["rejected"] for f in files)
    code = EXIT_FAILURES if rejected or any(f["skipped"] for f in files) else EXIT_OK
    if args.json:
        print_json(_json_result(config, found, files, plan, fitted, rejects, warnings, code))
        return code
    _print_warnings(found, warnings, fitted)
    _print_text(config, files, plan, rejects.listed, rejects.by_reason, rejected, args.max_rejects)
    return code


def _load_config(args: argparse.Namespace) -> Config:
    """The effective config (``cli/settings``), its warnings told on stderr."""
    settings = load_settings(args.config, args)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return settings.config


class _Rejects:
    """The rejects met: the first ``keep`` of them, listed, and every one counted by its reason's kind."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.listed: list[Reject] = []
        self.by_reason: dict[str, int] = {}

    def add(self, reject: Reject) -> None:
        self.by_reason[_reason_kind(reject.reason)] = self.by_reason.get(_reason_kind(reject.reason), 0) + 1
        if len(self.listed) < self.keep:
            self.listed.append(reject)


def _batch_sizes(config: Config, paths: list[Input]) -> tuple[BatchSizes, LearnedPlan | None, list[str]]:
    """The sizes a run would cut now: the default plan, or the one fitted to what a run to the same
    place learned (then returned too); and the warnings about them (many small files)."""
    from pipeline.engine.platform_profile import fitted_plan

    total = total_input_bytes(paths)
    sizes = plan_sizes(
        total,
        max_bytes=config.batch.max_bytes,
        concurrency=config.upload.concurrency,
        sizing=config.batch.sizing,
    )
    fitted = fitted_plan(config, total, sizes)
    if fitted is not None:
        sizes = fitted.sizes
    warnings = [note] if (note := small_files_note(paths, sizes, total)) else []
    return sizes, fitted, warnings


def _read(
    config: Config, paths: list[Input], sizes: BatchSizes, rejects: _Rejects
) -> tuple[list[PlanEntry], list[FileEntry]]:
    """Every input read and checked as a run would (the spool in a temporary directory, each
    batch's spool discarded at once): the batches of the plan and each file's counts."""
    plan: list[PlanEntry] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-validate-") as spool:
        options = ReaderOptions(
            document_type=config.import_.document_type,
            mime_type=config.import_.mime_type,
            max_bytes=config.batch.max_bytes,
            sizes=sizes,
            max_lines=config.batch.max_lines,
            validate=config.batch.validate,
            spool_dir=Path(spool),
        )
        reader = BatchReader(paths, options, on_reject=rejects.add)
        for batch in reader:
            batch.discard_spool()
            plan.append(
                {
                    "batch": batch.number,
                    "file": str(batch.source),
                    "first_line": batch.first_line,
                    "last_line": batch.last_line,
                    "records": batch.records,
                    "bytes": batch.size,
                }
            )
        stats = reader.stats
    files: list[FileEntry] = [
        {"path": str(p), "bytes": s.bytes, "records": s.records, "rejected": s.rejected, "skipped": s.skipped}
        for p, s in stats.items()
    ]
    return plan, files


def _json_result(
    config: Config,
    found: Resolved,
    files: list[FileEntry],
    plan: list[PlanEntry],
    fitted: LearnedPlan | None,
    rejects: _Rejects,
    warnings: list[str],
    code: int,
) -> dict[str, Any]:
    """``--json``: the plan, the files, the rejects and the exit code, as one object."""
    return {
        "document_type": config.import_.document_type,
        "mime_type": config.import_.mime_type,
        "files": files,
        "skipped_inputs": [
            {"path": str(s.path), "reason": s.reason.value, "message": s.message} for s in found.skipped
        ],
        "batches": plan,
        "learned": fitted.describe() if fitted else None,
        "records": sum(b["records"] for b in plan),
        "rejected": sum(f["rejected"] for f in files),
        "rejects_by_reason": rejects.by_reason,
        "rejects": [r.as_dict() for r in rejects.listed],
        "warnings": warnings,
        "exit_code": code,
    }


def _print_warnings(found: Resolved, warnings: list[str], fitted: LearnedPlan | None) -> None:
    """The entries skipped and the plan's warnings on stderr; the fitted plan, when there is one,
    told as a run's log tells it."""
    from pipeline.engine.events import Event

    for entry in found.skipped:
        print(f"warning: {entry}", file=sys.stderr)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if fitted is not None:
        print(event_text(Event.BATCH_PLAN, told_fields(fitted.describe())))


def _print_text(
    config: Config,
    files: list[FileEntry],
    plan: list[PlanEntry],
    rejects: list[Reject],
    by_reason: dict[str, int],
    rejected: int,
    max_rejects: int,
) -> None:
    out = sys.stdout
    records = sum(b["records"] for b in plan)
    size = sum(b["bytes"] for b in plan)
    imp = config.import_
    out.write(
        f"batch plan: {len(plan)} batches, {records:,} records, {size / 1e6:,.1f} MB "
        f"({imp.document_type}, {imp.mime_type}; at most {config.batch.max_bytes:,} bytes"
        + (f" and {config.batch.max_lines:,} records" if config.batch.max_lines else "")
        + " per batch)\n"
    )
    if plan:
        rows = [
            (b["batch"], b["file"], f"{b['first_line']}-{b['last_line']}", f"{b['records']:,}", f"{b['bytes']:,}")
            for b in plan
        ]
        print_table(rows, ["batch", "file", "lines", "records", "bytes"])
    for f in files:
        if f["skipped"]:
            out.write(f"skipped {f['path']}: {f['skipped']}\n")
        elif f["records"] == 0 and not f["rejected"]:
            out.write(f"warning: {f['path']} holds no record\n")
    out.write("\n")
    if not rejected:
        out.write(f"no reject: all {records:,} records would be sent (nothing was sent)\n")
        return
    out.write(f"rejects: {rejected:,} records would be rejected\n")
    print_table([(r.file, r.line, r.reason) for r in rejects], ["file", "line", "reason"])
    if rejected > len(rejects):
        out.write(f"... and {rejected - len(rejects):,} more (--max-rejects {max_rejects})\n")
    out.write("by reason:\n")
    for reason, count in sorted(by_reason.items(), key=lambda kv: -kv[1]):
        out.write(f"  {count:>8,}  {reason}\n")
    out.write(f"{records:,} records would be sent, {rejected:,} rejected (nothing was sent)\n")

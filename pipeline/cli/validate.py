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
from typing import TypedDict

from pipeline.cli.common import print_json, print_table
from pipeline.cli.settings import load_settings
from pipeline.config import Config
from pipeline.reading.batch import Reject
from pipeline.reading.inputs import resolve
from pipeline.reading.platform_model import told_fields
from pipeline.reading.reader import BatchReader
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.sizing import plan_sizes, small_files_note, total_input_bytes
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
    from pipeline.engine.events import Event
    from pipeline.engine.platform_profile import fitted_plan
    from pipeline.engine.start import check_inputs_match_config

    settings = load_settings(args.config, args)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    config = settings.config
    found = resolve(args.inputs, recursive=args.recursive)
    paths = found.files
    skipped = [{"path": str(s.path), "reason": s.reason.value, "message": s.message} for s in found.skipped]
    check_inputs_match_config(config, paths)
    rejects: list[Reject] = []
    by_reason: dict[str, int] = {}

    def on_reject(reject: Reject) -> None:
        by_reason[_reason_kind(reject.reason)] = by_reason.get(_reason_kind(reject.reason), 0) + 1
        if len(rejects) < args.max_rejects:
            rejects.append(reject)

    plan: list[PlanEntry] = []
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
        reader = BatchReader(paths, options, on_reject=on_reject)
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
    rejected = sum(f["rejected"] for f in files)
    code = EXIT_FAILURES if rejected or any(f["skipped"] for f in files) else EXIT_OK
    if args.json:
        print_json(
            {
                "document_type": config.import_.document_type,
                "mime_type": config.import_.mime_type,
                "files": files,
                "skipped_inputs": skipped,
                "batches": plan,
                "learned": fitted.describe() if fitted else None,
                "records": sum(b["records"] for b in plan),
                "rejected": rejected,
                "rejects_by_reason": by_reason,
                "rejects": [r.as_dict() for r in rejects],
                "warnings": warnings,
                "exit_code": code,
            }
        )
        return code
    for entry in found.skipped:
        print(f"warning: {entry}", file=sys.stderr)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if fitted is not None:
        print(event_text(Event.BATCH_PLAN, told_fields(fitted.describe())))
    _print_text(config, files, plan, rejects, by_reason, rejected, args.max_rejects)
    return code


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

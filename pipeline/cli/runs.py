"""``pipeline runs list`` and ``pipeline runs prune``: the run directories under ``report.dir``
(by default ``$XDG_STATE_HOME/pipeline/runs``), what each one is, and removing the old ones."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.common import print_json, print_table
from pipeline.config import load_config, runs_base
from pipeline.engine.runs_index import KeepReason, RunEntry, list_runs, parse_age, plan_prune, remove_run
from pipeline.errors import PipelineError
from pipeline.reporting.exit_codes import EXIT_FAILURES, EXIT_OK
from pipeline.reporting.summary import human_bytes


def _base(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir).expanduser()
    return runs_base(load_config(args.config))


def runs_list_command(args: argparse.Namespace) -> int:
    base = _base(args)
    runs = list_runs(base)
    if args.json:
        print_json(runs)
        return EXIT_OK
    if not runs:
        print(f"no runs in {base}")
        return EXIT_OK
    print(f"runs in {base}")
    print_table([_row(r) for r in runs], ["run", "started", "outcome", "records", "inputs"])
    return EXIT_OK


def _row(run: RunEntry) -> tuple[str, str, str, str, str]:
    outcome = run["phase"] if run["phase"] != "finished" else (run["outcome"] or "?")
    if run["phase"] in ("resumable",) and run["outcome"]:
        outcome = f"{run['outcome']} (resumable)"
    if run["exit_code"] is not None:
        outcome += f", exit {run['exit_code']}"
    r = run["records"]
    records = f"{r['read']:,} read, {r['succeeded']:,} ok, {r['failed'] + r['rejected']:,} not" if r else "-"
    inputs = run["inputs"]
    shown = Path(inputs[0]).name if inputs else "-"
    if len(inputs) > 1:
        shown += f" (+{len(inputs) - 1})"
    return run["run_id"], (run["started_at"] or "-")[:19].replace("T", " "), outcome, records, shown


def runs_prune_command(args: argparse.Namespace) -> int:
    base = _base(args)
    older_than = parse_age(args.older_than)
    decisions = plan_prune(
        list_runs(base),
        older_than_s=older_than,
        keep_failed=args.keep_failed,
        include_unfinished=args.include_unfinished,
    )
    verb = "would remove" if args.dry_run else "removed"
    removed = freed = failed = 0
    for d in decisions:
        run = d.run
        if d.keep is not None:
            if d.keep != KeepReason.YOUNG:  # old enough, but protected: say why
                print(f"kept {run['run_dir']} ({d.describe()}): {d.keep}")
            continue
        if not args.dry_run:
            try:
                remove_run(Path(run["run_dir"]))
            except (OSError, PipelineError) as exc:
                failed += 1
                print(f"not removed {run['run_dir']}: {exc}", file=sys.stderr)
                continue
        removed += 1
        freed += run["bytes"]
        print(f"{verb} {run['run_dir']} ({d.describe()}, {human_bytes(run['bytes'])})")
    kept = len(decisions) - removed - failed
    print(f"{verb} {removed} run(s), {human_bytes(freed)}; kept {kept} in {base}")
    return EXIT_FAILURES if failed else EXIT_OK

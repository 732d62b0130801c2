"""``pipeline report merge RUN_DIR... --out DIR``: one report.json and report.html for the shards of
one import, with the exit code of the whole (``reporting.merge``).

A shard's report is its ``report.json`` when its journal says the run finished; a shard that did
not finish (killed, still running, never resumed) is read from its journal, as ``pipeline status
--offline`` reads it, and counts as not finished (exit 3) until it is resumed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from pipeline.cli.status import lock_holder
from pipeline.engine.journal import load_run
from pipeline.engine.rundir import REJECTS_NAME, REPORT_NAME, make_private_dir
from pipeline.errors import InputError
from pipeline.reporting.atomic_json import write_json_atomically
from pipeline.reporting.merge import merge_reports, merged_run_id
from pipeline.reporting.report import build_report
from pipeline.reporting.report_html import write_report_html
from pipeline.reporting.summary import plain_summary, summary_details
from pipeline.reporting.types import Report


def shard_report(run_dir: Path) -> Report:
    """The shard's report as it stands: written by its run if the run finished, else from its journal."""
    journaled = load_run(run_dir)  # InputError for a directory that is not a run's
    finished = journaled.boundary["event"] == "run_finished"
    holder = lock_holder(run_dir)
    written = run_dir / REPORT_NAME
    if finished and not holder and written.is_file():
        report: Report = orjson.loads(written.read_bytes())
        if report.get("run_id") == journaled.run_id:
            return report
    state = journaled.state()
    if finished:
        state.finished_at = journaled.boundary["t"]
    else:  # stopped before its end: not known yet, whatever the journal's executions say
        state.interrupted = True
    report = build_report(state, rejects_path=run_dir / REJECTS_NAME, run_dir=run_dir)
    if holder:
        report["warnings"].append(f"the run was still running (pid {holder}) when the report was merged")
    return report


def report_merge_command(args: argparse.Namespace) -> int:
    run_dirs = [Path(d) for d in args.run_dirs]
    reports = [shard_report(d) for d in run_dirs]
    out = Path(args.out)
    if out.resolve() in {d.resolve() for d in run_dirs}:
        raise InputError(out, "is one of the run directories: merge into a directory of its own")
    make_private_dir(out)
    merged = merge_reports(reports, run_id=args.name or merged_run_id(reports), run_dir=str(out))
    write_json_atomically(out / REPORT_NAME, merged)
    write_report_html(merged)
    print(plain_summary(merged), flush=True)
    for line in summary_details(merged):
        print(line, flush=True)
    for shard in merged.get("shards", []):
        print(f"  {shard['run_id']}: {shard['outcome']} (exit {shard['exit_code']})", flush=True)
    return int(merged["exit_code"])

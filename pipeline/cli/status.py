"""``pipeline status RUN_DIR``: a run's state from its journal, refreshed from the server when it can be.

The journal says what the run knew when it last wrote; executions that were not finished then are
asked again from the server (read-only: the journal is not changed, ``resume`` does that), as are
uploads whose answer was lost (looked up by file name). The refresh is skipped with a note when the
run used the embedded emulator (gone with its process), when the token variable is not set, or
when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
from pathlib import Path

from pipeline import formats
from pipeline.cli.common import open_client, print_json, print_table, token_of
from pipeline.config import Config, config_from_dict, load_config
from pipeline.engine.budget import parse_max_errors
from pipeline.engine.journal import load_run
from pipeline.engine.rundir import LOCK_NAME, REJECTS_NAME
from pipeline.engine.state import UPLOADED, UPLOADING, RunState, apply_execution
from pipeline.errors import PipelineError, ServiceError
from pipeline.reporting.command import resume_command
from pipeline.reporting.report import build_report, iso
from pipeline.reporting.summary import executions_by_status
from pipeline.reporting.types import ResumeWith, StatusReport


def lock_holder(run_dir: Path) -> str | None:
    """The pid of a live process holding the run's lock, or None."""
    path = run_dir / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


async def refresh(state: RunState, config: Config, *, allow_insecure_http: bool = False) -> int:
    """Ask the server about every unfinished execution; returns how many were asked (none without
    an import id: every execution belongs to the run's import)."""
    dm, imp = config.import_.datamart_id, state.document_import.get("id")
    asked = 0
    async with open_client(config, allow_insecure_http=allow_insecure_http) as api:
        for batch in sorted(state.batches.values(), key=lambda b: b.number):
            if batch.upload == UPLOADING and imp:
                found = await api.find_execution_by_filename(dm, imp, batch.filename)
                if found:
                    batch.upload, batch.execution_id, batch.recovered = UPLOADED, str(found["id"]), True
                    apply_execution(batch, found)
                asked += 1
            elif batch.execution_id and imp and not formats.is_terminal(batch.status):
                apply_execution(batch, await api.get_execution(dm, imp, batch.execution_id))
                asked += 1
    return asked


def status_command(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    journaled = load_run(run_dir)
    started = journaled.started
    state = journaled.state()
    last = journaled.boundary  # the last run_started or run_finished (no list of every event: 20,000 batches)
    holder = lock_holder(run_dir)
    if holder:
        phase = f"running (pid {holder})"
    elif last["event"] == "run_finished":
        phase = f"finished: {last.get('outcome')} (exit {last.get('exit_code')})"
        state.finished_at = last["t"]
        state.interrupted = last.get("outcome") == "interrupted"
    else:
        phase = "stopped before its end (crash or kill)"

    config = load_config(args.config) if args.config else config_from_dict(started["config"])
    refreshed = _refresh_note(state, config, args)
    from pipeline.engine.retry_plan import RetryPlan

    retry = RetryPlan.load(run_dir)  # a run made by `pipeline retry`: the report says of which run
    budget = parse_max_errors((started["config"].get("batch") or {}).get("max_errors", "0"))
    built = build_report(
        state,
        rejects_path=run_dir / REJECTS_NAME,
        run_dir=run_dir,
        retry_of=retry.retry_of_entry() if retry else None,
        budget=budget,
    )
    counts = built["records"]
    if state.interrupted and state.reading_done and not (counts["pending"] or counts["unsent"] or counts["unsettled"]):
        phase += (
            "; every execution has finished since, nothing is left to send: a resume only polls nothing, "
            "checks for copies and writes the final report"
        )
    resume: ResumeWith = {}
    resumable = ("interrupted", "incomplete", "too_many_errors")
    if not holder and (last["event"] != "run_finished" or built["outcome"] in resumable):
        resume["resume_with"] = resume_command(run_dir)
    report: StatusReport = {
        **built,
        **resume,
        "state": phase,
        "refreshed": refreshed,
        "last_event_at": iso(journaled.last["t"]),
    }
    if args.json:
        print_json(report)
    else:
        _print(report, state)
    return int(report["exit_code"])


def _refresh_note(state: RunState, config: Config, args: argparse.Namespace) -> str:
    todo = [b for b in state.batches.values() if b.upload == UPLOADING or (b.execution_id and not b.done)]
    if not todo:
        return "nothing to refresh: every execution the journal knows is finished"
    if args.offline:
        return "not refreshed (--offline)"
    if config.uses_embedded_emulator:
        return "not refreshed: the run used the embedded emulator, which ended with it"
    if not token_of(config):
        return f"not refreshed: {config.api.token_env} is not set"
    try:
        asked = asyncio.run(refresh(state, config, allow_insecure_http=args.allow_insecure_http))
    except ServiceError as exc:
        return f"not refreshed: the server is not reachable ({exc})"
    except PipelineError as exc:
        return f"not refreshed: {exc}"
    return f"refreshed {asked} execution(s) from {config.api.url}"


def _print(report: StatusReport, state: RunState) -> None:
    r = report["records"]
    imp = report["document_import"] or {}
    rows = [
        ("run", f"{report['run_id']}  ({report['run_dir']})"),
        ("state", report["state"]),
        ("outcome now", f"{report['outcome']} (exit {report['exit_code']})"),
        ("target", report["target"]),
        ("import", f"{imp.get('id')} '{imp.get('name')}' ({imp.get('document_type')})" if imp else "-"),
        ("started", f"{report['started_at']}, last journal entry {report['last_event_at']}"),
        ("server", report["refreshed"]),
        (
            "records",
            f"read {r['read']:,}, rejected {r['rejected']:,}, sent {r['sent']:,}, succeeded "
            f"{r['succeeded']:,}, failed {r['failed']:,}, still processing {r['pending']:,}",
        ),
        ("batches", f"{report['batches']}" + ("" if state.reading_done else " so far (reading not finished)")),
        ("executions", ", ".join(f"{k} {v}" for k, v in executions_by_status(report).items()) or "none"),
    ]
    if report.get("retry_of"):
        rows.insert(1, ("retry of", f"{report['retry_of']['run_id']}  ({report['retry_of']['run_dir']})"))
    final = report.get("final_error")
    if final:  # an error no resume fixes: the cause and the fix, as report.json says them
        rows += [("error", final["cause"]), ("fix", final["fix"])]
    if state.too_many_errors:
        rows.append(("stopped", state.too_many_errors))
    if report.get("resume_with"):
        rows.append(("resume with", report["resume_with"]))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    open_ = [
        e for e in report["executions"] if not (formats.is_terminal(e["status"]) or e["upload"] == "upload_failed")
    ]
    if open_:
        print("\nnot finished:")
        print_table(
            [
                (
                    e["batch"],
                    e["id"],
                    e["status"] or e["upload"],
                    f"{e['source']['first_line']}-{e['source']['last_line']}",
                    Path(e["source"]["path"]).name,
                )
                for e in open_
            ],
            ["batch", "execution", "status", "lines", "file"],
        )

"""The command line: a thin layer over the library. ``main(argv) -> int`` so tests call it directly.

Exit codes: 0 every record accepted; 1 finished with rejected or failed records; 2 usage or config
error (nothing sent); 3 outcome not yet known (interrupted, or executions still running).
Commands live in the other modules of ``pipeline.cli``; this module only parses arguments and turns library errors
into one-line messages.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pipeline import __version__
from pipeline.cli.bench import EPILOG as EPILOG_BENCH
from pipeline.cli.bench import add_bench_arguments
from pipeline.errors import LocalError, PipelineError, ServiceError, UsageError
from pipeline.reporting.exit_codes import EXIT_UNKNOWN, EXIT_USAGE

RAW = argparse.RawDescriptionHelpFormatter

EPILOG_RUN = """example:
  MICS_API_TOKEN=... pipeline run --config import.toml exports/2026-11-27/
  pipeline run --emulator examples/user_activity.ndjson     # try it on the embedded emulator
  pipeline run -q --log-format json --config import.toml exports/   # for a scheduler's log

progress: a live display when stderr is a terminal; otherwise plain lines and one progress line
every --progress-interval seconds (--log-format json: one JSON object per event). The run writes
runs/<run_id>/report.json and report.html.

exit codes (the same for resume):
  0  succeeded: every record read was accepted
  1  finished, but records were rejected or an execution failed (report: not_delivered, rejects)
  2  nothing was sent: bad config, input, token or environment (the message says which)
  3  not known yet or not finished (interrupted, an outage, a refused token mid-run, a changed
     input, a full disk, uploads whose fate is unknown): `pipeline resume <run dir>` goes on
  4  finished, but some records are, or may be, on the server twice (report: duplicates)
"""
EPILOG_RESUME = """example:
  pipeline resume runs/20261128T030000Z-a1b2c3

Takes the run directory's lock, then reads its journal: executions are polled to their end,
uploads whose answer was lost are looked up by name, batches never sent are sent. Exit codes as
for run.
"""
EPILOG_VALIDATE = """example:
  pipeline validate --config import.toml exports/2026-11-27/
  pipeline validate --json examples/user_activity_with_bad_lines.ndjson > plan.json

Reads and checks every record with the config's batch settings, prints the batch plan and the
rejects (file, line, reason). Sends nothing, needs no token, writes no run directory.
exit code: 0 every record would be sent, 1 some would be rejected, 2 usage or config error.
"""
EPILOG_STATUS = """example:
  pipeline status runs/20261128T030000Z-a1b2c3
  pipeline status --offline --json runs/20261128T030000Z-a1b2c3

The run's state from its journal; executions not finished then are asked again from the server
(when the token variable is set and the server answers). exit code: the outcome as known now
(0 succeeded, 1 with failures, 3 not finished yet, 4 with duplicates).
"""
EPILOG_IMPORTS = """example:
  MICS_API_TOKEN=... pipeline imports list --config import.toml --keywords nightly
"""
EPILOG_EXEC_LIST = """example:
  MICS_API_TOKEN=... pipeline executions list --config import.toml 1234 --limit 20
"""
EPILOG_EXEC_ERRORS = """example:
  MICS_API_TOKEN=... pipeline executions errors --config import.toml --import-id 1234 5001 -o errors.ndjson

Without --import-id, the execution is looked for in every import of the datamart (one request each).
"""
EPILOG_CANCEL = """example:
  pipeline cancel runs/20261128T030000Z-a1b2c3        # every execution of the run still PENDING
  MICS_API_TOKEN=... pipeline cancel --config import.toml --import-id 1234 5001

Only a PENDING execution can be canceled; others are left alone and reported.
exit code: 0 when every PENDING execution was canceled (or none was left), 1 when a cancel failed.
"""


def _output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print only the final summary and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each retry and status change")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one JSON object per event")
    p.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="without a terminal: one progress line every S seconds (0: none; default 30)",
    )


def _api_flags(p: argparse.ArgumentParser, config_help: str = "TOML config: api.url, api.token_env, datamart") -> None:
    p.add_argument("--config", metavar="FILE", help=config_help)
    p.add_argument("--allow-insecure-http", action="store_true", help="allow plain http:// to a non-loopback host")


if TYPE_CHECKING:  # argparse names the type of add_subparsers() only privately (and not generic at run time)
    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
Handler = Callable[[argparse.Namespace], int]


def _command(
    sub: _Subparsers, name: str, summary: str, epilog: str, description: str | None = None
) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=description or summary, epilog=epilog, formatter_class=RAW)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Bulk import of large files into the mediarithmics document-import API.",
        epilog="example:\n  pipeline run --emulator examples/user_activity.ndjson\n"
        "  pipeline COMMAND --help     # every command's help has an example\n",
        formatter_class=RAW,
    )
    parser.add_argument("--version", action="version", version=f"pipeline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = _command(
        sub,
        "run",
        "upload files into a document import and follow every execution to the end",
        EPILOG_RUN,
        "Read INPUT files, cut them into batches, upload them and poll every execution.",
    )
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="files, .gz files or directories")
    run.add_argument("--config", metavar="FILE", help="TOML config (see config.example.toml)")
    run.add_argument("--report", metavar="PATH", help="also write report.json here (and report.html beside it)")
    run.add_argument("--emulator", action="store_true", help="upload to the embedded emulator")
    run.add_argument("--allow-insecure-http", action="store_true", help="allow plain http:// to a non-loopback host")
    run.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="run even while another run of the same config and inputs is running (by default refused: "
        "a cron overlap would import everything twice)",
    )
    _output_flags(run)

    resume = _command(
        sub,
        "resume",
        "continue a stopped run from its journal",
        EPILOG_RESUME,
        "Continue a run that stopped (crash, Ctrl-C, poll timeout): polls the executions "
        "it knows and uploads only the batches that never got one.",
    )
    resume.add_argument("run_dir", metavar="RUN_DIR")
    resume.add_argument("--report", metavar="PATH", help="also write report.json here (and report.html beside it)")
    resume.add_argument("--allow-insecure-http", action="store_true")
    _output_flags(resume)

    validate = _command(
        sub, "validate", "dry run: read and check everything, print the batch plan and rejects", EPILOG_VALIDATE
    )
    validate.add_argument("inputs", nargs="+", metavar="INPUT", help="files, .gz files or directories")
    validate.add_argument("--config", metavar="FILE", help="TOML config: import.* and batch.* are used")
    validate.add_argument("--max-rejects", type=int, default=100, metavar="N", help="list at most N rejects (100)")
    validate.add_argument("--json", action="store_true", help="print the plan and rejects as one JSON object")

    status = _command(sub, "status", "a run's state from its journal, refreshed from the server", EPILOG_STATUS)
    status.add_argument("run_dir", metavar="RUN_DIR")
    _api_flags(status, "TOML config to reach the API (default: the run's own config)")
    status.add_argument("--offline", action="store_true", help="do not ask the server")
    status.add_argument("--json", action="store_true", help="print the state as a report-shaped JSON object")

    imports = _command(sub, "imports", "document imports of the datamart", EPILOG_IMPORTS)
    imports.set_defaults(group_parser=imports)
    imports_sub = imports.add_subparsers(dest="action", metavar="ACTION")
    imports_list = _command(imports_sub, "list", "list the datamart's document imports (oldest first)", EPILOG_IMPORTS)
    _api_flags(imports_list)
    imports_list.add_argument("--keywords", help="only imports whose name holds every word")
    imports_list.add_argument("--limit", type=int, default=0, metavar="N", help="only the N newest (0: all)")
    imports_list.add_argument("--json", action="store_true", help="print the server's objects as JSON")

    executions = _command(sub, "executions", "executions of a document import", EPILOG_EXEC_LIST)
    executions.set_defaults(group_parser=executions)
    exec_sub = executions.add_subparsers(dest="action", metavar="ACTION")
    exec_list = _command(exec_sub, "list", "list an import's executions (newest first)", EPILOG_EXEC_LIST)
    exec_list.add_argument("import_id", metavar="IMPORT_ID")
    _api_flags(exec_list)
    exec_list.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50; 0: all)")
    exec_list.add_argument("--json", action="store_true", help="print the server's objects as JSON")
    exec_errors = _command(
        exec_sub, "errors", "download an execution's error file (the records the server refused)", EPILOG_EXEC_ERRORS
    )
    exec_errors.add_argument("execution_id", metavar="EXECUTION_ID")
    _api_flags(exec_errors)
    exec_errors.add_argument("--import-id", metavar="ID", help="the execution's document import")
    exec_errors.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")

    cancel = _command(
        sub, "cancel", "cancel what is still PENDING: a run's executions, or one execution", EPILOG_CANCEL
    )
    cancel.add_argument("target", metavar="RUN_DIR|EXECUTION_ID")
    _api_flags(cancel, "TOML config to reach the API (default for RUN_DIR: the run's own config)")
    cancel.add_argument("--import-id", metavar="ID", help="the execution's document import (EXECUTION_ID only)")
    cancel.add_argument("-v", "--verbose", action="store_true", help="also list the executions left alone")

    bench = sub.add_parser(
        "bench",
        help="measure the link and the datamart with synthetic documents; estimate a backfill",
        description="Import synthetic documents with the normal machinery, once per sweep point, and measure.",
        epilog=EPILOG_BENCH,
        formatter_class=RAW,
        conflict_handler="resolve",  # its --seed and --datamart-id replace the emulator flags' own
    )
    add_bench_arguments(bench)

    emulator = _command(
        sub,
        "emulator",
        "serve the embedded emulator of the document-import API",
        "example:\n  pipeline emulator --port 8787 --token secret --faults throttle=0.1,error5xx=0.05\n",
    )
    from pipeline.emulator.cli import add_arguments

    add_arguments(emulator)
    return parser


#: (command, action) -> (module under pipeline.cli, function): only the chosen command's
#: module is imported, so that a command does not pay for the others' imports at start-up.
COMMANDS = {
    ("run", None): ("run", "run_command"),
    ("resume", None): ("run", "run_command"),
    ("validate", None): ("validate", "validate_command"),
    ("status", None): ("status", "status_command"),
    ("imports", "list"): ("remote", "imports_list_command"),
    ("executions", "list"): ("remote", "executions_list_command"),
    ("executions", "errors"): ("remote", "executions_errors_command"),
    ("cancel", None): ("remote", "cancel_command"),
    ("bench", None): ("bench", "bench_command"),
}


def _dispatch(args: argparse.Namespace) -> Handler | None:
    entry = COMMANDS.get((args.command, getattr(args, "action", None)))
    if entry is None:
        return None
    module = importlib.import_module(f"{__package__}.{entry[0]}")
    handler: Handler = getattr(module, entry[1])
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "emulator":
        from pipeline.emulator.cli import main as emulator_main

        return emulator_main(args)
    handler = _dispatch(args)
    if handler is None:  # a command group without its ACTION
        args.group_parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if getattr(exc, "hint", None):
            print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        print(f"error: the service failed: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except LocalError as exc:  # before a run directory holds anything: nothing was sent
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN


def main_entry() -> None:
    """The console script. Once the command has returned, everything it wrote is closed (the
    journal and reports are fsynced): skip the interpreter's teardown of every module, which costs
    about 50 ms of a run's wall time, by flushing the standard streams and leaving at once."""
    code = main()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None when the process was started with it closed
                stream.flush()
    except (OSError, ValueError):  # a closed or broken pipe: let the normal exit report it
        sys.exit(code)
    os._exit(code)

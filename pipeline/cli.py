"""The command line: a thin layer over the library. ``main(argv) -> int`` so tests call it directly.

Exit codes: 0 every record accepted; 1 finished with rejected or failed records; 2 usage or config
error (nothing sent); 3 outcome not yet known (interrupted, or executions still running).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import load_config
from .errors import PipelineError, ServiceError, UsageError
from .report import EXIT_UNKNOWN, EXIT_USAGE, summary_text

EPILOG_RUN = """example:
  MICS_API_TOKEN=... pipeline run --config import.toml exports/2026-11-27/
  pipeline run --emulator examples/user_activity.ndjson     # try it on the embedded emulator
"""
EPILOG_RESUME = """example:
  pipeline resume runs/20261128T030000Z-a1b2c3
"""


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print only the final summary and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each retry and status change")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one JSON object per event")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Bulk import of large files into the mediarithmics document-import API.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pipeline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="upload files into a document import and follow every execution to the end",
        description="Read INPUT files, cut them into batches, upload them and poll every execution.",
        epilog=EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="files, .gz files or directories")
    run.add_argument("--config", metavar="FILE", help="TOML config (see config.example.toml)")
    run.add_argument("--report", metavar="PATH", help="also write report.json here")
    run.add_argument("--emulator", action="store_true", help="upload to the embedded emulator")
    run.add_argument("--allow-insecure-http", action="store_true", help="allow plain http:// to a non-loopback host")
    _add_output_flags(run)

    resume = sub.add_parser(
        "resume",
        help="continue a stopped run from its journal",
        description="Continue a run that stopped (crash, Ctrl-C, poll timeout): polls the executions "
        "it knows and uploads only the batches that never got one.",
        epilog=EPILOG_RESUME,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    resume.add_argument("run_dir", metavar="RUN_DIR")
    resume.add_argument("--report", metavar="PATH", help="also write report.json here")
    resume.add_argument("--allow-insecure-http", action="store_true")
    _add_output_flags(resume)

    emulator = sub.add_parser(
        "emulator",
        help="serve the embedded emulator of the document-import API",
        epilog="example:\n  pipeline emulator --port 8787 --token secret --faults throttle=0.1,error5xx=0.05\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .emulator.cli import add_arguments

    add_arguments(emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "emulator":
        from .emulator.cli import main as emulator_main

        return emulator_main(args)
    try:
        return _run_command(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if getattr(exc, "hint", None):
            print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        print(f"error: the service failed: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN


def _run_command(args: argparse.Namespace) -> int:
    from . import resume_async, run_async
    from .progress import make_event_printer
    from .runner import RunOptions

    printer = make_event_printer(quiet=args.quiet, verbose=args.verbose, log_format=args.log_format)
    options = RunOptions(
        report_path=Path(args.report) if args.report else None,
        allow_insecure_http=args.allow_insecure_http,
        on_event=printer,
        handle_signals=True,
    )
    if args.command == "run":
        config = load_config(args.config)
        if args.emulator:
            config = config.replace(api={"url": "embedded"})
        report = asyncio.run(run_async(config, args.inputs, options))
    else:
        report = asyncio.run(resume_async(args.run_dir, options))
    _print_end(report, args)
    return int(report["exit_code"])


def _print_end(report: dict[str, Any], args: argparse.Namespace) -> None:
    if args.log_format == "text":
        print(summary_text(report))
    if report["outcome"] in ("interrupted", "incomplete") and report.get("run_dir"):
        print(f"resume with: pipeline resume {report['run_dir']}", file=sys.stderr)


def main_entry() -> None:
    sys.exit(main())

"""``pipeline run`` and ``pipeline resume``: progress while the run works, then the summary and
``report.html``.

Progress goes to stderr: the live display (rich) when stderr is a terminal and neither ``-q`` nor
``--log-format json`` is given; otherwise plain lines, with a progress line every
``--progress-interval`` seconds, or JSON objects. The summary table goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from pipeline.config import config_from_dict, load_config
from pipeline.engine.events import EventSink
from pipeline.engine.journal import read_journal
from pipeline.errors import ConfigError, UsageError
from pipeline.reporting.progress import PlainPrinter
from pipeline.reporting.summary import plain_summary, rich_summary, summary_details
from pipeline.reporting.types import Report


def run_command(args: argparse.Namespace) -> int:
    from pipeline import resume_async, run_async
    from pipeline.engine.runner import RunOptions

    plan = None
    if args.command == "run" and args.plan:
        from pipeline.cli.plan import plan_and_config

        plan, config = plan_and_config(args)
        token_env = (config.api if config else config_from_dict(plan["config"]).api).token_env
    elif args.command == "run":
        if not args.inputs:
            raise UsageError("run needs INPUT files (or --plan PLAN)")
        config = load_config(args.config)
        if args.emulator:
            config = config.replace(api={"url": "embedded"})
        elif config.uses_embedded_emulator:  # left from an example: a run must never "succeed" by accident
            raise ConfigError(
                "api.url",
                f'is "embedded" in {args.config}: the embedded emulator imports nothing into mediarithmics; '
                "pass --emulator to use it on purpose, or set api.url to the API",
            )
        token_env = config.api.token_env
    else:
        config, token_env = None, _journal_token_env(args.run_dir)
    secrets = [s for s in (os.environ.get(token_env, "").strip(),) if s]

    sink, display = _make_sink(args, secrets)
    options = RunOptions(
        report_path=Path(args.report) if args.report else None,
        allow_insecure_http=args.allow_insecure_http,
        allow_concurrent=getattr(args, "allow_concurrent", False),
        on_event=sink,
        handle_signals=True,
    )
    with display:
        if plan is not None:
            from pipeline.cli.plan import print_shard_start, shard_index
            from pipeline.engine.shard import run_shard_async

            shard = shard_index(args)
            if not args.quiet:
                print_shard_start(plan, shard)
            report = asyncio.run(run_shard_async(plan, shard, config, options))
        elif config is not None:
            report = asyncio.run(run_async(config, args.inputs, options))
        else:
            report = asyncio.run(resume_async(args.run_dir, options))
    print_end(report, args)
    return int(report["exit_code"])


def _make_sink(
    args: argparse.Namespace, secrets: list[str]
) -> tuple[EventSink, contextlib.AbstractContextManager[object]]:
    if not args.quiet and args.log_format == "text":  # the only case for a live display: rich imported then
        from pipeline.reporting.live import LiveDisplay, use_live

        if use_live(quiet=args.quiet, log_format=args.log_format):
            live = LiveDisplay(verbose=args.verbose, secrets=secrets)
            return live, live
    printer = PlainPrinter(
        quiet=args.quiet,
        verbose=args.verbose,
        log_format=args.log_format,
        interval_s=args.progress_interval,
        secrets=secrets,
    )
    return printer, printer


def _journal_token_env(run_dir: str) -> str:
    """The token variable the run was configured with (to redact its value from the output)."""
    with contextlib.suppress(OSError):
        for event in read_journal(Path(run_dir)):
            if event["event"] == "run_started":
                return (event.get("config") or {}).get("api", {}).get("token_env") or "MICS_API_TOKEN"
    return "MICS_API_TOKEN"


def print_end(report: Report, args: argparse.Namespace) -> None:
    if args.log_format == "text":
        if sys.stdout.isatty():
            from rich.console import Console

            Console().print(rich_summary(report))
        else:
            print(plain_summary(report), flush=True)
        for line in summary_details(report):
            print(line, flush=True)
    if report.get("resume_command"):
        print(f"resume with: {report['resume_command']}", file=sys.stderr)

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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.cli.metrics import fan_out, make_publisher
from pipeline.cli.settings import SourceKind, load_settings
from pipeline.config import Config, config_from_dict
from pipeline.engine.events import EventSink
from pipeline.engine.journal import read_journal
from pipeline.errors import ConfigError, UsageError
from pipeline.reporting.progress import PlainPrinter, stamp
from pipeline.reporting.summary import plain_summary, rich_summary, summary_details
from pipeline.reporting.types import Report


def run_command(args: argparse.Namespace) -> int:
    from pipeline import resume_async, run_async
    from pipeline.engine.runner import RunOptions

    origin = None
    plan = None
    if args.command == "run" and args.plan:
        from pipeline.cli.plan import plan_and_config

        plan, config = plan_and_config(args)
        token_env = (config.api if config else config_from_dict(plan["config"]).api).token_env
    elif args.command == "run":
        if not args.inputs:
            raise UsageError("run needs INPUT files (or --plan PLAN)")
        config, origin = run_config(args)
        token_env = config.api.token_env
    else:
        config, token_env = None, _journal_token_env(args.run_dir)
    secrets = [s for s in (os.environ.get(token_env, "").strip(),) if s]

    sink, display = _make_sink(args, secrets)
    shard: int | None = None
    if plan is not None:
        from pipeline.cli.plan import shard_index

        shard = shard_index(args)
    publisher = make_publisher(args, warn=_warner(sink), shard=shard)
    if publisher is not None:
        sink = fan_out(sink, publisher)
    options = RunOptions(
        report_path=Path(args.report) if args.report else None,
        allow_insecure_http=args.allow_insecure_http,
        allow_concurrent=getattr(args, "allow_concurrent", False),
        again=getattr(args, "again", False),
        max_errors=getattr(args, "max_errors", None),
        recursive=getattr(args, "recursive", False),
        config_origin=origin,
        on_event=sink,
        handle_signals=True,
    )
    with display, publisher or contextlib.nullcontext():
        if plan is not None:
            from pipeline.cli.plan import print_shard_start
            from pipeline.engine.shard import run_shard_async

            assert shard is not None
            if not args.quiet:
                print_shard_start(plan, shard)
            report = asyncio.run(run_shard_async(plan, shard, config, options))
        elif config is not None:
            report = asyncio.run(run_async(config, args.inputs, options))
        else:
            report = asyncio.run(resume_async(args.run_dir, options))
        if publisher is not None:
            publisher.finish(report)
    print_end(report, args, display)
    return int(report["exit_code"])


def run_config(args: argparse.Namespace) -> tuple[Config, dict[str, Any]]:
    """The run's config: file, environment and flags (``settings``), then ``--emulator``. However
    ``api.url = "embedded"`` was set (file, ``PIPELINE_API_URL``, ``--url``), the run refuses it
    without ``--emulator``: a run must never "succeed" into the emulator by accident. Also returns
    where the settings came from, for the report."""
    settings = load_settings(args.config, args)
    for warning in settings.warnings:
        _tell(args, "warning", f"warning: {warning}", message=warning)
    if args.verbose and args.log_format == "text":  # a JSON log starts with its "target" event
        print(f"{stamp(time.time())} config: {settings.describe_file()}", file=sys.stderr)
    config = settings.config
    url_origin = settings.origin("api.url")
    if args.emulator:
        if url_origin.kind == SourceKind.FLAG and not config.uses_embedded_emulator:
            raise ConfigError("api.url", "give --url or --emulator, not both", where="--emulator")
        origin = settings.origin_record()
        origin["set_by"]["api.url"] = "--emulator"
        return config.replace(api={"url": "embedded"}), origin
    if config.uses_embedded_emulator:
        raise ConfigError(
            "api.url",
            f'is "embedded" ({url_origin}): the embedded emulator imports nothing into mediarithmics; '
            "pass --emulator to use it on purpose, or set api.url to the API",
        )
    return config, settings.origin_record()


def _tell(args: argparse.Namespace, event: str, text: str, **fields: object) -> None:
    """A line on stderr before the run starts: plain text, or one JSON object (``--log-format json``)."""
    if args.log_format == "json":
        import orjson

        print(orjson.dumps({"ts": stamp(time.time()), "event": event, **fields}).decode(), file=sys.stderr)
    else:
        print(f"{stamp(time.time())} {text}", file=sys.stderr)


def _warner(sink: EventSink) -> Callable[[str], None]:
    """How a metrics failure is told: a line of the log (timestamped), or above the live display."""
    if isinstance(sink, PlainPrinter):
        return sink.say
    return lambda message: print(message, file=sys.stderr, flush=True)


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


def print_end(report: Report, args: argparse.Namespace, display: object = None) -> None:
    if args.log_format == "text":
        if sys.stdout.isatty():
            from rich.console import Console

            Console().print(rich_summary(report))
        else:
            print(plain_summary(report), flush=True)
        for line in summary_details(report):
            print(line, flush=True)
    if report.get("resume_command"):
        line = f"resume with: {report['resume_command']}"
        if isinstance(display, PlainPrinter):
            display.say(line)  # the log's last line, timestamped (JSON: a "message" object)
        else:
            print(line, file=sys.stderr)

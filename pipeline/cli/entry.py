"""The command line: a thin layer over the library. ``main(argv) -> int`` so tests call it directly.

Exit codes: 0 every record accepted; 1 finished with rejected or failed records; 2 usage or config
error (nothing sent); 3 outcome not yet known (interrupted, or executions still running).
Commands live in the other modules of ``pipeline.cli``; this module only parses arguments (with
``cli/parser``), dispatches and turns library errors into one-line messages.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from pipeline.cli.parser import build_parser
from pipeline.errors import LocalError, PipelineError, ServiceError, UsageError
from pipeline.reporting.exit_codes import EXIT_UNKNOWN, EXIT_USAGE

Handler = Callable[[argparse.Namespace], int]


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named by ``argv``: its first word that is not an option (the top-level parser
    takes no option with a value), None when there is none."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


#: (command, action) -> (module under pipeline.cli, function): only the chosen command's
#: module is imported, so that a command does not pay for the others' imports at start-up.
COMMANDS = {
    ("run", None): ("run", "run_command"),
    ("resume", None): ("run", "run_command"),
    ("retry", None): ("retry", "retry_command"),
    ("validate", None): ("validate", "validate_command"),
    ("config", "show"): ("config_show", "config_show_command"),
    ("plan", None): ("plan", "plan_command"),
    ("report", "merge"): ("report_merge", "report_merge_command"),
    ("status", None): ("status", "status_command"),
    ("imports", "list"): ("remote", "imports_list_command"),
    ("executions", "list"): ("remote", "executions_list_command"),
    ("executions", "errors"): ("remote", "executions_errors_command"),
    ("cancel", None): ("remote", "cancel_command"),
    ("runs", "list"): ("runs", "runs_list_command"),
    ("runs", "prune"): ("runs", "runs_prune_command"),
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
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
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
        _say("error", str(exc))
        if getattr(exc, "hint", None):
            _say("hint", str(exc.hint))
        return EXIT_USAGE
    except ServiceError as exc:
        _say("error", f"the service failed: {exc}")
        return EXIT_UNKNOWN
    except LocalError as exc:  # before a run directory holds anything: nothing was sent
        _say("error", str(exc))
        return EXIT_USAGE
    except PipelineError as exc:
        _say("error", str(exc))
        return EXIT_UNKNOWN


def _say(kind: str, message: str) -> None:
    """A command's last word on stderr, timestamped like every plain log line (a scheduler's log
    shows when it failed)."""
    import time

    from pipeline.reporting.progress import stamp

    print(f"{stamp(time.time())} {kind}: {message}", file=sys.stderr)


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

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
from pipeline.cli.settings import add_setting_flags
from pipeline.errors import LocalError, PipelineError, ServiceError, UsageError
from pipeline.reporting.exit_codes import EXIT_UNKNOWN, EXIT_USAGE

RAW = argparse.RawDescriptionHelpFormatter

EPILOG_RUN = """example:
  MICS_API_TOKEN=... pipeline run --config import.toml exports/2026-11-27/
  pipeline run --emulator examples/user_activity.ndjson     # try it on the embedded emulator
  pipeline run -q --log-format json --config import.toml exports/   # for a scheduler's log
  PIPELINE_IMPORT_DATAMART_ID=1502 pipeline run --url https://api.mediarithmics.com \
      --document-type USER_PROFILE profiles.ndjson                  # no config file needed

settings: flag > environment (PIPELINE_<SECTION>_<KEY>, every key) > config file > default;
`pipeline config show` prints each with its source. In a directory, entries that are not inputs are
listed as skipped, with why (log, report.json skipped_inputs, summary).

progress: a live display when stderr is a terminal; otherwise plain lines, each starting with
its UTC time, and one progress line every --progress-interval seconds (--log-format json: one
JSON object per event). The run writes <report.dir>/<run_id>/report.json and report.html
(report.dir: by default $XDG_STATE_HOME/pipeline/runs); its first line says where.

exit codes (the same for resume):
  0  succeeded: every record read was accepted (or the rejected and refused ones are within
     --max-errors: a warning says how many)
  1  finished, but records were rejected or refused over --max-errors, a file was skipped or an
     execution failed (report: not_delivered, rejects, skipped_files); or the run stopped on an
     error no resume fixes after some batches were accepted (a 403, an unknown import:
     report.json's final_error says the cause and the fix)
  2  nothing was sent: bad config, input, token or environment, or inputs that a run already
     sent (the message says which, and names that run; a refused token or unknown import leaves
     a report.json, outcome nothing_sent)
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
EPILOG_RETRY = """examples:
  pipeline retry runs/20261128T030000Z-a1b2c3
  pipeline retry --rejected runs/20261128T030000Z-a1b2c3     # after fixing the rejected lines in place

What is sent again, from the inputs the run read (each must hold what it held then):
  - the records of the batches not delivered: executions FAILED, CANCELED or LOST, uploads
    refused for good (report.json: not_delivered);
  - the records the server refused, as listed in the run's failed.ndjson (file, line);
  - with --rejected, the client-side rejects of rejects.ndjson, read again and checked again
    (fix them in place, one record on the same line(s); a record still bad is rejected again).
Never a record that succeeded. CSV batches get the file's header row; a record spanning several
lines (quoted newlines) stays whole.

The retry is a run of its own (a new run directory beside RUN_DIR, report.json says retry_of),
uploading into the run's document import (--import-id: another one). `pipeline resume` continues
it if it stops; `pipeline retry` of the retry sends what it did not deliver. A run is retried
once: retry its retry next.

exit codes:
  0  the retry succeeded, or there was nothing to send (nothing is created then)
  1  finished, but records failed again (or, with --rejected, some are still bad; or records that
     did not make it cannot be sent again: the warnings say why)
  2  nothing was sent: RUN_DIR did not finish (resume it first), was retried already, an input
     changed since the run, an unknown import, or a bad token/config (the message says which)
  3  not known yet (interrupted, an outage...): `pipeline resume <the retry's run dir>`
  4  finished, but some records are, or may be, on the server twice
"""
EPILOG_PLAN = """example:
  MICS_API_TOKEN=... pipeline plan --config import.toml --shards 8 --out plan.json exports/2026-11-27/
  pipeline run --plan plan.json --shard 3          # in each task (or $JOB_COMPLETION_INDEX)
  pipeline report merge runs/plan-*-shard* --out runs/merged

Creates the document import (or names it, --import-id) and assigns the input files to N shards by
size (largest first, to the least loaded shard): the same inputs give the same assignment. Each
shard runs into its own run directory, <report.dir>/<plan id>-shard<K>; running a shard again
continues that directory as `pipeline resume` does. The plan holds the config (no secret).
Planning again into a PLAN that already holds the plan of the same inputs (same sizes), shards and
config keeps it as it is (a retried or cleared plan task): a new plan would name new shard runs
and send every record again, into a new import. --again makes a new plan of the same inputs.
"""
EPILOG_REPORT_MERGE = """example:
  pipeline report merge runs/plan-20261128T030000Z-a1b2c3-shard0* --out runs/merged

Writes report.json and report.html for the whole import: counts summed, every shard's executions.
Refuses runs of different document imports. A shard that did not finish counts as not finished.
exit code: the worst of the shards' (4 duplicates, 3 not finished, 2, 1 failures, 0).
"""
EPILOG_VALIDATE = """example:
  pipeline validate --config import.toml exports/2026-11-27/
  pipeline validate --json examples/user_activity_with_bad_lines.ndjson > plan.json

Reads and checks every record with the config's batch settings, prints the batch plan and the
rejects (file, line, reason). Sends nothing, needs no token, writes no run directory.
exit code: 0 every record would be sent, 1 some would be rejected, 2 usage or config error.
"""
INPUT_HELP = "files, .gz files or directories (their *.ndjson, *.jsonl, *.csv, NDJSON *.json, .gz of those; any case)"
CONFIG_HELP = "TOML config (see config.example.toml); default: ./pipeline.toml, else ~/.config/pipeline/config.toml"
EPILOG_CONFIG = """example:
  pipeline config show
  PIPELINE_IMPORT_DATAMART_ID=1502 pipeline config show --config import.toml --document-type USER_PROFILE

Every key is settable as PIPELINE_<SECTION>_<KEY> (PIPELINE_BATCH_MAX_BYTES); the common ones as
flags of run. Precedence: flag > environment > config file > default. Without --config, the file is
./pipeline.toml, else $XDG_CONFIG_HOME/pipeline/config.toml (default ~/.config/pipeline/config.toml).
The token is never shown: only whether its variable (api.token_env) is set.
"""
EPILOG_STATUS = """example:
  pipeline status runs/20261128T030000Z-a1b2c3
  pipeline status --offline --json runs/20261128T030000Z-a1b2c3

The run's state from its journal; executions not finished then are asked again from the server
(when the token variable is set and the server answers). exit code: the outcome as known now
(0 succeeded, 1 with failures, 3 not finished yet, 4 with duplicates).
"""
EPILOG_RUNS = """example:
  pipeline runs list                              # the runs under the default directory
  pipeline runs list --config import.toml --json  # under its report.dir, as JSON
  pipeline runs prune --older-than 30d --keep-failed --dry-run

Run directories go under report.dir, by default $XDG_STATE_HOME/pipeline/runs (or
~/.local/state/pipeline/runs). A run's age is the time since its journal was last written. prune
never removes a run that a process holds (running), nor one not finished for good (interrupted,
incomplete, stopped: `pipeline resume` may still need it) unless --include-unfinished is given.
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
With --run RUN_DIR (the run the execution belongs to), each refused record is printed as its source
file:line: reason, as the run's failed.ndjson has them:
  MICS_API_TOKEN=... pipeline executions errors --run runs/20261201T101500Z-1a2b3c 5001
"""
EPILOG_CANCEL = """example:
  pipeline cancel runs/20261128T030000Z-a1b2c3        # every execution of the run still PENDING
  MICS_API_TOKEN=... pipeline cancel --config import.toml --import-id 1234 5001

Only a PENDING execution can be canceled; others are left alone and reported.
exit code: 0 when every PENDING execution was canceled (or none was left), 1 when a cancel failed.
"""


def _output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-q", "--quiet", action="store_true", help="print only the final summary, errors and where the run directory is"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also print each retry and status change")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one JSON object per event")
    p.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="without a terminal: one progress line every S seconds (0: none; default 30)",
    )


def _max_errors_flag(p: argparse.ArgumentParser, more: str = "default: batch.max_errors, 0") -> None:
    p.add_argument(
        "--max-errors",
        metavar="N|N%",
        help="the error budget: rejected plus refused records within N (or N%% of the records read) end with "
        f"exit 0 and a warning; over it, exit 1 (and once the rejects alone are over it, no new batch is sent; {more})",
    )


def _discovery_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="also read the subdirectories of INPUT directories (without it they are listed as skipped)",
    )


def _metrics_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("metrics (Prometheus; every --progress-interval and at the end)")
    g.add_argument("--metrics-textfile", metavar="PATH", help="write the run's metrics here (node exporter textfile)")
    g.add_argument("--metrics-pushgateway", metavar="URL", help="push the run's metrics to this Pushgateway")
    g.add_argument("--metrics-job", default="pipeline", metavar="NAME", help="the job label (default: pipeline)")
    g.add_argument(
        "--metrics-instance",
        metavar="NAME",
        help="the Pushgateway instance label (default: the host name; a shard of a plan: <host>-shard<K>)",
    )


def _runs_dir_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config whose report.dir holds the runs")
    p.add_argument("--dir", metavar="DIR", help="the directory of run directories (overrides --config)")


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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line's parser; ``command``: the one about to be parsed, if known. The
    ``bench`` and ``emulator`` commands' own arguments (which import their modules, 15-25 ms) are
    added only when the command is theirs or not known (``--help``, tests)."""
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
    run.add_argument("inputs", nargs="*", metavar="INPUT", help=INPUT_HELP + " (none with --plan)")
    _discovery_flags(run)
    run.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    run.add_argument("--plan", metavar="PLAN", help="run one shard of a plan made by `pipeline plan` (no INPUT)")
    run.add_argument(
        "--shard", type=int, metavar="K", help="with --plan: the shard to run, 0-based (default: $JOB_COMPLETION_INDEX)"
    )
    run.add_argument("--report", metavar="PATH", help="also write report.json here (and report.html beside it)")
    run.add_argument("--emulator", action="store_true", help="upload to the embedded emulator")
    run.add_argument("--allow-insecure-http", action="store_true", help="allow plain http:// to a non-loopback host")
    run.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="run even while another run of the same config and inputs is running (by default refused: "
        "a cron overlap would import everything twice)",
    )
    run.add_argument(
        "--again",
        action="store_true",
        help="import inputs that a run under the same report.dir already sent to the same API, datamart "
        "and document type (by default refused, exit 2: `pipeline retry` or `resume` that run instead)",
    )
    _max_errors_flag(run)
    _output_flags(run)
    add_setting_flags(run)
    _metrics_flags(run)

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
    _max_errors_flag(resume, "a new error budget for the rest of the run (default: the run's own)")
    _output_flags(resume)
    _metrics_flags(resume)

    retry = _command(
        sub,
        "retry",
        "send again just the records of a finished run that did not make it",
        EPILOG_RETRY,
        "Send again, in a new run, the records of RUN_DIR that did not make it: batches not delivered, "
        "records the server refused and (--rejected) client-side rejects fixed since.",
    )
    retry.add_argument("run_dir", metavar="RUN_DIR", help="the run directory of a finished run (or of a retry)")
    retry.add_argument("--rejected", action="store_true", help="also the client-side rejects, read again, rechecked")
    retry.add_argument("--import-id", metavar="ID", help="upload into this document import (default: the run's)")
    retry.add_argument("--report", metavar="PATH", help="also write report.json here (and report.html beside it)")
    retry.add_argument("--allow-insecure-http", action="store_true")
    _output_flags(retry)

    plan = _command(
        sub,
        "plan",
        "create the one document import and spread the inputs over N shards (plan.json)",
        EPILOG_PLAN,
    )
    plan.add_argument("inputs", nargs="+", metavar="INPUT", help="files, .gz files or directories")
    plan.add_argument("--shards", type=int, required=True, metavar="N", help="how many shards (tasks, pods)")
    plan.add_argument("--out", required=True, metavar="PLAN", help="where to write the plan (JSON)")
    plan.add_argument("--import-id", metavar="ID", help="use this document import instead of creating one")
    plan.add_argument(
        "--again",
        action="store_true",
        help="a new plan (and import), even of inputs this PLAN already plans (by default kept) or that a run "
        "under the config's report.dir already sent (by default refused, exit 2)",
    )
    _api_flags(plan, "TOML config: the one every shard runs with")

    report = _command(sub, "report", "reports of runs", EPILOG_REPORT_MERGE)
    report.set_defaults(group_parser=report)
    report_sub = report.add_subparsers(dest="action", metavar="ACTION")
    merge = _command(
        report_sub, "merge", "one report.json and report.html for the shards of one import", EPILOG_REPORT_MERGE
    )
    merge.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="the shards' run directories")
    merge.add_argument("--out", required=True, metavar="DIR", help="where to write report.json and report.html")
    merge.add_argument("--name", metavar="NAME", help="the merged report's run id (default: <plan id>-merged)")

    validate = _command(
        sub, "validate", "dry run: read and check everything, print the batch plan and rejects", EPILOG_VALIDATE
    )
    validate.add_argument("inputs", nargs="+", metavar="INPUT", help=INPUT_HELP)
    _discovery_flags(validate)
    validate.add_argument("--config", metavar="FILE", help=CONFIG_HELP + "; import.* and batch.* are used")
    validate.add_argument("--max-rejects", type=int, default=100, metavar="N", help="list at most N rejects (100)")
    validate.add_argument("--json", action="store_true", help="print the plan and rejects as one JSON object")
    add_setting_flags(validate, validate=True)

    config = _command(sub, "config", "the effective settings and where each came from", EPILOG_CONFIG)
    config.set_defaults(group_parser=config)
    config_sub = config.add_subparsers(dest="action", metavar="ACTION")
    show = _command(
        config_sub, "show", "print every setting with its value and its source (never the token)", EPILOG_CONFIG
    )
    show.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    show.add_argument("--json", action="store_true", help="print the settings as one JSON object")
    add_setting_flags(show)

    status = _command(sub, "status", "a run's state from its journal, refreshed from the server", EPILOG_STATUS)
    status.add_argument("run_dir", metavar="RUN_DIR")
    _api_flags(status, "TOML config to reach the API (default: the run's own config)")
    status.add_argument("--offline", action="store_true", help="do not ask the server")
    status.add_argument("--json", action="store_true", help="print the state as a report-shaped JSON object")

    runs = _command(sub, "runs", "the run directories: list them, prune old ones", EPILOG_RUNS)
    runs.set_defaults(group_parser=runs)
    runs_sub = runs.add_subparsers(dest="action", metavar="ACTION")
    runs_list = _command(runs_sub, "list", "list the runs: id, started, outcome, records, inputs", EPILOG_RUNS)
    _runs_dir_flags(runs_list)
    runs_list.add_argument("--json", action="store_true", help="print the runs as a JSON list")
    runs_prune = _command(runs_sub, "prune", "remove the run directories older than AGE", EPILOG_RUNS)
    _runs_dir_flags(runs_prune)
    runs_prune.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 2w (s, m, h, d, w)")
    runs_prune.add_argument("--keep-failed", action="store_true", help="keep the runs that did not succeed")
    runs_prune.add_argument(
        "--include-unfinished", action="store_true", help="also remove interrupted, incomplete and stopped runs"
    )
    runs_prune.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")

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
    exec_errors.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="the run the execution belongs to: print each refused record as source file:line: reason "
        "(-o writes them as failed.ndjson does); the run's config unless --config is given",
    )

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
    if command in (None, "bench"):
        add_bench_arguments(bench)

    emulator = _command(
        sub,
        "emulator",
        "serve the embedded emulator of the document-import API",
        "example:\n  pipeline emulator --port 8787 --token secret --faults throttle=0.1,error5xx=0.05\n",
    )
    if command in (None, "emulator"):
        from pipeline.emulator.cli import add_arguments

        add_arguments(emulator)
    return parser


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

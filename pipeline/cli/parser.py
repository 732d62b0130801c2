"""The command line's parser: one builder per command, and the flag groups several commands share.

Apart from ``entry`` (which parses ``argv`` with it, dispatches and turns library errors into exit
codes) so that each command's arguments are read in one short function. It is on every start-up
path (``pipeline --version`` too): it imports no command's module but ``bench``'s arguments, and
the ``bench`` and ``emulator`` commands' own arguments are added only when one of them is the
command (see ``build_parser``). The help epilogs are in ``cli/epilogs``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline import __version__
from pipeline.cli.bench import EPILOG as EPILOG_BENCH
from pipeline.cli.bench import add_bench_arguments
from pipeline.cli.epilogs import (
    EPILOG_CANCEL,
    EPILOG_CONFIG,
    EPILOG_EXEC_ERRORS,
    EPILOG_EXEC_LIST,
    EPILOG_IMPORTS,
    EPILOG_PLAN,
    EPILOG_REPORT_MERGE,
    EPILOG_RESUME,
    EPILOG_RETRY,
    EPILOG_RUN,
    EPILOG_RUNS,
    EPILOG_STATUS,
    EPILOG_VALIDATE,
)
from pipeline.cli.settings import add_setting_flags

if TYPE_CHECKING:  # argparse names the type of add_subparsers() only privately (and not generic at run time)
    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

RAW = argparse.RawDescriptionHelpFormatter
INPUT_HELP = "files, .gz files or directories (their *.ndjson, *.jsonl, *.csv, NDJSON *.json, .gz of those; any case)"
CONFIG_HELP = "TOML config (see config.example.toml); default: ./pipeline.toml, else ~/.config/pipeline/config.toml"


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
    for add in _COMMAND_PARSERS:  # in the order the help lists them
        add(sub)
    _add_bench(sub, command)
    _add_emulator(sub, command)
    return parser


def _add_run(sub: _Subparsers) -> None:
    """``run``: INPUTs (or a plan's shard), the settings' flags, output and metrics."""

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


def _add_resume(sub: _Subparsers) -> None:
    """``resume RUN_DIR``: a new error budget, output and metrics."""
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


def _add_retry(sub: _Subparsers) -> None:
    """``retry RUN_DIR``: what to send again, and where."""
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


def _add_plan(sub: _Subparsers) -> None:
    """``plan``: the shards, the plan's file, the import."""
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


def _add_report(sub: _Subparsers) -> None:
    """``report merge``: the shards' run directories into one report."""
    report = _command(sub, "report", "reports of runs", EPILOG_REPORT_MERGE)
    report.set_defaults(group_parser=report)
    report_sub = report.add_subparsers(dest="action", metavar="ACTION")
    merge = _command(
        report_sub, "merge", "one report.json and report.html for the shards of one import", EPILOG_REPORT_MERGE
    )
    merge.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="the shards' run directories")
    merge.add_argument("--out", required=True, metavar="DIR", help="where to write report.json and report.html")
    merge.add_argument("--name", metavar="NAME", help="the merged report's run id (default: <plan id>-merged)")


def _add_validate(sub: _Subparsers) -> None:
    """``validate``: INPUTs, the settings a batch plan depends on, the rejects listed."""
    validate = _command(
        sub, "validate", "dry run: read and check everything, print the batch plan and rejects", EPILOG_VALIDATE
    )
    validate.add_argument("inputs", nargs="+", metavar="INPUT", help=INPUT_HELP)
    _discovery_flags(validate)
    validate.add_argument("--config", metavar="FILE", help=CONFIG_HELP + "; import.* and batch.* are used")
    validate.add_argument("--max-rejects", type=int, default=100, metavar="N", help="list at most N rejects (100)")
    validate.add_argument("--json", action="store_true", help="print the plan and rejects as one JSON object")
    add_setting_flags(validate, validate=True)


def _add_config(sub: _Subparsers) -> None:
    """``config show``: every setting and its source."""
    config = _command(sub, "config", "the effective settings and where each came from", EPILOG_CONFIG)
    config.set_defaults(group_parser=config)
    config_sub = config.add_subparsers(dest="action", metavar="ACTION")
    show = _command(
        config_sub, "show", "print every setting with its value and its source (never the token)", EPILOG_CONFIG
    )
    show.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    show.add_argument("--json", action="store_true", help="print the settings as one JSON object")
    add_setting_flags(show)


def _add_status(sub: _Subparsers) -> None:
    """``status RUN_DIR``: the journal's state, the server asked or not."""
    status = _command(sub, "status", "a run's state from its journal, refreshed from the server", EPILOG_STATUS)
    status.add_argument("run_dir", metavar="RUN_DIR")
    _api_flags(status, "TOML config to reach the API (default: the run's own config)")
    status.add_argument("--offline", action="store_true", help="do not ask the server")
    status.add_argument("--json", action="store_true", help="print the state as a report-shaped JSON object")


def _add_runs(sub: _Subparsers) -> None:
    """``runs list`` and ``runs prune``: the run directories under a base."""
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


def _add_imports(sub: _Subparsers) -> None:
    """``imports list``: the datamart's document imports."""
    imports = _command(sub, "imports", "document imports of the datamart", EPILOG_IMPORTS)
    imports.set_defaults(group_parser=imports)
    imports_sub = imports.add_subparsers(dest="action", metavar="ACTION")
    imports_list = _command(imports_sub, "list", "list the datamart's document imports (oldest first)", EPILOG_IMPORTS)
    _api_flags(imports_list)
    imports_list.add_argument("--keywords", help="only imports whose name holds every word")
    imports_list.add_argument("--limit", type=int, default=0, metavar="N", help="only the N newest (0: all)")
    imports_list.add_argument("--json", action="store_true", help="print the server's objects as JSON")


def _add_executions(sub: _Subparsers) -> None:
    """``executions list`` and ``executions errors``: an import's executions, an error file."""
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


def _add_cancel(sub: _Subparsers) -> None:
    """``cancel``: a run's PENDING executions, or one execution."""
    cancel = _command(
        sub, "cancel", "cancel what is still PENDING: a run's executions, or one execution", EPILOG_CANCEL
    )
    cancel.add_argument("target", metavar="RUN_DIR|EXECUTION_ID")
    _api_flags(cancel, "TOML config to reach the API (default for RUN_DIR: the run's own config)")
    cancel.add_argument("--import-id", metavar="ID", help="the execution's document import (EXECUTION_ID only)")
    cancel.add_argument("-v", "--verbose", action="store_true", help="also list the executions left alone")


def _add_bench(sub: _Subparsers, command: str | None) -> None:
    """``bench``: its own arguments (which import their modules) only when it is the command or none
    is known."""
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


def _add_emulator(sub: _Subparsers, command: str | None) -> None:
    """``emulator``: its own arguments (which import their modules) only when it is the command or
    none is known."""
    emulator = _command(
        sub,
        "emulator",
        "serve the embedded emulator of the document-import API",
        "example:\n  pipeline emulator --port 8787 --token secret --faults throttle=0.1,error5xx=0.05\n",
    )
    if command in (None, "emulator"):
        from pipeline.emulator.cli import add_arguments

        add_arguments(emulator)


_COMMAND_PARSERS = (
    _add_run,
    _add_resume,
    _add_retry,
    _add_plan,
    _add_report,
    _add_validate,
    _add_config,
    _add_status,
    _add_runs,
    _add_imports,
    _add_executions,
    _add_cancel,
)

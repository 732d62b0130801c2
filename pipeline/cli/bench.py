"""``pipeline bench``: measure what the link and the datamart take, and estimate a backfill.

The parser is built at start-up (``add_bench_arguments``: argparse only), the work imported on
dispatch (``bench_command``). The emulator's conditions are the emulator's own flags
(``pipeline.emulator.cli.add_arguments``), read by its own ``options_from_args``.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.bench.types import BenchReport
    from pipeline.config import Config

DEFAULT_SIZE = "200MB"

EPILOG = """examples:
  pipeline bench --emulator --size 500MB
  pipeline bench --emulator --latency-ms 40 --bandwidth 10 --uplink 60 --slots 16 --process-ms 500 \\
      --sweep upload.concurrency=2,4,8,16 batch.max_bytes=10MB,50MB,100MB --estimate 40GB
  MICS_API_TOKEN=... pipeline bench --config import.toml --datamart-id 1234 --size 1GB --yes
  pipeline bench --cleanup runs/bench-20261201T140000Z-a1b2c3

A bench is a run per sweep point (reader, uploads, poller, journal: the normal machinery) of
synthetic documents whose identifiers are pipeline-bench-<bench id>-<n>. It prints a table, writes
bench.json and bench.html in bench-<id>/ beside the run directories (report.dir, by default
~/.local/state/pipeline/runs), and ends with a recommendation.
Against anything but the emulator (or loopback) it needs the datamart named (--datamart-id or
import.datamart_id in the config) and --yes (or a yes on a terminal): exit 2 otherwise, nothing sent.
exit codes: 0 every point succeeded, 1 some point had failures, 2 usage (nothing sent), 3 not known.
"""


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.emulator.cli import add_arguments

    conditions = p.add_argument_group("emulator conditions (with --emulator; the emulator's own flags)")
    add_arguments(conditions)  # type: ignore[arg-type]  # a group takes add_argument as a parser does
    p.add_argument("--config", metavar="FILE", help="TOML config: the API, the datamart, the settings to start from")
    p.add_argument("--emulator", action="store_true", help="bench an emulator started for each point (no token needed)")
    p.add_argument("--document-type", metavar="T", help="the documents to generate (default: the config's)")
    p.add_argument("--mime-type", metavar="M", help="APPLICATION_X_NDJSON or TEXT_CSV (USER_SEGMENT only)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", metavar="SIZE", help=f"bytes per point, e.g. 500MB, 2GB (default {DEFAULT_SIZE})")
    size.add_argument("--records", type=int, metavar="N", help="records per point instead of a size")
    p.add_argument("--record-bytes", type=int, default=300, metavar="B", help="mean record size (default 300)")
    p.add_argument(
        "--sweep",
        nargs="+",
        default=[],
        metavar="KEY=V,V",
        help="config keys to sweep, e.g. upload.concurrency=2,4,8,16 batch.max_bytes=10MB,50MB,100MB",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the generated documents (and of emulator faults)")
    p.add_argument("--estimate", metavar="SIZE", help="estimate the time of a load of SIZE at the best point (40GB)")
    p.add_argument("--datamart-id", metavar="ID", help="the datamart to write into (required against the API)")
    p.add_argument("--compartment-id", default="1", metavar="ID", help="compartment of the synthetic accounts (1)")
    p.add_argument("--yes", action="store_true", help="confirm writing synthetic documents into the datamart")
    p.add_argument("--allow-insecure-http", action="store_true", help="allow plain http:// to a non-loopback host")
    p.add_argument("--cleanup", metavar="BENCH_DIR", help="delete what the bench in BENCH_DIR wrote, then stop")


def _ask(question: str) -> bool:
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(question, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _datamart_in_file(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            value: Any = tomllib.load(fh).get("import", {}).get("datamart_id")
    except (OSError, tomllib.TOMLDecodeError):
        return None  # load_config says what is wrong with it
    return str(value) if value is not None else None


def _config(args: argparse.Namespace) -> tuple[Config, str | None]:
    from pipeline import formats
    from pipeline.config import load_config
    from pipeline.errors import ConfigError, UsageError

    config = load_config(args.config)
    if not args.emulator and not args.config:
        raise UsageError("pipeline bench needs --emulator, or --config FILE naming the API and the datamart")
    if not args.emulator and config.uses_embedded_emulator:
        raise ConfigError("api.url", '"embedded" is the emulator: pass --emulator to bench it')
    document_type = args.document_type or config.import_.document_type
    mime = args.mime_type or (
        config.import_.mime_type
        if config.import_.mime_type in formats.allowed_mime_types(document_type)
        else formats.NDJSON
    )
    if args.emulator:  # each point's own emulator replaces it with its URL
        config = config.replace(api={"url": "embedded"})
    changes: dict[str, Any] = {"document_type": document_type, "mime_type": mime}
    given = args.datamart_id or _datamart_in_file(args.config)
    if args.datamart_id:
        changes["datamart_id"] = args.datamart_id
    return config.replace(**{"import": changes}), given


def bench_command(args: argparse.Namespace) -> int:
    import asyncio

    from pipeline.api_token import check_transport_security
    from pipeline.bench import generator
    from pipeline.bench.runner import BenchPlan, run_bench
    from pipeline.bench.sizes import parse_size
    from pipeline.bench.sweep import points
    from pipeline.bench.target import Volume, check_allowed
    from pipeline.emulator.cli import options_from_args
    from pipeline.errors import UsageError

    if args.cleanup:
        return _cleanup(args)
    config, given = _config(args)
    try:
        size = parse_size(args.size or DEFAULT_SIZE) if not args.records else 0
        estimate = parse_size(args.estimate) if args.estimate else None
        emulator = options_from_args(args).replace(host="127.0.0.1", port=0) if args.emulator else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.records is not None and args.records < 1:
        raise UsageError("--records must be at least 1")
    sweep = points(args.sweep, config)
    if emulator is None:
        check_transport_security(config.api.url, args.allow_insecure_http)
    records = args.records or max(1, size // args.record_bytes)
    volume = Volume(size or records * args.record_bytes, records, len(sweep))
    check_allowed(config, datamart_given=given, yes=args.yes, volume=volume, ask=_ask)

    def spec_of(bench_id: str) -> generator.Spec:
        return generator.Spec(
            document_type=config.import_.document_type,
            mime_type=config.import_.mime_type,
            size_bytes=size,
            records=args.records or 0,
            record_bytes=args.record_bytes,
            seed=args.seed,
            run_id=bench_id,
            compartment_id=args.compartment_id,
        )

    plan = BenchPlan(config=config, emulator=emulator, points=sweep, spec_of=spec_of, estimate_bytes=estimate)
    report = asyncio.run(run_bench(plan, _say))
    _print_end(report)
    return _exit_code(report)


def _print_end(report: BenchReport) -> None:
    from pipeline.bench.runner import BENCH_HTML, BENCH_JSON
    from pipeline.bench.table import plain_table, rich_table

    if sys.stdout.isatty():
        from rich.console import Console

        Console().print(rich_table(report))
    else:
        print(plain_table(report))
    if report["lower_bound_s"] is not None:
        conditions = report["target"]["conditions"]
        print(f"emulator: {conditions}; lower bound for this input {report['lower_bound_s']:.2f} s")
    print(report["recommendation"]["text"])
    where = Path(report["bench_dir"])
    print(f"bench.json: {where / BENCH_JSON}\nbench.html: {where / BENCH_HTML}")
    if report["cleanup_command"]:
        print(f"remove the synthetic documents with: {report['cleanup_command']}")
    elif report["target"]["emulator"]:
        print("nothing to clean up: the emulator ended with the bench")


def _exit_code(report: BenchReport) -> int:
    codes = [p["exit_code"] for p in report["points"]]
    if any(c == 3 for c in codes):
        return 3
    bad = any(c != 0 or p["rejected"] or p["refused"] for c, p in zip(codes, report["points"], strict=True))
    return 1 if bad else 0


def _cleanup(args: argparse.Namespace) -> int:
    import asyncio

    from pipeline.bench.cleanup import cleanup

    report = asyncio.run(cleanup(Path(args.cleanup), yes=args.yes, ask=_ask, say=_say))
    if report is None:
        return 0
    records = report["records"]
    print(
        f"cleanup {report['outcome']}: {records['sent']:,} deletion documents sent, {records['succeeded']:,} accepted"
    )
    print(f"report: {report['run_dir']}/report.json")
    return int(report["exit_code"])

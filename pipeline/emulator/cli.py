"""``pipeline emulator``: serve the document-import API emulator.

Example::

    pipeline emulator --port 0 --token t0k --faults "throttle=0.1,poll5xx=0.05" --seed 7

The first line of output is the base URL (``http://127.0.0.1:PORT``), the second the token.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.emulator.error_files import ERROR_FILE_SHAPES
from pipeline.emulator.faults import parse_faults
from pipeline.emulator.options import EmulatorOptions, new_token

SUMMARY = "serve the embedded emulator of the document-import API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = EmulatorOptions(token="x")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port; 0 picks a free one (default: 8787)")
    parser.add_argument("--token", help="API token to require (default: a random one, printed)")
    parser.add_argument(
        "--process-ms",
        type=float,
        default=d.process_ms,
        help=f"time an execution holds its slot, plus --per-line-us per line (default: {d.process_ms:g})",
    )
    parser.add_argument(
        "--per-line-us", type=float, default=d.per_line_us, help=f"slot time per line (default: {d.per_line_us:g})"
    )
    parser.add_argument(
        "--slots",
        type=int,
        default=d.slots,
        help=f"executions processed in parallel, in arrival order; others wait PENDING (default: {d.slots})",
    )
    parser.add_argument(
        "--faults",
        default="",
        help='fault spec, e.g. "throttle=0.1,slow=0.1:2s,page_cap=3,outage_after=5:2s" (kinds: see faults.py)',
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault decisions")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="requests per second per token (0: none)")
    parser.add_argument("--retry-after", type=int, default=d.retry_after_s, help="Retry-After seconds sent with 429")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="latency added once per request (a round trip), ms"
    )
    parser.add_argument(
        "--bandwidth", type=float, default=0.0, metavar="MBPS", help="upload cap per connection, MB/s (0: none)"
    )
    parser.add_argument(
        "--uplink",
        type=float,
        default=0.0,
        metavar="MBPS",
        help="upload cap shared by all connections, MB/s (MB = 10^6 bytes; 0: none)",
    )
    parser.add_argument(
        "--max-uploads",
        type=int,
        default=0,
        metavar="N",
        help="uploads in flight at most; one more is answered 429 with Retry-After before its body (0: none)",
    )
    parser.add_argument("--light", action="store_true", help="count lines only (no per-line checks)")
    parser.add_argument(
        "--error-files",
        choices=ERROR_FILE_SHAPES,
        default=d.error_files,
        help="shape of the error files served: ndjson (line, reason, record), text (no line number), "
        "line (no text), raw (the failed records as they were), garbage (ndjson and junk lines)",
    )
    parser.add_argument("--datamart-id", help="ignored: every datamart id is accepted")


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    """The options the flags of ``add_arguments`` name (``ValueError`` for one out of range); also
    used by ``pipeline bench --emulator``, which takes the same conditions."""
    return EmulatorOptions(
        host=args.host,
        port=args.port,
        token=args.token or new_token(),
        process_ms=args.process_ms,
        per_line_us=args.per_line_us,
        slots=args.slots,
        faults=parse_faults(args.faults),
        seed=args.seed,
        rate_limit=args.rate_limit,
        retry_after_s=args.retry_after,
        latency_ms=args.latency_ms,
        bandwidth_mbps=args.bandwidth,
        uplink_mbps=args.uplink,
        max_uploads=args.max_uploads,
        light=args.light,
        keep_digests=False,
        error_files=args.error_files,
    )


def main(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"pipeline emulator: {exc}", file=sys.stderr)
        return 2
    try:
        from pipeline.emulator.server import serve  # aiohttp.web: only when serving

        return serve(options, token_given=bool(args.token))
    except OSError as exc:
        print(f"pipeline emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline emulator", description=SUMMARY, epilog=__doc__.split("\n\n")[1])
    add_arguments(parser)
    return main(parser.parse_args(argv))

"""``pipeline retry RUN_DIR``: a new run sending again, from the original inputs, just the records of
a finished run that did not make it (see :mod:`pipeline.engine.retry_plan`; its parser and help
are in ``cli/parser.py`` and ``cli/epilogs.py``).

Progress and the summary are those of ``pipeline run``. With nothing to send, it says so and
creates nothing: exit 0, or 1 when ``--rejected`` found records still bad (listed) or the plan's
warnings say records that did not make it cannot be sent again (e.g. refusals no ``failed.ndjson``
lists): a retry that leaves failures behind never looks like a success.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli.run import _journal_token_env, _make_sink, print_end
from pipeline.reporting.exit_codes import EXIT_FAILURES, EXIT_OK

if TYPE_CHECKING:
    from pipeline.reading.batch import Reject


def retry_command(args: argparse.Namespace) -> int:
    from pipeline.engine.retry_run import retry_async
    from pipeline.engine.runner import RunOptions

    token_env = _journal_token_env(args.run_dir)
    secrets = [s for s in (os.environ.get(token_env, "").strip(),) if s]
    sink, display = _make_sink(args, secrets)
    options = RunOptions(
        report_path=Path(args.report) if args.report else None,
        allow_insecure_http=args.allow_insecure_http,
        on_event=sink,
        handle_signals=True,
    )
    with display:
        result = asyncio.run(
            retry_async(args.run_dir, options, rejected=args.rejected, import_id=getattr(args, "import_id", None))
        )
    for warning in result.plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.report is None:
        if result.plan.rejects_left:
            print(
                f"note: {result.plan.rejects_left:,} records were rejected client-side (rejects.ndjson): fix them "
                "in place, then `pipeline retry --rejected` sends them",
                file=sys.stderr,
            )
        return _nothing_to_send(args, result.plan.rejects, delivered=not result.plan.warnings)
    print_end(result.report, args)
    return int(result.report["exit_code"])


def _nothing_to_send(args: argparse.Namespace, still_bad: Sequence[Reject], *, delivered: bool, most: int = 10) -> int:
    if not still_bad and delivered:
        print(f"nothing to retry in {args.run_dir}: every record sent was delivered (nothing was created)")
        return EXIT_OK
    if not still_bad:  # records did not make it, but none can be sent again: not a success
        print(
            f"nothing to retry in {args.run_dir}: records that did not make it cannot be sent again, see the "
            "warnings (nothing was created)"
        )
        return EXIT_FAILURES
    print(f"nothing to retry: {len(still_bad):,} rejected records are still bad (nothing was created):")
    for reject in still_bad[:most]:
        print(f"  {reject.file}:{reject.line}: {reject.reason}")
    return EXIT_FAILURES

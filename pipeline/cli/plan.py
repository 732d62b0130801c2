"""``pipeline plan`` (the one import, the inputs over N shards) and ``pipeline run --plan`` (one
shard: its number from ``--shard``, else ``$JOB_COMPLETION_INDEX``, which a Kubernetes Indexed Job
sets in each pod). Airflow sets no such variable for a mapped task: its DAG passes
``--shard {{ ti.map_index }}`` (see ``examples/orchestrators/``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from pipeline.config import Config, load_config
from pipeline.engine.plan import Plan, load_plan, shard_run_id, write_plan
from pipeline.errors import UsageError
from pipeline.reporting.exit_codes import EXIT_OK
from pipeline.reporting.progress import stamp

SHARD_ENV = "JOB_COMPLETION_INDEX"  # Kubernetes Indexed Jobs: the pod's index, 0 to completions-1


def plan_command(args: argparse.Namespace) -> int:
    from pipeline.engine.shard import make_plan

    config = load_config(args.config)
    out = Path(args.out)
    before = _plan_id_at(out)
    plan = asyncio.run(
        make_plan(
            config,
            args.inputs,
            args.shards,
            import_id=args.import_id,
            allow_insecure_http=args.allow_insecure_http,
            keep=out,
            again=args.again,
        )
    )
    if plan["plan_id"] == before:
        print(f"{out} already holds this plan (same inputs, sizes, shards and config): kept as it is")
    else:
        if before is not None:
            why = "--again" if args.again else "it was for other inputs or another config"
            print(f"{out} held plan {before}: replaced ({why})", file=sys.stderr)
        write_plan(out, plan)
    print_plan(plan, out)
    return EXIT_OK


def _plan_id_at(path: Path) -> str | None:
    """The id of the plan at ``path``, if it holds one."""
    try:
        return load_plan(path)["plan_id"]
    except UsageError:
        return None


def print_plan(plan: Plan, out: Path) -> None:
    imp = plan["document_import"]
    print(f"plan {plan['plan_id']}: document import {imp['id']} “{imp['name']}”, {len(plan['shards'])} shards → {out}")
    for shard in plan["shards"]:
        files, run_id = len(shard["inputs"]), shard_run_id(plan, shard["shard"])
        print(f"  shard {shard['shard']}: {files} file(s), {shard['bytes']:,} bytes → run {run_id}")


def shard_index(args: argparse.Namespace) -> int:
    """``--shard K``, else ``$JOB_COMPLETION_INDEX``; a usage error when neither says."""
    if args.shard is not None:
        return int(args.shard)
    raw = os.environ.get(SHARD_ENV, "").strip()
    if not raw:
        err = UsageError(f"which shard? pass --shard K (0-based) or set {SHARD_ENV}")
        err.hint = "Airflow: --shard {{ ti.map_index }}; a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX"
        raise err
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{SHARD_ENV}={raw!r} is not a shard number") from None


def plan_and_config(args: argparse.Namespace) -> tuple[Plan, Config | None]:
    """The plan of ``run --plan`` and the ``--config`` given with it (None: the plan's own)."""
    if args.inputs:
        raise UsageError("run --plan takes no INPUT: the plan names each shard's inputs")
    if args.emulator:
        raise UsageError("run --plan cannot use --emulator: the shards share the plan's API")
    plan = load_plan(args.plan)
    return plan, (load_config(args.config) if args.config else None)


def print_shard_start(plan: Plan, shard: int) -> None:
    entry = plan["shards"][shard]
    print(
        f"{stamp(time.time())} shard {shard} of {len(plan['shards'])} "
        f"(plan {plan['plan_id']}, import {plan['document_import']['id']}): "
        f"{len(entry['inputs'])} file(s), {entry['bytes']:,} bytes",
        file=sys.stderr,
        flush=True,
    )

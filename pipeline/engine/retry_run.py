"""``pipeline retry``'s entry point: a new run that sends again what did not make it of a finished run.

The plan (:mod:`pipeline.engine.retry_plan`) is made first; with nothing to send, nothing is
created. Otherwise a run directory of its own is made beside the retried run's, the plan written
into it (``retry.json``), and a ``Run`` of the planned batches goes to the same document import
(unless another one is asked for), with the retried run's config. Like any run it is journaled,
so ``pipeline resume`` of the retry goes on from where it stopped, sending nothing twice.

A run is retried once: a second retry of it would send its failures again beside the first
retry's. Retry the retry instead (its failures are those left), or resume it if it stopped.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.engine.journal import JOURNAL_NAME
from pipeline.engine.retry_plan import RETRY_NAME, RetryPlan, plan_retry
from pipeline.errors import UsageError
from pipeline.reading.sources import Input
from pipeline.reporting.types import Report


@dataclass(frozen=True)
class RetryResult:
    """What ``retry_async`` did: ``report`` is ``None`` when there was nothing to send."""

    plan: RetryPlan
    report: Report | None


async def retry_async(
    run_dir: str | Path,
    options: object = None,
    *,
    rejected: bool = False,
    import_id: str | None = None,
) -> RetryResult:
    """Send again, in a new run, the records of the finished run in ``run_dir`` that did not make
    it (``options``: a ``RunOptions``; ``rejected``: also the client-side rejects, fixed in place)."""
    from pipeline.api_token import check_token, read_token
    from pipeline.engine.rundir import ActiveRunGuard, RunLock, make_private_dir, new_run_id, work_key
    from pipeline.engine.runner import Run, RunOptions, preflight
    from pipeline.engine.start import runtime_dir

    run_dir = Path(run_dir)
    opts = options if isinstance(options, RunOptions) else RunOptions()
    plan, config = plan_retry(run_dir, rejected=rejected)
    if not plan.batches:
        return RetryResult(plan, None)
    if config.uses_embedded_emulator:
        raise UsageError(
            f"{run_dir} uploaded to the embedded emulator, which ended with that run: there is nothing to retry "
            "against; run the inputs again"
        )
    config = config.replace(**{"import": {"id": import_id or plan.import_id}}, report={"dir": str(run_dir.parent)})
    check_token(opts.token or read_token(config), env=config.api.token_env)
    inputs: list[Input] = list(plan.inputs)
    preflight(config, inputs, opts)
    run_id = new_run_id()
    new_dir = run_dir.parent / run_id
    # two retries of one run at once would both send its failures: one at a time, then the check
    guard = ActiveRunGuard(runtime_dir(), work_key({"retry_of": plan.retry_of["run_id"]}, []), run_dir=new_dir)
    try:
        _refuse_a_second_retry(run_dir, plan)
        make_private_dir(new_dir)
        try:
            plan.save(new_dir)
            report = await Run(config, inputs, new_dir, run_id, opts, lock=RunLock(new_dir), retry=plan).execute()
        except UsageError:  # raised only while nothing was sent: no run directory left behind
            shutil.rmtree(new_dir, ignore_errors=True)
            raise
    finally:
        guard.release()
    return RetryResult(plan, report)


def _refuse_a_second_retry(run_dir: Path, plan: RetryPlan) -> None:
    for sibling in sorted(run_dir.parent.glob(f"*/{RETRY_NAME}")):
        if not (sibling.parent / JOURNAL_NAME).is_file():
            continue  # a retry that stopped before its journal: nothing of it was sent
        try:
            retry_of = orjson.loads(sibling.read_bytes()).get("retry_of", {})
        except (OSError, orjson.JSONDecodeError):
            continue
        if retry_of.get("run_id") == plan.retry_of["run_id"]:
            err = UsageError(f"{run_dir} was already retried by {sibling.parent}: retrying it again would send twice")
            err.hint = (
                f"pipeline retry {sibling.parent} (what that retry did not deliver), or pipeline resume "
                f"{sibling.parent} if it stopped"
            )
            raise err

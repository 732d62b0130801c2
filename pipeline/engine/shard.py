"""Plans and shards: ``make_plan`` (the one document import, the inputs over N shards) and
``run_shard_async`` (one shard of a plan, as one task of an orchestrator runs it).

A shard's run id is the plan's id and the shard's number (``plan.shard_run_id``): its run directory
``<report.dir>/<run id>`` and its upload file names (``<run id>-<batch>.ndjson``) follow, so no
two shards, and no two plans, name an upload alike (the lookup of a lost answer by name finds the
shard's own execution). Running a shard whose run directory already holds a journal continues it
as ``pipeline resume`` does: an orchestrator that retries a task with the same command (a
Kubernetes Indexed Job restarting a pod) sends nothing twice.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.api_token import check_token, check_transport_security, read_token
from pipeline.config import Config, check_target, runs_base
from pipeline.engine.document_import import ensure_import
from pipeline.engine.plan import (
    Plan,
    build_plan,
    new_plan_id,
    plan_config,
    plan_to_keep,
    shard_of,
    shard_run_id,
    sized_inputs,
)
from pipeline.errors import InputError, UsageError

if TYPE_CHECKING:
    from pipeline.engine.runner import RunOptions
    from pipeline.reporting.types import Report


async def make_plan(
    config: Config,
    inputs: Sequence[str | Path],
    shards: int,
    *,
    import_id: str | None = None,
    token: str | None = None,
    allow_insecure_http: bool = False,
    keep: Path | None = None,
    again: bool = False,
) -> Plan:
    """The plan of ``inputs`` over ``shards``: creates the document import (or checks
    ``import_id``, or the config's ``import.id``) on the configured API.

    ``keep``: where the plan is written; when it already holds this very plan
    (``plan.plan_to_keep``), that plan is returned as it is, its import checked, none created.
    A new plan of inputs that runs under ``report.dir`` already sent is refused
    (``imported_before``) unless ``again`` (which also makes a new plan instead of keeping one):
    its shards do not ask again."""
    from pipeline.client.api import ApiClient, RetryPolicy
    from pipeline.engine.imported_before import refuse_if_imported_before
    from pipeline.engine.start import check_inputs_match_config
    from pipeline.reading.discover import discover_inputs
    from pipeline.reading.inputs import fingerprint

    check_target(config)
    if config.uses_embedded_emulator:
        raise UsageError(
            "a plan needs an API every shard reaches: the embedded emulator ends with its process "
            "(run `pipeline emulator` and set api.url to its URL to try plans)"
        )
    paths = discover_inputs(inputs)
    check_inputs_match_config(config, paths)
    files = sized_inputs(paths)
    url = config.api.url.rstrip("/")
    check_transport_security(url, allow_insecure_http)
    token = token or read_token(config)
    check_token(token, env=config.api.token_env)
    kept = plan_to_keep(keep, config, files, shards, import_id) if keep is not None and not again else None
    if kept is None and not again:
        refuse_if_imported_before(runs_base(config), url, config.to_dict(), [fingerprint(p) for p in paths])
    plan_id = kept["plan_id"] if kept is not None else new_plan_id()
    known = kept["document_import"]["id"] if kept is not None else import_id or config.import_.id
    retry = RetryPolicy(max_attempts=config.upload.max_attempts, window_s=config.upload.retry_window_s)
    async with ApiClient(url, token, timeout_s=config.api.timeout_s, retry=retry) as api:
        document_import = await ensure_import(api, config.import_, known, plan_id)
    return kept if kept is not None else build_plan(config, files, shards, document_import, plan_id)


def shard_inputs(plan: Plan, shard: int) -> list[Path]:
    """The shard's inputs, each there with the size the plan recorded (``InputError`` if not)."""
    paths = []
    for planned in shard_of(plan, shard)["inputs"]:
        path = Path(planned["path"])
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InputError(path, f"an input of shard {shard} is not there ({exc.strerror})") from None
        if size != planned["bytes"]:
            raise InputError(
                path, f"changed since the plan was made ({planned['bytes']:,} bytes, now {size:,}): make a new plan"
            )
        paths.append(path)
    return paths


def shard_run_dir(plan: Plan, shard: int, config: Config) -> Path:
    return runs_base(config) / shard_run_id(plan, shard)


async def run_shard_async(
    plan: Plan, shard: int, config: Config | None = None, options: RunOptions | None = None
) -> Report:
    """Run shard ``shard`` of ``plan`` (``config``: ``--config``, which must be the plan's; None: the
    plan's own). A shard with no inputs succeeds with nothing to send (its run still checks the
    import and writes a report, for the merge)."""
    from pipeline.engine.journal import JOURNAL_NAME
    from pipeline.engine.rundir import ActiveRunGuard
    from pipeline.engine.runner import RunOptions
    from pipeline.engine.start import resume_async, run_async, runtime_dir

    config = plan_config(plan, config)
    paths = shard_inputs(plan, shard)
    options = options or RunOptions()
    run_id = shard_run_id(plan, shard)
    run_dir = shard_run_dir(plan, shard, config)
    # one process per shard on this machine: this guard replaces run's own (keyed by config and
    # inputs: two empty shards would have the same key)
    with ActiveRunGuard(runtime_dir(), run_id, run_dir=run_dir):
        # whether the shard's inputs were imported before was asked when the plan was made
        options = dataclasses.replace(options, allow_concurrent=True, again=True)
        if _journal_started(run_dir / JOURNAL_NAME):
            return await resume_async(run_dir, options)
        if run_dir.exists():  # stopped before its journal said anything: nothing was sent
            shutil.rmtree(run_dir)
        return await run_async(config, paths, options, run_id=run_id)


def _journal_started(journal: Path) -> bool:
    """The journal records the run's start (a run journals it before anything is sent)."""
    from pipeline.engine.journal import check_run_dir

    try:
        check_run_dir(journal.parent)
    except InputError:
        return False
    return True

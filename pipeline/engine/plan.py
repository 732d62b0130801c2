"""A shard plan (``plan.json``): one document import, the inputs spread over N shards by size.

``pipeline plan`` makes it once, before an orchestrator fans out; each task then runs one shard
(``pipeline run --plan plan.json --shard K``, see ``engine.shard``). The assignment is a pure,
deterministic function of the inputs' names and sizes: largest first, each to the shard with the
fewest bytes so far (ties: the lower shard), equal sizes in name order. The same inputs always give
the same plan, so a plan made again (a retried ``plan`` task) sends every file to the same shard.

The plan records the import's id, the config each shard must run with (as a digest, and whole:
it holds no secret, the token is read from the environment) and each shard's inputs with their
sizes: a shard refuses an input that changed since the plan was made.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import orjson

from pipeline.config import Config, check_target, config_from_dict
from pipeline.engine.rundir import make_missing_dirs
from pipeline.errors import ConfigError, InputError, UsageError

PLAN_KIND = "pipeline.plan"
PLAN_VERSION = 1
MAX_SHARDS = 10_000


class PlanInput(TypedDict):
    """One input file of a shard, as it was when the plan was made."""

    path: str  # absolute
    bytes: int


class PlanShard(TypedDict):
    shard: int  # 0-based, as JOB_COMPLETION_INDEX and Airflow's map_index count
    bytes: int
    inputs: list[PlanInput]


class PlanImport(TypedDict):
    id: str
    name: str | None
    document_type: str | None
    mime_type: str | None


class Plan(TypedDict):
    """``plan.json``. Key order here is the order in the file."""

    kind: str  # PLAN_KIND
    version: int  # PLAN_VERSION
    plan_id: str  # names every shard's run (and so its upload file names)
    created_at: str
    target: str  # api.url
    datamart_id: int | str
    document_import: PlanImport
    config_digest: str  # sha256 of the canonical config below
    config: dict[str, Any]  # the config every shard runs with (import.id set to the plan's import)
    shards: list[PlanShard]


def assign_shards(files: Sequence[tuple[str, int]], count: int) -> list[PlanShard]:
    """``files`` ((path, size) pairs) over ``count`` shards: largest first, each to the least
    loaded shard (ties: the lower index); equal sizes in path order. A shard may get nothing."""
    if count < 1:
        raise UsageError(f"--shards must be at least 1 (got {count})")
    shards: list[PlanShard] = [{"shard": k, "bytes": 0, "inputs": []} for k in range(count)]
    for path, size in sorted(files, key=lambda f: (-f[1], f[0])):
        target = min(shards, key=lambda s: (s["bytes"], s["shard"]))
        target["inputs"].append({"path": path, "bytes": size})
        target["bytes"] += size
    return shards


def config_digest(config_dict: dict[str, Any]) -> str:
    """sha256 (hex) of the config as canonical JSON (sorted keys)."""
    return hashlib.sha256(orjson.dumps(config_dict, option=orjson.OPT_SORT_KEYS)).hexdigest()


def new_plan_id(now: datetime | None = None) -> str:
    """Like a run id (``20261128T030000Z-a1b2c3``), prefixed so that a shard's runs read as such."""
    from pipeline.engine.rundir import new_run_id  # noqa: PLC0415 (one way to make ids)

    return "plan-" + new_run_id(now)


def build_plan(
    config: Config, files: Sequence[tuple[str, int]], count: int, document_import: dict[str, Any], plan_id: str
) -> Plan:
    """The plan for ``files`` over ``count`` shards, into ``document_import`` (the server's object)."""
    if not 1 <= count <= MAX_SHARDS:
        raise UsageError(f"--shards must be between 1 and {MAX_SHARDS} (got {count})")
    import_id = str(document_import["id"])
    shard_config = config.replace(**{"import": {"id": import_id}})
    as_dict = shard_config.to_dict()
    return {
        "kind": PLAN_KIND,
        "version": PLAN_VERSION,
        "plan_id": plan_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "target": config.api.url,
        "datamart_id": config.import_.datamart_id,
        "document_import": {
            "id": import_id,
            "name": document_import.get("name"),
            "document_type": document_import.get("document_type"),
            "mime_type": document_import.get("mime_type"),
        },
        "config_digest": config_digest(as_dict),
        "config": as_dict,
        "shards": assign_shards(files, count),
    }


def sized_inputs(paths: Sequence[Path]) -> list[tuple[str, int]]:
    """(absolute path, size) of each discovered input: a shard may run in another directory."""
    out = []
    for p in paths:
        try:
            out.append((str(p.resolve()), p.stat().st_size))
        except OSError as exc:
            raise InputError(p, f"cannot read its size ({exc.strerror})") from None
    return out


def plan_to_keep(
    path: Path, config: Config, files: Sequence[tuple[str, int]], count: int, import_id: str | None
) -> Plan | None:
    """The plan already at ``path`` when it is the one ``pipeline plan`` would make again: the
    same target and datamart, the same inputs with the same sizes over the same shards, the same
    config (once its ``import.id`` is the plan's import) and, if one is named, the same import.

    A plan made again (a retried or cleared ``plan`` task) must not be a new plan: a new plan id
    names new shard runs, which would send every record again, into a new import. ``None`` when
    there is no such file, it is not a plan, or it is another plan (then it is replaced)."""
    try:
        plan = load_plan(path)
    except UsageError:
        return None
    planned_import = plan["document_import"]["id"]
    wanted_import = import_id or config.import_.id
    if wanted_import and str(wanted_import) != planned_import:
        return None
    if plan["target"] != config.api.url or str(plan["datamart_id"]) != str(config.import_.datamart_id):
        return None
    if plan["shards"] != assign_shards(files, count):
        return None
    mine = config.replace(**{"import": {"id": planned_import}})
    return plan if config_digest(mine.to_dict()) == plan["config_digest"] else None


def write_plan(path: Path, plan: Plan) -> None:
    """Write ``plan.json`` atomically (a task never reads half a plan)."""
    path = Path(path)
    make_missing_dirs(path.parent)  # 0700, whatever the umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(plan, option=orjson.OPT_INDENT_2) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_plan(path: str | Path) -> Plan:
    """Read and check ``plan.json``: a clear ``UsageError`` for anything that is not a plan of ours."""
    path = Path(path)
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read the plan {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != PLAN_KIND:
        raise UsageError(f'{path} is not a pipeline plan (no "kind": "{PLAN_KIND}"); make one with `pipeline plan`')
    if data.get("version") != PLAN_VERSION:
        raise UsageError(
            f"{path} is a plan of version {data.get('version')!r}; this pipeline reads version {PLAN_VERSION}"
        )
    shards = data.get("shards")
    if not isinstance(shards, list) or not shards or [s.get("shard") for s in shards] != list(range(len(shards))):
        raise UsageError(f"{path}: its shards are not numbered 0 to N-1")
    if config_digest(data["config"]) != data.get("config_digest"):
        raise UsageError(f"{path}: its config does not match its config_digest (the file was edited)")
    plan: Plan = data  # type: ignore[assignment]  # checked above: the fields a shard reads
    return plan


def plan_config(plan: Plan, config: Config | None) -> Config:
    """The config a shard runs with: the plan's own, or ``config`` (``--config``) if it is the same
    config (digest) once its ``import.id`` is the plan's import."""
    planned = config_from_dict(plan["config"])
    if config is None:
        check_target(planned)
        return planned
    mine = config.replace(**{"import": {"id": plan["document_import"]["id"]}})
    if config_digest(mine.to_dict()) != plan["config_digest"]:
        raise ConfigError(
            "config",
            "differs from the config the plan was made with (its digest differs): every shard must run with "
            "the same config; omit --config to use the plan's own",
        )
    return mine


def shard_of(plan: Plan, shard: int) -> PlanShard:
    count = len(plan["shards"])
    if not 0 <= shard < count:
        raise UsageError(f"shard {shard} is not in the plan: it has shards 0 to {count - 1}")
    return plan["shards"][shard]


def shard_run_id(plan: Plan, shard: int) -> str:
    """The shard's run id, hence its run directory and its upload file names
    (``<run id>-<batch>.ndjson``): unique across the shards and the plans of one import."""
    width = max(2, len(str(len(plan["shards"]) - 1)))
    return f"{plan['plan_id']}-shard{shard:0{width}d}"

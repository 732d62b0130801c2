"""``pipeline bench --cleanup BENCH_DIR``: delete what a bench wrote, with the platform's own
deletion imports, through the same pipeline (a run of its own, under ``BENCH_DIR/cleanup``).

One USER_POINTS_DELETION document per synthetic identifier (``{"type": "USER_ACCOUNT",
"user_account_id": "pipeline-bench-<id>-<n>", "compartment_id": ...}``): deleting the user point
the identifier names removes the activities, profiles, segments and choices the bench put on it.
A bench of a deletion type created nothing, and one against the embedded emulator wrote nothing
that outlived it: nothing to send then.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson

from pipeline.bench.runner import BENCH_JSON
from pipeline.bench.target import Volume, check_allowed
from pipeline.bench.types import BenchReport
from pipeline.config import config_from_dict
from pipeline.engine.runner import RunOptions
from pipeline.engine.start import run_async
from pipeline.errors import UsageError
from pipeline.reporting.types import Report

DELETION_TYPE = "USER_POINTS_DELETION"
CHUNK = 10_000


def read_bench(bench_dir: Path) -> BenchReport:
    path = bench_dir / BENCH_JSON
    try:
        data: BenchReport = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{bench_dir} is not a bench directory (no {BENCH_JSON} in it)") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    return data


def nothing_to_remove(bench: BenchReport) -> str | None:
    """Why there is nothing to delete, or None."""
    if bench["target"]["emulator"]:
        return "the bench went to an emulator it started, which ended with it: nothing reached a datamart"
    if not bench["identifiers"]["creates_user_points"]:
        return f"a {bench['document_type']} bench creates no user point: nothing to delete"
    return None


def write_deletions(bench: BenchReport, path: Path) -> int:
    """One deletion document per synthetic identifier, written in chunks; the count written."""
    ids = bench["identifiers"]
    prefix, count, compartment = ids["prefix"], int(ids["count"]), ids["compartment_id"]
    with path.open("wb", buffering=1 << 20) as out:
        for start in range(0, count, CHUNK):
            out.write(
                b"".join(
                    orjson.dumps(
                        {"type": "USER_ACCOUNT", "user_account_id": f"{prefix}{n}", "compartment_id": compartment}
                    )
                    + b"\n"
                    for n in range(start, min(count, start + CHUNK))
                )
            )
    return count


async def cleanup(
    bench_dir: Path,
    *,
    yes: bool,
    ask: Callable[[str], bool] | None,
    say: Callable[[str], None],
    token: str | None = None,
) -> Report | None:
    """The deletion run's report, or None when there was nothing to delete (said why)."""
    bench = read_bench(bench_dir)
    why = nothing_to_remove(bench)
    if why:
        say(why)
        return None
    base = config_from_dict(bench["config"])
    config = base.replace(
        report={"dir": str(bench_dir / "cleanup")},
        **{
            "import": {
                "document_type": DELETION_TYPE,
                "mime_type": "APPLICATION_X_NDJSON",
                "id": None,
                "name": f"pipeline-bench cleanup {bench['bench_id']}",
            }
        },  # fmt: skip
    )
    count = int(bench["identifiers"]["count"])
    check_allowed(
        config, datamart_given=config.import_.datamart_id, yes=yes, ask=ask,
        volume=Volume(count * 80, count, 1), what="a cleanup deletes the user points of",
    )  # fmt: skip
    (bench_dir / "cleanup").mkdir(mode=0o700, exist_ok=True)
    path = bench_dir / "cleanup" / "deletions.ndjson"
    write_deletions(bench, path)
    say(f"deleting {count:,} synthetic user points (pipeline-bench-{bench['bench_id']}-*) from datamart "
        f"{config.import_.datamart_id} with {DELETION_TYPE} documents")  # fmt: skip
    try:
        return await run_async(config, [path], RunOptions(token=token, allow_concurrent=True, again=True))
    finally:
        path.unlink(missing_ok=True)

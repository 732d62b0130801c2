"""Starting and resuming runs: the library entry points that ``pipeline`` re-exports.

``run_async`` checks the inputs and outputs before anything is sent, refuses a second run of the
same work, creates the run directory and runs it; ``resume_async`` takes the run directory's lock
before it reads the journal. Heavier modules are imported inside the functions, so that
``import pipeline`` (and ``pipeline --version``) stays fast.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.api_token import check_token, read_token
from pipeline.config import Config, check_target, config_from_dict, runs_base
from pipeline.errors import ConfigError, InputError, UsageError

if TYPE_CHECKING:  # the engine and the report types are imported when a run starts, not on import
    from pipeline.engine.runner import RunOptions
    from pipeline.reading.sources import Input
    from pipeline.reporting.types import Report


async def run_async(
    config: Config, inputs: Sequence[str | Path], options: RunOptions | None = None, *, run_id: str | None = None
) -> Report:
    """Run the pipeline over ``inputs``: a new run directory under ``config.report.dir``, named
    ``run_id`` when given (a shard of a plan: ``engine.shard``), else a new id."""
    from pipeline.engine.budget import parse_max_errors
    from pipeline.engine.rundir import ActiveRunGuard, RunLock, make_private_dir, new_run_id, work_key
    from pipeline.engine.runner import Run, RunOptions, preflight
    from pipeline.reading.inputs import rereadable, resolve

    options = options or RunOptions()
    _check_library_call(config, options)
    if options.max_errors is not None:
        config = config.replace(batch={"max_errors": options.max_errors})
    parse_max_errors(config.batch.max_errors)  # a bad budget: a ConfigError before anything
    found = resolve(inputs, recursive=options.recursive)  # paths, URLs (objects, prefixes, globs), "-"
    paths = found.files
    check_inputs_match_config(config, paths)
    check_target(config)
    if not config.uses_embedded_emulator:  # a missing or malformed token: refused before a run directory exists
        check_token(options.token or read_token(config), env=config.api.token_env)
    preflight(config, paths, options)
    run_id = run_id or new_run_id()
    base = runs_base(config)
    if not options.again and not config.uses_embedded_emulator:
        from pipeline.engine.imported_before import refuse_if_imported_before
        from pipeline.reading.inputs import fingerprint

        refuse_if_imported_before(base, config.api.url, config.to_dict(), [fingerprint(p) for p in paths])
    guard = None
    if not options.allow_concurrent and rereadable(paths):  # a cron overlap would import everything twice
        key = work_key(config.to_dict(), [str(p) for p in paths])
        guard = ActiveRunGuard(runtime_dir(), key, run_dir=base / run_id)
    try:
        run_dir = make_private_dir(base / run_id)
        try:
            run = Run(config, paths, run_dir, run_id, options, lock=RunLock(run_dir), skipped=found.skipped)
            return await run.execute()
        except UsageError:  # raised only while nothing was sent (a refused token, a wrong URL...):
            if not (run_dir / "report.json").exists():  # kept when its report says why (nothing_sent)
                shutil.rmtree(run_dir, ignore_errors=True)  # no run directory for `status` to call a crash
            raise
    finally:
        if guard is not None:
            guard.release()


async def resume_async(run_dir: str | Path, options: RunOptions | None = None) -> Report:
    """Continue a stopped run from its journal: poll what is known, upload what never arrived.

    The run directory's lock is taken before the journal is read: a second resume that got the lock
    late would otherwise work from a stale state and send again what the first one sent."""
    from pipeline.engine.journal import check_run_dir, load_run
    from pipeline.engine.retry_plan import RetryPlan
    from pipeline.engine.rundir import RunLock
    from pipeline.engine.runner import Run, RunOptions, preflight
    from pipeline.reading.inputs import from_journal

    run_dir = Path(run_dir)
    options = options or RunOptions()
    _check_library_call(None, options)
    check_run_dir(run_dir)  # a clear error for a directory that is not a run's, before any lock file
    lock = RunLock(run_dir)
    try:
        journaled = load_run(run_dir)
        started = journaled.started
        config = config_from_dict(_as_planned(started["config"]))
        if options.max_errors is not None:  # `pipeline resume --max-errors`: a new error budget
            config = config.replace(batch={"max_errors": options.max_errors})
        if config.uses_embedded_emulator:
            raise UsageError(
                f"{run_dir} uploaded to the embedded emulator, which ended with that run: there is nothing to "
                "resume against; start a new run"
            )
        paths = [from_journal(i) for i in started["inputs"]]
        prior = journaled.state()
        for recorded in started["inputs"]:
            note = _check_fingerprint(recorded, needed=not prior.nothing_to_send())
            if note:
                prior.warnings.append(note)
        preflight(config, paths, options)
        retry = RetryPlan.load(run_dir)  # a retry: its planned batches again, each checked against its digest
        run = Run(config, paths, run_dir, started["run_id"], options, prior=prior, lock=lock, retry=retry)
    except BaseException:
        lock.release()
        raise
    return await run.execute()


def _as_planned(journaled: dict[str, Any]) -> dict[str, Any]:
    """The journaled config, read so that it plans the batches it planned: a run journaled before
    ``batch.sizing`` existed cut every batch at ``batch.max_bytes``."""
    batch = journaled.get("batch")
    if isinstance(batch, dict) and "sizing" not in batch:
        return {**journaled, "batch": {**batch, "sizing": "fixed"}}
    return journaled


def run(config: Config, inputs: Sequence[str | Path], options: RunOptions | None = None) -> Report:
    """Blocking twin of ``run_async`` (not from inside a running event loop: await ``run_async``)."""
    _refuse_while_a_worker_imports_main()
    _refuse_inside_a_running_loop("run")
    return asyncio.run(run_async(config, inputs, options))


def resume(run_dir: str | Path, options: RunOptions | None = None) -> Report:
    """Blocking twin of ``resume_async`` (not from inside a running event loop: await ``resume_async``)."""
    _refuse_while_a_worker_imports_main()
    _refuse_inside_a_running_loop("resume")
    return asyncio.run(resume_async(run_dir, options))


def _refuse_inside_a_running_loop(name: str) -> None:
    """``asyncio.run`` inside a running loop (a notebook, an async task) fails with asyncio's own
    words: say what to call instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise UsageError(
        f"pipeline.{name}() was called inside a running event loop (a notebook, an async framework): "
        f"use `await pipeline.{name}_async(...)` there"
    )


def _check_library_call(config: object, options: object) -> None:
    """What a library caller may get wrong, told before anything is done: a ``Config`` that is not
    one, an ``on_event`` that cannot take ``(event, fields)``."""
    from pipeline.engine.runner import RunOptions
    from pipeline.engine.sink import check_event_sink

    if config is not None and not isinstance(config, Config):
        raise UsageError(
            f"config must be a pipeline.Config (pipeline.load_config(path) or pipeline.Config(...)), "
            f"got {type(config).__name__}"
        )
    if not isinstance(options, RunOptions):
        raise UsageError(f"options must be a pipeline.RunOptions, got {type(options).__name__}")
    check_event_sink(options.on_event)


def _refuse_while_a_worker_imports_main() -> None:
    """The reader's worker processes (validation, CSV counting) import the caller's main module, as
    multiprocessing does. A script that calls ``run`` outside ``if __name__ == "__main__":`` would
    then start a second run from inside a worker: a second document import, files sent again.
    Refuse that, with the fix in the message (the same check multiprocessing makes when a script
    starts processes without the guard)."""
    mp = sys.modules.get("multiprocessing")
    if mp is not None and getattr(mp.current_process(), "_inheriting", False):
        raise UsageError(
            "pipeline.run() was called while a worker process imported the main module: put the "
            'call under `if __name__ == "__main__":` (the reader\'s worker processes import it)'
        )


def runtime_dir() -> Path:
    """Where the locks of active runs live: per user, outside ``report.dir`` (which holds runs only)."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"pipeline-{os.getuid()}"


def check_inputs_match_config(config: Config, paths: Sequence[Input]) -> None:
    from pipeline import formats  # noqa: PLC0415 (lazy: import pipeline stays light)
    from pipeline.reading.discover import is_csv_name
    from pipeline.reading.sources import StdinInput

    for path in paths:
        if isinstance(path, StdinInput):
            continue  # a stream has no name: it is read as the import's mime type
        is_csv = is_csv_name(Path(path.name))
        if is_csv and config.import_.mime_type != formats.CSV:
            raise ConfigError(
                "import.mime_type",
                f"{path} is a CSV file but the import is {config.import_.mime_type} "
                f"({config.import_.document_type}); only USER_SEGMENT accepts CSV (mime_type TEXT_CSV)",
            )
        if not is_csv and config.import_.mime_type == formats.CSV:
            raise ConfigError("import.mime_type", f"{path} is not a .csv file but the import expects TEXT_CSV")


def _check_fingerprint(recorded: dict[str, Any], *, needed: bool = True) -> str | None:
    """An input a resume will read is there with its size; raises ``InputError`` if not. When it is
    not ``needed`` (every batch already has its execution: nothing is read), a warning, or None."""
    if recorded.get("kind") in ("object", "stdin"):  # compared by size, ETag and version id
        from pipeline.reading.inputs import check_remote_for_resume

        return check_remote_for_resume(recorded, needed=needed)
    path = Path(recorded["path"])
    try:
        st = path.stat()
    except OSError as exc:
        if not needed:
            return f"{path} is gone since the run started; every batch of it had been uploaded: nothing was read"
        raise InputError(path, f"cannot resume: the input is gone ({exc.strerror})") from None
    if not needed:
        if st.st_size != recorded["size"]:
            return (
                f"{path} changed since the run started ({recorded['size']:,} bytes, now {st.st_size:,}); the "
                "resume sent nothing from it (every batch planned had been uploaded): new records need a new run"
            )
        return None
    if st.st_size != recorded["size"]:
        was, now = recorded["size"], st.st_size
        raise InputError(path, f"cannot resume: the input changed since the run started ({was:,} bytes, now {now:,})")
    # a new modification time alone (a `touch`, a copy that kept the bytes) is no change: the resume
    # re-reads the input and checks every batch already planned against its journaled digest
    return None

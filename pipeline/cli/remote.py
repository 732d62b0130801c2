"""Commands that ask the API: ``imports list``, ``executions list``, ``executions errors``, ``cancel``.

They read ``api.url``, ``api.token_env`` and ``import.datamart_id`` from ``--config`` and the token
from the environment. An execution id alone does not say which document import it belongs to: give
``--import-id``, or the command looks for it in every import of the datamart (one request per
import, newest first).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any, BinaryIO

from pipeline import formats
from pipeline.cli.common import api_config, is_run_dir, ms_to_iso, open_client, print_json, print_table
from pipeline.client.api import ApiClient
from pipeline.client.redact import safe_text
from pipeline.config import Config, config_from_dict, load_config
from pipeline.engine.journal import load_run
from pipeline.engine.refusals import CommittedNdjson, RefusalMapper, download_error_file
from pipeline.engine.state import BatchState, apply_execution
from pipeline.errors import ApiError, InputError, LocalError, UsageError
from pipeline.reporting.exit_codes import EXIT_FAILURES, EXIT_OK

PENDING = "PENDING"


def imports_list_command(args: argparse.Namespace) -> int:
    config = api_config(args.config)

    async def go() -> list[dict[str, Any]]:
        async with open_client(config, allow_insecure_http=args.allow_insecure_http) as api:
            out = []
            async for imp in api.iter_imports(config.import_.datamart_id, keywords=args.keywords):
                out.append(imp)
            return out[-args.limit :] if args.limit else out

    imports = asyncio.run(go())
    if args.json:
        print_json(imports)
        return EXIT_OK
    rows = [
        (i.get("id"), i.get("document_type"), i.get("mime_type"), i.get("priority"), i.get("name")) for i in imports
    ]
    print_table(rows, ["id", "document_type", "mime_type", "priority", "name"])
    print(f"{len(imports)} document import(s) in datamart {config.import_.datamart_id}", file=sys.stderr)
    return EXIT_OK


def executions_list_command(args: argparse.Namespace) -> int:
    config = api_config(args.config)

    async def go() -> list[dict[str, Any]]:
        async with open_client(config, allow_insecure_http=args.allow_insecure_http) as api:
            out = []
            async for exe in api.iter_executions(config.import_.datamart_id, args.import_id):
                out.append(exe)
                if args.limit and len(out) >= args.limit:
                    break
            return out

    executions = asyncio.run(go())
    if args.json:
        print_json(executions)
        return EXIT_OK
    rows = []
    for x in executions:
        result, params = x.get("result") or {}, x.get("parameters") or {}
        rows.append(
            (
                x.get("id"),
                x.get("status"),
                ms_to_iso(x.get("creation_date")),
                _seconds(x.get("duration")),
                result.get("input_file_name") or params.get("input_file_name"),
                result.get("total_success"),
                result.get("total_failure"),
                "yes" if result.get("error_file_uri") else "",
            )
        )
    headers = ["id", "status", "created (UTC)", "duration", "file", "succeeded", "failed", "error file"]
    print_table(rows, headers)
    print(f"{len(executions)} execution(s) of import {args.import_id}, newest first", file=sys.stderr)
    return EXIT_OK


def _seconds(ms: Any) -> str | None:
    return f"{ms / 1000:,.1f} s" if isinstance(ms, int | float) and not isinstance(ms, bool) else None


async def find_execution(
    api: ApiClient, datamart_id: str, execution_id: str, import_id: str | None
) -> tuple[str, dict[str, Any]]:
    """The execution and its import id: asked directly, or looked for in every import (newest first)."""
    if import_id:
        return import_id, await api.get_execution(datamart_id, import_id, execution_id)
    imports = [i async for i in api.iter_imports(datamart_id)]
    for imp in reversed(imports):
        try:
            return str(imp["id"]), await api.get_execution(datamart_id, imp["id"], execution_id)
        except ApiError as exc:
            if exc.status != 404:
                raise
    raise UsageError(
        f"execution {execution_id} was not found in any of the {len(imports)} imports of datamart {datamart_id}"
    )


def executions_errors_command(args: argparse.Namespace) -> int:
    if getattr(args, "run", None):
        return _run_execution_errors(args)
    config = api_config(args.config)

    async def go() -> int:
        async with open_client(config, allow_insecure_http=args.allow_insecure_http) as api:
            dm = config.import_.datamart_id
            import_id, exe = await find_execution(api, dm, args.execution_id, args.import_id)
            result = exe.get("result") or {}
            uri = result.get("error_file_uri")
            if not uri:
                why = exe.get("status") if not result else f"total_failure {result.get('total_failure') or 0}"
                print(f"execution {args.execution_id} (import {import_id}) has no error file ({why})", file=sys.stderr)
                return EXIT_OK
            written = 0
            sink: BinaryIO
            if args.output:
                fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data
                sink = os.fdopen(fd, "wb")
            else:
                sink = sys.stdout.buffer
            try:
                async for chunk in api.download_data_file(uri):
                    sink.write(chunk)
                    written += len(chunk)
            finally:
                if args.output:
                    sink.close()
                else:
                    sink.flush()
            where = f" to {args.output}" if args.output else ""
            print(
                f"execution {args.execution_id}: {result.get('total_failure') or 0:,} failed records, "
                f"error file {written:,} bytes{where}",
                file=sys.stderr,
            )
            return EXIT_OK

    return asyncio.run(go())


# --- executions errors --run: source file and line ------------------------------------------------


class _PrintRows:
    """Mapped rows as ``file:line: reason`` lines (or unmapped entries as they came)."""

    def __init__(self, *, unmapped: bool = False) -> None:
        self.unmapped = unmapped
        self.count = 0

    def write(self, obj: dict[str, Any]) -> None:
        self.count += 1
        if self.unmapped:
            where = f"{obj['file']} lines {obj['first_line']}-{obj['last_line']}"
            print(f"not mapped (execution {obj['execution_id']}, {where}): {safe_text(obj['entry'])}", file=sys.stderr)
        else:
            print(f"{obj['file']}:{obj['line']}: {safe_text(str(obj['reason']))}")


def _run_execution_errors(args: argparse.Namespace) -> int:
    """An execution of a run: its error file mapped to source file and line (as in failed.ndjson)."""
    run_dir = Path(args.run)
    if not is_run_dir(args.run):
        raise InputError(args.run, "not a run directory (no journal.ndjson in it)")
    journaled = load_run(run_dir)
    config = load_config(args.config) if args.config else config_from_dict(journaled.started["config"])
    if config.uses_embedded_emulator:
        raise UsageError(f"{args.run} ran on the embedded emulator, which ended with the run: its error files are gone")
    state = journaled.state()
    batch = next((b for b in state.batches.values() if b.execution_id == args.execution_id), None)
    import_id = state.document_import.get("id")
    if batch is None or import_id is None:
        raise UsageError(f"execution {args.execution_id} is not one of the executions of the run in {args.run}")
    csv = state.document_import.get("mime_type") == formats.CSV

    async def go() -> int:
        async with open_client(config, allow_insecure_http=args.allow_insecure_http) as api:
            exe = await api.get_execution(config.import_.datamart_id, str(import_id), args.execution_id)
            apply_execution(batch, exe)
            if not batch.error_file_uri or not batch.total_failure:
                print(f"execution {args.execution_id} has no refused record ({batch.status})", file=sys.stderr)
                return EXIT_OK
            work_dir = run_dir / f"refusals.{os.getpid()}.tmp"
            try:
                try:
                    path = await download_error_file(api, batch, work_dir)
                except OSError as exc:
                    raise LocalError.from_os_error("cannot write the error file", work_dir, exc) from exc
                return _print_mapped(batch, run_dir, path, csv=csv, validated=config.batch.validate, output=args.output)
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)

    return asyncio.run(go())


def _print_mapped(
    batch: BatchState, run_dir: Path, error_file: Path, *, csv: bool, validated: bool, output: str | None
) -> int:
    sink: CommittedNdjson | _PrintRows = CommittedNdjson(Path(output)) if output else _PrintRows()
    unmapped = _PrintRows(unmapped=True)
    try:
        mapper = RefusalMapper(run_dir, [batch], csv=csv, validated=validated, failed=sink, unmapped=unmapped)
        try:
            mapper.map_batch(batch, error_file)
        finally:
            mapper.close()
        if isinstance(sink, CommittedNdjson):
            sink.commit()
    finally:
        if isinstance(sink, CommittedNdjson):
            sink.discard()
    for warning in mapper.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    where = f", written to {output}" if output else ""
    print(
        f"execution {batch.execution_id}: {sink.count:,} refused records mapped to their source lines{where}"
        + (f"; {unmapped.count:,} entries not mapped" if unmapped.count else ""),
        file=sys.stderr,
    )
    return EXIT_OK


# --- cancel ---------------------------------------------------------------------------------------


def _run_dir_targets(run_dir: Path, config_path: str | None) -> tuple[Config, str, list[str]]:
    """The config, import id and execution ids a run's journal knows."""
    journaled = load_run(run_dir)
    config = load_config(config_path) if config_path else config_from_dict(journaled.started["config"])
    state = journaled.state()
    import_id = state.document_import.get("id")
    ids = [b.execution_id for b in sorted(state.batches.values(), key=lambda b: b.number) if b.execution_id]
    if import_id is None:
        raise InputError(run_dir, "the run never got a document import: nothing to cancel")
    return config, str(import_id), ids


def cancel_command(args: argparse.Namespace) -> int:
    if is_run_dir(args.target):
        config, import_id, ids = _run_dir_targets(Path(args.target), args.config)
        if config.uses_embedded_emulator:
            raise UsageError(
                f"{args.target} ran on the embedded emulator, which ended with the run: nothing is left to cancel"
            )
    else:
        if Path(args.target).is_dir():
            raise InputError(args.target, "not a run directory (no journal.ndjson in it)")
        config, import_id, ids = api_config(args.config), args.import_id, [args.target]

    async def go() -> int:
        async with open_client(config, allow_insecure_http=args.allow_insecure_http) as api:
            dm = config.import_.datamart_id
            imp: str | None = import_id
            canceled = left = failed = 0
            for exe_id in ids:
                if imp is None:
                    imp, exe = await find_execution(api, dm, exe_id, None)
                else:
                    exe = await api.get_execution(dm, imp, exe_id)
                status = exe.get("status")
                if status != PENDING:
                    left += 1
                    if args.verbose or len(ids) == 1:
                        print(f"execution {exe_id}: {status}, not PENDING: left alone")
                    continue
                try:
                    await api.cancel_execution(dm, imp, exe_id)
                except ApiError as exc:
                    if exc.status == 400:  # started between the look and the cancel
                        now = (await api.get_execution(dm, imp, exe_id)).get("status")
                        print(f"execution {exe_id}: {now} before it could be canceled: left alone")
                        left += 1
                        continue
                    print(f"execution {exe_id}: cancel failed: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                canceled += 1
                print(f"execution {exe_id}: CANCELED")
            print(f"canceled {canceled}, left alone {left} (not PENDING), failed {failed} (import {imp})")
            return EXIT_FAILURES if failed else EXIT_OK

    return asyncio.run(go())

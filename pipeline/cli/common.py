"""What the commands share: the API client from a config, tables for the terminal, JSON output."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from pipeline.api_token import check_transport_security, read_token
from pipeline.client.api import ApiClient
from pipeline.client.retry import RetryPolicy
from pipeline.config import Config, check_target
from pipeline.errors import UsageError

#: interactive commands retry less than a run: an operator is waiting
COMMAND_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.5, max_delay_s=5.0, max_retry_after_s=30.0)


def api_config(path: str | None) -> Config:
    """The config of a command that talks to the API: it must name a real server. The file is
    ``path`` or the one found (``settings.find_config_file``), under the ``PIPELINE_*`` variables."""
    from pipeline.cli.settings import load_settings

    settings = load_settings(path)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    config = settings.config
    if config.uses_embedded_emulator or not config.api.url:
        raise _embedded_error(path)
    check_target(config)  # against the API, the datamart must be named
    return config


def _embedded_error(path: str | None) -> UsageError:
    where = f"in {path}" if path else "(no --config given)"
    err = UsageError(f'api.url is "embedded" or not set {where}: this command needs a running API to talk to')
    err.hint = "pass --config FILE whose api.url names the API (or a 'pipeline emulator' URL)"
    return err


def open_client(config: Config, *, allow_insecure_http: bool = False, token: str | None = None) -> ApiClient:
    """An ``ApiClient`` (to use with ``async with``) for ``config``; the token from its env var."""
    if config.uses_embedded_emulator or not config.api.url:
        raise _embedded_error(None)
    url = config.api.url.rstrip("/")
    check_transport_security(url, allow_insecure_http)
    token = token or read_token(config)
    return ApiClient(url, token, timeout_s=min(config.api.timeout_s, 60), retry=COMMAND_RETRY)


def token_of(config: Config) -> str | None:
    """The token, if its variable is set (to redact it from anything printed)."""
    return os.environ.get(config.api.token_env, "").strip() or None


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO | None = None) -> None:
    """A plain aligned table (no control characters: fine for a terminal and for a log)."""
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def print_json(data: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def ms_to_iso(value: Any) -> str | None:
    from datetime import UTC, datetime

    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return None


def is_run_dir(value: str) -> bool:
    return (Path(value) / "journal.ndjson").is_file()

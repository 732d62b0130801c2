"""``pipeline config show``: the effective settings, each with where it came from (default, the
config file, a ``PIPELINE_*`` variable, a flag). The token is never shown: only whether the
variable ``api.token_env`` names is set."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TypedDict

from pipeline.cli.common import print_json, print_table
from pipeline.cli.settings import Settings, load_settings
from pipeline.config_keys import config_keys
from pipeline.reporting.exit_codes import EXIT_OK


class ShownKey(TypedDict):
    """One key (``--json``: ``keys``)."""

    key: str
    value: Any
    source: str  # settings.SourceKind: default, file, environment, flag
    origin: str  # the file's path, the variable's or the flag's name ("" for a default)
    env: str  # the variable that sets it


def shown_keys(settings: Settings) -> list[ShownKey]:
    sections = settings.config.to_dict()
    rows: list[ShownKey] = []
    for key in config_keys():
        origin = settings.origin(key.dotted)
        value = sections[key.section][key.name]
        rows.append({"key": key.dotted, "value": value, "source": origin.kind, "origin": origin.name, "env": key.env})
    return rows


def _text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if value != "" else '""'


def config_show_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    rows = shown_keys(settings)
    token_env = settings.config.api.token_env
    token_set = bool(os.environ.get(token_env, "").strip())
    if args.json:
        print_json(
            {
                "config_file": str(settings.file) if settings.file else None,
                "found_as": settings.found_as or None,
                "keys": rows,
                "token": {"env": token_env, "set": token_set},
                "warnings": settings.warnings,
            }
        )
        return EXIT_OK
    print(f"config file: {settings.describe_file()}")
    print_table(
        [(r["key"], _text(r["value"]), f"{r['source']} {r['origin']}".strip()) for r in rows],
        ["key", "value", "source"],
    )
    state = "set" if token_set else "NOT set"
    print(f"token: the environment variable {token_env} is {state} (its value is never shown)")
    print("precedence: flag > environment (PIPELINE_<SECTION>_<KEY>) > config file > default")
    return EXIT_OK

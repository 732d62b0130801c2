"""The settings a command runs with, and where each came from: built-in default < config file <
environment (``PIPELINE_<SECTION>_<KEY>``) < command-line flag (``--url``...).

The names of the variables and the flags derive from the config's dataclasses
(``config.config_keys``: a key's ``Flag`` is in its field's metadata), so a new key is settable from
the environment at once. The file is ``--config FILE`` when given, otherwise the first that exists
of ``./pipeline.toml`` and ``$XDG_CONFIG_HOME/pipeline/config.toml`` (``~/.config/...``). A bad
value is refused with the message of the TOML check, prefixed by its origin:
``PIPELINE_BATCH_MAX_BYTES: must be between ...``, ``--max-bytes: ...``,
``import.toml: batch.max_bytes: ...``. The token is never a setting: it stays in the variable
``api.token_env`` names.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipeline.config import Config, config_from_dict, read_config_file
from pipeline.config_keys import ConfigKey, config_keys, value_from_text
from pipeline.errors import ConfigError

CWD_CONFIG = "pipeline.toml"
USER_CONFIG = Path("pipeline") / "config.toml"  # under $XDG_CONFIG_HOME (default ~/.config)
ENV_PREFIX = "PIPELINE_"


class SourceKind(StrEnum):
    """Where a setting's value came from, weakest first."""

    DEFAULT = "default"
    FILE = "file"
    ENVIRONMENT = "environment"
    FLAG = "flag"


@dataclass(frozen=True)
class Origin:
    kind: SourceKind
    name: str = ""  # the file's path, the variable's or the flag's name

    def where(self, key: str) -> str | None:
        """The prefix of an error message about ``key`` from here (``None``: the default)."""
        if self.kind == SourceKind.FILE:
            return f"{self.name}: {key}"
        return self.name or None

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" if self.name else str(self.kind)


DEFAULT = Origin(SourceKind.DEFAULT)


@dataclass
class Settings:
    """The checked config, each key's origin (dotted key -> ``Origin``), the file read (and how it
    was found), and warnings for the user (unknown or empty ``PIPELINE_*`` variables)."""

    config: Config
    origins: dict[str, Origin]
    file: Path | None = None
    found_as: str = ""
    warnings: list[str] = field(default_factory=list)

    def origin(self, key: str) -> Origin:
        return self.origins.get(key, DEFAULT)

    def origin_record(self) -> dict[str, Any]:
        """For the report's ``config_origin``: the file, and every key not left at its default."""
        set_by = {key: o.name for key, o in self.origins.items() if o.kind != SourceKind.DEFAULT}
        return {"file": str(self.file) if self.file else None, "found_as": self.found_as or None, "set_by": set_by}

    def describe_file(self) -> str:
        if self.file is None:
            return "no config file (built-in defaults, the environment and the flags)"
        return f"{self.file} ({self.found_as})"


# --- the flags ------------------------------------------------------------------------------------


def flag_dest(key: ConfigKey) -> str:
    return f"setting__{key.section}__{key.name}"


def add_setting_flags(parser: argparse.ArgumentParser, *, validate: bool = False) -> None:
    """The flags of the keys that have one (``validate``: only those ``pipeline validate`` uses)."""
    group = parser.add_argument_group("settings (flag > environment PIPELINE_<SECTION>_<KEY> > config file > default)")
    for key in config_keys():
        flag = key.flag
        if flag is None or (validate and not flag.validate):
            continue
        group.add_argument(flag.name, dest=flag_dest(key), metavar=flag.metavar, help=f"{flag.help} ({key.env})")


# --- the file -------------------------------------------------------------------------------------


def user_config_path(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is ignored
        return Path(xdg) / USER_CONFIG
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".config" / USER_CONFIG


def find_config_file(given: str | None, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """The config file to read, and how it was found."""
    if given:
        return Path(given), "given with --config"
    if Path(CWD_CONFIG).is_file():
        return Path(CWD_CONFIG), "found in the current directory"
    user = user_config_path(environ)
    if user.is_file():
        return user, "the user's config (XDG_CONFIG_HOME, default ~/.config)"
    return None, ""


# --- the layers -----------------------------------------------------------------------------------


def _value(key: ConfigKey, text: str, origin: Origin) -> Any:
    try:
        return value_from_text(key, text)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.message, where=origin.where(exc.key)) from None


def _unknown_variables(environ: Mapping[str, str], keys: list[ConfigKey], token_env: str) -> list[str]:
    known = {k.env for k in keys}
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name == token_env:
            continue
        tails = sorted(k.removeprefix(ENV_PREFIX) for k in known)  # the shared prefix would make all near
        near = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), tails, n=1, cutoff=0.6)
        hint = f"did you mean {ENV_PREFIX}{near[0]}?" if near else "`pipeline config show` lists the settings"
        warnings.append(f"{name} is set but is no setting (ignored); {hint}")
    return warnings


def _with_origin(exc: ConfigError, origins: dict[str, Origin], file: Path | None) -> ConfigError:
    if exc.where or exc.key == "--config":
        return exc
    origin = origins.get(exc.key) or (Origin(SourceKind.FILE, str(file)) if file is not None else None)
    where = origin.where(exc.key) if origin is not None else None
    return ConfigError(exc.key, exc.message, where=where) if where else exc


def load_settings(
    config_path: str | None, args: argparse.Namespace | None = None, environ: Mapping[str, str] = os.environ
) -> Settings:
    """The effective settings: the config file (given or found), then ``PIPELINE_*`` variables,
    then the flags in ``args`` (those ``add_setting_flags`` added), checked as one config."""
    keys = config_keys()
    file, found_as = find_config_file(config_path, environ)
    data = read_config_file(file) if file is not None else {}
    merged: dict[str, Any] = {s: dict(v) if isinstance(v, dict) else v for s, v in data.items()}
    origins = {
        f"{section}.{name}": Origin(SourceKind.FILE, str(file))
        for section, values in data.items()
        if isinstance(values, dict)
        for name in values
    }
    warnings: list[str] = []

    def put(key: ConfigKey, text: str, origin: Origin) -> None:
        section = merged.setdefault(key.section, {})
        if isinstance(section, dict):  # else the file's bad section is refused below, naming the file
            section[key.name] = _value(key, text, origin)
            origins[key.dotted] = origin

    for key in keys:
        text = environ.get(key.env)
        if text is not None and not text.strip():
            warnings.append(f"{key.env} is set but empty: ignored")
        elif text is not None:
            put(key, text, Origin(SourceKind.ENVIRONMENT, key.env))
    for key in keys:
        given = getattr(args, flag_dest(key), None) if args is not None and key.flag else None
        if given is not None and key.flag is not None:
            if not given.strip():
                raise ConfigError(key.dotted, "must not be empty", where=key.flag.name)
            put(key, given, Origin(SourceKind.FLAG, key.flag.name))
    try:
        config = config_from_dict(merged)
    except ConfigError as exc:
        raise _with_origin(exc, origins, file) from None
    warnings += _unknown_variables(environ, keys, config.api.token_env)
    return Settings(config, origins, file, found_as, warnings)

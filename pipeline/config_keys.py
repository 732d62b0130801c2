"""The config's keys as one table: each key's section, name, field, flag, environment variable and
default, and a key's value read from the text of a variable or a flag.

Apart from ``config``, which reads and checks a TOML file: this table is what the command line
derives its names from (``cli/settings``: ``PIPELINE_<SECTION>_<KEY>`` and the flags;
``cli/config_show``), each text value checked as the same key of a file would be.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipeline.config import Config, Flag, checked_value, section_attr, section_name
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class ConfigKey:
    """One config key: its section (as in TOML), its name and its dataclass field."""

    section: str
    name: str
    field: dataclasses.Field[Any]

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        """The environment variable that sets it: ``PIPELINE_<SECTION>_<KEY>``."""
        return f"PIPELINE_{self.section}_{self.name}".upper()

    @property
    def flag(self) -> Flag | None:
        flag: Flag | None = self.field.metadata.get("flag")
        return flag

    @property
    def default(self) -> Any:
        return getattr(getattr(Config(), section_attr(self.section)), self.name)


def config_keys() -> list[ConfigKey]:
    """Every key of the config, section by section, in the dataclasses' order."""
    return [
        ConfigKey(section_name(s.name), f.name, f)
        for s in dataclasses.fields(Config)
        for f in dataclasses.fields(type(getattr(Config(), s.name)))
    ]


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def value_from_text(key: ConfigKey, text: str) -> Any:
    """A key's value from the text of an environment variable or a flag, checked as a TOML value
    would be (``ConfigError`` on the dotted key; the caller names where the text came from)."""
    base = str(key.field.type).split(" |")[0]
    raw: Any = text
    if base == "int":
        try:
            raw = int(text.replace("_", ""))
        except ValueError:
            raise ConfigError(key.dotted, f"must be an integer, got {text!r}") from None
    elif base == "float":
        try:
            raw = float(text)
        except ValueError:
            raise ConfigError(key.dotted, f"must be a number, got {text!r}") from None
    elif base == "bool":
        if text.strip().lower() not in _TRUE + _FALSE:
            raise ConfigError(key.dotted, f"must be true or false, got {text!r}")
        raw = text.strip().lower() in _TRUE
    return checked_value(key.dotted, raw, key.field)

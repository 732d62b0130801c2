"""The sweep: ``section.key=v1,v2,...`` axes, their cartesian product as points, each a config.

``--sweep upload.concurrency=2,4,8,16 batch.max_bytes=10MB,50MB,100MB`` gives 12 points, in the
order the axes are written (the last axis varies fastest). A value is read by the type of its
config key (sizes with units for integers: ``10MB``); ``Config.replace`` checks its range.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.bench.sizes import parse_size
from pipeline.config import Config
from pipeline.errors import ConfigError, UsageError

#: One point's settings: (section, key) -> value, in the axes' order.
Settings = tuple[tuple[str, str, Any], ...]


@dataclass(frozen=True)
class Point:
    """One point of the sweep (no settings: the config as it is)."""

    settings: Settings

    @property
    def label(self) -> str:
        if not self.settings:
            return "defaults"
        return " ".join(f"{key}={_show(section, key, value)}" for section, key, value in self.settings)

    def as_dict(self) -> dict[str, Any]:
        return {f"{section}.{key}": value for section, key, value in self.settings}

    def apply(self, config: Config) -> Config:
        changes: dict[str, dict[str, Any]] = {}
        for section, key, value in self.settings:
            changes.setdefault(section, {})[key] = value
        return config.replace(**changes) if changes else config


def _show(section: str, key: str, value: Any) -> str:
    if key.endswith("bytes") and isinstance(value, int) and value >= 10**6 and value % 10**6 == 0:
        return f"{value // 10**6}MB"
    return str(value)


def _field(dotted: str) -> tuple[str, str, str]:
    section, _, key = dotted.partition(".")
    attr = "import_" if section == "import" else section
    sections = {f.name: f for f in dataclasses.fields(Config)}
    if not key or attr not in sections:
        raise UsageError(f"--sweep {dotted}: not section.key (e.g. upload.concurrency, batch.max_bytes)")
    cls = type(getattr(Config(), attr))
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    if key not in fields:
        raise UsageError(f"--sweep {dotted}: unknown key of [{section}]; known: {', '.join(fields)}")
    return section, key, fields[key].split(" |")[0]


def _value(dotted: str, kind: str, text: str) -> Any:
    try:
        if kind == "int":
            return parse_size(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{text!r} is not true or false")
            return text.lower() == "true"
    except ValueError as exc:
        raise UsageError(f"--sweep {dotted}: {exc}") from None
    return text


def parse_axes(specs: Sequence[str]) -> list[list[tuple[str, str, Any]]]:
    """Each ``section.key=v1,v2`` as its list of (section, key, value)."""
    axes = []
    seen = set()
    for spec in specs:
        dotted, eq, values = spec.partition("=")
        if not eq or not values.strip():
            raise UsageError(f"--sweep {spec}: not section.key=value,value (e.g. upload.concurrency=2,4,8)")
        section, key, kind = _field(dotted.strip())
        if (section, key) in seen:
            raise UsageError(f"--sweep: {dotted.strip()} given twice")
        seen.add((section, key))
        texts = [v.strip() for v in values.split(",") if v.strip()]
        axes.append([(section, key, _value(dotted, kind, t)) for t in texts])
    return axes


def points(specs: Sequence[str], config: Config) -> list[Point]:
    """Every point of the sweep, checked against ``config`` (an out-of-range value: a usage error
    before anything is generated or sent); one point of the config itself without a sweep."""
    found = [Point(tuple(combo)) for combo in itertools.product(*parse_axes(specs))] if specs else [Point(())]
    for point in found:
        try:
            point.apply(config)
        except ConfigError as exc:
            raise UsageError(f"--sweep {point.label}: {exc}") from None
    return found

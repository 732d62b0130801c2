"""The run configuration: a TOML file, typed, frozen and checked before anything is sent.

Every section is a frozen, keyword-only dataclass with named defaults; ``Config.replace`` returns
a changed copy. ``load_config`` rejects unknown keys, wrong types and out-of-range values with a
``ConfigError`` naming the dotted key. The API token is never part of the config: the config only
names the environment variable that holds it (``api.token_env``), so printing a config is safe;
``api_token`` reads that variable and checks the token. The keys as one table, for the command
line's names, are ``config_keys``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline import formats
from pipeline.errors import ConfigError

MAX_UPLOAD_BYTES = formats.MAX_UPLOAD_BYTES  # the API's limit per uploaded file
EMBEDDED = "embedded"


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"range": (lo, hi)}


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


@dataclass(frozen=True)
class Flag:
    """The command-line flag of a key (``--url``); ``validate``: ``pipeline validate`` takes it too."""

    name: str
    metavar: str
    help: str
    validate: bool = False


def _flag(name: str, metavar: str, help: str, *, validate: bool = False) -> dict[str, Any]:
    return {"flag": Flag(name, metavar, help, validate)}


#: the mediarithmics API, ``api.url`` by default
MICS_API_URL = "https://api.mediarithmics.com"
#: ``import.datamart_id`` by default: the embedded emulator's; a run against any other non-loopback
#: target refuses it (``check_target``): the datamart is the user's to name
DEFAULT_DATAMART_ID = "1000"


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    # the API's base URL, or "embedded" (the emulator, on purpose: only with --emulator on the command line)
    url: str = field(default=MICS_API_URL, metadata=_flag("--url", "URL", "api.url: the API's base URL"))
    token_env: str = "MICS_API_TOKEN"
    timeout_s: float = field(default=300.0, metadata=_range(1, 86_400))


@dataclass(frozen=True, kw_only=True)
class ImportSettings:
    datamart_id: str = field(default=DEFAULT_DATAMART_ID, metadata=_flag("--datamart", "ID", "import.datamart_id"))
    document_type: str = field(
        default="USER_ACTIVITY",
        metadata=_choices(*formats.DOCUMENT_TYPES)
        | _flag("--document-type", "TYPE", "import.document_type", validate=True),
    )
    mime_type: str = field(
        default=formats.NDJSON,
        metadata=_choices(*formats.CONTENT_TYPES) | _flag("--mime-type", "TYPE", "import.mime_type", validate=True),
    )
    encoding: str = field(default="utf-8", metadata=_choices("utf-8"))
    priority: str = field(default="MEDIUM", metadata=_choices(*sorted(formats.PRIORITIES)))
    name: str = "pipeline {date} {run_id}"
    id: str | None = field(default=None, metadata=_flag("--import-id", "ID", "import.id: upload into this import"))


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    max_bytes: int = field(
        default=MAX_UPLOAD_BYTES,
        metadata=_range(1024, MAX_UPLOAD_BYTES) | _flag("--max-bytes", "N", "batch.max_bytes", validate=True),
    )
    max_lines: int = field(default=0, metadata=_range(0, None))
    validate: bool = True
    # "adaptive": sizes chosen from the inputs' total size and upload.concurrency (smaller first and
    # last batches, enough batches for the uploads in flight), at most max_bytes; "fixed": max_bytes
    sizing: str = field(default="adaptive", metadata=_choices("adaptive", "fixed"))
    # the error budget: rejected + refused records a run may have and still exit 0; "10" or "1%"
    # of the records read (engine/budget.py checks it); "0": none
    max_errors: str = "0"


@dataclass(frozen=True, kw_only=True)
class UploadSettings:
    concurrency: int = field(  # the most uploads in flight
        default=16, metadata=_range(1, 64) | _flag("--concurrency", "N", "upload.concurrency")
    )
    adaptive: bool = True  # the uploads in flight adapt between 1 and concurrency (false: always concurrency)
    max_requests_per_s: float = field(default=0.0, metadata=_range(0, None))  # 0: no request-rate budget
    max_attempts: int = field(default=100, metadata=_range(1, 1000))
    retry_window_s: float = field(default=900.0, metadata=_range(0, None))
    settle_window_s: float = field(default=0.0, metadata=_range(0, None))  # 0: max(60 s, api.timeout_s)
    body: str = field(default="multipart", metadata=_choices("multipart", "raw"))


@dataclass(frozen=True, kw_only=True)
class PollSettings:
    interval_s: float = field(default=1.0, metadata=_range(0, 3600))
    max_interval_s: float = field(default=60.0, metadata=_range(0, 3600))
    timeout_s: float = field(default=6 * 3600.0, metadata=_range(0, None))


@dataclass(frozen=True, kw_only=True)
class ReportSettings:
    dir: str = ""  # "": $XDG_STATE_HOME/pipeline/runs, else ~/.local/state/pipeline/runs (see runs_base)


_SECTION_CLASSES: dict[str, type] = {
    "api": ApiSettings,
    "import_": ImportSettings,
    "batch": BatchSettings,
    "upload": UploadSettings,
    "poll": PollSettings,
    "report": ReportSettings,
}


@dataclass(frozen=True, kw_only=True)
class Config:
    api: ApiSettings = field(default_factory=ApiSettings)
    import_: ImportSettings = field(default_factory=ImportSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    upload: UploadSettings = field(default_factory=UploadSettings)
    poll: PollSettings = field(default_factory=PollSettings)
    report: ReportSettings = field(default_factory=ReportSettings)

    def __post_init__(self) -> None:
        """``Config(api={"url": ...})``: a section given as a dict is converted, its keys checked as
        in a TOML file (``Config(import_={...})`` for ``[import]``); anything else that is not the
        section's dataclass is a ``ConfigError`` here, not an ``AttributeError`` mid-run."""
        for f in dataclasses.fields(self):
            cls = _SECTION_CLASSES.get(f.name)
            value = getattr(self, f.name)
            if cls is None:
                continue
            if isinstance(value, Mapping):
                object.__setattr__(self, f.name, _build_section(section_name(f.name), cls, dict(value)))
            elif not isinstance(value, cls):
                raise ConfigError(
                    section_name(f.name), f"must be a dict of its keys or a {cls.__name__}, got {type(value).__name__}"
                )

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections, or ``section={"key": value}`` changes, replaced."""
        changes = {}
        for name, value in sections.items():
            attr = section_attr(name)
            if isinstance(value, dict):
                value = _build_section(name, type(getattr(self, attr)), value, base=getattr(self, attr))
            changes[attr] = value
        result = dataclasses.replace(self, **changes)
        check_consistency(result)
        return result

    @property
    def uses_embedded_emulator(self) -> bool:
        return self.api.url == EMBEDDED

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The config as TOML-shaped sections (no secret in it: the token is not part of it)."""
        return {section_name(f.name): dataclasses.asdict(getattr(self, f.name)) for f in _sections()}


def section_attr(section: str) -> str:
    """The ``Config`` attribute of a TOML section (``import`` is ``import_``)."""
    return "import_" if section == "import" else section


def section_name(attr: str) -> str:
    """The TOML section of a ``Config`` attribute (``import_`` is ``import``)."""
    return "import" if attr == "import_" else attr


def _sections() -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(Config)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[tp]


def _coerce(key: str, raw: Any, annotation: str) -> Any:
    """Check ``raw`` against a field's annotation (as a string, from __future__ annotations)."""
    optional = annotation.endswith("| None")
    base = {"int": int, "float": float, "bool": bool, "str": str}[annotation.split(" |")[0]]
    if raw is None and optional:
        return None
    if base is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if base is str and optional and isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)  # ids may be written as numbers
    if (
        base is str
        and key.endswith(("datamart_id", "max_errors"))
        and isinstance(raw, int)
        and not isinstance(raw, bool)
    ):
        return str(raw)
    if not isinstance(raw, base) or (base is not bool and isinstance(raw, bool)):
        raise ConfigError(key, f"must be {_type_name(base)}, got {type(raw).__name__} {raw!r}")
    return raw


def _check_field(key: str, value: Any, f: dataclasses.Field[Any]) -> None:
    if value is None:
        return
    if "range" in f.metadata:
        lo, hi = f.metadata["range"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"between {lo:,} and {hi:,}" if hi is not None else f"at least {lo:,}"
            raise ConfigError(key, f"must be {bounds}, got {value:,}")
    if "choices" in f.metadata and value not in f.metadata["choices"]:
        hint = formats.spelling_hint(value)  # USER_DEVICE_POINT_DELETION: the plural, please
        raise ConfigError(key, f"must be one of {', '.join(f.metadata['choices'])}, got {value!r}{hint}")


def checked_value(key: str, raw: Any, f: dataclasses.Field[Any]) -> Any:
    """A value of the dotted ``key`` (field ``f``) as a TOML file or the text of a variable or a flag
    gives it, converted and checked against the field's type, range and choices (``ConfigError``)."""
    value = _coerce(key, raw, str(f.type))
    _check_field(key, value, f)
    return value


def _build_section(name: str, cls: type, values: dict[str, Any], base: Any = None) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        dotted = f"{name}.{key}"
        if key not in known:
            raise ConfigError(dotted, f"unknown key; known keys of [{name}]: {', '.join(known)}")
        kwargs[key] = checked_value(dotted, raw, known[key])
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def check_consistency(config: Config) -> None:
    """Rules that involve several keys."""
    imp = config.import_
    problem = formats.check_import_settings(imp.document_type, imp.mime_type, imp.priority)
    if problem:
        raise ConfigError(f"import.{problem[0]}", problem[1])
    if config.poll.max_interval_s < config.poll.interval_s:
        raise ConfigError("poll.max_interval_s", "must be at least poll.interval_s")
    if not imp.id and not imp.name.strip():
        raise ConfigError("import.name", "give a name template or an existing import id")
    try:
        imp.name.format(date="2026-01-01", run_id="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("import.name", f"bad template ({exc}); use {{date}} and {{run_id}}") from None
    if config.api.url not in ("", EMBEDDED):
        parts = urlsplit(config.api.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("api.url", f'must be an http(s) URL or "embedded", got {config.api.url!r}')
    if not config.api.token_env.strip():
        raise ConfigError("api.token_env", "must name an environment variable")


def check_target(config: Config) -> None:
    """A run needs somewhere to upload, and its datamart named: ``api.url`` set empty is a usage error,
    never a silent default (the embedded emulator used to be the default, and a run with no config
    'succeeded'); against the API (any non-loopback target) the default datamart id is refused."""
    if not config.api.url:
        raise ConfigError(
            "api.url",
            f"not set: set it to the API's base URL ({MICS_API_URL}), with the API token in "
            f"the environment variable {config.api.token_env}, "
            "or pass --emulator to try the embedded emulator (which imports nothing into mediarithmics)",
        )
    url = config.api.url
    if (
        not config.uses_embedded_emulator
        and not is_loopback_url(url)
        and config.import_.datamart_id == DEFAULT_DATAMART_ID
    ):
        raise ConfigError(
            "import.datamart_id",
            f"not set (the default {DEFAULT_DATAMART_ID} is the embedded emulator's): a run against {url} needs your "
            "datamart's id (--datamart, PIPELINE_IMPORT_DATAMART_ID or import.datamart_id) and the API token in the "
            f"environment variable {config.api.token_env}; or pass --emulator to try the embedded emulator (which "
            "imports nothing into mediarithmics)",
        )


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a checked Config from TOML-shaped data (``{"api": {...}, "import": {...}, ...}``)."""
    sections = {section_name(f.name): f for f in _sections()}
    kwargs = {}
    for name, values in data.items():
        if name not in sections:
            raise ConfigError(name, f"unknown section; known sections: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ConfigError(name, "must be a table ([section])")
        cls = type(getattr(Config(), section_attr(name)))
        kwargs[section_attr(name)] = _build_section(name, cls, values)
    config = Config(**kwargs)
    check_consistency(config)
    return config


def load_config(path: str | Path | None) -> Config:
    """Read and check a TOML config file; ``None`` gives the built-in defaults (no ``api.url``)."""
    return config_from_dict({} if path is None else read_config_file(path))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The TOML data of a config file, not checked yet (``config_from_dict`` checks it)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("--config", f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError("--config", f"{path}: cannot read ({exc.strerror})") from None


def runs_base(config: Config, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the run directories go: ``report.dir`` when set (``~`` expanded), else the user's state
    directory, ``$XDG_STATE_HOME/pipeline/runs`` (``~/.local/state/pipeline/runs`` when it is unset
    or relative, as the XDG spec says). Not the current directory: under cron that is ``$HOME``, and
    the runs hold personal data (``rejects.ndjson``)."""
    if config.report.dir:
        return Path(config.report.dir).expanduser()
    state = environ.get("XDG_STATE_HOME", "")
    if not (state and Path(state).is_absolute()):
        state = str(Path(environ.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state) / "pipeline" / "runs"


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")

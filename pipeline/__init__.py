"""pipeline: bulk import of large files into the mediarithmics document-import API.

Library use (the CLI calls the same functions)::

    import pipeline
    config = pipeline.load_config("import.toml")          # or pipeline.Config() for the defaults
    report = pipeline.run(config, ["exports/2026-11-27/"])  # returns the report dict
    print(report["outcome"], report["records"])

``run_async`` / ``resume_async`` are the coroutine twins, for code already inside an event loop.
This module holds no logic: it re-exports the public API (runs start in ``engine/start.py``).
The config and the engine are imported on first use of their names, so that a process that only
needs a part of the package (a validation worker imports the record checks) does not pay for
asyncio and the config's classes (about 50 ms at each worker's start).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, InputError, LocalError, PipelineError, ServiceError, UsageError

if TYPE_CHECKING:
    from pipeline.config import Config, load_config
    from pipeline.engine.runner import RunOptions
    from pipeline.engine.start import resume, resume_async, run, run_async

__version__ = "0.1.0"
__all__ = [
    "Config",
    "ConfigError",
    "InputError",
    "LocalError",
    "PipelineError",
    "RunOptions",
    "ServiceError",
    "UsageError",
    "load_config",
    "resume",
    "resume_async",
    "run",
    "run_async",
]


#: the public names imported on first use, and their modules
_LAZY = {
    "Config": "pipeline.config",
    "load_config": "pipeline.config",
    "RunOptions": "pipeline.engine.runner",
    "resume": "pipeline.engine.start",
    "resume_async": "pipeline.engine.start",
    "run": "pipeline.engine.start",
    "run_async": "pipeline.engine.start",
}


def __getattr__(name: str) -> Any:
    """A public name of the config or the engine, imported on first use (``import pipeline`` stays light)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value

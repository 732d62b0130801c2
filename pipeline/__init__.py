"""pipeline: bulk import of large files into the mediarithmics document-import API.

Library use (the CLI calls the same functions)::

    import pipeline
    config = pipeline.load_config("import.toml")          # or pipeline.Config() for the defaults
    report = pipeline.run(config, ["exports/2026-11-27/"])  # returns the report dict
    print(report["outcome"], report["records"])

``run_async`` / ``resume_async`` are the coroutine twins, for code already inside an event loop.
This module holds no logic: it re-exports the public API (runs start in ``engine/start.py``).
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Config, load_config
from pipeline.engine.start import resume, resume_async, run, run_async
from pipeline.errors import ConfigError, InputError, LocalError, PipelineError, ServiceError, UsageError

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


def __getattr__(name: str) -> Any:
    """``RunOptions`` is imported on first use: it pulls in the engine (``import pipeline`` stays light)."""
    if name == "RunOptions":
        from pipeline.engine.runner import RunOptions

        return RunOptions
    raise AttributeError(name)

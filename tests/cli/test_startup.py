"""Start-up cost: ``pipeline run`` must not import what it does not use.

A run against a real URL needs aiohttp's client, not its server (the emulator), nor rich (the
live display, only on a terminal), nor multiprocessing (validation workers, only for big files).
Each of these costs tens of milliseconds on every run; this test keeps them lazy.
"""

from __future__ import annotations

import subprocess
import sys

LAZY = ("aiohttp.web", "rich", "multiprocessing", "pipeline.emulator.server", "pipeline.reporting.live")


def _imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_run_command_path_imports_nothing_lazy() -> None:
    assert _imported_after("import pipeline.cli.entry, pipeline.cli.run, pipeline.engine.runner") == []


def test_parser_with_emulator_options_does_not_import_the_server() -> None:
    assert _imported_after("from pipeline.cli.parser import build_parser; build_parser()") == []


def test_the_emulator_is_still_importable_from_the_package() -> None:
    code = "from pipeline.emulator import running_emulator, serve, Emulator"
    assert "pipeline.emulator.server" in _imported_after(code)

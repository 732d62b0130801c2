"""The embedded emulator of the mediarithmics document-import API (aiohttp).

    from pipeline.emulator import EmulatorOptions, running_emulator
    async with running_emulator(EmulatorOptions(token="t0k", process_ms=0)) as emu:
        emu.base_url, emu.token, emu.accounting

It follows ``docs/API.md``. Where that file guesses, the choices are written in the docstrings
of ``app`` (routes, envelopes, pagination, cancel, error file), ``upload`` (upload forms, limits,
order of checks), ``intake`` (line numbers, blank lines, CSV records), ``store`` (execution
fields), ``processor`` (status progression), ``listing`` (pagination), ``faults`` (fault kinds)
and ``state`` (server clock, token revocation, outages: ``emu.state.restore_token()``,
``emu.state.set_outage(on)``).
"""

from typing import Any

from pipeline.emulator.accounting import Accounting, Upload
from pipeline.emulator.faults import FaultPlan, parse_faults
from pipeline.emulator.options import EmulatorOptions

_SERVER_NAMES = frozenset({"Emulator", "running_emulator", "serve"})


def __getattr__(name: str) -> Any:
    """The server (and aiohttp.web with it) is imported on first use: ``pipeline run`` against a
    real URL and ``pipeline --help`` need only the emulator's options, not its server."""
    if name in _SERVER_NAMES:
        from pipeline.emulator import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Accounting",
    "Emulator",
    "EmulatorOptions",
    "FaultPlan",
    "Upload",
    "parse_faults",
    "running_emulator",
    "serve",
]

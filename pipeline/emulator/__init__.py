"""The embedded emulator of the mediarithmics document-import API (aiohttp).

    from pipeline.emulator import EmulatorOptions, running_emulator
    async with running_emulator(EmulatorOptions(token="t0k", process_ms=0)) as emu:
        emu.base_url, emu.token, emu.accounting

It follows ``shared/api.md``. Where that file guesses, the choices are written in the docstrings
of ``app`` (routes, envelopes, pagination, cancel, error file), ``upload`` (upload forms, limits,
order of checks), ``intake`` (line numbers, blank lines, CSV records), ``store`` (execution
fields), ``processor`` (status progression) and ``faults`` (fault kinds).
"""

from pipeline.emulator.accounting import Accounting, Upload
from pipeline.emulator.faults import FaultPlan, parse_faults
from pipeline.emulator.options import EmulatorOptions
from pipeline.emulator.server import Emulator, running_emulator, serve

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

"""The embedded emulator of the mediarithmics document-import API (aiohttp).

    from pipeline.emulator import EmulatorOptions, running_emulator
    async with running_emulator(EmulatorOptions(token="t0k", process_ms=0)) as emu:
        emu.base_url, emu.token, emu.accounting

Conditions it plays (``EmulatorOptions`` field, ``pipeline emulator`` flag; 0: off):

==================  ===================  ==================================================
``latency_ms``      ``--latency-ms``     added once per request (a round trip)
``bandwidth_mbps``  ``--bandwidth``      upload cap per connection, MB/s (MB = 10^6 bytes)
``uplink_mbps``     ``--uplink``         upload cap shared by all connections, MB/s (``link``)
``max_uploads``     ``--max-uploads``    uploads in flight at most; one more: 429 + Retry-After
``rate_limit``      ``--rate-limit``     requests per second per token; beyond: 429
``slots``           ``--slots``          executions processed at once, FIFO (``processor``)
``process_ms``      ``--process-ms``     time an execution holds its slot (``PENDING`` before,
``per_line_us``     ``--per-line-us``    ``RUNNING`` in it): ``process_ms + lines * per_line_us``
``faults``          ``--faults``         hostile behaviours (``faults``), seeded by ``seed``
==================  ===================  ==================================================

What they did is in ``emu.accounting``: ``throttled`` (429s by reason), ``uploads_in_flight``,
``peak_uploads``; ``emu.state.link.carried`` (bytes paced) when a cap is set.

It follows ``docs/API.md``. Where that file guesses, the choices are written in the docstrings
of ``app`` (routes, envelopes, pagination, cancel, error file), ``upload`` (upload forms, limits,
order of checks, the cap on uploads in flight), ``intake`` (line numbers, blank lines, CSV
records), ``store`` (execution fields), ``processor`` (slots, status progression), ``link``
(upload caps), ``listing`` (pagination), ``faults`` (fault kinds) and ``state`` (server clock,
token revocation, outages: ``emu.state.restore_token()``, ``emu.state.set_outage(on)``).
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

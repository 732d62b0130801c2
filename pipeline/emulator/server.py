"""Running the emulator: in-process (``running_emulator``) or as a blocking command (``serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from aiohttp import web

from pipeline import formats
from pipeline.emulator.accounting import Accounting
from pipeline.emulator.app import build_app
from pipeline.emulator.options import EmulatorOptions
from pipeline.emulator.state import EmulatorState
from pipeline.emulator.store import Store

READ_BUFSIZE = 1024 * 1024
#: Seconds a stop waits for requests in flight (and for connections aiohttp keeps draining after an
#: early answer, such as a 413) before cancelling them.
SHUTDOWN_TIMEOUT = 1.0


class Emulator:
    """A running emulator: where it listens and what it saw. ``state`` is its ``EmulatorState``
    (``restore_token`` and ``set_outage`` are also reachable here)."""

    def __init__(self, state: EmulatorState, base_url: str) -> None:
        self.state = state
        self.base_url = base_url

    @property
    def options(self) -> EmulatorOptions:
        return self.state.options

    @property
    def token(self) -> str:
        return self.state.options.token

    @property
    def accounting(self) -> Accounting:
        return self.state.accounting

    @property
    def store(self) -> Store:
        return self.state.store

    def restore_token(self) -> None:
        """Lift a ``revoke_after`` revocation (see ``EmulatorState.restore_token``)."""
        self.state.restore_token()

    def set_outage(self, on: bool) -> None:
        """Switch an outage on or off (see ``EmulatorState.set_outage``)."""
        self.state.set_outage(on)

    def busy(self) -> int:
        """How many executions are not terminal yet, or not created yet (``gateway504``, ``slow_create``)."""
        executions = self.state.store.executions.values()
        return self.state.pending_creations + sum(not formats.is_terminal(e.status) for e in executions)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait (polling) until every execution is terminal; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            while self.busy():
                await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running_emulator(options: EmulatorOptions | None = None) -> AsyncIterator[Emulator]:
    """Start an emulator on ``options.host:options.port`` (port 0: a free port); stop it on exit."""
    options = options or EmulatorOptions()
    state = EmulatorState(options)
    app = build_app(state)
    runner = web.AppRunner(
        app, access_log=None, read_bufsize=READ_BUFSIZE, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        addresses = runner.addresses  # the bound sockets' names: the port picked for 0
        port = int(addresses[0][1]) if addresses else options.port
        host = options.host if ":" not in options.host else f"[{options.host}]"
        state.processor.start()
        try:
            yield Emulator(state, f"http://{host}:{port}")
        finally:
            await state.stop_background()
            await state.processor.stop()
    finally:
        await runner.cleanup()


async def _serve(options: EmulatorOptions, out: TextIO, token_given: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with running_emulator(options) as emu:
        print(emu.base_url, file=out, flush=True)
        print(f"token: {emu.token}" + ("" if token_given else " (generated)"), file=out, flush=True)
        faults = emu.state.plan.describe()
        mode = "light (lines counted only)" if options.light else "full (every line checked)"
        print(
            f"emulator: {mode}, {options.slots} slots, process {options.process_ms:g} ms"
            f" + {options.per_line_us:g} us/line, conditions {options.conditions()},"
            f" faults {faults or 'none'}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()


def serve(options: EmulatorOptions, *, out: TextIO | None = None, token_given: bool = True) -> int:
    """Serve until SIGINT / SIGTERM. Prints the base URL as the first line of ``out``."""
    try:
        asyncio.run(_serve(options, out or sys.stdout, token_given))
    except KeyboardInterrupt:  # a Ctrl-C before the handlers were installed
        pass
    return 0

"""A raw HTTP view of the emulator for its own tests: an emulator with a logged-in session."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from pipeline.emulator import EmulatorOptions, running_emulator


@contextlib.asynccontextmanager
async def emulator_session(token: str, **opts: Any) -> AsyncIterator[tuple[Any, aiohttp.ClientSession]]:
    """An emulator (no processing delay unless ``process_ms`` is given) and a session holding the token."""
    options = EmulatorOptions(**{"token": token, "process_ms": 0, **opts})
    async with running_emulator(options) as emu:
        async with aiohttp.ClientSession(emu.base_url, headers={"Authorization": token}) as session:
            yield emu, session


async def call(session: aiohttp.ClientSession, method: str, path: str, status: int = 200, **kw: Any) -> dict:
    """One request; asserts the status and returns the JSON envelope."""
    async with session.request(method, path, **kw) as resp:
        body = await resp.json()
        assert resp.status == status, body
        return body

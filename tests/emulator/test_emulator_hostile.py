"""The hostile-but-realistic fault kinds, each against a running emulator over loopback.

Where time matters the delays are tiny and the tests poll for the condition in a bounded loop
(``until``) or read the emulator's state; no sleep is used to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
import pytest

from pipeline import formats
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.emulator import listing as listing_module
from pipeline.emulator.faults import parse_faults
from pipeline.emulator.server import Emulator

from ..helpers import ListingClock

TOKEN = "hostile-token-0123456789-abcdef-XYZ"
IMPORTS = "/v1/datamarts/3/document_imports"
NDJSON = {"Content-Type": "application/x-ndjson"}
LINE = b'{"type":"USER_AGENT","user_agent_id":"vec:%d"}'
#: The executions of the one import each emulator here holds (import ids count from 1001).
EXES = f"{IMPORTS}/1001/executions"

Session = aiohttp.ClientSession


@contextlib.asynccontextmanager
async def hostile(faults: Any, **opts: Any) -> AsyncIterator[tuple[Emulator, Session]]:
    """An emulator with ``faults``, one import (executions at ``EXES``), a session holding the token."""
    options = EmulatorOptions(**{"token": TOKEN, "process_ms": 0, "faults": faults, **opts})
    async with running_emulator(options) as emu:
        async with aiohttp.ClientSession(emu.base_url, headers={"Authorization": TOKEN}) as session:
            body = {"document_type": "USER_IDENTIFIERS_DELETION", "mime_type": "APPLICATION_X_NDJSON", "name": "h"}
            async with session.post(IMPORTS, json=body) as resp:
                assert resp.status == 200 and (await resp.json())["data"]["id"] == "1001"
            yield emu, session


async def post(s: Session, emu: Emulator, data: bytes = LINE % 1, **kw: Any) -> tuple[int, Any, bytes]:
    """One upload: (status, headers, body)."""
    async with s.post(EXES, data=data, headers=NDJSON, **kw) as resp:
        return resp.status, resp.headers, await resp.read()


async def get(s: Session, path: str, status: int = 200, **kw: Any) -> dict[str, Any]:
    async with s.get(path, **kw) as resp:
        body = await resp.json()
        assert resp.status == status, body
        return body


async def listing(s: Session, emu: Emulator, **params: Any) -> dict[str, Any]:
    return await get(s, EXES, params=params)


def ids(envelope: dict[str, Any]) -> list[str]:
    return [e["id"] for e in envelope["data"]]


async def until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``check`` (a function, or one returning an awaitable) until its value is truthy; fail
    after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.01)


async def terminal(s: Session, emu: Emulator, exe_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        exe = (await get(s, f"{EXES}/{exe_id}"))["data"]
        return exe if formats.is_terminal(exe["status"].upper()) else None

    return await until(done)


@pytest.fixture
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# --- uploads ------------------------------------------------------------------------------------


async def test_gateway504_answers_html_at_once_and_creates_the_execution_later(no_server_errors) -> None:
    assert parse_faults({"gateway504": (1, 0.2)}) == parse_faults("gateway504=1:200ms")
    async with hostile("gateway504=1:200ms") as (emu, s):
        status, headers, body = await post(s, emu, params={"filename": "b-1.ndjson"})
        assert status == 504 and headers["Content-Type"].startswith("text/html")
        assert body.decode() == "<html><body><h1>504 Gateway Time-out</h1></body></html>"
        assert emu.state.pending_creations == 1 and emu.busy() == 1
        assert emu.accounting.uploads == [] and ids(await listing(s, emu)) == []
        await until(lambda: emu.accounting.uploads)
        [upload] = emu.accounting.uploads
        assert upload.filename == "b-1.ndjson" and ids(await listing(s, emu)) == [upload.execution_id]
        assert (await terminal(s, emu, upload.execution_id))["status"] == "SUCCEEDED"
        # the client that re-sends after the 504 makes a duplicate, which the accounting shows
        assert (await post(s, emu, params={"filename": "b-1.ndjson"}))[0] == 504
        await emu.wait_idle()
        assert len(emu.accounting.uploads) == 2 and len(emu.accounting.duplicates()) == 1


async def test_slow_create_makes_the_execution_after_the_delay_even_when_the_client_gave_up(
    no_server_errors,
) -> None:
    async with hostile({"slow_create": "1:500ms"}) as (emu, s):
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await post(s, emu, timeout=aiohttp.ClientTimeout(total=0.1))
        assert emu.accounting.uploads == []
        await until(lambda: emu.accounting.uploads)
        assert time.monotonic() - start >= 0.49
        start = time.monotonic()
        status, _, body = await post(s, emu, LINE % 2)
        assert status == 200 and time.monotonic() - start >= 0.49
        exe = orjson.loads(body)["data"]  # the normal answer
        assert exe["status"] == "PENDING" and exe["id"] == emu.accounting.uploads[1].execution_id


async def test_error_envelope_with_200_but_the_execution_exists(no_server_errors) -> None:
    async with hostile({"error_envelope": 1}) as (emu, s):
        async with s.post(EXES, data=LINE % 1, headers=NDJSON) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert (body["status"], body["error"], body["error_code"]) == ("error", "internal error", "INTERNAL")
        uuid.UUID(body["error_id"])
        [upload] = emu.accounting.uploads
        assert ids(await listing(s, emu)) == [upload.execution_id]
        assert (await terminal(s, emu, upload.execution_id))["status"] == "SUCCEEDED"


async def test_no_id_answers_the_execution_without_its_id(no_server_errors) -> None:
    async with hostile({"no_id": 1}) as (emu, s):
        async with s.post(EXES, data=LINE % 1, headers=NDJSON) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["status"] == "ok" and "id" not in body["data"] and body["data"]["status"] == "PENDING"
        assert body["data"]["parameters"]["number_of_lines"] == 1
        [upload] = emu.accounting.uploads
        assert ids(await listing(s, emu)) == [upload.execution_id]


async def test_echo_auth_answers_like_aiohttp_quoting_the_token_and_creates_nothing(no_server_errors) -> None:
    async with hostile({"echo_auth": 1}) as (emu, s):
        status, headers, body = await post(s, emu)
        assert status == 400 and headers["Content-Type"].startswith("text/plain")
        assert body.decode() == (
            "400, message: Got more than 8190 bytes when reading Header value is too long: "
            f"'Authorization: {TOKEN[:24]}...'"
        )
        assert TOKEN not in body.decode()
        assert emu.accounting.uploads == [] and emu.store.executions == {}


async def test_new_upload_kinds_are_reproducible_for_a_seed() -> None:
    spec = "gateway504=0.2:10ms,slow_create=0.2:10ms,error_envelope=0.2,no_id=0.2,echo_auth=0.2,status_lower=0.5"

    async def outcomes(seed: int) -> list[Any]:
        async with hostile(spec, seed=seed) as (emu, s):
            out: list[Any] = []
            for i in range(15):
                status, _, body = await post(s, emu, LINE % i)
                out.append((status, b'"id"' in body, b"INTERNAL" in body))
            await emu.wait_idle()
            out += [e["status"] for e in (await listing(s, emu, max_results=100))["data"]]
            return out

    first = await outcomes(3)
    assert first == await outcomes(3)
    assert first != await outcomes(4)


# --- listings -----------------------------------------------------------------------------------


async def upload_many(s: Session, emu: Emulator, n: int) -> list[str]:
    """``n`` uploads; their execution ids in creation order."""
    for i in range(n):
        assert (await post(s, emu, LINE % i))[0] == 200
    return [u.execution_id for u in emu.accounting.uploads]


async def test_list_lag_hides_new_executions_from_listings_but_not_from_get(no_server_errors, monkeypatch) -> None:
    clock = ListingClock()  # stopped: the lag passes when the test moves it, however slow the machine
    monkeypatch.setattr(listing_module, "time", clock)
    async with hostile({"list_lag": "300ms"}) as (emu, s):
        [exe_id] = await upload_many(s, emu, 1)
        assert (await get(s, f"{EXES}/{exe_id}"))["data"]["id"] == exe_id
        assert ids(await listing(s, emu)) == []
        created = emu.state.store.executions[exe_id].created_mono
        clock.now = created + 0.29
        assert not await _listed(s, emu, exe_id)
        clock.now = created + 0.3
        assert await _listed(s, emu, exe_id)


async def _listed(s: Session, emu: Emulator, exe_id: str) -> bool:
    return exe_id in ids(await listing(s, emu, max_results=100))


async def test_list_omit_leaves_out_executions_at_random_reproducibly(no_server_errors) -> None:
    async def views(seed: int) -> tuple[list[str], list[list[str]]]:
        async with hostile({"list_omit": 0.5}, seed=seed) as (emu, s):
            made = await upload_many(s, emu, 20)
            return made, [ids(await listing(s, emu, max_results=100)) for _ in range(6)]

    made, seen = await views(5)
    assert all(0 < len(v) < len(made) for v in seen) and len({tuple(v) for v in seen}) > 1
    assert set().union(*seen) <= set(made)
    assert (made, seen) == await views(5)
    async with hostile({"list_omit": 1}) as (emu, s):
        [exe_id] = await upload_many(s, emu, 1)
        assert ids(await listing(s, emu)) == []
        await get(s, f"{EXES}/{exe_id}")


async def test_ignore_first_result_always_answers_the_first_page_without_total(no_server_errors) -> None:
    async with hostile({"ignore_first_result": 1}) as (emu, s):
        made = await upload_many(s, emu, 5)
        first = await listing(s, emu, first_result=0, max_results=2)
        second = await listing(s, emu, first_result=2, max_results=2)
        assert ids(first) == ids(second) == made[::-1][:2]
        assert "total" not in first and "total" not in second and second["first_result"] == 2
        imports = await get(s, IMPORTS, params={"first_result": 1})
        assert len(imports["data"]) == 1 and "total" not in imports


async def test_page_cap_cuts_pages_and_echoes_max_results(no_server_errors) -> None:
    async with hostile({"page_cap": 2}) as (emu, s):
        made = await upload_many(s, emu, 5)
        page = await listing(s, emu, max_results=10)
        assert ids(page) == made[::-1][:2] and page["count"] == 2 and page["max_results"] == 10
        assert "total" not in page
        assert ids(await listing(s, emu, first_result=2, max_results=10)) == made[::-1][2:4]


async def test_oldest_first(no_server_errors) -> None:
    async with hostile({"oldest_first": 1}) as (emu, s):
        made = await upload_many(s, emu, 3)
        page = await listing(s, emu)
        assert ids(page) == made and page["total"] == 3


# --- executions ---------------------------------------------------------------------------------


async def test_no_filename_hides_the_name_everywhere_but_the_accounting_has_it(no_server_errors) -> None:
    async with hostile({"no_filename": 1}) as (emu, s):
        status, _, body = await post(s, emu, params={"filename": "nightly-0001.ndjson"})
        assert status == 200 and b"nightly-0001" not in body
        [upload] = emu.accounting.uploads
        assert upload.filename == "nightly-0001.ndjson"
        exe = await terminal(s, emu, upload.execution_id)
        [listed] = (await listing(s, emu))["data"]
        for view in (exe, listed):
            assert view["parameters"]["input_file_name"] is None and view["result"]["input_file_name"] is None
            assert "nightly-0001" not in str(view)
        assert exe["status"] == "SUCCEEDED"
        assert (emu.store.executions[upload.execution_id].result or {})["input_file_name"] == "nightly-0001.ndjson"


@pytest.mark.parametrize(("kind", "spelled"), [("status_lower", "succeeded"), ("status_title", "Succeeded")])
async def test_status_case(kind: str, spelled: str, no_server_errors) -> None:
    async with hostile({kind: 1}) as (emu, s):
        [exe_id] = await upload_many(s, emu, 1)
        assert (await terminal(s, emu, exe_id))["status"] == spelled
        assert [e["status"] for e in (await listing(s, emu))["data"]] == [spelled]


async def test_status_case_at_random_is_seeded(no_server_errors) -> None:
    async def statuses(seed: int) -> list[str]:
        async with hostile("status_lower=0.3,status_title=0.3", seed=seed) as (emu, s):
            await upload_many(s, emu, 10)
            await emu.wait_idle()
            return [e["status"] for e in (await listing(s, emu, max_results=100))["data"]]

    first = await statuses(2)
    assert {"SUCCEEDED", "succeeded", "Succeeded"} == set(first)
    assert first == await statuses(2)


async def test_unknown_status_while_running(no_server_errors) -> None:
    async with hostile({"unknown_status": 1}, per_line_us=60e6) as (emu, s):  # RUNNING for a minute
        [exe_id] = await upload_many(s, emu, 1)
        exe = emu.store.executions[exe_id]
        await until(lambda: exe.status == "RUNNING")
        assert (await get(s, f"{EXES}/{exe_id}"))["data"]["status"] == "IN_PROGRESS"
        assert [e["status"] for e in (await listing(s, emu))["data"]] == ["IN_PROGRESS"]
        emu.state.processor.finish(exe)  # end it now
        assert (await get(s, f"{EXES}/{exe_id}"))["data"]["status"] == "SUCCEEDED"


async def test_escape_text_wraps_error_messages_in_terminal_escapes(no_server_errors) -> None:
    async with hostile({"escape_text": 1, "failed": 1}) as (emu, s):
        [exe_id] = await upload_many(s, emu, 1)
        exe = emu.store.executions[exe_id]
        await until(lambda: exe.status == "FAILED")
        message = (await get(s, f"{EXES}/{exe_id}"))["data"]["error"]["message"]
        assert message.startswith("\x1b[31m\x1b]0;") and "\x07" in message and "failed on the platform" in message
        assert (await listing(s, emu))["data"][0]["error"]["message"] == message
        assert exe.error is not None and "\x1b" not in exe.error["message"]  # only the answers carry them


async def test_exec404_on_get_by_id_while_listings_work(no_server_errors) -> None:
    async with hostile({"exec404": 1}) as (emu, s):
        [exe_id] = await upload_many(s, emu, 1)
        body = await get(s, f"{EXES}/{exe_id}", status=404)
        assert body["error_code"] == "NOT_FOUND"
        assert ids(await listing(s, emu)) == [exe_id]


# --- service: clock, token, outage --------------------------------------------------------------


def _date(value: str) -> float:
    return parsedate_to_datetime(value).timestamp()


async def test_retry_after_date_and_clock_skew_on_every_retry_after(no_server_errors) -> None:
    skew, wait = 3600, 2
    async with hostile("throttle=1,retry_after_date=1,clock_skew=3600", retry_after_s=wait) as (emu, s):
        status, headers, _ = await post(s, emu)
        assert status == 429
        assert abs(_date(headers["Retry-After"]) - (time.time() + skew + wait)) < 3
        assert abs(_date(headers["Date"]) - (time.time() + skew)) < 3
        async with s.get(IMPORTS) as resp:  # every response carries the skewed Date
            assert abs(_date(resp.headers["Date"]) - (time.time() + skew)) < 3
    async with hostile("error5xx=1,retry_after_date=1", seed=1, retry_after_s=wait) as (emu, s):
        seen = set()
        for _ in range(20):
            status, headers, _ = await post(s, emu)
            seen.add(status)
            if status == 503:
                assert abs(_date(headers["Retry-After"]) - (time.time() + wait)) < 3
        assert 503 in seen
    async with hostile("retry_after_date=1,clock_skew=-90", rate_limit=1) as (emu, s):
        async with s.get(IMPORTS) as resp:
            assert resp.status == 429  # the import's creation took the one token
            assert abs(_date(resp.headers["Retry-After"]) - (time.time() - 90 + 1)) < 3
            assert abs(_date(resp.headers["Date"]) - (time.time() - 90)) < 3


async def test_clock_skew_alone_skews_only_the_date_header(no_server_errors) -> None:
    async with hostile({"throttle": 1, "clock_skew": -7200}, retry_after_s=3) as (emu, s):
        status, headers, _ = await post(s, emu)
        assert status == 429 and headers["Retry-After"] == "3"
        assert abs(_date(headers["Date"]) - (time.time() - 7200)) < 3


async def test_revoke_after_n_executions_until_the_token_is_restored(no_server_errors) -> None:
    async with hostile({"revoke_after": 2}) as (emu, s):
        made = await upload_many(s, emu, 2)
        for path in (EXES, f"{EXES}/{made[0]}", IMPORTS):
            body = await get(s, path, status=401)
            assert (body["error"], body["error_code"]) == ("token revoked", "INVALID_TOKEN")
        status, _, _ = await post(s, emu)
        assert status == 401 and len(emu.accounting.uploads) == 2
        emu.state.restore_token()
        assert ids(await listing(s, emu)) == made[::-1]
        assert (await post(s, emu))[0] == 200


async def test_outage_after_n_executions_for_a_while_then_back(no_server_errors) -> None:
    async with hostile({"outage_after": "1:300ms"}) as (emu, s):
        start = time.monotonic()
        await upload_many(s, emu, 1)
        async with s.get(IMPORTS) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "1"
            assert (await resp.json())["error_code"] == "SERVICE_UNAVAILABLE"

        async def back() -> bool:
            async with s.get(IMPORTS) as resp:
                return resp.status == 200

        await until(back)
        assert time.monotonic() - start >= 0.29
        assert (await post(s, emu))[0] == 200  # once only
        emu.state.set_outage(True)
        assert (await post(s, emu))[0] == 503 and len(emu.accounting.uploads) == 2
        await get(s, IMPORTS, status=503)
        emu.set_outage(False)
        await get(s, IMPORTS)


async def test_the_command_accepts_the_new_kinds() -> None:
    faults = "page_cap=1,exec404=1,clock_skew=-60,outage_after=5:2s,gateway504=0.5:1s"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.emulator", "--port", "0", "--token", "t0k", "--faults", faults,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        banner = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
        assert "page_cap=1" in banner and "outage_after=5:2s" in banner
        async with aiohttp.ClientSession(url, headers={"Authorization": "t0k"}) as s:
            async with s.get(IMPORTS) as resp:
                assert resp.status == 200 and "total" not in await resp.json()
                assert abs(_date(resp.headers["Date"]) - (time.time() - 60)) < 3
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)

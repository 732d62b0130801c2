"""The conditions the emulator plays, over loopback HTTP: the shared uplink and the per-connection
cap, the cap on uploads in flight (429 before the body), processing slots (FIFO, at most ``slots``
RUNNING, each held ``process_ms + lines * per_line_us``), latency, and their command flags.

Timing assertions are lower bounds from the model (robust on a loaded machine) and loose upper
bounds; waits for a condition poll it with a bound."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import AsyncIterator, Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from pipeline import formats
from pipeline.emulator import EmulatorOptions

from ..emulator_client import call, emulator_session

TOKEN = "t0k-conditions"
IMPORTS = "/v1/datamarts/12/document_imports"
NDJSON = "application/x-ndjson"
LINE = b'{"type":"USER_AGENT","user_agent_id":"vec:%d"}'
MB = 1_000_000


def body_of(size: int) -> bytes:
    """About ``size`` bytes of valid NDJSON lines (never fewer)."""
    line = LINE % 10_000_000 + b"\n"
    return line * -(-size // len(line))


def emulator(**opts: Any):
    return emulator_session(TOKEN, **opts)


async def new_import(s: aiohttp.ClientSession) -> str:
    body = {"document_type": "USER_IDENTIFIERS_DELETION", "mime_type": "APPLICATION_X_NDJSON", "name": "c"}
    return f"{IMPORTS}/{(await call(s, 'POST', IMPORTS, json=body))['data']['id']}"


async def until(check: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.005)


async def raw_upload(s: aiohttp.ClientSession, imp: str, data: Any) -> dict:
    return await call(s, "POST", f"{imp}/executions", data=data, headers={"Content-Type": NDJSON})


async def multipart_upload(s: aiohttp.ClientSession, imp: str, data: bytes) -> dict:
    form = aiohttp.FormData()
    form.add_field("type", NDJSON)
    form.add_field("file", data, filename="m.ndjson", content_type=NDJSON)
    return await call(s, "POST", f"{imp}/executions", data=form)


async def timed(coro: Any) -> float:
    start = time.monotonic()
    await coro
    return time.monotonic() - start


# --- upload link: shared uplink, per-connection cap ------------------------------------------------


async def test_the_uplink_is_shared_fairly_by_parallel_raw_and_multipart_uploads() -> None:
    data = body_of(4 * MB)
    async with emulator(uplink_mbps=20, light=True) as (emu, s):
        imp = await new_import(s)
        start = time.monotonic()
        each = await asyncio.gather(
            timed(raw_upload(s, imp, data)), timed(raw_upload(s, imp, data)), timed(multipart_upload(s, imp, data))
        )
        total = time.monotonic() - start
        assert emu.state.link is not None and emu.state.link.carried >= 3 * len(data)
        assert len(emu.accounting.uploads) == 3
    # 12 MB at 20 MB/s: 0.6 s; alone, one upload would take 0.2 s: sharing fairly, each takes ~0.6 s
    assert 0.55 <= total < 10, total
    assert min(each) >= 0.45, each


async def test_each_connection_is_also_held_to_its_own_cap() -> None:
    data = body_of(2 * MB)
    async with emulator(uplink_mbps=20, bandwidth_mbps=4, light=True) as (_, s):
        imp = await new_import(s)
        each = await asyncio.gather(timed(raw_upload(s, imp, data)), timed(multipart_upload(s, imp, data)))
    # the uplink alone would let each go at 10 MB/s (0.2 s); the per-connection cap says 4 MB/s (0.5 s)
    assert min(each) >= 0.45 and max(each) < 10, each


async def test_without_caps_there_is_no_link() -> None:
    async with emulator() as (emu, s):
        assert emu.state.link is None
        imp = await new_import(s)
        await raw_upload(s, imp, body_of(100_000))
    async with emulator(bandwidth_mbps=50) as (emu, _):
        assert emu.state.link is not None and emu.state.link.share(3) == 50 * MB  # per connection only


# --- uploads in flight ---------------------------------------------------------------------------


async def held_body(gate: asyncio.Event, n: int) -> AsyncIterator[bytes]:
    """A chunked body: one line, then the rest only once ``gate`` is set."""
    yield LINE % n + b"\n"
    await gate.wait()
    yield LINE % (n + 1000) + b"\n"


class RawConnection:
    """One keep-alive HTTP/1.1 connection written by hand: what happens to it after an answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> RawConnection:
        url = urlsplit(base_url)
        return cls(*await asyncio.open_connection(url.hostname, url.port))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def answer(self) -> tuple[int, dict[str, str], Any]:
        """The next answer: status, headers (lower-case names), JSON body."""
        status_line = await asyncio.wait_for(self.reader.readline(), 5)
        assert status_line, "connection closed"
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(self.reader.readline(), 5)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("content-length", 0))), 5)
        return status, headers, orjson.loads(body) if body else None

    def close(self) -> None:
        self.writer.close()


def upload_request(path: str, body: bytes, extra: str = "") -> tuple[bytes, bytes]:
    """The head and the body of a raw upload."""
    head = (
        f"POST {path}/executions HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\n"
        f"Content-Type: {NDJSON}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode()
    return head, body


async def test_one_upload_over_max_uploads_is_a_429_before_its_body_then_succeeds_once_one_ends() -> None:
    async with emulator(max_uploads=2, retry_after_s=3) as (emu, s):
        imp = await new_import(s)
        gates = [asyncio.Event(), asyncio.Event()]
        held = [asyncio.create_task(raw_upload(s, imp, held_body(g, i))) for i, g in enumerate(gates)]
        await until(lambda: emu.accounting.uploads_in_flight == 2)

        conn = await RawConnection.open(emu.base_url)
        try:
            head, body = upload_request(imp, LINE % 7 + b"\n")
            conn.send(head)  # the head only: the answer comes before any of the body is sent
            status, headers, answer = await conn.answer()
            assert status == 429 and headers["retry-after"] == "3", answer
            assert answer["error_code"] == "TOO_MANY_REQUESTS" and "in flight" in answer["error"]
            assert emu.accounting.throttled == {"max_uploads": 1} and emu.accounting.uploads == []
            assert emu.accounting.uploads_in_flight == 2  # the refused one never counted
            conn.send(body)  # the refused body: read and dropped by the server, the connection kept

            gates[0].set()
            first = (await held[0])["data"]
            assert emu.accounting.uploads_in_flight == 1
            conn.send(head + body)  # the same connection, sent again: now accepted
            status, _, answer = await conn.answer()
            assert status == 200 and answer["data"]["status"] == "PENDING", answer
        finally:
            conn.close()
        gates[1].set()
        await held[1]
        assert emu.accounting.peak_uploads == 2 and emu.accounting.uploads_in_flight == 0
        assert len(emu.accounting.uploads) == 3 and emu.accounting.throttled["max_uploads"] == 1
        assert first["id"] in {u.execution_id for u in emu.accounting.uploads}


async def test_the_refused_connection_behaves_as_after_the_throttle_fault() -> None:
    """Both 429s come before the body and keep the connection: the next request on it is answered."""
    async with emulator(faults={"throttle": 1}, retry_after_s=2) as (emu, s):
        imp = await new_import(s)
        conn = await RawConnection.open(emu.base_url)
        try:
            head, body = upload_request(imp, LINE % 1 + b"\n")
            conn.send(head)
            status, headers, _ = await conn.answer()
            assert (status, headers["retry-after"]) == (429, "2")
            conn.send(body + head + body)
            status, _, _ = await conn.answer()
            assert status == 429 and emu.accounting.throttled == {"throttle": 2}
        finally:
            conn.close()


async def test_max_uploads_with_expect_100_continue_and_http_date_retry_after() -> None:
    async with emulator(max_uploads=1, retry_after_s=5, faults={"retry_after_date": 1}) as (emu, s):
        imp = await new_import(s)
        gate = asyncio.Event()
        held = asyncio.create_task(raw_upload(s, imp, held_body(gate, 1)))
        await until(lambda: emu.accounting.uploads_in_flight == 1)
        conn = await RawConnection.open(emu.base_url)
        try:
            head, _ = upload_request(imp, LINE % 2 + b"\n", "Expect: 100-continue\r\n")
            conn.send(head)
            status, headers, answer = await conn.answer()  # instead of the 100
            assert status == 429 and answer["error_code"] == "TOO_MANY_REQUESTS"
            assert parsedate_to_datetime(headers["retry-after"]).timestamp() > time.time() + 3
            assert headers["connection"] == "close"  # as every answer instead of a 100
        finally:
            conn.close()
        gate.set()
        await held
        assert emu.accounting.throttled == {"max_uploads": 1} and len(emu.accounting.uploads) == 1


async def test_the_peak_of_uploads_in_flight_is_kept_without_a_cap() -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        gates = [asyncio.Event() for _ in range(3)]
        held = [asyncio.create_task(raw_upload(s, imp, held_body(g, i))) for i, g in enumerate(gates)]
        await until(lambda: emu.accounting.uploads_in_flight == 3)
        for gate in gates:
            gate.set()
        await asyncio.gather(*held)
        assert (emu.accounting.peak_uploads, emu.accounting.uploads_in_flight) == (3, 0)
        assert emu.accounting.throttled == {}


# --- processing slots ----------------------------------------------------------------------------


async def test_slots_serve_executions_in_arrival_order_at_most_slots_running() -> None:
    hold = 0.3
    async with emulator(slots=2, process_ms=hold * 1000, per_line_us=0) as (emu, s):
        imp = await new_import(s)
        start = time.monotonic()
        ids = [(await raw_upload(s, imp, LINE % i + b"\n"))["data"]["id"] for i in range(6)]
        most_running, seen_pending_behind_two = 0, False
        deadline = time.monotonic() + 10
        while True:  # what a client sees: listings polled until every execution has ended
            listed = (await call(s, "GET", f"{imp}/executions", params={"max_results": 100}))["data"]
            statuses = [e["status"] for e in listed]
            running = statuses.count("RUNNING")
            most_running = max(most_running, running)
            seen_pending_behind_two |= running == 2 and "PENDING" in statuses
            if all(formats.is_terminal(st) for st in statuses):
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - start
        done = {e["id"]: e for e in listed}
        exes = [emu.store.executions[i] for i in ids]
    assert most_running == 2 and seen_pending_behind_two
    assert all(done[i]["status"] == "SUCCEEDED" for i in ids)
    assert [e.started_mono for e in exes] == sorted(e.started_mono for e in exes), "started in arrival order"
    starts = [done[i]["start_date"] for i in ids]  # epoch ms, as a client sees them (rounded)
    assert all(later >= earlier - 2 for earlier, later in itertools.pairwise(starts)), starts
    assert elapsed >= 3 * hold - 0.02 and elapsed < 20  # three rounds of two
    # the model's times (loop clock): each held exactly its time; the third starts when the first ends
    for n, exe in enumerate(exes):
        assert exe.started_mono is not None and exe.ended_mono is not None
        assert exe.ended_mono - exe.started_mono == pytest.approx(hold, abs=1e-6)
        if n >= 2:
            assert exe.started_mono == pytest.approx(exes[n - 2].ended_mono, abs=1e-6)
        assert abs(done[exe.id]["duration"] - hold * 1000) <= 3
    moments = sorted([(e.started_mono, 1) for e in exes] + [(e.ended_mono, -1) for e in exes])
    running_now, most = 0, 0
    for _, step in moments:  # an end and a start at the same moment: the end first (-1 < 1)
        running_now += step
        most = max(most, running_now)
    assert most == 2


async def test_an_execution_holds_its_slot_process_ms_plus_its_lines() -> None:
    lines = 2000
    async with emulator(slots=1, process_ms=50, per_line_us=100) as (emu, s):
        imp = await new_import(s)
        start = time.monotonic()
        exe_id = (await raw_upload(s, imp, b"".join(LINE % i + b"\n" for i in range(lines))))["data"]["id"]
        await emu.wait_idle()
        elapsed = time.monotonic() - start
        done = (await call(s, "GET", f"{imp}/executions/{exe_id}"))["data"]
        exe = emu.store.executions[exe_id]
    hold = 0.05 + lines * 100e-6  # 0.25 s
    assert done["status"] == "SUCCEEDED" and done["parameters"]["number_of_lines"] == lines
    assert exe.ended_mono - exe.started_mono == pytest.approx(hold, abs=1e-6)
    assert abs(done["duration"] - hold * 1000) <= 3
    assert hold - 0.01 <= elapsed < 10


# --- latency -------------------------------------------------------------------------------------


async def test_latency_is_added_once_per_request() -> None:
    async with emulator(latency_ms=150) as (_, s):
        imp = await new_import(s)
        gets = [await timed(call(s, "GET", imp)) for _ in range(3)]
        upload = await timed(raw_upload(s, imp, LINE % 1 + b"\n"))
    assert min(gets) >= 0.145 and upload >= 0.145
    assert min(gets) < 0.29, gets  # once, not twice (the least of three, on a loaded machine)


# --- the command ---------------------------------------------------------------------------------


async def test_the_command_takes_the_condition_flags_and_says_them_at_start_up() -> None:
    args = ["--uplink", "20", "--max-uploads", "3", "--bandwidth", "5", "--latency-ms", "2", "--slots", "2"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.emulator", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().startswith("http://")
        line = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
        assert "2 slots" in line and "uplink 20 MB/s shared" in line and "5 MB/s per connection" in line
        assert "at most 3 uploads in flight" in line and "latency 2 ms" in line
    finally:
        proc.terminate()
        await proc.wait()
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.emulator", "--port", "0", "--max-uploads", "-1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(bad.communicate(), 10)
    assert bad.returncode == 2 and b"max_uploads" in err


def test_options_range_checks_and_conditions_line() -> None:
    for field in ("uplink_mbps", "max_uploads"):
        with pytest.raises(ValueError, match=field):
            EmulatorOptions(token="x", **{field: -1})
    assert EmulatorOptions(token="x").conditions() == "none"
    options = EmulatorOptions(token="x", uplink_mbps=12.5, max_uploads=4)
    assert options.conditions() == "uplink 12.5 MB/s shared, at most 4 uploads in flight"

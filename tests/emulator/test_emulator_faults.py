"""Fault injection, rate limit, network realism and light mode, over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp
import pytest

from pipeline import formats
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.emulator.faults import FaultDice, FaultPlan, parse_faults

TOKEN = "t0k-faults"
IMPORTS = "/v1/datamarts/3/document_imports"
NDJSON = {"Content-Type": "application/x-ndjson"}
LINE = b'{"type":"USER_AGENT","user_agent_id":"vec:%d"}'


@contextlib.asynccontextmanager
async def emulator(**opts):
    options = EmulatorOptions(**{"token": TOKEN, "process_ms": 0, **opts})
    async with running_emulator(options) as emu:
        async with aiohttp.ClientSession(emu.base_url, headers={"Authorization": TOKEN}) as session:
            body = {"document_type": "USER_IDENTIFIERS_DELETION", "mime_type": "APPLICATION_X_NDJSON", "name": "f"}
            async with session.post(IMPORTS, json=body) as resp:
                emu.imp = f"{IMPORTS}/{(await resp.json())['data']['id']}"
            yield emu, session


async def post(s, emu, data: bytes = LINE % 1, **kw) -> aiohttp.ClientResponse:
    async with s.post(f"{emu.imp}/executions", data=data, headers=NDJSON, **kw) as resp:
        await resp.read()
        return resp


async def terminal(s, emu, exe_id: str) -> dict:
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while True:
        async with s.get(f"{emu.imp}/executions/{exe_id}") as resp:
            if resp.status == 200:
                exe = (await resp.json())["data"]
                if formats.is_terminal(exe["status"]):
                    return exe
        assert loop.time() < end
        await asyncio.sleep(0.01)


@pytest.fixture
def no_server_errors(caplog):
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize("retry_after", [0, 3])
async def test_throttle_is_429_with_retry_after(retry_after: int, no_server_errors) -> None:
    async with emulator(faults={"throttle": 1.0}, retry_after_s=retry_after) as (emu, s):
        resp = await post(s, emu)
        assert resp.status == 429 and resp.headers["Retry-After"] == str(retry_after)
        assert emu.accounting.uploads == []


async def test_error5xx_statuses_are_seeded(no_server_errors) -> None:
    async def statuses(seed: int) -> list[int]:
        async with emulator(faults="error5xx=1", seed=seed) as (emu, s):
            out = []
            for _ in range(12):
                resp = await post(s, emu)
                assert (resp.status == 503) == ("Retry-After" in resp.headers)
                out.append(resp.status)
            assert emu.accounting.uploads == []
            return out

    first = await statuses(5)
    assert set(first) == {500, 502, 503}
    assert await statuses(5) == first


async def test_reset_before_the_body_creates_nothing(no_server_errors) -> None:
    async with emulator(faults={"reset_before": 1.0}) as (emu, s):
        with pytest.raises(aiohttp.ClientError):
            await post(s, emu, LINE % 1 * 1000)
        assert emu.accounting.uploads == []
        async with s.get(f"{emu.imp}/executions") as resp:
            assert (await resp.json())["total"] == 0


async def test_drop_after_creates_the_execution_but_sends_no_answer(no_server_errors) -> None:
    async with emulator(faults={"drop_after": 1.0}) as (emu, s):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(s, emu, params={"filename": "batch-7.ndjson"})
        [upload] = emu.accounting.uploads
        async with s.get(f"{emu.imp}/executions") as resp:
            [exe] = (await resp.json())["data"]
        assert exe["id"] == upload.execution_id and exe["parameters"]["input_file_name"] == "batch-7.ndjson"
        assert (await terminal(s, emu, exe["id"]))["status"] == "SUCCEEDED"
        assert list(emu.accounting.accepted.values()) == [[exe["id"]]]


async def test_slow_answer_after_the_execution_exists(no_server_errors) -> None:
    async with emulator(faults={"slow": "1:300ms"}) as (emu, s):
        start = time.monotonic()
        assert (await post(s, emu)).status == 200
        assert time.monotonic() - start >= 0.29
        with pytest.raises(asyncio.TimeoutError):
            await post(s, emu, timeout=aiohttp.ClientTimeout(total=0.1))
        assert len(emu.accounting.uploads) == 2


@pytest.mark.parametrize("kind", ["LOST", "FAILED"])
async def test_executions_end_lost_or_failed(kind: str, no_server_errors) -> None:
    async with emulator(faults={kind.lower(): 1.0}) as (emu, s):
        resp = await post(s, emu, LINE % 1 + b"\n" + LINE % 2)
        assert resp.status == 200
        exe = await terminal(s, emu, emu.accounting.uploads[0].execution_id)
        assert exe["status"] == kind and exe["error"]["message"] and exe["erroneous_tasks"] == 1
        assert emu.accounting.accepted == {} and emu.accounting.accepted_records == 0


async def test_poll5xx_only_on_get_of_one_execution(no_server_errors) -> None:
    async with emulator(faults={"poll5xx": 1.0}) as (emu, s):
        assert (await post(s, emu)).status == 200
        exe_id = emu.accounting.uploads[0].execution_id
        for _ in range(5):
            async with s.get(f"{emu.imp}/executions/{exe_id}") as resp:
                assert resp.status in (500, 502, 503)
                assert (await resp.json())["status"] == "error"
        async with s.get(f"{emu.imp}/executions") as resp:
            assert resp.status == 200


async def test_mixed_faults_are_reproducible_for_a_seed() -> None:
    spec = "throttle=0.2,error5xx=0.2,slow=0.2:10ms,lost=0.3,failed=0.3,poll5xx=0.3"

    async def outcomes(seed: int) -> list:
        async with emulator(faults=spec, seed=seed) as (emu, s):
            out = [(await post(s, emu, LINE % i)).status for i in range(15)]
            for upload in emu.accounting.uploads:
                async with s.get(f"{emu.imp}/executions/{upload.execution_id}") as resp:
                    out.append(resp.status)
                out.append((await terminal(s, emu, upload.execution_id))["status"])
            return out

    first = await outcomes(11)
    assert first == await outcomes(11)
    assert first != await outcomes(12)


async def test_rate_limit_per_token_answers_429_with_retry_after() -> None:
    async with emulator(rate_limit=2) as (emu, s):
        statuses = []
        for _ in range(4):
            async with s.get(f"{emu.imp}/executions") as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1
                    assert (await resp.json())["error_code"] == "TOO_MANY_REQUESTS"
        assert statuses.count(429) >= 2 and statuses[0] == 200


async def test_latency_per_request() -> None:
    async with emulator(latency_ms=100) as (emu, s):
        start = time.monotonic()
        async with s.get(f"{emu.imp}/executions") as resp:
            assert resp.status == 200
        assert time.monotonic() - start >= 0.099


async def test_bandwidth_cap_per_connection() -> None:
    data = (LINE % 1 + b"\n") * (1_000_000 // (len(LINE) + 1))
    async with emulator(bandwidth_mbps=2, light=True) as (emu, s):
        start = time.monotonic()
        assert (await post(s, emu, data)).status == 200
        assert time.monotonic() - start >= 0.4


async def test_light_mode_counts_lines_without_checking_them() -> None:
    async with emulator(light=True) as (emu, s):
        assert (await post(s, emu, b"not json\n" + LINE % 1 + b"\n{}")).status == 200
        exe = await terminal(s, emu, emu.accounting.uploads[0].execution_id)
        assert exe["status"] == "SUCCEEDED" and exe["parameters"]["number_of_lines"] == 3
        assert (exe["result"]["total_success"], exe["result"]["total_failure"]) == (3, 0)
        assert emu.accounting.accepted == {} and emu.accounting.accepted_records == 3


async def test_without_digests_records_are_checked_and_counted_but_not_kept() -> None:
    async with emulator(keep_digests=False) as (emu, s):
        assert (await post(s, emu, LINE % 1 + b"\n" + LINE % 2 + b"\n{}\n")).status == 200
        exe = await terminal(s, emu, emu.accounting.uploads[0].execution_id)
        assert (exe["result"]["total_success"], exe["result"]["total_failure"]) == (2, 1)
        assert emu.accounting.accepted == {} and emu.accounting.accepted_records == 2


# --- the spec of the hostile kinds (their behaviour: test_emulator_hostile.py) ------------------------


def test_new_kinds_parse_in_string_and_dict_form() -> None:
    spec = (
        "gateway504=0.5:2s,slow_create=1:250ms,list_lag=2s,list_omit=0.1,ignore_first_result=1,page_cap=3,"
        "oldest_first=1,no_filename=1,error_envelope=0.2,no_id=0.3,status_lower=0.4,status_title=0.5,"
        "unknown_status=1,retry_after_date=1,clock_skew=-3600,echo_auth=0.1,revoke_after=4,exec404=1,"
        "outage_after=2:1.5s"
    )
    plan = parse_faults(spec)
    assert plan == FaultPlan(
        gateway504=0.5, gateway504_s=2.0, slow_create=1.0, slow_create_s=0.25, list_lag=2.0, list_omit=0.1,
        ignore_first_result=1.0, page_cap=3, oldest_first=1.0, no_filename=1.0, error_envelope=0.2, no_id=0.3,
        status_lower=0.4, status_title=0.5, unknown_status=1.0, retry_after_date=1.0, clock_skew=-3600.0,
        echo_auth=0.1, revoke_after=4, exec404=1.0, outage_after=2, outage_s=1.5,
    )  # fmt: skip
    assert parse_faults(plan.describe()) == plan
    as_dict = {
        "gateway504": (0.5, 2), "slow_create": "1:250ms", "list_lag": "2s", "list_omit": 0.1,
        "ignore_first_result": True, "page_cap": 3, "oldest_first": 1, "no_filename": 1, "error_envelope": 0.2,
        "no_id": 0.3, "status_lower": 0.4, "status_title": 0.5, "unknown_status": 1, "retry_after_date": 1,
        "clock_skew": -3600, "echo_auth": 0.1, "revoke_after": 4, "exec404": 1, "outage_after": (2, "1500ms"),
    }  # fmt: skip
    assert parse_faults(as_dict) == plan
    assert parse_faults({"gateway504": 1}).gateway504_s == 1.0 == parse_faults("slow_create=1").slow_create_s
    assert parse_faults("outage_after=3") == FaultPlan(outage_after=3, outage_s=1.0)
    assert parse_faults("list_lag=500ms,clock_skew=90").list_lag == 0.5
    assert parse_faults("revoke_after=0").active() == {"revoke_after": 0}
    assert parse_faults("").describe() == ""


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("page_cap=0", "page_cap=0"),
        ("page_cap=1.5", "page_cap"),
        ("revoke_after=-1", "revoke_after"),
        ("outage_after=x:1s", "outage_after"),
        ("outage_after=2:soon", "soon"),
        ("list_lag=-1s", "list_lag"),
        ("gateway504=2:1s", "gateway504"),
        ("clock_skew=later", "later"),
        ("no_id=yes", "no_id"),
    ],
)
def test_bad_values_of_new_kinds_name_the_item(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_faults(spec)


def test_new_kinds_never_shift_the_decisions_of_the_old_ones() -> None:
    old = FaultPlan(throttle=0.3, error5xx=0.3, drop_after=0.2, lost=0.3, failed=0.3, poll5xx=0.5, slow=0.5)
    new = parse_faults(old.describe() + ",gateway504=0.5,echo_auth=0.5,no_id=0.5,list_omit=0.5,status_lower=0.5")

    def run(plan: FaultPlan, extras: bool) -> list[Any]:
        dice, out = FaultDice(plan, 7), []
        for _ in range(40):
            out.append((dice.upload_fault(), dice.upload_delay(), dice.fate(), dice.poll_fault()))
            if extras:
                dice.upload_extras(), dice.omit(), dice.status_case()
        return out

    assert run(old, False) == run(new, True)


def test_forbid_after_is_a_count_and_round_trips():
    from pipeline.emulator.faults import parse_faults

    plan = parse_faults("forbid_after=0")
    assert plan.forbid_after == 0 and parse_faults(plan.describe()) == plan
    assert parse_faults({"forbid_after": 3}).forbid_after == 3

"""Processing over loopback: status progression, results, error files, cancel, execution lists."""

from __future__ import annotations

import asyncio

import orjson

from pipeline import formats

from ..emulator_client import call, emulator_session

TOKEN = "t0k-proc"
IMPORTS = "/v1/datamarts/7/document_imports"
NDJSON = {"Content-Type": "application/x-ndjson"}
GOOD = b'{"operation":"UPSERT","compartment_id":"1000","user_account_id":"u%d","user_profile":{"a":1}}'
BAD_OP = b'{"operation":"MERGE","compartment_id":"1000","user_account_id":"u1","user_profile":{}}'
TWO_IDS = b'{"operation":"DELETE","user_agent_id":"vec:1","email_hash":"ab"}'


def emulator(**opts):
    return emulator_session(TOKEN, **opts)


async def new_import(s, document_type: str = "USER_PROFILE", mime_type: str = "APPLICATION_X_NDJSON") -> str:
    body = {"document_type": document_type, "mime_type": mime_type, "encoding": "utf-8", "name": "t"}
    return f"{IMPORTS}/{(await call(s, 'POST', IMPORTS, json=body))['data']['id']}"


async def upload(s, imp: str, data: bytes, headers: dict = NDJSON) -> dict:
    return (await call(s, "POST", f"{imp}/executions", data=data, headers=headers))["data"]


async def poll(s, imp: str, exe_id: str, until=formats.is_terminal, deadline: float = 5.0) -> tuple[dict, list]:
    """Poll until ``until(status)``; returns the execution and every status seen in order."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    seen: list[str] = []
    while True:
        exe = (await call(s, "GET", f"{imp}/executions/{exe_id}"))["data"]
        if not seen or seen[-1] != exe["status"]:
            seen.append(exe["status"])
        if until(exe["status"]):
            return exe, seen
        assert loop.time() < end, f"execution {exe_id} still {exe['status']} after {deadline}s"
        await asyncio.sleep(0.01)


async def test_status_progression_pending_running_succeeded() -> None:
    """PENDING while it waits for a slot (the only one is busy), RUNNING for process_ms in it."""
    async with emulator(process_ms=200, slots=1) as (_, s):
        imp = await new_import(s)
        first = await upload(s, imp, GOOD % 0)
        exe = await upload(s, imp, GOOD % 1 + b"\n" + GOOD % 2 + b"\n")
        assert first["status"] == exe["status"] == "PENDING"  # the answer: taken at creation
        done, seen = await poll(s, imp, exe["id"])
        assert seen == ["PENDING", "RUNNING", "SUCCEEDED"]
        assert done["start_date"] >= done["creation_date"] and done["end_date"] >= done["start_date"]
        assert done["duration"] == done["end_date"] - done["start_date"] and done["duration"] >= 190
        assert (done["num_tasks"], done["completed_tasks"], done["erroneous_tasks"]) == (1, 1, 0)
        assert done["error"] is None
        assert done["result"] == {
            "total_success": 2,
            "total_failure": 0,
            "input_file_name": done["parameters"]["input_file_name"],
            "input_file_uri": done["parameters"]["file_uri"],
            "error_file_uri": None,
            "possible_issue_on_identifiers": False,
            "top_identifiers": {},
        }


async def test_processing_time_grows_with_line_count() -> None:
    async with emulator(process_ms=0, per_line_us=50) as (_, s):
        imp = await new_import(s)
        small = await upload(s, imp, GOOD % 1)
        big = await upload(s, imp, b"\n".join(GOOD % i for i in range(4000)))
        small_done, _ = await poll(s, imp, small["id"])
        big_done, _ = await poll(s, imp, big["id"])
        assert big_done["duration"] >= 150 > small_done["duration"]


async def test_some_bad_lines_still_succeed_with_an_error_file() -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        data = b"\n".join([GOOD % 1, BAD_OP, b"", GOOD % 2, TWO_IDS, b"[1]", GOOD % 3]) + b"\n"
        exe = await upload(s, imp, data)
        done, _ = await poll(s, imp, exe["id"])
        assert done["status"] == "SUCCEEDED"
        assert (done["result"]["total_success"], done["result"]["total_failure"]) == (3, 3)
        uri = done["result"]["error_file_uri"]
        async with s.get("/v1/data_file/data", params={"uri": uri}) as resp:
            assert resp.status == 200 and resp.content_type == "application/x-ndjson"
            rows = [orjson.loads(line) for line in (await resp.read()).splitlines()]
        assert [(r["line"], r["record"]) for r in rows] == [(2, BAD_OP.decode()), (5, TWO_IDS.decode()), (6, "[1]")]
        assert "operation" in rows[0]["reason"] and "two identifiers" in rows[1]["reason"]
        assert "JSON object" in rows[2]["reason"]
        assert all(set(r) == {"line", "reason", "record"} for r in rows)
        input_uri = done["result"]["input_file_uri"]
        async with s.get("/v1/data_file/data", params={"uri": input_uri}) as resp:
            assert resp.status == 404 and "does not keep" in (await resp.json())["error"]
        assert len(emu.accounting.accepted) == 3


async def test_all_lines_failing_ends_failed_with_a_message() -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        done, _ = await poll(s, imp, (await upload(s, imp, BAD_OP + b"\n{oops\n"))["id"])
        assert done["status"] == "FAILED" and "all 2 records were rejected" in done["error"]["message"]
        assert (done["result"]["total_success"], done["result"]["total_failure"]) == (0, 2)
        assert done["erroneous_tasks"] == 1
        async with s.get("/v1/data_file/data", params={"uri": done["result"]["error_file_uri"]}) as resp:
            assert len((await resp.read()).splitlines()) == 2
        blank, _ = await poll(s, imp, (await upload(s, imp, b"\n\n  \n"))["id"])
        assert blank["status"] == "FAILED" and "no record" in blank["error"]["message"]
        assert emu.accounting.accepted == {}


async def test_csv_user_segment_with_quoted_newlines() -> None:
    head = b"operation,expiration_duration,user_account_id,compartment_id,segment_technical_name,data_bag\r\n"
    rows = [b'UPDATE,0,u1,1000,fans,"{""a"":\r\n1}"', b"UPDATE,0,,1000,fans,", b"DELETE,60,u3,1000,fans,"]
    async with emulator() as (emu, s):
        imp = await new_import(s, "USER_SEGMENT", "TEXT_CSV")
        exe = await upload(s, imp, head + b"\r\n".join(rows) + b"\r\n", {"Content-Type": "text/csv"})
        assert exe["parameters"]["input_file_name"].endswith(".csv")
        done, _ = await poll(s, imp, exe["id"])
        assert done["status"] == "SUCCEEDED" and done["parameters"]["number_of_lines"] == 5
        assert (done["result"]["total_success"], done["result"]["total_failure"]) == (2, 1)
        async with s.get("/v1/data_file/data", params={"uri": done["result"]["error_file_uri"]}) as resp:
            [row] = [orjson.loads(line) for line in (await resp.read()).splitlines()]
        assert row["line"] == 4 and "identifier" in row["reason"]
        assert set(emu.accounting.accepted) == {formats.record_digest(rows[0]), formats.record_digest(rows[2])}
        bad, _ = await poll(s, imp, (await upload(s, imp, rows[2] + b"\n", {"Content-Type": "text/csv"}))["id"])
        assert bad["status"] == "FAILED" and "CSV header" in bad["error"]["message"]


async def test_cancel_only_while_pending() -> None:
    async with emulator(process_ms=300, slots=1) as (emu, s):
        imp = await new_import(s)
        first = await upload(s, imp, GOOD % 1)
        second = await upload(s, imp, GOOD % 2)
        action = f"{imp}/executions/{second['id']}/action"
        canceled = (await call(s, "POST", action, json={"action": "CANCEL"}))["data"]
        assert canceled["status"] == "CANCELED" and canceled["end_date"] is not None
        again = await call(s, "POST", action, 400, json={"action": "CANCEL"})
        assert again["error_code"] == "EXECUTION_NOT_PENDING" and "CANCELED" in again["error"]
        bogus = await call(s, "POST", f"{imp}/executions/{first['id']}/action", 400, json={"action": "PAUSE"})
        assert bogus["error"].startswith("action:")
        await poll(s, imp, first["id"], until=lambda st: st == "RUNNING")
        running = await call(s, "POST", f"{imp}/executions/{first['id']}/action", 400, json={"action": "CANCEL"})
        assert "RUNNING" in running["error"]
        done, _ = await poll(s, imp, first["id"])
        assert done["status"] == "SUCCEEDED"
        await call(s, "POST", f"{imp}/executions/{first['id']}/action", 400, json={"action": "CANCEL"})
        await emu.wait_idle()
        assert (await call(s, "GET", f"{imp}/executions/{second['id']}"))["data"]["status"] == "CANCELED"
        assert list(emu.accounting.accepted.values()) == [[first["id"]]]


async def test_executions_listed_newest_first_with_pagination() -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        other = await new_import(s)
        ids = [(await upload(s, imp, GOOD % i))["id"] for i in range(12)]
        await upload(s, other, GOOD % 99)
        page1 = await call(s, "GET", f"{imp}/executions", params={"max_results": 5})
        assert (page1["count"], page1["first_result"], page1["max_results"], page1["total"]) == (5, 0, 5, 12)
        assert [e["id"] for e in page1["data"]] == ids[::-1][:5]
        page3 = await call(s, "GET", f"{imp}/executions", params={"first_result": 10, "max_results": 5})
        assert [e["id"] for e in page3["data"]] == ids[1::-1] and page3["count"] == 2
        default = await call(s, "GET", f"{imp}/executions")
        assert default["count"] == 10 and default["max_results"] == 10
        await emu.wait_idle()
        await call(s, "DELETE", imp)
        await call(s, "GET", f"{imp}/executions/{ids[0]}", 404)

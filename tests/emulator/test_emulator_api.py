"""The emulator over loopback: document imports, auth, envelopes, pagination, unknown ids."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from ..emulator_client import call, emulator_session

TOKEN = "t0k-api"
IMPORTS = "/v1/datamarts/1509/document_imports"
ACTIVITY = {"document_type": "USER_ACTIVITY", "mime_type": "APPLICATION_X_NDJSON", "encoding": "utf-8"}


def emulator(**opts):
    return emulator_session(TOKEN, **opts)


def assert_error(body: dict, code: str, *words: str) -> None:
    assert set(body) == {"status", "error", "error_id", "error_code"}
    assert body["status"] == "error" and body["error_code"] == code
    uuid.UUID(body["error_id"])
    for word in words:
        assert word in body["error"]


async def test_create_get_update_delete_import() -> None:
    async with emulator() as (emu, s):
        created = await call(s, "POST", IMPORTS, json={**ACTIVITY, "name": "nightly 2026-11-02"})
        assert created["status"] == "ok" and set(created) == {"status", "data"}
        imp = created["data"]
        assert set(imp) == {
            "id",
            "datafarm_key",
            "datamart_id",
            "name",
            "document_type",
            "mime_type",
            "encoding",
            "priority",
        }
        assert imp["datamart_id"] == "1509" and imp["priority"] == "MEDIUM" and imp["datafarm_key"]
        one = f"{IMPORTS}/{imp['id']}"
        assert (await call(s, "GET", one))["data"] == imp
        updated = await call(s, "PUT", one, json={"name": "renamed", "priority": "HIGH", "id": imp["id"], "extra": 1})
        assert updated["data"] == {**imp, "name": "renamed", "priority": "HIGH"}
        assert (await call(s, "GET", one))["data"]["name"] == "renamed"
        assert_error(await call(s, "PUT", one, 400, json={"datafarm_key": "other"}), "BAD_REQUEST", "datafarm_key")
        assert_error(await call(s, "PUT", one, 400, json={"mime_type": "TEXT_CSV"}), "BAD_REQUEST", "mime_type")
        assert_error(await call(s, "PUT", one, 400, json={"priority": "URGENT"}), "BAD_REQUEST", "priority")
        assert (await call(s, "DELETE", one))["data"]["id"] == imp["id"]
        assert_error(await call(s, "GET", one, 404), "NOT_FOUND", imp["id"])
        assert_error(await call(s, "DELETE", one, 404), "NOT_FOUND")
        assert emu.accounting.requests[("POST", "create_import")] == 1
        assert emu.accounting.requests[("GET", "get_import")] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ACTIVITY, "name": "x", "document_type": "USER_THING"}, "document_type"),
        ({**ACTIVITY, "name": "x", "mime_type": "TEXT_XML"}, "mime_type"),
        ({**ACTIVITY, "name": "x", "mime_type": "TEXT_CSV"}, "mime_type"),
        ({**ACTIVITY, "name": "x", "priority": "URGENT"}, "priority"),
        (ACTIVITY, "name"),
        ({**ACTIVITY, "name": ""}, "name"),
        ({"name": "x", "mime_type": "APPLICATION_X_NDJSON"}, "document_type"),
        ({**ACTIVITY, "name": 5}, "name"),
    ],
)
async def test_bad_document_import_names_the_field(body: dict, field: str) -> None:
    async with emulator() as (_, s):
        answer = await call(s, "POST", IMPORTS, 400, json=body)
        assert_error(answer, "BAD_REQUEST")
        assert answer["error"].startswith(field + ":")


async def test_csv_allowed_for_user_segment_and_bad_json_rejected() -> None:
    async with emulator() as (_, s):
        body = {
            "document_type": "USER_SEGMENT",
            "mime_type": "TEXT_CSV",
            "encoding": "utf-8",
            "name": "seg",
            "priority": "LOW",
        }
        assert (await call(s, "POST", IMPORTS, json=body))["data"]["mime_type"] == "TEXT_CSV"
        assert_error(await call(s, "POST", IMPORTS, 400, data=b"{nope"), "BAD_REQUEST", "JSON")
        assert_error(await call(s, "POST", IMPORTS, 400, json=[1, 2]), "BAD_REQUEST", "object")


@pytest.mark.parametrize("header", [None, "wrong", f"Bearer {TOKEN}", TOKEN.upper()])
async def test_missing_or_wrong_token_is_401_on_every_route(header: str | None) -> None:
    async with emulator() as (emu, _):
        headers = {"Authorization": header} if header is not None else {}
        async with aiohttp.ClientSession(emu.base_url, headers=headers) as s:
            routes = [
                ("POST", IMPORTS),
                ("GET", IMPORTS),
                ("GET", IMPORTS + "/1001"),
                ("PUT", IMPORTS + "/1001"),
                ("DELETE", IMPORTS + "/1001"),
                ("POST", IMPORTS + "/1001/executions"),
                ("GET", IMPORTS + "/1001/executions"),
                ("GET", IMPORTS + "/1001/executions/5001"),
                ("POST", IMPORTS + "/1001/executions/5001/action"),
                ("GET", "/v1/data_file/data?uri=x"),
                ("GET", "/v1/nowhere"),
            ]
            for method, path in routes:
                assert_error(await call(s, method, path, 401, data=b"{}"), "UNAUTHORIZED")


async def test_unknown_route_and_method_use_the_error_envelope() -> None:
    async with emulator() as (_, s):
        assert_error(await call(s, "GET", "/v1/nowhere", 404), "NOT_FOUND")
        assert_error(await call(s, "PATCH", IMPORTS, 405), "METHOD_NOT_ALLOWED")


async def test_imports_live_in_their_datamart() -> None:
    async with emulator() as (_, s):
        imp = (await call(s, "POST", IMPORTS, json={**ACTIVITY, "name": "a"}))["data"]
        assert_error(await call(s, "GET", f"/v1/datamarts/42/document_imports/{imp['id']}", 404), "NOT_FOUND")
        listed = await call(s, "GET", "/v1/datamarts/42/document_imports")
        assert listed["total"] == 0 and listed["data"] == []


async def test_list_imports_pagination_and_keywords() -> None:
    async with emulator() as (_, s):
        names = [f"load {day:02d} {'nightly' if day % 2 else 'weekly'}" for day in range(1, 16)]
        ids = [(await call(s, "POST", IMPORTS, json={**ACTIVITY, "name": n}))["data"]["id"] for n in names]
        first = await call(s, "GET", IMPORTS)
        assert set(first) == {"status", "data", "count", "first_result", "max_results", "total"}
        assert (first["count"], first["first_result"], first["max_results"], first["total"]) == (10, 0, 10, 15)
        assert [i["id"] for i in first["data"]] == ids[:10]
        second = await call(s, "GET", IMPORTS, params={"first_result": 10, "max_results": 10})
        assert (second["count"], second["total"]) == (5, 15) and [i["id"] for i in second["data"]] == ids[10:]
        past = await call(s, "GET", IMPORTS, params={"first_result": 40})
        assert (past["count"], past["data"], past["total"]) == (0, [], 15)
        big = await call(s, "GET", IMPORTS, params={"max_results": 100000})
        assert big["max_results"] == 1000 and big["count"] == 15
        found = await call(s, "GET", IMPORTS, params={"keywords": "NIGHTLY 1", "max_results": 50})
        assert [i["name"] for i in found["data"]] == [n for n in names if "nightly" in n and "1" in n]
        assert found["total"] == found["count"] == 4
        for bad in ({"first_result": -1}, {"max_results": "ten"}):
            answer = await call(s, "GET", IMPORTS, 400, params=bad)
            assert answer["error"].startswith(next(iter(bad)) + ":")


async def test_unknown_ids_are_404() -> None:
    async with emulator() as (_, s):
        imp = (await call(s, "POST", IMPORTS, json={**ACTIVITY, "name": "a"}))["data"]
        one = f"{IMPORTS}/{imp['id']}"
        for method, path in [
            ("GET", f"{IMPORTS}/999"),
            ("PUT", f"{IMPORTS}/999"),
            ("GET", f"{IMPORTS}/999/executions"),
            ("GET", f"{one}/executions/777"),
            ("POST", f"{one}/executions/777/action"),
            ("GET", "/v1/data_file/data?uri=mics://nothing"),
        ]:
            assert_error(await call(s, method, path, 404, json={"action": "CANCEL"}), "NOT_FOUND")
        assert_error(await call(s, "GET", "/v1/data_file/data", 400), "BAD_REQUEST", "uri")
        assert_error(
            await call(
                s,
                "POST",
                f"{IMPORTS}/999/executions",
                404,
                data=b"{}\n",
                headers={"Content-Type": "application/x-ndjson"},
            ),
            "NOT_FOUND",
        )


async def test_json_body_sent_in_pieces_and_oversized_json() -> None:
    async def pieces():
        body = b'{"document_type":"USER_PROFILE","mime_type":"APPLICATION_X_NDJSON","name":"chunked"}'
        for i in range(0, len(body), 7):
            yield body[i : i + 7]
            await asyncio.sleep(0.001)

    async with emulator() as (_, s):
        created = await call(s, "POST", IMPORTS, data=pieces(), headers={"Content-Type": "application/json"})
        assert created["data"]["name"] == "chunked"
        huge = {**ACTIVITY, "name": "x" * 2_000_000}
        assert_error(await call(s, "POST", IMPORTS, 413, json=huge), "PAYLOAD_TOO_LARGE")

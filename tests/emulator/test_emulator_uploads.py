"""Uploads over loopback: raw and multipart forms, limits (413), types (415), empty (400)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp

from pipeline import formats

from ..emulator_client import call, emulator_session

TOKEN = "t0k-up"
IMPORTS = "/v1/datamarts/1509/document_imports"
NDJSON = "application/x-ndjson"
STORE_VISIT = (
    b'{"$email_hash":{"$email":"jane@example.com"},"$type":"TOUCH","$session_status":"NO_SESSION",'
    b'"$ts":1605262037783,"$events":[{"$event_name":"store-visit","$ts":1605262037783,"$properties":{}}],'
    b'"$location":{"$country":"france","$city":"paris","$zip_code":"75001"}}'
)


def emulator(**opts):
    return emulator_session(TOKEN, **opts)


async def new_import(s, document_type: str = "USER_ACTIVITY", mime_type: str = "APPLICATION_X_NDJSON") -> str:
    body = {"document_type": document_type, "mime_type": mime_type, "encoding": "utf-8", "name": "t"}
    return f"{IMPORTS}/{(await call(s, 'POST', IMPORTS, json=body))['data']['id']}"


async def raw_http(base_url: str, head: bytes) -> tuple[int, bytes]:
    """Send raw request bytes; return the first status and what followed it (bounded read)."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(head)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        rest = await asyncio.wait_for(reader.read(4096), 5)
        return int(status_line.split()[1]), rest
    finally:
        writer.close()


def upload_head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path}/executions HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\n"
        f"Content-Type: {NDJSON}\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def test_raw_upload_answers_a_pending_execution_with_every_field() -> None:
    async with emulator(process_ms=10_000) as (emu, s):
        imp = await new_import(s)
        headers = {"Content-Type": NDJSON, "Content-Disposition": 'attachment; filename="visits.ndjson"'}
        exe = (await call(s, "POST", f"{imp}/executions", data=STORE_VISIT + b"\n", headers=headers))["data"]
        assert exe["status"] == "PENDING"
        assert set(exe) == {
            "id", "status", "creation_date", "start_date", "end_date", "duration", "organisation_id", "user_id",
            "job_type", "import_mode", "import_type", "num_tasks", "completed_tasks", "erroneous_tasks",
            "parameters", "result", "error", "cancel_status", "debug", "is_retryable", "permalink_uri", "retry_count",
        }  # fmt: skip
        assert set(exe["parameters"]) == {
            "datamart_id", "document_import_id", "mime_type", "document_type", "input_file_name", "file_uri",
            "number_of_lines", "segment_id",
        }  # fmt: skip
        assert exe["start_date"] is exe["end_date"] is exe["duration"] is exe["result"] is exe["error"] is None
        assert exe["num_tasks"] is None and isinstance(exe["creation_date"], int)
        assert exe["parameters"]["input_file_name"] == "visits.ndjson"
        assert exe["parameters"]["number_of_lines"] == 1
        assert (exe["job_type"], exe["import_mode"]) == ("DOCUMENT_IMPORT", "MANUAL_FILE")
        assert emu.accounting.uploads == [(exe["id"], "visits.ndjson", len(STORE_VISIT) + 1, 1, NDJSON)]
        listed = await call(s, "GET", f"{imp}/executions")
        [row] = listed["data"]
        assert row["status"] == "RUNNING" and listed["total"] == 1  # a free slot took it at once
        moving = {"status", "start_date", "num_tasks", "completed_tasks", "erroneous_tasks"}
        assert {k: v for k, v in row.items() if k not in moving} == {k: v for k, v in exe.items() if k not in moving}


async def test_raw_filename_from_query_or_generated() -> None:
    async with emulator() as (_, s):
        imp = await new_import(s)
        h = {"Content-Type": NDJSON + "; charset=utf-8"}
        named = await call(s, "POST", f"{imp}/executions?filename=a.ndjson", data=STORE_VISIT, headers=h)
        assert named["data"]["parameters"]["input_file_name"] == "a.ndjson"
        anon = (await call(s, "POST", f"{imp}/executions", data=STORE_VISIT, headers=h))["data"]
        assert anon["parameters"]["input_file_name"] == f"upload-{anon['id']}.ndjson"


def form(payload: bytes, *, type_first: bool | None, part_type: str = NDJSON, type_value: str = NDJSON):
    data = aiohttp.FormData()
    if type_first:
        data.add_field("type", type_value)
    data.add_field("file", payload, filename="batch-0001.ndjson", content_type=part_type)
    if type_first is False:
        data.add_field("type", type_value)
    return data


async def test_multipart_upload_type_before_or_after_or_absent() -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        for type_first in (True, False, None):
            exe = (await call(s, "POST", f"{imp}/executions", data=form(STORE_VISIT, type_first=type_first)))["data"]
            assert exe["parameters"]["input_file_name"] == "batch-0001.ndjson"
        api_name = form(
            STORE_VISIT, type_first=True, part_type="application/octet-stream", type_value="APPLICATION_X_NDJSON"
        )
        await call(s, "POST", f"{imp}/executions", data=api_name)
        assert [u.filename for u in emu.accounting.uploads] == ["batch-0001.ndjson"] * 4
        await emu.wait_idle()
        results = [(await call(s, "GET", f"{imp}/executions/{u.execution_id}"))["data"] for u in emu.accounting.uploads]
        assert all(r["result"]["input_file_name"] == "batch-0001.ndjson" for r in results)
        assert all(r["result"]["total_success"] == 1 for r in results)


async def test_multipart_wrong_type_is_415_and_missing_file_is_400() -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        wrong = form(STORE_VISIT, type_first=False, type_value="text/csv")
        assert (await call(s, "POST", f"{imp}/executions", 415, data=wrong))["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
        untyped = form(STORE_VISIT, type_first=None, part_type="application/octet-stream")
        await call(s, "POST", f"{imp}/executions", 415, data=untyped)
        nofile = aiohttp.FormData({"type": NDJSON, "other": "x"})
        nofile.add_field("upload", b"x", filename="x")
        answer = await call(s, "POST", f"{imp}/executions", 400, data=nofile)
        assert answer["error"].startswith("file:")
        empty = form(b"", type_first=True)
        assert "empty" in (await call(s, "POST", f"{imp}/executions", 400, data=empty))["error"]
        assert emu.accounting.uploads == []


async def test_raw_content_type_must_match_the_import() -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        for ctype in ("text/csv", "application/json", "application/octet-stream"):
            answer = await call(s, "POST", f"{imp}/executions", 415, data=STORE_VISIT, headers={"Content-Type": ctype})
            assert answer["error_code"] == "UNSUPPORTED_MEDIA_TYPE" and NDJSON in answer["error"]
        seg = await new_import(s, "USER_SEGMENT", "TEXT_CSV")
        await call(s, "POST", f"{seg}/executions", 415, data=STORE_VISIT, headers={"Content-Type": NDJSON})
        assert emu.accounting.uploads == []


async def test_empty_upload_is_400_raw_and_chunked() -> None:
    async def nothing():
        return
        yield b""

    async with emulator() as (emu, s):
        imp = await new_import(s)
        h = {"Content-Type": NDJSON}
        assert "empty" in (await call(s, "POST", f"{imp}/executions", 400, data=b"", headers=h))["error"]
        assert "empty" in (await call(s, "POST", f"{imp}/executions", 400, data=nothing(), headers=h))["error"]
        assert emu.accounting.uploads == []


async def test_413_from_content_length_before_the_body_is_read() -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        status, rest = await raw_http(emu.base_url, upload_head(imp, 100_000_001))
        assert status == 413 and b"PAYLOAD_TOO_LARGE" in rest
        # With Expect: 100-continue the 413 replaces the 100: the client never sends the body.
        status, rest = await raw_http(emu.base_url, upload_head(imp, 100_000_001, "Expect: 100-continue\r\n"))
        assert status == 413
        status, _ = await raw_http(emu.base_url, upload_head(imp, 10, "Expect: 100-continue\r\n"))
        assert status == 100
        # multipart: the file limit plus 64 KiB of envelope
        head = upload_head(imp, 100_000_000 + 65 * 1024).replace(NDJSON.encode(), b"multipart/form-data; boundary=b")
        assert (await raw_http(emu.base_url, head))[0] == 413
        assert emu.accounting.uploads == []


async def test_413_while_streaming_a_chunked_body() -> None:
    chunk = (STORE_VISIT + b"\n") * (1024 * 1024 // (len(STORE_VISIT) + 1))

    async def body(count: int):
        for _ in range(count):
            yield chunk

    async with emulator(light=True) as (emu, s):
        imp = await new_import(s)
        h = {"Content-Type": NDJSON}
        n = 100_000_000 // len(chunk)
        answer = await call(s, "POST", f"{imp}/executions", 413, data=body(n + 1), headers=h)
        assert answer["error_code"] == "PAYLOAD_TOO_LARGE"
        ok = (await call(s, "POST", f"{imp}/executions", data=body(n), headers=h))["data"]
        assert ok["parameters"]["number_of_lines"] == n * chunk.count(b"\n")
        assert [u.size for u in emu.accounting.uploads] == [n * len(chunk)]


async def test_413_for_a_multipart_file_part_over_the_limit() -> None:
    async with emulator(max_file_bytes=1000) as (emu, s):
        imp = await new_import(s)
        big = form((STORE_VISIT + b"\n") * 5, type_first=True)
        assert (await call(s, "POST", f"{imp}/executions", 413, data=big))["error_code"] == "PAYLOAD_TOO_LARGE"
        small = form(STORE_VISIT, type_first=True)
        await call(s, "POST", f"{imp}/executions", data=small)
        assert len(emu.accounting.uploads) == 1


async def test_every_good_line_is_accounted_once_with_its_execution() -> None:
    lines = [STORE_VISIT.replace(b"jane", f"user{i}".encode()) for i in range(50)]
    async with emulator() as (emu, s):
        imp = await new_import(s)
        h = {"Content-Type": NDJSON}
        first = (await call(s, "POST", f"{imp}/executions", data=b"\n".join(lines[:30]) + b"\n", headers=h))["data"]
        second = (await call(s, "POST", f"{imp}/executions", data=b"\r\n".join(lines[30:]), headers=h))["data"]
        await emu.wait_idle()
        accepted = emu.accounting.accepted
        assert accepted == {
            formats.record_digest(line): [first["id"] if i < 30 else second["id"]] for i, line in enumerate(lines)
        }
        assert emu.accounting.duplicates() == {} and emu.accounting.accepted_records == 50
        again = (await call(s, "POST", f"{imp}/executions", data=lines[0], headers=h))["data"]
        await emu.wait_idle()
        assert emu.accounting.duplicates() == {formats.record_digest(lines[0]): [first["id"], again["id"]]}

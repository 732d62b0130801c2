"""Multipart uploads over loopback, read by the emulator's own streaming parser."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import aiohttp
import pytest

from pipeline.client.multipart import MultipartBody
from tests.emulator.test_emulator_uploads import IMPORTS, NDJSON, STORE_VISIT, TOKEN, call, emulator, new_import

LINES = [STORE_VISIT.replace(b"jane", f"user{i:06d}".encode()) for i in range(40_000)]
PAYLOAD = b"\n".join(LINES) + b"\n"  # about 10 MB


async def chunks_of(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


async def send_like_the_pipeline(session, path: str, payload: bytes, filename: str, chunk: int = 1 << 16):
    body = MultipartBody(filename=filename, content_type=NDJSON, type_value=NDJSON)
    headers = {"Content-Type": body.content_type, "Content-Length": str(body.length(len(payload)))}
    return await call(session, "POST", path, data=body.stream(chunks_of(payload, chunk)), headers=headers)


@pytest.mark.parametrize("light", [True, False])
async def test_the_pipelines_multipart_body_streams_in(light: bool) -> None:
    async with emulator(light=light) as (emu, s):
        imp = await new_import(s)
        exe = (await send_like_the_pipeline(s, f"{imp}/executions", PAYLOAD, "run1-00001.ndjson"))["data"]
        assert exe["parameters"]["input_file_name"] == "run1-00001.ndjson"
        assert exe["parameters"]["number_of_lines"] == len(LINES)
        assert emu.accounting.uploads == [(exe["id"], "run1-00001.ndjson", len(PAYLOAD), len(LINES), NDJSON)]
        await emu.wait_idle()
        done = (await call(s, "GET", f"{imp}/executions/{exe['id']}"))["data"]
        assert done["result"]["total_success"] == len(LINES) and done["result"]["total_failure"] == 0
        if not light:
            assert emu.accounting.accepted_records == len(LINES)


async def test_parallel_multipart_uploads_with_odd_chunk_sizes() -> None:
    cases = {1: PAYLOAD[:20_000], 7: PAYLOAD[:300_000], 4093: PAYLOAD, 65_537: PAYLOAD[:-5], 1 << 20: PAYLOAD}
    async with emulator(light=True) as (emu, s):
        imp = await new_import(s)
        answers = await asyncio.gather(
            *(send_like_the_pipeline(s, f"{imp}/executions", data, f"p-{n}.nd", n) for n, data in cases.items())
        )
        for (n, data), answer in zip(cases.items(), answers, strict=True):
            assert answer["data"]["parameters"]["input_file_name"] == f"p-{n}.nd"
            assert answer["data"]["parameters"]["number_of_lines"] == data.count(b"\n") + (not data.endswith(b"\n"))
        assert sorted(u.size for u in emu.accounting.uploads) == sorted(map(len, cases.values()))


async def raw_request(base_url: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    """One HTTP/1.1 request written by hand (the body exactly as given); the status and JSON answer."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        status = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
        length = 0
        while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
    finally:
        writer.close()


def multipart(boundary: str, *parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    body = preamble + (b"\r\n" if preamble else b"")
    for part in parts:
        body += f"--{boundary}\r\n".encode() + part + b"\r\n"
    return body + f"--{boundary}--".encode() + epilogue


FILE_PART = b'Content-Disposition: form-data; name="file"; filename="we \\"quote\\".ndjson"\r\n\r\n'
TYPE_PART = b'Content-Disposition: form-data; name="type"\r\n\r\nAPPLICATION_X_NDJSON'


async def test_hand_written_bodies_preamble_epilogue_quotes_and_type_after_the_file() -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        body = multipart(
            "XyZ",
            b'Content-Disposition: form-data; name="note"\r\n\r\nignored',
            FILE_PART + STORE_VISIT + b"\r\n" + STORE_VISIT,
            TYPE_PART,
            preamble=b"This is a preamble.",
            epilogue=b"\r\nThis is an epilogue.\r\n",
        )
        headers = {"Content-Type": 'multipart/form-data; boundary="XyZ"', "Content-Length": str(len(body))}
        status, answer = await raw_request(emu.base_url, f"{imp}/executions", headers, body)
        assert status == 200, answer
        assert answer["data"]["parameters"]["input_file_name"] == 'we "quote".ndjson'
        assert answer["data"]["parameters"]["number_of_lines"] == 2
        assert emu.accounting.uploads[0].size == len(STORE_VISIT) * 2 + 2


@pytest.mark.parametrize(
    "content_type, body, status, message",
    [
        ("multipart/form-data; boundary=b", multipart("b", FILE_PART + STORE_VISIT)[:-4], 400, "truncated multipart"),
        ("multipart/form-data; boundary=b", multipart("b", FILE_PART + STORE_VISIT)[:-7], 400, "truncated multipart"),
        ("multipart/form-data", multipart("b", FILE_PART + STORE_VISIT), 400, "no boundary"),
        ("multipart/form-data; boundary=b", b"--b\r\nno header line\r\n\r\nx\r\n--b--", 400, "malformed part header"),
        ("multipart/form-data; boundary=b", multipart("b", TYPE_PART), 400, "file: missing part"),
        ("multipart/form-data; boundary=b", multipart("b", FILE_PART + b"x", FILE_PART + b"y"), 400, "more than one"),
        ("multipart/form-data; boundary=b", multipart("b", TYPE_PART, FILE_PART), 400, "empty upload"),
    ],
)
async def test_bad_multipart_bodies(content_type: str, body: bytes, status: int, message: str) -> None:
    async with emulator() as (emu, s):
        imp = await new_import(s)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        got, answer = await raw_request(emu.base_url, f"{imp}/executions", headers, body)
        assert got == status and message in answer["error"], answer
        assert emu.accounting.uploads == []


async def test_413_for_a_chunked_multipart_body_over_the_limits() -> None:
    async def body(parts):
        for part in parts:
            yield part

    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="f.nd"\r\n'
    head += b"Content-Type: application/x-ndjson\r\n\r\n"
    line = STORE_VISIT + b"\n"
    async with emulator(light=True, max_file_bytes=100_000) as (emu, s):
        imp = await new_import(s)
        h = {"Content-Type": "multipart/form-data; boundary=b"}
        over = [head, *[line] * (100_000 // len(line) + 1), b"\r\n--b--\r\n"]
        answer = await call(s, "POST", f"{imp}/executions", 413, data=body(over), headers=h)
        assert answer["error_code"] == "PAYLOAD_TOO_LARGE" and "100000" in answer["error"]
        # an envelope (everything but the file) over 64 KiB: a huge extra field
        field = b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
        fat = [field, *[b"x" * 1024] * 80, b"\r\n", head, line, b"\r\n--b--\r\n"]
        answer = await call(s, "POST", f"{imp}/executions", 413, data=body(fat), headers=h)
        assert "envelope" in answer["error"]
        ok = [head, *[line] * (100_000 // len(line)), b"\r\n--b--\r\n"]
        answer = await call(s, "POST", f"{imp}/executions", data=body(ok), headers=h)
        assert answer["data"]["parameters"]["number_of_lines"] == 100_000 // len(line)
        assert len(emu.accounting.uploads) == 1


async def test_the_connection_stays_usable_after_a_multipart_upload() -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with emulator(light=True) as (emu, _):
        async with aiohttp.ClientSession(emu.base_url, headers={"Authorization": TOKEN}, connector=connector) as s:
            imp = await new_import(s)
            for n in range(3):
                await send_like_the_pipeline(s, f"{imp}/executions", PAYLOAD[:100_000], f"k-{n}.nd")
            assert len(emu.accounting.uploads) == 3
            assert (await call(s, "GET", IMPORTS))["total"] == 1

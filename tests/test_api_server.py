"""ApiClient against a real loopback aiohttp server (port 0): streamed bodies, lengths, parts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import tracemalloc

import pytest
from aiohttp import web

from pipeline.api import ApiClient, RetryPolicy
from pipeline.errors import TransportError

TOKEN = "loopback-token"
EXE_ROUTE = "/v1/datamarts/{dm}/document_imports/{imp}/executions"
MB = 1_000_000


@contextlib.asynccontextmanager
async def serve(app: web.Application):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class FakeApi:
    """Just enough of the API to check what the client sends. ``drop_first`` closes the
    connection after creating the execution of the first upload (an ambiguous failure)."""

    def __init__(self, *, drop_first: bool = False, delay_s: float = 0.0):
        self.uploads: list[dict] = []
        self.executions: list[dict] = []
        self.drop_first = drop_first
        self.delay_s = delay_s
        self.list_calls = 0
        app = web.Application(client_max_size=200 * MB)
        app.router.add_post(EXE_ROUTE, self.upload)
        app.router.add_get(EXE_ROUTE, self.list)
        self.app = app

    async def upload(self, request: web.Request) -> web.StreamResponse:
        assert request.headers["Authorization"] == TOKEN
        seen = {
            "content_length": request.content_length,
            "chunked": "chunked" in request.headers.get("Transfer-Encoding", ""),
            "content_type": request.content_type,
            "parts": [],
        }
        received = 0
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                digest, n, small = hashlib.sha256(), 0, bytearray()
                while chunk := await part.read_chunk(1 << 16):
                    digest.update(chunk)
                    n += len(chunk)
                    if not part.filename:
                        small += chunk
                ctype = part.headers.get("Content-Type")
                seen["parts"].append((part.name, part.filename, ctype, n, digest.hexdigest()))
                if part.name == "type":
                    seen["type_value"] = small.decode()
            filename = next((p[1] for p in seen["parts"] if p[0] == "file"), None)
            received = None
        else:
            digest = hashlib.sha256()
            received = 0
            async for chunk in request.content.iter_chunked(1 << 16):
                digest.update(chunk)
                received += len(chunk)
            seen["raw"] = (received, digest.hexdigest())
            filename = None
        self.uploads.append(seen)
        execution = {
            "id": f"e{len(self.executions) + 1}",
            "status": "PENDING",
            "creation_date": int(time.time() * 1000),
            "parameters": {"input_file_name": filename},
            "result": None,
        }
        self.executions.insert(0, execution)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_first and len(self.uploads) == 1:
            request.transport.close()  # the execution exists, but the client never hears of it
            return web.Response()
        return web.json_response({"status": "ok", "data": execution}, status=201)

    async def list(self, request: web.Request) -> web.Response:
        self.list_calls += 1
        first = int(request.query.get("first_result", 0))
        size = int(request.query.get("max_results", 100))
        items = self.executions[first : first + size]
        meta = {"count": len(items), "first_result": first, "max_results": size, "total": len(self.executions)}
        return web.json_response({"status": "ok", "data": items, **meta})


def pattern_source(size: int, chunk: int = 1 << 16):
    """A chunks factory producing ``size`` deterministic bytes without holding them."""
    block = (b'{"operation":"UPSERT","user_account_id":"u","compartment_id":"1","user_profile":{}}\n' * 800)[:chunk]

    def factory():
        async def gen():
            left = size
            while left:
                n = min(left, len(block))
                yield block[:n]
                left -= n

        return gen()

    return factory


async def expected_digest(factory) -> str:
    d = hashlib.sha256()
    async for c in factory():
        d.update(c)
    return d.hexdigest()


async def test_streamed_multipart_upload_of_5_mb():
    fake = FakeApi()
    size = 5 * MB + 17
    source = pattern_source(size)
    async with serve(fake.app) as base, ApiClient(base, TOKEN) as api:
        res = await api.upload(
            1, 2, chunks=source, size=size, filename="b-000001.ndjson", mime_type="APPLICATION_X_NDJSON"
        )
    assert res.execution["id"] == "e1" and res.attempts == 1 and not res.recovered
    (seen,) = fake.uploads
    assert not seen["chunked"] and seen["content_type"] == "multipart/form-data"
    parts = seen["parts"]
    assert [(p[0], p[1], p[2]) for p in parts] == [
        ("type", None, None),
        ("file", "b-000001.ndjson", "application/x-ndjson"),
    ]
    assert seen["type_value"] == "application/x-ndjson"
    assert parts[1][3] == size and parts[1][4] == await expected_digest(source)
    overhead = seen["content_length"] - size
    assert 0 < overhead < 400  # boundaries and part headers only


async def test_streamed_raw_upload_of_5_mb():
    fake = FakeApi()
    size = 5 * MB
    source = pattern_source(size)
    async with serve(fake.app) as base, ApiClient(base, TOKEN) as api:
        await api.upload(1, 2, chunks=source, size=size, filename="r.csv", mime_type="TEXT_CSV", form="raw")
    (seen,) = fake.uploads
    assert seen["content_length"] == size and not seen["chunked"] and seen["content_type"] == "text/csv"
    assert seen["raw"] == (size, await expected_digest(source))


async def test_dropped_connection_after_creation_is_recovered_from_listing():
    fake = FakeApi(drop_first=True)
    size = 300_000
    async with serve(fake.app) as base, ApiClient(base, TOKEN, retry=RetryPolicy(base_delay_s=0)) as api:
        res = await api.upload(
            1, 2, chunks=pattern_source(size), size=size, filename="b-7.ndjson", mime_type="APPLICATION_X_NDJSON"
        )
        assert res.recovered and res.attempts == 2 and res.execution["id"] == "e1"
        assert len(fake.uploads) == 1 and fake.list_calls == 1  # never sent twice
        assert (await api.find_execution_by_filename(1, 2, "b-7.ndjson"))["id"] == "e1"
        assert await api.find_execution_by_filename(1, 2, "nope.ndjson") is None


async def test_timeout_is_an_ambiguous_transport_error():
    fake = FakeApi(delay_s=0.5)
    async with serve(fake.app) as base, ApiClient(base, TOKEN, timeout_s=0.2, retry=RetryPolicy(max_attempts=1)) as api:
        with pytest.raises(TransportError) as info:
            await api.upload(
                1,
                2,
                chunks=pattern_source(10),
                size=10,
                filename="t.ndjson",
                mime_type="APPLICATION_X_NDJSON",
                form="raw",
            )
    assert info.value.ambiguous and info.value.attempts == 1 and "timed out" in str(info.value)


async def test_connection_refused_is_not_ambiguous():
    async with serve(web.Application()) as base:
        pass  # the port is free again
    async with ApiClient(base, TOKEN, retry=RetryPolicy(max_attempts=2, base_delay_s=0)) as api:
        with pytest.raises(TransportError) as info:
            await api.get_import(1, 2)
    assert not info.value.ambiguous and info.value.attempts == 2 and TOKEN not in str(info.value)


async def test_memory_stays_flat_for_a_100_mb_body():
    async def sink(request: web.Request) -> web.Response:
        n = 0
        async for chunk in request.content.iter_chunked(1 << 20):
            n += len(chunk)
        return web.json_response({"status": "ok", "data": {"id": "big", "received": n}})

    app = web.Application(client_max_size=200 * MB)
    app.router.add_post(EXE_ROUTE, sink)
    size = 100 * MB
    async with serve(app) as base, ApiClient(base, TOKEN) as api:
        tracemalloc.start()
        try:
            res = await api.upload(
                1, 2, chunks=pattern_source(size), size=size, filename="big.ndjson", mime_type="APPLICATION_X_NDJSON"
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert res.execution["received"] > size
    assert peak < 20 * MB, f"peak traced memory {peak / MB:.1f} MB"

"""ApiClient against a real loopback aiohttp server (port 0): streamed bodies, lengths, parts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from pipeline.client.api import ApiClient, RetryPolicy, UploadResult
from pipeline.client.multipart import UploadUnsettled
from pipeline.errors import ApiError, TransportError

TOKEN = "loopback-token"
EXE_ROUTE = "/v1/datamarts/{dm}/document_imports/{imp}/executions"
MB = 1_000_000


@contextlib.asynccontextmanager
async def serve(app: web.Application):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]  # the bound (host, port): the public way to the ephemeral port
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class FakeApi:
    """Just enough of the API to check what the client sends. ``drop_first`` closes the
    connection after creating the execution of the first upload (an ambiguous failure).
    ``script`` answers the first uploads in order, each with a ``web.Response`` factory instead of
    the execution (``created=True`` in the tuple: the execution is created anyway)."""

    def __init__(self, *, drop_first: bool = False, delay_s: float = 0.0, script=()):
        self.uploads: list[dict] = []
        self.executions: list[dict] = []
        self.drop_first = drop_first
        self.delay_s = delay_s
        self.script = list(script)
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
        if self.script:
            answer, created = self.script.pop(0)
            if not created:
                return answer()
        else:
            answer = None
        execution = {
            "id": f"e{len(self.executions) + 1}",
            "status": "PENDING",
            "creation_date": int(time.time() * 1000),
            "parameters": {"input_file_name": filename},
            "result": None,
        }
        self.executions.insert(0, execution)
        if answer is not None:
            return answer()
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
    assert res.execution["id"] == "e1" and res.attempts == 1 and res.elapsed_s >= 0
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


def test_upload_result_holds_only_the_execution_attempts_and_time():
    assert [f.name for f in dataclasses.fields(UploadResult)] == ["execution", "attempts", "elapsed_s"]


async def test_streamed_raw_upload_of_5_mb():
    fake = FakeApi()
    size = 5 * MB
    source = pattern_source(size)
    async with serve(fake.app) as base, ApiClient(base, TOKEN) as api:
        await api.upload(1, 2, chunks=source, size=size, filename="r.csv", mime_type="TEXT_CSV", form="raw")
    (seen,) = fake.uploads
    assert seen["content_length"] == size and not seen["chunked"] and seen["content_type"] == "text/csv"
    assert seen["raw"] == (size, await expected_digest(source))


async def test_dropped_connection_after_creation_is_unsettled_after_one_post_and_then_found():
    fake = FakeApi(drop_first=True)
    size = 300_000
    async with serve(fake.app) as base, ApiClient(base, TOKEN, retry=RetryPolicy(base_delay_s=0)) as api:
        with pytest.raises(UploadUnsettled) as info:
            await api.upload(
                1, 2, chunks=pattern_source(size), size=size, filename="b-7.ndjson", mime_type="APPLICATION_X_NDJSON"
            )
        assert info.value.attempts == 1
        assert isinstance(info.value.cause, TransportError) and info.value.cause.ambiguous
        assert len(fake.uploads) == 1 and fake.list_calls == 0  # never sent twice, never looked up
        # the run engine settles it by name: the execution is there
        assert (await api.find_execution_by_filename(1, 2, "b-7.ndjson"))["id"] == "e1"
        assert await api.find_execution_by_filename(1, 2, "nope.ndjson") is None
    assert len(fake.uploads) == 1


async def test_timeout_is_unsettled_and_not_resent():
    fake = FakeApi(delay_s=0.5)
    policy = RetryPolicy(max_attempts=3, base_delay_s=0)
    async with serve(fake.app) as base, ApiClient(base, TOKEN, timeout_s=0.2, retry=policy) as api:
        with pytest.raises(UploadUnsettled) as info:
            await api.upload(
                1,
                2,
                chunks=pattern_source(10),
                size=10,
                filename="t.ndjson",
                mime_type="APPLICATION_X_NDJSON",
                form="raw",
            )
    cause = info.value.cause
    assert isinstance(cause, TransportError) and cause.ambiguous and "timed out" in str(cause)
    assert info.value.attempts == 1 and len(fake.uploads) == 1  # the execution exists: one POST only


def html(status: int):
    return lambda: web.Response(status=status, text=f"<h1>{status}</h1>", content_type="text/html")


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (html(500), ApiError),
        (html(502), ApiError),
        (html(504), ApiError),
        (lambda: web.Response(status=200, text="<html>proxy page</html>", content_type="text/html"), TransportError),
        (lambda: web.json_response({"status": "error", "error": "internal", "error_code": "INTERNAL"}), ApiError),
        (lambda: web.json_response({"status": "ok", "data": {"status": "PENDING"}}, status=201), TransportError),
    ],
    ids=["500", "502", "504", "2xx-not-json", "2xx-error-envelope", "2xx-no-id"],
)
async def test_answers_that_may_hide_a_creation_are_unsettled_at_once(answer, kind):
    fake = FakeApi(script=[(answer, True)])
    async with serve(fake.app) as base, ApiClient(base, TOKEN, retry=RetryPolicy(base_delay_s=0)) as api:
        with pytest.raises(UploadUnsettled) as info:
            await api.upload(
                1, 2, chunks=pattern_source(100), size=100, filename="u.ndjson", mime_type="APPLICATION_X_NDJSON"
            )
        assert isinstance(info.value.cause, kind) and info.value.attempts == 1
        assert len(fake.uploads) == 1 and fake.list_calls == 0
        assert (await api.find_execution_by_filename(1, 2, "u.ndjson"))["id"] == "e1"


class Sleeps:
    def __init__(self):
        self.slept = []

    async def __call__(self, delay):
        self.slept.append(delay)


async def test_refusals_that_create_nothing_are_resent():
    busy = lambda: web.Response(status=503, text="busy", headers={"Retry-After": "0"})  # noqa: E731
    slow = lambda: web.json_response({"status": "error", "error": "slow"}, status=429)  # noqa: E731
    timeout = lambda: web.Response(status=408, text="request timeout")  # noqa: E731
    fake = FakeApi(script=[(busy, False), (slow, False), (timeout, False)])
    sleeps = Sleeps()
    async with serve(fake.app) as base, ApiClient(base, TOKEN, sleep=sleeps) as api:
        res = await api.upload(
            1, 2, chunks=pattern_source(100), size=100, filename="r.ndjson", mime_type="APPLICATION_X_NDJSON"
        )
    assert res.attempts == 4 and res.execution["id"] == "e1" and len(fake.executions) == 1
    assert len(fake.uploads) == 4 and len(sleeps.slept) == 3 and sleeps.slept[0] == 0


async def test_retry_after_date_is_read_against_the_servers_clock():
    server_now = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # a server clock 1 h ahead

    def busy():
        headers = {
            "Date": format_datetime(server_now, usegmt=True),
            "Retry-After": format_datetime(server_now + timedelta(seconds=2), usegmt=True),
        }
        return web.Response(status=503, text="busy", headers=headers)

    fake = FakeApi(script=[(busy, False)])
    sleeps = Sleeps()
    async with serve(fake.app) as base, ApiClient(base, TOKEN, sleep=sleeps) as api:
        res = await api.upload(
            1, 2, chunks=pattern_source(10), size=10, filename="d.ndjson", mime_type="APPLICATION_X_NDJSON"
        )
    assert res.attempts == 2 and sleeps.slept == [2.0]  # not an hour (nor the 120 s cap)


async def test_connection_refused_is_not_ambiguous():
    async with serve(web.Application()) as base:
        pass  # the port is free again
    async with ApiClient(base, TOKEN, retry=RetryPolicy(max_attempts=2, base_delay_s=0)) as api:
        with pytest.raises(TransportError) as info:
            await api.get_import(1, 2)
    assert not info.value.ambiguous and info.value.attempts == 2 and TOKEN not in str(info.value)


async def test_upload_to_a_refusing_port_is_resent_then_exhausted():
    async with serve(web.Application()) as base:
        pass  # nothing listens: nothing can be created
    calls = []
    async with ApiClient(base, TOKEN, retry=RetryPolicy(max_attempts=3, base_delay_s=0)) as api:
        with pytest.raises(TransportError) as info:
            await api.upload(
                1, 2, chunks=pattern_source(10), size=10, filename="c.ndjson", mime_type="APPLICATION_X_NDJSON",
                on_attempt=calls.append,
            )  # fmt: skip
    assert not isinstance(info.value, UploadUnsettled) and not info.value.ambiguous
    assert info.value.attempts == 3 and calls == [1, 2, 3]


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

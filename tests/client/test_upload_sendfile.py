"""Batch bodies sent with sendfile (``upload.BatchBody`` + ``multipart.FilePartsPayload``): exact bytes."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import pytest
from aiohttp import web

from pipeline.client.api import ApiClient, RetryPolicy
from pipeline.client.sendfile import FIRST_SLICE, MAX_SLICE
from pipeline.engine.pool import body_stream
from pipeline.errors import ServiceError
from pipeline.reading.reader import Batch
from tests.client.test_api_server import EXE_ROUTE, MB, TOKEN, serve


class Capture:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        app = web.Application(client_max_size=200 * MB)
        app.router.add_post(EXE_ROUTE, self.upload)
        self.app = app

    async def upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append((request.headers["Content-Type"], body))
        return web.json_response({"status": "ok", "data": {"id": str(len(self.bodies)), "status": "PENDING"}})


def batch_of(path: Path, ranges: tuple[tuple[int, int], ...], header: bytes = b"") -> tuple[Batch, bytes]:
    data = path.read_bytes()
    body = header + b"".join(data[a:b] for a, b in ranges)
    batch = Batch(
        number=3,
        source=path,
        data_path=path,
        ranges=ranges,
        header=header,
        first_line=1,
        last_line=1,
        records=body.count(b"\n"),
        size=len(body),
        byte_start=ranges[0][0],
        byte_end=ranges[-1][1],
        digest=f"crc32:{zlib.crc32(body):08x}:{len(body)}",
    )
    return batch, body


@pytest.fixture
def sendfile_calls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[bool, list[int]]:
    """Counts ``loop.sendfile`` calls; with ``native=False`` it refuses, as on a TLS transport."""
    calls: list[int] = []
    original = asyncio.BaseEventLoop.sendfile

    async def spy(self, transport, file, offset=0, count=None, *, fallback=True):
        calls.append(count)
        if not request.param:
            raise asyncio.SendfileNotAvailableError("not here")
        return await original(self, transport, file, offset, count, fallback=fallback)

    monkeypatch.setattr(asyncio.BaseEventLoop, "sendfile", spy)
    return request.param, calls


@pytest.mark.parametrize("sendfile_calls", [True, False], ids=["sendfile", "streamed"], indirect=True)
@pytest.mark.parametrize("form", ["raw", "multipart"])
@pytest.mark.parametrize("header", [b"", b"operation,segment_id\n"])
async def test_batch_ranges_arrive_exactly(tmp_path: Path, form: str, header: bytes, sendfile_calls: tuple) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"".join(b"UPDATE,%07d\n" % i for i in range(400_000)))  # 6 MB
    batch, body = batch_of(path, ((0, 15), (30, 3_000_015), (3_000_030, 5_600_000)), header)
    cap = Capture()
    async with serve(cap.app) as url, ApiClient(url, TOKEN, retry=RetryPolicy(max_attempts=1)) as api:
        res = await api.upload(
            1, 2, chunks=body_stream(batch), size=batch.size, filename="r-000003.csv", mime_type="TEXT_CSV", form=form
        )
    assert res.execution["id"] == "1"
    ctype, got = cap.bodies[0]
    if form == "raw":
        assert ctype == "text/csv" and got == body
    else:
        boundary = ctype.split("boundary=")[1]
        assert got.endswith(b"\r\n--" + boundary.encode() + b"--\r\n")
        start = got.index(b"\r\n\r\n", got.index(b'name="file"')) + 4
        assert got[start : start + len(body)] == body
    native, calls = sendfile_calls
    # in slices that double while they go fast (client.progress: a stall is told by a slice's end);
    # once refused, the rest is streamed
    assert calls == (_fast_slices([15, 2_999_985, 2_599_970]) if native else [15])


def _fast_slices(counts: list[int]) -> list[int]:
    """The ``sendfile`` calls of ranges of ``counts`` bytes when every slice ends at once."""
    calls, size = [], FIRST_SLICE
    for count in counts:
        while count:
            calls.append(min(count, size))
            count -= calls[-1]
            size = min(size * 2, MAX_SLICE)
    return calls


async def test_a_file_shorter_than_planned_fails_the_upload(tmp_path: Path) -> None:
    path = tmp_path / "in.ndjson"
    path.write_bytes(b'{"a":1}\n' * 1000)
    batch, _ = batch_of(path, ((0, 8000),))
    path.write_bytes(b'{"a":1}\n' * 10)  # truncated after it was read
    cap = Capture()
    async with serve(cap.app) as url, ApiClient(url, TOKEN, retry=RetryPolicy(max_attempts=1)) as api:
        with pytest.raises(ServiceError):
            await api.upload(
                1, 2, chunks=body_stream(batch), size=batch.size, filename="t.ndjson", mime_type="APPLICATION_X_NDJSON"
            )
    assert cap.bodies == []


class StallsMidBody:
    """Reads the first MB of an upload, then stops reading (a stalled link, a hung middlebox)."""

    def __init__(self) -> None:
        self.stalled, self.release = asyncio.Event(), asyncio.Event()
        app = web.Application(client_max_size=200 * MB)
        app.router.add_post(EXE_ROUTE, self.upload)
        self.app = app

    async def upload(self, request: web.Request) -> web.Response:
        await request.content.readexactly(MB)
        self.stalled.set()
        await self.release.wait()  # the client gave up: the server may shut down
        if request.transport is not None:
            request.transport.abort()  # not aiohttp's 10 s of draining the unread body
        return web.json_response({"status": "error", "error": "too late"}, status=500)


@pytest.mark.parametrize("sendfile_calls", [True, False], ids=["sendfile", "streamed"], indirect=True)
async def test_a_stalled_upload_fails_after_the_timeout_without_progress(tmp_path: Path, sendfile_calls) -> None:
    """32 MB (more than the sockets' buffers hold) at a deadline of timeout + body at 50 kB/s would
    wait 11 minutes; a body that stops moving fails ``api.timeout_s`` after its last progress,
    ambiguous (it is settled by name)."""
    from pipeline.client.multipart import UploadUnsettled

    path = tmp_path / "in.ndjson"
    with path.open("wb") as f:
        for _ in range(32):
            f.write(b'{"a":1}\n' * 125_000)  # 1 MB
    batch, _ = batch_of(path, ((0, 32 * MB),))
    server = StallsMidBody()
    loop = asyncio.get_running_loop()
    async with serve(server.app) as url, ApiClient(url, TOKEN, timeout_s=1, retry=RetryPolicy(max_attempts=1)) as api:
        began = loop.time()
        with pytest.raises(UploadUnsettled) as info:
            await api.upload(
                1, 2, chunks=body_stream(batch), size=batch.size, filename="r-000003.ndjson",
                mime_type="APPLICATION_X_NDJSON", form="multipart",
            )  # fmt: skip
        took = loop.time() - began
        server.release.set()
    assert server.stalled.is_set()
    assert "timed out after 1s without progress" in str(info.value.cause), info.value.cause
    assert took < 20, f"{took:.1f} s: the stall was not told by the time without progress"

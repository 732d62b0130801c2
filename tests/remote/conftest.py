"""Real parts for the remote inputs: moto's S3 server and an aiohttp file server, on 127.0.0.1.

``s3`` starts ``moto.server.ThreadedMotoServer`` once per session on a free port (real HTTP,
real SigV4 signatures, real ranged and conditional GETs) and points ``AWS_ENDPOINT_URL`` at it
for each test, with a fresh bucket. It skips, saying why, when moto or s3fs is not installed.
``http_files`` serves files over HTTP from a thread: with ``Range`` support (aiohttp's
``FileResponse``) or without it (the whole body, no ``Accept-Ranges``).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_buckets = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'pipeline[s3]')")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


class Bucket:
    """A fresh bucket of the moto server, and a boto3 client to fill and change it."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.name = f"bucket-{next(_buckets)}"
        self.client = boto3.client("s3", endpoint_url=endpoint)
        self.client.create_bucket(Bucket=self.name)

    def put(self, key: str, body: bytes) -> str:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)
        return f"s3://{self.name}/{key}"

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    # the standard variables: botocore finds the endpoint and the credentials by its own chain
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return Bucket(moto_endpoint)


class HttpFiles:
    """An aiohttp server on its own thread serving ``root``: ``/ranged/<name>`` with ``Range``
    support, ``/whole/<name>`` without (it ignores ``Range`` and never says ``Accept-Ranges``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        from aiohttp import web

        async def ranged(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.method, request.path, request.headers.get("Range")))
            return web.FileResponse(self.root / request.match_info["name"])

        async def whole(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.method, request.path, request.headers.get("Range")))
            path = self.root / request.match_info["name"]
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.content_length = path.stat().st_size
            await response.prepare(request)
            if request.method != "HEAD":
                with path.open("rb") as f:
                    while chunk := f.read(1 << 16):
                        await response.write(chunk)
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_route("*", "/ranged/{name}", ranged)
        app.router.add_route("*", "/whole/{name}", whole)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def url(self, kind: str, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{name}"

    def __enter__(self) -> HttpFiles:
        self._thread.start()
        assert self._ready.wait(10), "the HTTP server did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[HttpFiles]:
    root = tmp_path / "served"
    root.mkdir()
    with HttpFiles(root) as server:
        yield server

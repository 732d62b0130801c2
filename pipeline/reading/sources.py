"""Where an input's bytes come from: a local file, an object in a store (through fsspec), or stdin.

An input is one of three kinds (:data:`Input`):

- a local file (a :class:`~pathlib.Path`): read with plain reads, its batches sent with
  ``loop.sendfile`` of their byte ranges, exactly as before remote inputs existed;
- a :class:`RemoteObject` (``s3://``, ``gs://``, ``az://``, ``https://``, ``memory://``...): read
  once as a stream to find the record boundaries and check the records; when the store serves
  byte ranges and the object is not compressed, a batch is a list of ranges *of the object* and
  its body is streamed from it with ranged reads when sent (no local copy; a retry re-reads the
  same ranges); otherwise (``.gz``, an HTTP server without ``Range``) each batch is spooled, as a
  local ``.gz`` is;
- :data:`STDIN` (``-``): always spooled per batch, so a retry sends the same bytes.

Credentials are never ours: each fsspec backend finds them by its usual chain (environment,
profiles, instance metadata); a custom S3 endpoint comes from ``AWS_ENDPOINT_URL``. What the run
shows, journals and reports of a URL is :func:`display_url`: no user info, no query string (a
presigned URL's signature is a credential).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import InputError

#: bytes of a remote object read per request when streaming it (the reader) or a batch (the upload)
STREAM_BLOCK = 8 << 20
RANGE_CHUNK = 1 << 20
#: the extra that brings each protocol's fsspec backend (``pip install 'pipeline[s3]'``)
EXTRAS: Final = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}


def is_url(text: str) -> bool:
    """Whether an input as given names a remote object or prefix (``scheme://``, not ``file://``)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isascii() and scheme.replace("+", "").isalnum() and scheme.lower() != "file"


def display_url(url: str) -> str:
    """``url`` as it may be shown or written: without user info and with its query string elided."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "…" if parts.query else "", ""))


def scrub(message: str, url: str) -> str:
    """A library's error message about ``url`` without its user info or query string."""
    parts = urlsplit(url)
    for secret in (url, parts.query, parts.password, parts.username):
        if secret:
            message = message.replace(secret, display_url(url) if secret == url else "…")
    return message


#: the first two bytes of a gzip stream (RFC 1952)
GZIP_MAGIC: Final = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class StdinInput:
    """The standard input (``-``): read once, every batch spooled."""

    name: str = "stdin"

    def __str__(self) -> str:
        return "-"

    def open_stream(self) -> Stream:
        return _Unclosed(sys.stdin.buffer)

    def starts_gzip(self) -> bool:
        """Whether the stream is gzip (``pipeline run - < x.ndjson.gz``: a pipe has no name to
        tell): its first two bytes, peeked, left in the stream."""
        peek = getattr(sys.stdin.buffer, "peek", None)  # a BufferedReader's: a stand-in may have none
        head: bytes = peek(2)[:2] if peek is not None else b""
        return head == GZIP_MAGIC


STDIN: Final = StdinInput()


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One object of a store, as listed when the run started (size, ETag, version id)."""

    url: str  # as fsspec names it, with its protocol
    size: int | None
    etag: str | None = None
    version_id: str | None = None
    #: the store serves byte ranges of it (S3, GCS, Azure, memory; HTTP when it says ``Accept-Ranges``)
    serves_ranges: bool = True
    _shown: str = field(default="", compare=False, repr=False)

    @property
    def name(self) -> str:
        return urlsplit(self.url).path.rstrip("/").rpartition("/")[2]

    @property
    def conditional_reads(self) -> bool:
        """Whether every read of it is refused once it changed (S3 GETs carry ``If-Match: ETag``)."""
        return _protocol(self.url) in S3_PROTOCOLS and self.etag is not None

    def __str__(self) -> str:
        return self._shown or display_url(self.url)

    def open_stream(self) -> Stream:
        """The object's bytes from the start, as one streamed GET where the store allows it."""
        fs = filesystem(self.url)
        protocol = _protocol(self.url)
        if protocol in S3_PROTOCOLS:
            return S3Get(fs, self.url, self.etag)
        if protocol in ("http", "https"):
            stream: Stream = fs.open(self.url, "rb", block_size=0)  # one streamed GET
        else:
            stream = fs.open(self.url, "rb", block_size=STREAM_BLOCK, cache_type="readahead")
        return stream

    def iter_range(self, start: int, end: int, chunk_size: int = RANGE_CHUNK) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of the object: one streamed ranged GET on S3 (refused if the
        object's ETag changed), one ranged read per chunk elsewhere."""
        fs = filesystem(self.url)
        if _protocol(self.url) in S3_PROTOCOLS:
            body = S3Get(fs, self.url, self.etag, (start, end))
            try:
                yield from _chunks_of(body, end - start, chunk_size, self)
            finally:
                body.close()
            return
        while start < end:
            stop = min(end, start + chunk_size)
            chunk = fs.cat_file(self.url, start=start, end=stop)
            if len(chunk) != stop - start:
                raise InputError(self, f"a ranged read of bytes {start}-{stop} returned {len(chunk)} bytes")
            yield chunk
            start = stop


def _chunks_of(body: Stream, size: int, chunk_size: int, source: object) -> Iterator[bytes]:
    """``size`` bytes of ``body`` in chunks of ``chunk_size`` (the last one shorter)."""
    left = size
    while left:
        want = min(chunk_size, left)
        parts: list[bytes] = []
        while want:
            data = body.read(want)
            if not data:
                raise InputError(source, f"a ranged read ended {left - (min(chunk_size, left) - want):,} bytes short")
            parts.append(data)
            want -= len(data)
        chunk = parts[0] if len(parts) == 1 else b"".join(parts)
        left -= len(chunk)
        yield chunk


S3_PROTOCOLS = ("s3", "s3a")


class S3Get:
    """One GET of an S3 object (or of a range of it), its body read as it comes (s3fs runs
    aiobotocore on its own event loop thread: each read is handed to it). With the ETag, the GET
    is conditional: an object replaced since it was listed is refused (412), not read."""

    def __init__(self, fs: Any, url: str, etag: str | None, byte_range: tuple[int, int] | None = None) -> None:
        bucket, key, version = fs.split_path(url)
        request: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version:
            request["VersionId"] = version
        if etag:
            request["IfMatch"] = etag
        if byte_range is not None:
            request["Range"] = f"bytes={byte_range[0]}-{byte_range[1] - 1}"
        self._fs = fs
        self.name = display_url(url)
        try:
            self._body = fs.call_s3("get_object", **request)["Body"]
        except OSError as exc:
            if etag and "pre-condition" in str(exc).lower():  # 412: the ETag is not the listed one
                raise InputError(
                    self.name, f"changed since the run listed it (ETag {etag} no longer matches)"
                ) from None
            raise InputError(self.name, f"cannot read it ({exc})") from None

    def read(self, n: int = -1, /) -> bytes:
        from fsspec.asyn import sync

        data: bytes = sync(self._fs.loop, self._body.read, n if n >= 0 else None)
        return data

    def readinto(self, buffer: memoryview, /) -> int | None:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        from fsspec.asyn import sync

        async def close() -> None:  # on the loop the body belongs to
            self._body.close()

        try:
            sync(self._fs.loop, close)
        except NotImplementedError:  # called from a thread that runs an event loop itself
            self._body.close()

    def __enter__(self) -> S3Get:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Input = Path | RemoteObject | StdinInput


class Stream(Protocol):
    """What the reader reads a remote object or stdin from (fsspec's files are such streams)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...
    def read(self, n: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


def is_local(source: Input) -> bool:
    return isinstance(source, Path)


def streams_ranges(source: Input) -> bool:
    """Whether a batch of ``source`` can be described by byte ranges of the input itself."""
    from pipeline.reading.gzstream import is_gzip

    if isinstance(source, StdinInput) or is_gzip(source):
        return False
    return not isinstance(source, RemoteObject) or source.serves_ranges


def size_of(source: Input) -> int | None:
    """The input's size in bytes (compressed, for ``.gz``), ``None`` when unknown (stdin)."""
    if isinstance(source, Path):
        try:
            return source.stat().st_size
        except OSError:
            return None
    return source.size if isinstance(source, RemoteObject) else None


# --- fsspec ----------------------------------------------------------------------------------------


def _protocol(url: str) -> str:
    return url.partition("://")[0].lower()


def filesystem(url: str) -> Any:
    """The fsspec filesystem of ``url`` (fsspec caches the instances), with a clear error naming
    the extra to install when its backend is missing."""
    import fsspec

    protocol = _protocol(url)
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a") and os.environ.get("AWS_ENDPOINT_URL_S3", os.environ.get("AWS_ENDPOINT_URL")):
        # botocore reads AWS_ENDPOINT_URL itself; passed on too, so that an older one honours it
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ["AWS_ENDPOINT_URL"]
        options["endpoint_url"] = endpoint
    try:
        return fsspec.filesystem(protocol, **options)
    except ImportError as exc:
        extra = EXTRAS.get(protocol)
        hint = f": pip install 'pipeline[{extra}]'" if extra else ""
        raise InputError(display_url(url), f"no reader installed for {protocol}:// ({exc}){hint}") from None
    except ValueError as exc:
        raise InputError(display_url(url), f"unknown protocol {protocol}:// ({exc})") from None


class _Unclosed:
    """A stream whose ``close`` does nothing (stdin stays open for whoever owns it)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.name = "-"

    def readinto(self, buffer: memoryview, /) -> int | None:
        return self._raw.readinto(buffer)  # type: ignore[attr-defined, no-any-return]

    def read(self, n: int = -1, /) -> bytes:
        return self._raw.read(n)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Unclosed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

"""``POST .../executions``: one uploaded file creates one execution.

The body is processed as it streams in: read in chunks (never whole), split into records across
chunk boundaries and checked (or, in light mode, only its newlines counted). Two forms:
- raw body whose ``Content-Type`` (parameters ignored) is the import's HTTP content type
  (``application/x-ndjson`` or ``text/csv``); the filename comes from a
  ``Content-Disposition: ...; filename="..."`` header, else a ``filename`` query parameter,
  else ``upload-<execution id>.ndjson|csv``;
- ``multipart/form-data`` with a ``file`` part (its filename becomes ``input_file_name``) and a
  ``type`` field holding the mime type (the HTTP form or the API name, e.g. ``TEXT_CSV``), which
  may come before or after the file part; without ``type`` the file part's Content-Type decides.
  Parts are cut by our own streaming parser (``multipart_stream``), not aiohttp's reader: the
  body is read in received chunks (as a raw body is) and the file part's data is handed to the
  line counter/checker chunk by chunk. A body that ends before its closing ``--boundary--`` is a
  400 "truncated multipart body"; other malformed bodies are a 400 "malformed multipart body"
  (this includes a delimiter line with other bytes after the boundary).

Limits: 100,000,000 bytes of file. A raw upload whose Content-Length is over it is answered 413
before any of the body is read (an ``Expect: 100-continue`` request gets the 413 instead of the
100). A multipart body may exceed it by 64 KiB of envelope (boundaries, part headers, ``type``);
the file part itself is held to the limit while streaming, as is any body without Content-Length
(chunked): the 413 comes as soon as the limit is passed, and the connection is closed after it.
An empty file is a 400; a Content-Type that does not match the import is a 415.

Order of checks: latency, outage, auth, revoked token, rate limit (``app``'s middleware), the cap
on uploads in flight (``max_uploads``: a 429 with Retry-After, counted in
``accounting.throttled["max_uploads"]``), injected upload faults (throttle, 5xx, reset before the
body, echo_auth), unknown import (404), size by Content-Length (413), content type (415), then the
body. An upload is in flight (``accounting.uploads_in_flight``, peak in ``peak_uploads``) from the
start of its handler, once past the cap, to the handler's end (its answer handed to aiohttp, an
error or an abort): an early answer (413, 415, ...) frees its place at once, even while aiohttp
still drains the body.

A 429 from the cap, like the ``throttle`` fault's, is answered before the body is read and keeps
the connection open: aiohttp then reads and discards the rest of the body (at most 10 s, its
lingering time, then it closes the connection), so a client that sends the whole body sees the
answer and keeps its connection. Such a drained body does not cross the upload link. With
``Expect: 100-continue`` the cap is checked before the 100 (then the answer closes the connection).

The body's chunks cross the upload link (``link``: the shared ``uplink_mbps`` cap, and the
per-connection ``bandwidth_mbps``) after they are read and fed, multipart and raw alike; without
either cap there is no link and no pacing step. Once the body is read and checked, the
execution is created (at once, or later for ``gateway504`` / ``slow_create``) and answered, with
the answer faults applied (see ``faults``).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import hdrs, web
from aiohttp.helpers import parse_mimetype
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from pipeline import formats
from pipeline.emulator.intake import make_checker
from pipeline.emulator.link import Flow
from pipeline.emulator.listing import execution_json
from pipeline.emulator.multipart_stream import MultipartError, MultipartParser, PartInfo, TruncatedMultipart
from pipeline.emulator.options import MULTIPART_OVERHEAD
from pipeline.emulator.responses import ApiFailure, bad_field, error_response, ok
from pipeline.emulator.state import STATE, EmulatorState, find_import
from pipeline.emulator.store import Execution

RECV_SIZE = 1024 * 1024
GATEWAY_TIMEOUT_HTML = "<html><body><h1>504 Gateway Time-out</h1></body></html>"
#: A multipart form field other than the file (``type``) is kept up to this many bytes.
MAX_FIELD_BYTES = 64 * 1024


class ConnectionAbort(asyncio.CancelledError):
    """Raised from a handler: aiohttp closes the connection without answering."""


def _abort(request: web.Request, *, reset: bool) -> None:
    """Close the connection with no answer; ``reset`` sends a TCP RST instead of a FIN."""
    transport = request.transport
    if reset and transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raise ConnectionAbort()


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _accepts(declared: str, mime_type: str) -> bool:
    return declared in (formats.CONTENT_TYPES[mime_type], mime_type.lower())


def _is_multipart(request: web.Request) -> bool:
    return _media_type(request.headers.get(hdrs.CONTENT_TYPE)) == "multipart/form-data"


def _prechecks(request: web.Request, st: EmulatorState) -> dict[str, Any]:
    """Checks that need no body: unknown import, size by Content-Length, raw content type."""
    imp = find_import(request)
    multipart = _is_multipart(request)
    limit = st.options.max_file_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    length = request.content_length
    if length is not None and length > limit:
        raise ApiFailure(
            413, f"upload of {length} bytes is over the limit of {st.options.max_file_bytes} bytes", close=True
        )
    if not multipart:
        declared = _media_type(request.headers.get(hdrs.CONTENT_TYPE))
        if not _accepts(declared, imp["mime_type"]):
            want = formats.CONTENT_TYPES[imp["mime_type"]]
            raise ApiFailure(
                415, f"Content-Type {declared or '(none)'!r} does not match the import's mime type (send {want})"
            )
    if length == 0:
        raise ApiFailure(400, "empty upload: the file holds no byte")
    return imp


async def upload_expect(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue``: refuse before the body is sent when the headers already say no."""
    st = request.app[STATE]
    try:
        st.gate(request)
        refusal = _over_max_uploads(st)
        if refusal is not None:
            raise refusal
        _prechecks(request, st)
    except ApiFailure as failure:
        st.accounting.requests[(request.method, "upload")] += 1
        resp = failure.response()
        resp.force_close()
        return resp
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text="unknown Expect value")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


async def _pump(
    read: Callable[[], Awaitable[bytes]], feed: Callable[[bytes], None], limit: int, flow: Flow | None
) -> int:
    """Read chunks until the end, feeding them on; enforce the size limit and the link's caps."""
    total = 0
    while True:
        chunk = await read()
        if not chunk:
            return total
        total += len(chunk)
        if total > limit:
            raise ApiFailure(413, f"upload is over the limit of {limit} bytes", close=True)
        feed(chunk)
        if flow is not None:
            await flow.carry(len(chunk))


async def _read_multipart(
    request: web.Request, st: EmulatorState, feed: Callable[[bytes], None], imp: dict[str, Any], flow: Flow | None
) -> tuple[str | None, int, str]:
    """Stream the ``file`` part into ``feed``; returns (filename, size, content type).

    The body is read in received chunks and cut by ``multipart_stream.MultipartParser``: the file
    part's data goes to ``feed`` chunk by chunk (held to the file limit while streaming, 413), the
    ``type`` field is kept (a few bytes), other parts are skipped. Everything but the file part
    (preamble, boundaries, part headers, fields, epilogue) is held to ``MULTIPART_OVERHEAD`` (413).
    """
    try:
        boundary = parse_mimetype(request.headers.get(hdrs.CONTENT_TYPE, "")).parameters.get("boundary")
        parser = MultipartParser(boundary)
    except MultipartError as exc:
        raise ApiFailure(400, f"malformed multipart body: {exc}") from None
    opts = st.options
    file_limit, envelope_limit = opts.max_file_bytes, MULTIPART_OVERHEAD
    slack = len(parser.delimiter)  # part data held back between chunks (counted when handed on)
    read = _chunk_reader(request)
    filename: str | None = None
    part_type: str | None = None
    type_field: str | None = None
    size = -1  # file part: -1 before it, then its bytes so far
    total = 0
    # where the current part's data goes: "file", a bytearray (field) or None (skipped)
    target: Literal["file"] | bytearray | None = None
    try:
        while True:
            chunk = await read()
            if not chunk:
                parser.finish()
                break
            total += len(chunk)
            for _, value in parser.feed(chunk):
                if isinstance(value, bytes):  # DATA
                    if target == "file":
                        size += len(value)
                        if size > file_limit:
                            raise ApiFailure(413, f"upload is over the limit of {file_limit} bytes", close=True)
                        feed(value)
                    elif isinstance(target, bytearray):
                        target += value[: MAX_FIELD_BYTES + 1 - len(target)]
                elif isinstance(value, PartInfo):  # PART
                    if value.name == "file":
                        if size >= 0:
                            raise bad_field("file", "more than one file part")
                        filename, size, target = value.filename, 0, "file"
                        part_type = _media_type(value.content_type)
                    elif value.name == "type":
                        target = bytearray()
                    else:
                        target = None
                else:  # END
                    if isinstance(target, bytearray):
                        type_field = _media_type(bytes(target[:1000]).decode("utf-8", "replace"))
                    target = None
            if total - max(size, 0) > envelope_limit + slack:
                raise ApiFailure(
                    413, f"multipart envelope (all but the file part) is over {envelope_limit} bytes", close=True
                )
            if flow is not None:
                await flow.carry(len(chunk))
    except TruncatedMultipart:
        raise ApiFailure(400, "truncated multipart body: it ends before its closing boundary") from None
    except MultipartError as exc:
        raise ApiFailure(400, f"malformed multipart body: {exc}") from None
    if size < 0:
        raise bad_field("file", "missing part (multipart uploads carry the file in a part named 'file')")
    declared = type_field or part_type
    if declared == "application/octet-stream" and not type_field:
        declared = ""
    if not _accepts(declared or "", imp["mime_type"]):
        want = formats.CONTENT_TYPES[imp["mime_type"]]
        raise ApiFailure(415, f"type {declared or '(none)'!r} does not match the import's mime type (send {want})")
    return filename, size, declared or ""  # not empty: _accepts refused that


def _chunk_reader(request: web.Request) -> Callable[[], Awaitable[bytes]]:
    """Read the raw body one received chunk at a time (``readchunk``: no joining copies)."""
    content = request.content
    transport = request.transport
    if transport is not None and getattr(transport, "max_size", RECV_SIZE) < RECV_SIZE:
        # asyncio's selector transport reads 256 KiB per recv(); bigger reads cost less CPU per byte
        # asyncio's socket transports have max_size; asyncio.Transport does not declare it
        transport.max_size = RECV_SIZE  # type: ignore[attr-defined]

    async def read() -> bytes:
        while True:
            data, end_of_http_chunk = await content.readchunk()
            if data or not end_of_http_chunk:
                return data

    return read


def _raw_filename(request: web.Request) -> str | None:
    header = request.headers.get(hdrs.CONTENT_DISPOSITION)
    if header:
        _, params = parse_content_disposition(header)
        name = content_disposition_filename(params, "filename")
        if name:
            return name
    return request.query.get("filename") or None


def _echo_auth(request: web.Request) -> web.Response:
    """The ``echo_auth`` fault: aiohttp's own answer to an oversized header, quoting the token."""
    given = request.headers.get(hdrs.AUTHORIZATION, "")
    text = (
        "400, message: Got more than 8190 bytes when reading Header value is too long: "
        f"'Authorization: {given[:24]}...'"
    )
    resp = web.Response(status=400, text=text, content_type="text/plain")
    resp.force_close()  # the body was never read
    return resp


def _over_max_uploads(st: EmulatorState) -> ApiFailure | None:
    """The 429 of an upload arriving while ``max_uploads`` are in flight (counted), else ``None``."""
    cap = st.options.max_uploads
    if not cap or st.accounting.uploads_in_flight < cap:
        return None
    st.accounting.throttled["max_uploads"] += 1
    headers = {"Retry-After": st.retry_after(st.options.retry_after_s)}
    return ApiFailure(429, f"too many uploads in flight (at most {cap} at once)", headers=headers)


async def upload(request: web.Request) -> web.StreamResponse:
    """An upload, counted in flight (``accounting.uploads_in_flight``) until its handler ends;
    refused with a 429 before anything else when ``max_uploads`` are in flight already."""
    st = request.app[STATE]
    refusal = _over_max_uploads(st)
    if refusal is not None:
        raise refusal
    st.accounting.upload_started()
    try:
        return await _upload(request, st)
    finally:
        st.accounting.upload_ended()


async def _upload(request: web.Request, st: EmulatorState) -> web.StreamResponse:
    opts, plan = st.options, st.plan
    kind, status = st.dice.upload_fault()
    delay = st.dice.upload_delay()
    extras = st.dice.upload_extras()
    retry_after = {"Retry-After": st.retry_after(opts.retry_after_s)}
    if kind == "throttle":
        st.accounting.throttled["throttle"] += 1
        raise ApiFailure(429, "too many requests (emulator fault injection)", headers=retry_after)
    if kind == "error5xx":
        headers = retry_after if status == 503 else None
        raise ApiFailure(status, f"HTTP {status} (emulator fault injection)", headers=headers)
    if kind == "reset_before":
        _abort(request, reset=True)
    if extras.echo_auth:
        return _echo_auth(request)
    imp = _prechecks(request, st)
    checker = make_checker(
        imp["document_type"],
        imp["mime_type"],
        light=opts.light,
        max_record_bytes=opts.max_record_bytes,
        keep_digests=opts.keep_digests,
    )
    flow = st.link.open() if st.link is not None else None  # the body's share of the upload link
    try:
        if _is_multipart(request):
            filename, size, content_type = await _read_multipart(request, st, checker.feed, imp, flow)
        else:
            content_type = _media_type(request.headers.get(hdrs.CONTENT_TYPE))
            filename = _raw_filename(request)
            size = await _pump(_chunk_reader(request), checker.feed, opts.max_file_bytes, flow)
    finally:
        if flow is not None:
            flow.close()
    if size == 0:
        raise ApiFailure(400, "empty upload: the file holds no byte")
    checker.finish()
    fate = st.dice.fate()
    ext = "csv" if imp["mime_type"] == formats.CSV else "ndjson"

    def create() -> dict[str, Any]:
        """Create the execution; the answer's view of it, taken at once (still ``PENDING``)."""
        if st.store.imports.get(imp["id"]) is not imp:  # deleted while a late creation waited
            raise ApiFailure(404, f"document import {imp['id']} not found")
        exe_id = st.store.new_execution_id()
        exe = Execution(
            id=exe_id,
            import_id=imp["id"],
            datamart_id=imp["datamart_id"],
            document_type=imp["document_type"],
            mime_type=imp["mime_type"],
            filename=filename or f"upload-{exe_id}.{ext}",
            size=size,
            lines=checker.lines,
            records=checker.records,
            ok=checker.ok,
            failed=checker.failed,
            problem=checker.problem,
            fate=fate,
            digests=checker.digests,
            failures=checker.failures,
        )
        st.create_execution(exe, content_type)
        return execution_json(st, exe, distort_status=False)

    if extras.gateway504:
        st.later(plan.gateway504_s, create)
        return web.Response(status=504, text=GATEWAY_TIMEOUT_HTML, content_type="text/html")
    if extras.slow_create:
        # shielded: the execution is created at D even when the client gave up (or the handler ends)
        data = await asyncio.shield(st.later(plan.slow_create_s, create))
    else:
        data = create()
    if extras.error_envelope:
        answer = error_response(200, "internal error", "INTERNAL")
    else:
        if extras.no_id:
            del data["id"]
        answer = ok(data)
    if kind == "drop_after":
        _abort(request, reset=False)
    if delay:
        await asyncio.sleep(delay)
    return answer

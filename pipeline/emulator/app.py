"""The aiohttp application: routes, authentication, rate limit, latency, envelopes.

Routes (prefix ``/v1/datamarts/{datamart_id}``; any datamart id is accepted, and an import is
found only under the datamart it was created in):

====== ============================================================ ===================
POST   /document_imports                                            create_import
GET    /document_imports                                            list_imports
GET    /document_imports/{import_id}                                get_import
PUT    /document_imports/{import_id}                                update_import
DELETE /document_imports/{import_id}                                delete_import
POST   /document_imports/{import_id}/executions                     upload
GET    /document_imports/{import_id}/executions                     list_executions
GET    /document_imports/{import_id}/executions/{execution_id}      get_execution
POST   /document_imports/{import_id}/executions/{execution_id}/action  execution_action
GET    /v1/data_file/data?uri=<uri>                                 data_file
====== ============================================================ ===================

Choices where api.md is silent or guesses:
- every route needs ``Authorization: <token>`` exactly; anything else (missing, wrong, ``Bearer``
  prefix) is 401. Unknown paths and methods answer 404 / 405 in the error envelope. Before the
  handler, every request meets in turn: the latency (``latency_ms``, added once per request: a
  round trip; an upload's body is read after it), an outage (503), the token check (401), a
  revoked token (401 ``INVALID_TOKEN``), the rate limit (429, counted in
  ``accounting.throttled["rate_limit"]``): see ``state``;
- successes answer 200 (creation too); DELETE answers the deleted import;
- lists take ``first_result`` (default 0) and ``max_results`` (default 10, capped at 1000: the
  envelope reports the value used); a negative or non-integer value is a 400 naming it (see
  ``listing``, which also applies the listing faults). Imports are listed oldest first,
  executions newest first. ``keywords``: every whitespace-separated word
  must occur in the import's name (case-insensitive);
- PUT takes a partial object: ``name``, ``document_type``, ``mime_type``, ``encoding``,
  ``priority`` (checked like a creation); changing ``id``, ``datafarm_key`` or ``datamart_id`` is
  a 400 (sending their current value is fine); other keys are ignored;
- cancel: ``{"action": "CANCEL"}`` while ``PENDING`` answers the ``CANCELED`` execution; in any
  other status it is a 400 with error_code ``EXECUTION_NOT_PENDING``; another action is a 400;
- the error file (``result.error_file_uri``) is NDJSON, one object per failed record:
  ``{"line": N, "reason": "...", "record": "<the record's text>"}`` (plus ``"truncated": true``
  when the text was cut at 64 KiB); other shapes on request (``error_files``: see ``error_files``).
  ``input_file_uri`` answers 404: bodies are never kept. A SUCCEEDED execution with failed records
  has ``error.message`` too (as the platform's web client shows "SUCCEEDED - with errors").
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from pipeline import formats
from pipeline.emulator.error_files import error_file_body
from pipeline.emulator.listing import execution_json, listed_executions, page
from pipeline.emulator.responses import ApiFailure, bad_field, error_response, ok
from pipeline.emulator.state import STATE, EmulatorState, check_auth, find_import
from pipeline.emulator.store import Execution, now_ms
from pipeline.emulator.upload import upload, upload_expect

__all__ = ["STATE", "EmulatorState", "build_app", "check_auth", "find_import", "page"]

PREFIX = "/v1/datamarts/{datamart_id}/document_imports"
MAX_JSON_BYTES = 1024 * 1024
READ_ONLY = ("id", "datafarm_key", "datamart_id")


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    st = request.app[STATE]
    route = request.match_info.route.name or "unknown"
    st.accounting.requests[(request.method, route)] += 1
    if st.options.latency_ms:
        await asyncio.sleep(st.options.latency_ms / 1000)
    try:
        st.gate(request)
        wait = st.limiter.acquire(st.options.token)
        if wait:
            st.accounting.throttled["rate_limit"] += 1
            headers = {"Retry-After": st.retry_after(max(1, math.ceil(wait)))}
            raise ApiFailure(429, "rate limit exceeded", headers=headers)
        return await handler(request)
    except ApiFailure as failure:
        return failure.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason or "error", close=exc.status == 413)


async def server_date(request: web.Request, response: web.StreamResponse) -> None:
    """The ``Date`` header from the server clock (``clock_skew``)."""
    st = request.app[STATE]
    if st.plan.clock_skew:
        response.headers[hdrs.DATE] = st.http_date()


# --- helpers ------------------------------------------------------------------------------------


async def read_json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ApiFailure(413, f"JSON body over {MAX_JSON_BYTES} bytes", close=True)
    body = await request.read()  # bounded by the application's client_max_size (413 beyond)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiFailure(400, f"body is not valid JSON: {exc}") from None


def _check_settings(values: dict[str, Any]) -> None:
    for key in ("name", "document_type", "mime_type"):
        value = values.get(key)
        if value is None or value == "":
            raise bad_field(key, "missing required field")
        if not isinstance(value, str):
            raise bad_field(key, "must be a string")
    for key in ("encoding", "priority"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise bad_field(key, "must be a string")
    problem = formats.check_import_settings(values["document_type"], values["mime_type"], values.get("priority"))
    if problem:
        raise bad_field(*problem)


# --- document imports ---------------------------------------------------------------------------


async def create_import(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiFailure(400, "body must be a JSON object")
    _check_settings(body)
    st = request.app[STATE]
    return ok(dict(st.store.create_import(request.match_info["datamart_id"], body)))


async def list_imports(request: web.Request) -> web.Response:
    st = request.app[STATE]
    datamart_id = request.match_info["datamart_id"]
    words = request.query.get("keywords", "").lower().split()
    items = [
        dict(obj)
        for obj in st.store.imports.values()
        if obj["datamart_id"] == datamart_id and all(w in obj["name"].lower() for w in words)
    ]
    return page(request, items)


async def get_import(request: web.Request) -> web.Response:
    return ok(dict(find_import(request)))


async def update_import(request: web.Request) -> web.Response:
    obj = find_import(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiFailure(400, "body must be a JSON object")
    for key in READ_ONLY:
        if key in body and str(body[key]) != str(obj[key]):
            raise bad_field(key, "is read-only")
    changes = {k: body[k] for k in ("name", "document_type", "mime_type", "encoding", "priority") if k in body}
    merged = {**obj, **changes}
    _check_settings(merged)
    obj.update(changes)
    return ok(dict(obj))


async def delete_import(request: web.Request) -> web.Response:
    obj = find_import(request)
    request.app[STATE].store.delete_import(obj["id"])
    return ok(dict(obj))


# --- executions ---------------------------------------------------------------------------------


def find_execution(request: web.Request) -> Execution:
    obj = find_import(request)
    exe_id = request.match_info["execution_id"]
    exe = request.app[STATE].store.get_execution(obj["id"], exe_id)
    if exe is None:
        raise ApiFailure(404, f"execution {exe_id} not found in document import {obj['id']}")
    return exe


async def list_executions(request: web.Request) -> web.Response:
    obj = find_import(request)
    st = request.app[STATE]
    return page(request, listed_executions(st, obj["id"]), lambda e: execution_json(st, e))


async def get_execution(request: web.Request) -> web.Response:
    st = request.app[STATE]
    status = st.dice.poll_fault()
    if status is not None:
        raise ApiFailure(status, f"HTTP {status} on status poll (emulator fault injection)")
    exe = find_execution(request)
    if st.plan.exec404:
        raise ApiFailure(404, f"execution {exe.id} not found in document import {exe.import_id}")
    return ok(execution_json(st, exe))


async def execution_action(request: web.Request) -> web.Response:
    exe = find_execution(request)
    body = await read_json(request)
    action = body.get("action") if isinstance(body, dict) else None
    if action != "CANCEL":
        raise bad_field("action", f"unknown action {action!r}; known: CANCEL")
    if exe.status != "PENDING":
        raise ApiFailure(
            400,
            f"execution {exe.id} is {exe.status}: only a PENDING execution can be canceled",
            "EXECUTION_NOT_PENDING",
        )
    exe.status = "CANCELED"
    exe.end_date = now_ms()
    exe.digests = bytearray()
    exe.failures = []
    return ok(execution_json(request.app[STATE], exe, distort_status=False))


async def data_file(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    uri = request.query.get("uri")
    if not uri:
        raise bad_field("uri", "missing query parameter")
    exe_id = st.store.error_files.get(uri)
    exe = st.store.executions.get(exe_id) if exe_id else None
    if exe is None:
        known = any(e.input_file_uri == uri for e in st.store.executions.values())
        reason = "the emulator does not keep uploaded files" if known else "no such file"
        raise ApiFailure(404, f"data file {uri}: {reason}")
    body = error_file_body(exe.failures, st.options.error_files)
    return web.Response(body=body, content_type="application/x-ndjson")


def build_app(state: EmulatorState) -> web.Application:
    app = web.Application(middlewares=[api_middleware], client_max_size=MAX_JSON_BYTES)
    app[STATE] = state
    app.on_response_prepare.append(server_date)
    r = app.router
    r.add_post(PREFIX, create_import, name="create_import")
    r.add_get(PREFIX, list_imports, name="list_imports", allow_head=False)
    one = PREFIX + "/{import_id}"
    r.add_get(one, get_import, name="get_import", allow_head=False)
    r.add_put(one, update_import, name="update_import")
    r.add_delete(one, delete_import, name="delete_import")
    r.add_post(one + "/executions", upload, name="upload", expect_handler=upload_expect)
    r.add_get(one + "/executions", list_executions, name="list_executions", allow_head=False)
    exe = one + "/executions/{execution_id}"
    r.add_get(exe, get_execution, name="get_execution", allow_head=False)
    r.add_post(exe + "/action", execution_action, name="execution_action")
    r.add_get("/v1/data_file/data", data_file, name="data_file", allow_head=False)
    return app

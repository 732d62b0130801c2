"""The API's envelopes and the error raised by handlers to answer with an error envelope.

- one object: ``{"status": "ok", "data": {...}}``
- a list: ``{"status": "ok", "data": [...], "count": N, "first_result": F, "max_results": M, "total": T}``
  (``total`` left out when ``None``: the ``page_cap`` / ``ignore_first_result`` faults)
- an error: ``{"status": "error", "error": "<message>", "error_id": "<uuid4>", "error_code": "<CODE>"}``
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    417: "EXPECTATION_FAILED",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
}


def _json(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers)


def ok(data: Any, status: int = 200) -> web.Response:
    return _json({"status": "ok", "data": data}, status)


def ok_list(items: Sequence[Any], *, first_result: int, max_results: int, total: int | None) -> web.Response:
    body = {
        "status": "ok",
        "data": list(items),
        "count": len(items),
        "first_result": first_result,
        "max_results": max_results,
    }
    if total is not None:
        body["total"] = total
    return _json(body)


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    close: bool = False,
) -> web.Response:
    body = {
        "status": "error",
        "error": message,
        "error_id": str(uuid.uuid4()),
        "error_code": code or ERROR_CODES.get(status, "ERROR"),
    }
    resp = _json(body, status, headers)
    if close:
        resp.force_close()
    return resp


class ApiFailure(Exception):
    """Raised by a handler: answered as an error envelope by the middleware."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})
        self.close = close

    def response(self) -> web.Response:
        return error_response(self.status, self.message, self.code, self.headers, close=self.close)


def bad_field(field: str, reason: str) -> ApiFailure:
    """A 400 naming the offending field first, e.g. ``name: missing required field``."""
    return ApiFailure(400, f"{field}: {reason}", "BAD_REQUEST")

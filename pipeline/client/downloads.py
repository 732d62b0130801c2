"""Downloads of platform files (an execution's ``error_file_uri`` or ``input_file_uri``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from pipeline.client.http import Requester
from pipeline.client.retry import NETWORK_ERRORS, transport_error

DATA_FILE_PATH = "/v1/data_file/data"


async def download_data_file(http: Requester, uri: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
    """Stream the file at ``uri``. Opening is retried; a failure in the middle of the stream raises
    ``TransportError`` (the chunks already yielded cannot be taken back)."""
    method, path, params = "GET", DATA_FILE_PATH, {"uri": uri}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(http.timeout_s, 60), sock_read=http.timeout_s)

    async def attempt(_: int) -> aiohttp.ClientResponse:
        await http.take_token()  # a download is a request of the budget too
        try:
            resp = await http.session.request(method, http.base_url + path, params=params, timeout=timeout)
            if 200 <= resp.status < 300:
                return resp
            try:
                body = await resp.read()
            finally:
                resp.release()
        except NETWORK_ERRORS as exc:
            err = transport_error(exc, method=method, path=path, timeout_s=http.timeout_s)
            raise http.clean(err) from exc
        raise http.clean(http.refusal(resp, body, method=method, path=path))

    resp, _ = await http.with_retry(attempt, method, path)
    try:
        async for chunk in resp.content.iter_chunked(chunk_size):
            yield chunk
    except NETWORK_ERRORS as exc:
        err = transport_error(exc, method=method, path=path, timeout_s=http.timeout_s)
        raise http.clean(err) from exc
    finally:
        resp.release()

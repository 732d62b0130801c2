"""ApiClient corner cases against mocked HTTP (aioresponses). No test really sleeps."""

from __future__ import annotations

import logging
import random
import re
from unittest.mock import Mock

import aiohttp
import pytest
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core
from yarl import URL

from pipeline.client.api import ApiClient, Page, RetryEvent, RetryPolicy
from pipeline.client.multipart import UploadUnsettled
from pipeline.errors import ApiError, TransportError, UsageError

BASE = "http://api.test"
TOKEN = "s3cr3t-T0KEN-value"
IMP = f"{BASE}/v1/datamarts/1/document_imports"
EXE = f"{IMP}/7/executions"
LIST_EXE = re.compile(re.escape(EXE) + r"\?.*")
LIST_IMP = re.compile(re.escape(IMP) + r"\?.*")


def ok(data, **meta):
    return {"status": "ok", "data": data, **meta}


def refused():
    key = Mock(host="api.test", port=80, ssl=False)
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


class Env:
    def __init__(self):
        self.slept: list[float] = []
        self.events: list[RetryEvent] = []

    async def sleep(self, delay):
        self.slept.append(delay)


@pytest.fixture
def env():
    return Env()


@pytest.fixture
async def api(env):
    client = ApiClient(
        BASE, TOKEN, retry=RetryPolicy(), on_retry=env.events.append, sleep=env.sleep, rng=random.Random(1)
    )
    async with client:
        yield client


class _CompatResponse(aiohttp.ClientResponse):
    """aiohttp 3.14 added a required ``stream_writer`` that aioresponses 0.7.9 does not pass
    (pnuckowski/aioresponses#289). A stub with ``output_size`` is enough for a canned answer."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream_writer", Mock(output_size=0))
        super().__init__(*args, **kwargs)


@pytest.fixture
def mock(monkeypatch):
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as m:
        yield m


def calls(m, method, url):
    return [c for (meth, u), cs in m.requests.items() if meth == method and str(u).split("?")[0] == url for c in cs]


# --- envelopes ----------------------------------------------------------------------------------


async def test_get_import_unwraps_and_sends_raw_token(api, mock):
    mock.get(f"{IMP}/7", payload=ok({"id": "7", "name": "n", "datafarm_key": "DF", "future": 1}))
    assert await api.get_import(1, 7) == {"id": "7", "name": "n", "datafarm_key": "DF", "future": 1}
    (call,) = calls(mock, "GET", f"{IMP}/7")
    assert call.kwargs["headers"]["Authorization"] == TOKEN


async def test_create_import_body(api, mock):
    mock.post(IMP, status=201, payload=ok({"id": "9", "document_type": "USER_PROFILE"}))
    got = await api.create_import(
        "1", document_type="USER_PROFILE", mime_type="APPLICATION_X_NDJSON", encoding="utf-8", name="n"
    )
    assert got["id"] == "9"
    (call,) = calls(mock, "POST", IMP)
    assert call.kwargs["data"] == (
        b'{"document_type":"USER_PROFILE","mime_type":"APPLICATION_X_NDJSON","encoding":"utf-8","name":"n"}'
    )
    assert call.kwargs["headers"]["Content-Type"] == "application/json"


async def test_list_imports_page_and_params(api, mock):
    mock.get(LIST_IMP, payload=ok([{"id": "1"}], count=1, first_result=0, max_results=10, total=1))
    page = await api.list_imports(1, max_results=10, keywords="nightly")
    assert page == Page([{"id": "1"}], 1, 0, 10, 1)
    (url,) = [u for (m, u) in mock.requests if m == "GET"]
    assert url.query == {"first_result": "0", "max_results": "10", "keywords": "nightly"}


async def test_update_and_delete(api, mock):
    mock.put(f"{IMP}/7", payload=ok({"id": "7", "priority": "HIGH"}))
    mock.delete(f"{IMP}/7", status=200, body="")
    assert (await api.update_import(1, 7, {"priority": "HIGH"}))["priority"] == "HIGH"
    assert await api.delete_import(1, 7) is None


async def test_executions_and_cancel(api, mock):
    mock.get(f"{EXE}/e1", payload=ok({"id": "e1", "status": "RUNNING"}))
    mock.post(f"{EXE}/e1/action", payload=ok({"id": "e1", "status": "CANCELED"}))
    assert (await api.get_execution(1, 7, "e1"))["status"] == "RUNNING"
    assert (await api.cancel_execution(1, 7, "e1"))["status"] == "CANCELED"
    (call,) = calls(mock, "POST", f"{EXE}/e1/action")
    assert call.kwargs["data"] == b'{"action":"CANCEL"}'


async def test_any_2xx_accepted(api, mock):
    mock.get(f"{IMP}/7", status=203, payload=ok({"id": "7"}))
    assert await api.get_import(1, 7) == {"id": "7"}


# --- errors -------------------------------------------------------------------------------------


async def test_error_envelope_becomes_api_error(api, mock):
    mock.get(
        f"{IMP}/8",
        status=404,
        payload={"status": "error", "error": "Resource not found", "error_id": "abc", "error_code": "NOT_FOUND"},
    )
    with pytest.raises(ApiError) as info:
        await api.get_import(1, 8)
    e = info.value
    assert (e.status, e.message, e.error_id, e.error_code, e.method, e.path) == (
        404,
        "Resource not found",
        "abc",
        "NOT_FOUND",
        "GET",
        "/v1/datamarts/1/document_imports/8",
    )
    assert e.attempts == 1


async def test_non_json_error_body(api, mock):
    mock.get(f"{IMP}/8", status=418, body="<html>" + "z" * 500, content_type="text/html")
    with pytest.raises(ApiError) as info:
        await api.get_import(1, 8)
    assert info.value.message == ("<html>" + "z" * 500)[:200]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415])
async def test_no_retry_on_final_4xx(api, mock, env, status):
    mock.get(f"{IMP}/7", status=status, payload={"status": "error", "error": "no"}, repeat=True)
    with pytest.raises(ApiError) as info:
        await api.get_import(1, 7)
    assert info.value.status == status and info.value.attempts == 1
    assert len(calls(mock, "GET", f"{IMP}/7")) == 1 and env.slept == []


@pytest.mark.parametrize("failure", [408, 429, 500, 502, 503, 504, "refused", "reset", "timeout"])
async def test_retry_then_success(api, mock, env, failure):
    if failure == "refused":
        mock.get(f"{IMP}/7", exception=refused())
    elif failure == "reset":
        mock.get(f"{IMP}/7", exception=aiohttp.ServerDisconnectedError())
    elif failure == "timeout":
        mock.get(f"{IMP}/7", timeout=True)
    else:
        mock.get(f"{IMP}/7", status=failure, body="busy")
    mock.get(f"{IMP}/7", payload=ok({"id": "7"}))
    assert await api.get_import(1, 7) == {"id": "7"}
    assert len(calls(mock, "GET", f"{IMP}/7")) == 2
    assert len(env.slept) == 1 and 0 <= env.slept[0] <= 0.5
    (event,) = env.events
    assert (event.method, event.path, event.attempt) == ("GET", "/v1/datamarts/1/document_imports/7", 1)
    assert event.delay_s == env.slept[0]


@pytest.mark.parametrize(
    ("header", "expected"), [("3", 3.0), ("0", 0.0), ("0.25", 0.25), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)]
)
async def test_retry_after_is_honoured(api, mock, env, header, expected):
    mock.get(f"{IMP}/7", status=429, headers={"Retry-After": header})
    mock.get(f"{IMP}/7", payload=ok({"id": "7"}))
    await api.get_import(1, 7)
    assert env.slept == [expected]


async def test_retry_after_future_date_and_cap(env, mock):
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    mock.get(f"{IMP}/7", status=503, headers={"Retry-After": future})
    mock.get(f"{IMP}/7", status=503, headers={"Retry-After": "1000"})
    mock.get(f"{IMP}/7", payload=ok({"id": "7"}))
    async with ApiClient(BASE, TOKEN, retry=RetryPolicy(max_retry_after_s=60), sleep=env.sleep) as api:
        await api.get_import(1, 7)
    assert env.slept == [60, 60]


async def test_exhaustion_raises_last_error_with_attempts(api, mock, env):
    mock.get(f"{IMP}/7", status=502, body="bad gateway", repeat=True)
    with pytest.raises(ApiError) as info:
        await api.get_import(1, 7)
    assert info.value.status == 502 and info.value.attempts == 8
    assert len(calls(mock, "GET", f"{IMP}/7")) == 8 and len(env.slept) == 7
    assert [e.attempt for e in env.events] == [1, 2, 3, 4, 5, 6, 7]


async def test_transport_exhaustion(mock, env):
    mock.get(f"{IMP}/7", exception=aiohttp.ServerDisconnectedError(), repeat=True)
    async with ApiClient(BASE, TOKEN, retry=RetryPolicy(max_attempts=3), sleep=env.sleep) as api:
        with pytest.raises(TransportError) as info:
            await api.get_import(1, 7)
    assert info.value.attempts == 3 and info.value.ambiguous and info.value.method == "GET"


@pytest.mark.parametrize(
    ("failure", "retried"),
    [(503, True), (429, True), (408, True), ("refused", True), (500, False), (502, False), ("reset", False)],
)
async def test_create_import_retries_only_unambiguous(api, mock, failure, retried):
    if failure == "refused":
        mock.post(IMP, exception=refused())
    elif failure == "reset":
        mock.post(IMP, exception=aiohttp.ServerDisconnectedError())
    else:
        mock.post(IMP, status=failure, body="x")
    mock.post(IMP, payload=ok({"id": "9"}))
    kwargs = dict(document_type="USER_PROFILE", mime_type="APPLICATION_X_NDJSON", encoding="utf-8", name="n")
    if retried:
        assert (await api.create_import(1, **kwargs))["id"] == "9"
    else:
        with pytest.raises((ApiError, TransportError)):
            await api.create_import(1, **kwargs)
    assert len(calls(mock, "POST", IMP)) == (2 if retried else 1)


async def test_delete_404_after_ambiguous_failure_means_gone(api, mock):
    mock.delete(f"{IMP}/7", exception=aiohttp.ServerDisconnectedError())
    mock.delete(f"{IMP}/7", status=404, payload={"status": "error", "error": "not found"})
    assert await api.delete_import(1, 7) is None


async def test_delete_404_first_is_an_error(api, mock):
    mock.delete(f"{IMP}/7", status=404, payload={"status": "error", "error": "not found"})
    with pytest.raises(ApiError):
        await api.delete_import(1, 7)


# --- secrecy ------------------------------------------------------------------------------------


async def test_token_never_in_repr_messages_or_logs(env, mock, caplog):
    caplog.set_level(logging.DEBUG)
    mock.get(f"{IMP}/7", status=401, payload={"status": "error", "error": f"bad token {TOKEN}"})
    mock.get(f"{IMP}/8", exception=aiohttp.ClientOSError(104, f"reset {TOKEN}"), repeat=True)
    client = ApiClient(BASE, TOKEN, retry=RetryPolicy(max_attempts=2), sleep=env.sleep, on_retry=env.events.append)
    assert repr(client) == "ApiClient(base_url='http://api.test')" and TOKEN not in str(client)
    async with client as api:
        with pytest.raises(ApiError) as e1:
            await api.get_import(1, 7)
        with pytest.raises(TransportError) as e2:
            await api.get_import(1, 8)
    for exc in (e1.value, e2.value):
        assert TOKEN not in str(exc) and TOKEN not in repr(exc) and TOKEN not in exc.message
    assert TOKEN not in repr(env.events) and TOKEN not in caplog.text


def test_bad_construction():
    with pytest.raises(UsageError):
        ApiClient("api.test", TOKEN)
    with pytest.raises(UsageError):
        ApiClient(BASE, "")


async def test_use_outside_context_is_an_error():
    with pytest.raises(RuntimeError, match="async with"):
        await ApiClient(BASE, TOKEN).get_import(1, 2)


# --- pagination ---------------------------------------------------------------------------------


async def test_iter_imports_does_not_trust_total(api, mock):
    # the total may lag behind the list: pages go on until an empty one
    mock.get(LIST_IMP, payload=ok([{"id": 1}, {"id": 2}], count=2, first_result=0, max_results=2, total=4))
    mock.get(LIST_IMP, payload=ok([{"id": 3}, {"id": 4}], count=2, first_result=2, max_results=2, total=4))
    mock.get(LIST_IMP, payload=ok([{"id": 5}], count=1, first_result=4, max_results=2, total=4))
    mock.get(LIST_IMP, payload=ok([], count=0, first_result=5, max_results=2, total=5))
    assert [i["id"] async for i in api.iter_imports(1, page_size=2)] == [1, 2, 3, 4, 5]
    firsts = [u.query["first_result"] for (m, u) in mock.requests]
    assert firsts == ["0", "2", "4", "5"]


async def test_iter_executions_without_total_goes_on_after_a_short_page(api, mock):
    # a server may cap pages below max_results without saying so: only an empty page ends the list
    mock.get(LIST_EXE, payload=ok([{"id": "a"}, {"id": "b"}]))
    mock.get(LIST_EXE, payload=ok([{"id": "c"}]))
    mock.get(LIST_EXE, payload=ok([]))
    assert [e["id"] async for e in api.iter_executions(1, 7, page_size=2)] == ["a", "b", "c"]


async def test_iter_stops_when_the_server_ignores_first_result(api, mock):
    mock.get(LIST_EXE, payload=ok([{"id": "a"}, {"id": "b"}]), repeat=True)  # the same page, forever
    assert [e["id"] async for e in api.iter_executions(1, 7, page_size=2)] == ["a", "b"]
    assert len(calls(mock, "GET", EXE)) == 2


async def test_iter_stops_on_empty_page(api, mock):
    mock.get(LIST_EXE, payload=ok([{"id": "a"}, {"id": "b"}], total=10))
    mock.get(LIST_EXE, payload=ok([], total=10))
    assert [e["id"] async for e in api.iter_executions(1, 7, page_size=2)] == ["a", "b"]


# --- find / download ----------------------------------------------------------------------------


def execution(eid, name, created):
    return {"id": eid, "status": "PENDING", "creation_date": created, "parameters": {"input_file_name": name}}


async def test_find_execution_by_filename_scans_pages(api, mock):
    mock.get(LIST_EXE, payload=ok([execution("a", "x", 900), execution("b", "y", 800)], total=4))
    mock.get(LIST_EXE, payload=ok([execution("c", "z", 700), {"id": "d", "result": {"input_file_name": "w"}}]))
    assert (await api.find_execution_by_filename(1, 7, "w"))["id"] == "d"


async def test_scan_does_not_trust_order_or_clocks(api, mock):
    # oldest first, dates far in the past: the whole list is still walked
    mock.get(LIST_EXE, payload=ok([execution(str(i), f"f{i}", 10) for i in range(100)]))
    mock.get(LIST_EXE, payload=ok([execution("100", "wanted", 5)]))
    mock.get(LIST_EXE, payload=ok([]))
    scan = await api.scan_executions(1, 7, wanted={"wanted"})
    assert [e["id"] for e in scan.items][-1] == "100" and scan.pages == 2


async def test_scan_of_a_list_that_ignores_first_result_is_not_complete(api, mock):
    mock.get(LIST_EXE, payload=ok([execution(str(i), f"f{i}", 10) for i in range(100)]), repeat=True)
    scan = await api.scan_executions(1, 7)
    assert len(scan.items) == 100 and not scan.complete and scan.pages == 2


async def test_scan_is_capped(api, mock):
    for page in range(3):
        mock.get(LIST_EXE, payload=ok([execution(f"{page}-{i}", "x", 10) for i in range(100)]))
    scan = await api.scan_executions(1, 7, max_pages=2)
    assert len(scan.items) == 200 and not scan.complete


async def test_download_data_file_streams(api, mock):
    data = b"line1\nline2\n" * 10000
    url = re.compile(re.escape(f"{BASE}/v1/data_file/data") + r"\?uri=.*")
    mock.get(url, status=503, body="busy")
    mock.get(url, body=data, content_type="application/octet-stream")
    got = b"".join([c async for c in api.download_data_file("mics://data_file/x/errors.ndjson", chunk_size=1000)])
    assert got == data
    (m, u), *_ = mock.requests
    assert u.query["uri"] == "mics://data_file/x/errors.ndjson"


async def test_download_not_found(api, mock):
    mock.get(re.compile(r".*/v1/data_file/data\?.*"), status=404, payload={"status": "error", "error": "nope"})
    with pytest.raises(ApiError):
        _ = [c async for c in api.download_data_file("mics://nope")]


# --- uploads ------------------------------------------------------------------------------------

BODY = b'{"operation":"UPSERT"}\n' * 100


class Source:
    """A chunks factory that counts how often it was called."""

    def __init__(self, data=BODY, chunk=256):
        self.data, self.chunk, self.calls = data, chunk, 0

    def __call__(self):
        self.calls += 1
        return self._gen()

    async def _gen(self):
        for i in range(0, len(self.data), self.chunk):
            yield self.data[i : i + self.chunk]


async def upload(api, src=None, **kw):
    src = src or Source()
    args = dict(chunks=src, size=len(src.data), filename="run-000001.ndjson", mime_type="APPLICATION_X_NDJSON")
    return await api.upload(1, 7, **{**args, **kw})


async def test_upload_multipart_body(api, mock):
    mock.post(EXE, payload=ok({"id": "e1", "status": "PENDING"}))
    attempts = []
    res = await upload(api, on_attempt=attempts.append)
    assert res.execution["id"] == "e1" and res.attempts == 1 and attempts == [1]
    (call,) = calls(mock, "POST", EXE)
    body, headers = call.kwargs["data"], call.kwargs["headers"]
    boundary = headers["Content-Type"].split("boundary=")[1]
    assert headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert int(headers["Content-Length"]) == len(body)
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'name="type"\r\n\r\napplication/x-ndjson\r\n' in body
    assert b'name="file"; filename="run-000001.ndjson"\r\nContent-Type: application/x-ndjson\r\n\r\n' + BODY in body


async def test_upload_raw_body(api, mock):
    mock.post(EXE, payload=ok({"id": "e1"}))
    await upload(api, form="raw", mime_type="TEXT_CSV")
    (call,) = calls(mock, "POST", EXE)
    assert call.kwargs["data"] == BODY
    headers = call.kwargs["headers"]
    assert (headers["Content-Type"], headers["Content-Length"]) == ("text/csv", str(len(BODY)))


async def test_upload_bad_arguments(api):
    with pytest.raises(UsageError):
        await upload(api, form="zip")
    with pytest.raises(UsageError):
        await upload(api, mime_type="application/json")
    with pytest.raises(UsageError):
        await upload(api, filename='a"b')


@pytest.mark.parametrize("failure", ["reset", "timeout", "payload", "envelope", "no_id", 500, 502, 504])
async def test_ambiguous_upload_is_never_resent_by_the_client(api, mock, failure):
    if failure == "reset":
        mock.post(EXE, exception=aiohttp.ServerDisconnectedError())
    elif failure == "timeout":
        mock.post(EXE, exception=TimeoutError())
    elif failure == "payload":
        mock.post(EXE, status=200, body="<html>proxy</html>")  # 2xx but unreadable
    elif failure == "envelope":
        mock.post(EXE, status=200, payload={"status": "error", "error": "internal", "error_code": "INTERNAL"})
    elif failure == "no_id":
        mock.post(EXE, status=200, payload=ok({"status": "PENDING"}))
    else:
        mock.post(EXE, status=failure, body="oops")
    mock.post(EXE, payload=ok({"id": "DUPLICATE"}))
    src = Source()
    with pytest.raises(UploadUnsettled) as info:
        await upload(api, src)
    assert info.value.attempts == 1 and src.calls == 1
    assert len(calls(mock, "POST", EXE)) == 1 and calls(mock, "GET", EXE) == []


async def test_unambiguous_upload_failure_is_retried(api, mock):
    mock.post(EXE, status=429, headers={"Retry-After": "1"})
    mock.post(EXE, exception=refused())
    mock.post(EXE, status=503, body="busy")
    mock.post(EXE, payload=ok({"id": "e3"}))
    res = await upload(api)
    assert res.attempts == 4 and calls(mock, "GET", EXE) == []


async def test_upload_final_4xx_not_retried(api, mock):
    mock.post(EXE, status=413, payload={"status": "error", "error": "too large", "error_code": "TOO_LARGE"})
    with pytest.raises(ApiError) as info:
        await upload(api)
    assert info.value.status == 413 and info.value.attempts == 1


async def test_upload_exhausted(mock, env):
    mock.post(EXE, status=503, body="busy", repeat=True)
    async with ApiClient(BASE, TOKEN, retry=RetryPolicy(max_attempts=4), sleep=env.sleep) as api:
        with pytest.raises(ApiError) as info:
            await upload(api)
    assert info.value.status == 503 and info.value.attempts == 4
    assert len(calls(mock, "POST", EXE)) == 4 and calls(mock, "GET", EXE) == []


def test_url_shape():
    assert URL(EXE).path == "/v1/datamarts/1/document_imports/7/executions"


async def test_a_download_takes_a_token_of_the_request_budget(env, mock):
    from pipeline.client.request_budget import RequestBudget

    budget = RequestBudget(1000.0)
    client = ApiClient(BASE, TOKEN, retry=RetryPolicy(), sleep=env.sleep, rng=random.Random(1), budget=budget)
    url = re.compile(re.escape(f"{BASE}/v1/data_file/data") + r"\?uri=.*")
    mock.get(url, status=503, body="busy")
    mock.get(url, body=b"x\n", content_type="application/octet-stream")
    async with client:
        assert b"".join([c async for c in client.download_data_file("mics://data_file/x/e")]) == b"x\n"
    assert budget.requests == 2  # each attempt

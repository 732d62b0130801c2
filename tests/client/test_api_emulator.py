"""ApiClient against the embedded emulator (pipeline.emulator): the real routes, real faults."""

from __future__ import annotations

import orjson
import pytest

from pipeline.client.api import ApiClient, Page, RetryPolicy
from pipeline.client.multipart import UploadUnsettled
from pipeline.emulator import EmulatorOptions, listing, running_emulator
from pipeline.errors import ApiError, TransportError
from pipeline.formats import record_digest

from ..helpers import ListingClock

DM = 1000
PROFILE = dict(document_type="USER_PROFILE", mime_type="APPLICATION_X_NDJSON", encoding="utf-8")


def ndjson(n: int, bad: int = 0) -> bytes:
    good = [
        orjson.dumps(
            {"operation": "UPSERT", "compartment_id": "1", "user_account_id": f"u{i}", "user_profile": {"i": i}}
        )
        for i in range(n)
    ]
    wrong = [orjson.dumps({"operation": "UPSERT", "user_profile": {}}) for _ in range(bad)]
    return b"\n".join(good + wrong) + b"\n"


def source(data: bytes, chunk: int = 4096):
    calls = []

    def factory():
        calls.append(1)

        async def gen():
            for i in range(0, len(data), chunk):
                yield data[i : i + chunk]

        return gen()

    factory.calls = calls  # type: ignore[attr-defined]
    return factory


class Sleeps:
    def __init__(self):
        self.slept = []

    async def __call__(self, delay):
        self.slept.append(delay)


def client(emu, **kw) -> ApiClient:
    return ApiClient(emu.base_url, emu.token, **kw)


async def test_import_lifecycle():
    async with running_emulator(EmulatorOptions(process_ms=0, seed=1)) as emu, client(emu) as api:
        imp = await api.create_import(DM, name="nightly 2026-01-02", priority="LOW", **PROFILE)
        assert imp["id"] and imp["datafarm_key"] and imp["priority"] == "LOW"
        assert (await api.get_import(DM, imp["id"]))["name"] == "nightly 2026-01-02"
        assert (await api.update_import(DM, imp["id"], {"priority": "HIGH"}))["priority"] == "HIGH"
        for i in range(3):
            await api.create_import(DM, name=f"other {i}", **PROFILE)
        page = await api.list_imports(DM, max_results=2)
        assert isinstance(page, Page) and len(page.items) == 2 and page.total == 4
        assert [i["name"] async for i in api.iter_imports(DM, page_size=3)][0] == "nightly 2026-01-02"
        assert [i["id"] async for i in api.iter_imports(DM, keywords="nightly")] == [imp["id"]]
        await api.delete_import(DM, imp["id"])
        with pytest.raises(ApiError) as info:
            await api.get_import(DM, imp["id"])
        assert info.value.status == 404 and info.value.attempts == 1


@pytest.mark.parametrize("form", ["multipart", "raw"])
async def test_upload_and_follow_execution(form):
    data = ndjson(500, bad=2)
    async with running_emulator(EmulatorOptions(process_ms=0, seed=1)) as emu, client(emu) as api:
        imp = await api.create_import(DM, name="n", **PROFILE)
        res = await api.upload(
            DM, imp["id"], chunks=source(data), size=len(data), filename="run-000001.ndjson",
            mime_type="APPLICATION_X_NDJSON", form=form,
        )  # fmt: skip
        exe = res.execution
        assert exe["status"] == "PENDING" and res.attempts == 1 and res.elapsed_s >= 0
        await emu.wait_idle()
        done = await api.get_execution(DM, imp["id"], exe["id"])
        assert done["status"] == "SUCCEEDED"
        assert (done["result"]["total_success"], done["result"]["total_failure"]) == (500, 2)
        (upload,) = emu.accounting.uploads
        assert upload.size == len(data) and upload.lines == 502
        if form == "multipart":
            assert upload.filename == "run-000001.ndjson"
            assert (await api.find_execution_by_filename(DM, imp["id"], "run-000001.ndjson"))["id"] == exe["id"]
        first = data.split(b"\n")[0]
        assert emu.accounting.accepted[record_digest(first)] == [exe["id"]]
        listed = [e["id"] async for e in api.iter_executions(DM, imp["id"])]
        assert listed == [exe["id"]]
        errors = b"".join([c async for c in api.download_data_file(done["result"]["error_file_uri"])])
        assert len(errors.splitlines()) == 2 and b'"line":501' in errors.replace(b" ", b"")


def posts(emu) -> int:
    return emu.accounting.requests[("POST", "upload")]


def lookups(emu) -> int:
    return emu.accounting.requests[("GET", "list_executions")]


async def upload(api, imp, src, data, name="b-1.ndjson"):
    return await api.upload(DM, imp["id"], chunks=src, size=len(data), filename=name, mime_type="APPLICATION_X_NDJSON")


async def test_dropped_answer_is_unsettled_after_one_post_and_found_by_name():
    data = ndjson(50)
    opts = EmulatorOptions(process_ms=0, seed=3, faults={"drop_after": 1.0})
    async with running_emulator(opts) as emu, client(emu, sleep=Sleeps()) as api:
        imp = await api.create_import(DM, name="n", **PROFILE)
        src = source(data)
        with pytest.raises(UploadUnsettled) as info:
            await upload(api, imp, src, data)
        assert info.value.attempts == 1 and len(src.calls) == 1 and posts(emu) == 1
        assert isinstance(info.value.cause, TransportError) and info.value.cause.ambiguous
        assert lookups(emu) == 0  # the client never looks it up itself
        assert [u.filename for u in emu.accounting.uploads] == ["b-1.ndjson"]  # it was created
        found = await api.find_execution_by_filename(DM, imp["id"], "b-1.ndjson")
        assert found["id"] == emu.accounting.uploads[0].execution_id
        assert posts(emu) == 1


@pytest.mark.parametrize("fault", ["error_envelope", "no_id"])
async def test_a_2xx_that_contradicts_itself_is_unsettled_and_the_execution_exists(fault):
    data = ndjson(10)
    opts = EmulatorOptions(process_ms=0, seed=3, faults={fault: 1.0})
    async with running_emulator(opts) as emu, client(emu, sleep=Sleeps()) as api:
        imp = await api.create_import(DM, name="n", **PROFILE)
        src = source(data)
        with pytest.raises(UploadUnsettled) as info:
            await upload(api, imp, src, data)
        assert info.value.attempts == 1 and len(src.calls) == 1 and posts(emu) == 1
        (created,) = emu.accounting.uploads
        assert (await api.find_execution_by_filename(DM, imp["id"], "b-1.ndjson"))["id"] == created.execution_id


async def test_gateway_504_is_unsettled_and_the_execution_appears_later():
    data = ndjson(10)
    opts = EmulatorOptions(process_ms=0, seed=3, faults={"gateway504": (1.0, 0.3)})
    async with running_emulator(opts) as emu, client(emu, sleep=Sleeps()) as api:
        imp = await api.create_import(DM, name="n", **PROFILE)
        with pytest.raises(UploadUnsettled) as info:
            await upload(api, imp, source(data), data)
        assert isinstance(info.value.cause, ApiError) and info.value.cause.status == 504
        assert posts(emu) == 1
        # one look right away proves nothing: the backend goes on and creates it later
        assert await api.find_execution_by_filename(DM, imp["id"], "b-1.ndjson") is None
        await emu.wait_idle()
        (created,) = emu.accounting.uploads
        assert (await api.find_execution_by_filename(DM, imp["id"], "b-1.ndjson"))["id"] == created.execution_id
        assert posts(emu) == 1


async def test_list_lag_hides_a_created_execution_for_a_while(monkeypatch):
    data = ndjson(10)
    clock = ListingClock()  # stopped: the lag passes when the test moves it, however slow the machine
    monkeypatch.setattr(listing, "time", clock)
    opts = EmulatorOptions(process_ms=0, seed=3, faults={"drop_after": 1.0, "list_lag": 0.3})
    async with running_emulator(opts) as emu, client(emu, sleep=Sleeps()) as api:
        imp = await api.create_import(DM, name="n", **PROFILE)
        with pytest.raises(UploadUnsettled):
            await upload(api, imp, source(data), data)
        assert await api.find_execution_by_filename(DM, imp["id"], "b-1.ndjson") is None
        clock.now += 3600  # what the settler does: look again, later
        found = await api.find_execution_by_filename(DM, imp["id"], "b-1.ndjson")
        assert found is not None and found["id"] == emu.accounting.uploads[0].execution_id


async def test_no_filename_server_cannot_be_settled_by_name():
    data = ndjson(10)
    opts = EmulatorOptions(process_ms=0, seed=3, faults={"drop_after": 1.0, "no_filename": 1})
    async with running_emulator(opts) as emu, client(emu, sleep=Sleeps()) as api:
        imp = await api.create_import(DM, name="n", **PROFILE)
        with pytest.raises(UploadUnsettled):
            await upload(api, imp, source(data), data)
        assert len(emu.accounting.uploads) == 1  # created...
        assert await api.find_execution_by_filename(DM, imp["id"], "b-1.ndjson") is None  # ...yet not findable
        scan = await api.scan_executions(DM, imp["id"])
        assert scan.complete and len(scan.items) == 1  # the Settler must call this unknowable, not absent


async def test_throttling_honours_retry_after_and_exhausts():
    sleeps = Sleeps()
    opts = EmulatorOptions(process_ms=0, seed=3, faults={"throttle": 1.0}, retry_after_s=7)
    async with running_emulator(opts) as emu:
        async with client(emu, sleep=sleeps, retry=RetryPolicy(max_attempts=3)) as api:
            imp = await api.create_import(DM, name="n", **PROFILE)
            data = ndjson(5)
            with pytest.raises(ApiError) as info:
                await api.upload(
                    DM, imp["id"], chunks=source(data), size=len(data), filename="b.ndjson",
                    mime_type="APPLICATION_X_NDJSON",
                )  # fmt: skip
        assert info.value.status == 429 and info.value.attempts == 3 and info.value.retry_after == 7
        assert sleeps.slept == [7, 7] and emu.accounting.uploads == []


async def test_throttling_with_http_dates_and_a_server_clock_an_hour_ahead():
    sleeps = Sleeps()
    faults = {"throttle": 1.0, "retry_after_date": 1, "clock_skew": 3600}
    opts = EmulatorOptions(process_ms=0, seed=3, faults=faults, retry_after_s=7)
    async with running_emulator(opts) as emu:
        async with client(emu, sleep=sleeps, retry=RetryPolicy(max_attempts=3)) as api:
            imp = await api.create_import(DM, name="n", **PROFILE)
            data = ndjson(5)
            with pytest.raises(ApiError) as info:
                await upload(api, imp, source(data), data)
    assert info.value.status == 429 and info.value.attempts == 3
    # the dates are whole seconds (Retry-After rounded up, Date down): 7 to 8 s, never an hour or the cap
    assert len(sleeps.slept) == 2 and all(7 <= s <= 8 for s in sleeps.slept), sleeps.slept


async def test_an_outage_503_creates_nothing_and_is_resent_then_exhausted():
    sleeps = Sleeps()
    async with running_emulator(EmulatorOptions(process_ms=0, seed=5, retry_after_s=0)) as emu:
        async with client(emu, sleep=sleeps, retry=RetryPolicy(max_attempts=4)) as api:
            imp = await api.create_import(DM, name="n", **PROFILE)
            emu.set_outage(True)
            data = ndjson(20)
            src = source(data)
            with pytest.raises(ApiError) as info:
                await upload(api, imp, src, data)
        assert not isinstance(info.value, UploadUnsettled)
        assert info.value.status == 503 and info.value.attempts == 4 and len(src.calls) == 4
        assert sleeps.slept == [0, 0, 0] and emu.accounting.uploads == [] and lookups(emu) == 0


async def test_error5xx_503s_are_resent_then_exhausted():
    sleeps = Sleeps()
    opts = EmulatorOptions(process_ms=0, seed=6, faults={"error5xx": 1.0}, retry_after_s=0)  # seed 6: 503s only
    async with running_emulator(opts) as emu:
        async with client(emu, sleep=sleeps, retry=RetryPolicy(max_attempts=4)) as api:
            imp = await api.create_import(DM, name="n", **PROFILE)
            data = ndjson(20)
            src = source(data)
            with pytest.raises(ApiError) as info:
                await upload(api, imp, src, data)
        assert not isinstance(info.value, UploadUnsettled) and info.value.status == 503
        assert info.value.attempts == 4 and len(src.calls) == 4 and posts(emu) == 4
        assert emu.accounting.uploads == [] and lookups(emu) == 0


@pytest.mark.parametrize(("seed", "tries", "status"), [(1, 1, 500), (5, 1, 502), (2, 2, 500)])
async def test_error5xx_other_than_503_is_unsettled_at_once(seed, tries, status):
    # seed 1: 500 first; seed 5: 502 first; seed 2: 503 (resent) then 500
    opts = EmulatorOptions(process_ms=0, seed=seed, faults={"error5xx": 1.0}, retry_after_s=0)
    async with running_emulator(opts) as emu:
        async with client(emu, sleep=Sleeps(), retry=RetryPolicy(max_attempts=4)) as api:
            imp = await api.create_import(DM, name="n", **PROFILE)
            data = ndjson(20)
            src = source(data)
            with pytest.raises(UploadUnsettled) as info:
                await upload(api, imp, src, data)
        assert info.value.cause.status == status and info.value.attempts == tries
        assert len(src.calls) == tries and posts(emu) == tries and lookups(emu) == 0
        # the emulator's 5xx created nothing: a settle window would see no execution and send it again
        assert emu.accounting.uploads == []


async def test_reset_before_the_body_is_unsettled_since_the_client_cannot_tell():
    # the emulator resets before reading the body (nothing created), but a reset once the request
    # went out looks the same to the client as one after the creation: it is never re-sent blindly
    opts = EmulatorOptions(process_ms=0, seed=5, faults={"reset_before": 1.0})
    async with running_emulator(opts) as emu:
        async with client(emu, sleep=Sleeps(), retry=RetryPolicy(max_attempts=4)) as api:
            imp = await api.create_import(DM, name="n", **PROFILE)
            data = ndjson(20)
            src = source(data)
            with pytest.raises(UploadUnsettled) as info:
                await upload(api, imp, src, data)
            assert isinstance(info.value.cause, TransportError) and info.value.cause.ambiguous
            assert info.value.attempts == 1 and len(src.calls) == 1 and lookups(emu) == 0
            assert emu.accounting.uploads == []
            scan = await api.scan_executions(DM, imp["id"])
            assert scan.complete and scan.items == []  # what lets the Settler send it again


async def test_scan_of_a_capped_list_that_ignores_first_result_is_not_complete():
    opts = EmulatorOptions(process_ms=0, seed=1, faults={"page_cap": 3, "ignore_first_result": 1})
    async with running_emulator(opts) as emu, client(emu) as api:
        imp = await api.create_import(DM, name="n", **PROFILE)
        data = ndjson(3)
        for i in range(6):
            await upload(api, imp, source(data), data, name=f"b-{i}.ndjson")
        scan = await api.scan_executions(DM, imp["id"])
        assert len(scan.items) == 3 and len(emu.accounting.uploads) == 6
        assert not scan.complete  # fails: complete=True while 3 of the 6 executions were never seen


async def test_wrong_token_is_401_and_never_shown():
    async with running_emulator(EmulatorOptions(process_ms=0)) as emu:
        async with ApiClient(emu.base_url, "not-the-token-123") as api:
            with pytest.raises(ApiError) as info:
                await api.list_imports(DM)
        assert info.value.status == 401 and info.value.attempts == 1
        assert "not-the-token-123" not in str(info.value) and emu.token not in str(info.value)


async def test_too_large_is_final_and_answered_before_the_body():
    data = ndjson(2000)
    async with running_emulator(EmulatorOptions(process_ms=0, max_file_bytes=10_000)) as emu, client(emu) as api:
        imp = await api.create_import(DM, name="n", **PROFILE)
        src = source(data, chunk=1000)
        with pytest.raises(ApiError) as info:
            await api.upload(
                DM, imp["id"], chunks=src, size=len(data), filename="big.ndjson", mime_type="APPLICATION_X_NDJSON"
            )
        assert info.value.status == 413 and info.value.attempts == 1 and len(src.calls) == 1
        assert emu.accounting.uploads == []

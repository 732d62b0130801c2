"""ApiClient against the embedded emulator (pipeline.emulator): the real routes, real faults."""

from __future__ import annotations

import orjson
import pytest

from pipeline.api import ApiClient, Page, RetryPolicy
from pipeline.errors import ApiError, TransportError
from pipeline.formats import record_digest

emulator = pytest.importorskip("pipeline.emulator")
EmulatorOptions, running_emulator = emulator.EmulatorOptions, emulator.running_emulator

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
        assert exe["status"] == "PENDING" and res.attempts == 1 and not res.recovered
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


async def test_dropped_answer_is_recovered_without_second_upload():
    data = ndjson(50)
    opts = EmulatorOptions(process_ms=0, seed=3, faults={"drop_after": 1.0})
    async with running_emulator(opts) as emu, client(emu, sleep=Sleeps()) as api:
        imp = await api.create_import(DM, name="n", **PROFILE)
        src = source(data)
        res = await api.upload(
            DM, imp["id"], chunks=src, size=len(data), filename="b-1.ndjson", mime_type="APPLICATION_X_NDJSON"
        )
        assert res.recovered and res.attempts == 2 and len(src.calls) == 1
        assert [u.filename for u in emu.accounting.uploads] == ["b-1.ndjson"]
        assert res.execution["id"] == emu.accounting.uploads[0].execution_id


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


@pytest.mark.parametrize("fault", ["error5xx", "reset_before"])
async def test_failures_that_create_nothing_are_resent_then_exhausted(fault):
    sleeps = Sleeps()
    opts = EmulatorOptions(process_ms=0, seed=5, faults={fault: 1.0}, retry_after_s=0)
    async with running_emulator(opts) as emu:
        async with client(emu, sleep=sleeps, retry=RetryPolicy(max_attempts=4)) as api:
            imp = await api.create_import(DM, name="n", **PROFILE)
            data = ndjson(20)
            src = source(data)
            with pytest.raises((ApiError, TransportError)) as info:
                await api.upload(
                    DM, imp["id"], chunks=src, size=len(data), filename="b.ndjson", mime_type="APPLICATION_X_NDJSON"
                )
        assert info.value.attempts == 4 and len(src.calls) == 4 and emu.accounting.uploads == []
        lookups = emu.accounting.requests[("GET", "list_executions")]
        assert lookups == 3  # every failure was ambiguous for the client: settled by a lookup each time


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

"""HTTP inputs against a local aiohttp server, with and without ``Range``; fsspec's ``memory://``
standing in for GCS and Azure (no local server of theirs is at hand); URLs as they are shown."""

from __future__ import annotations

import fsspec
import orjson
import pytest

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions
from pipeline.errors import InputError
from pipeline.reading.inputs import fingerprint, resolve_inputs
from pipeline.reading.sources import RemoteObject, display_url, is_url

from ..helpers import assert_exactly_once, test_config
from .conftest import free_port
from .test_s3 import digests, ndjson, read_all

TOKEN = "http-token-99ab"


def test_a_server_with_range_gives_ranged_batches_one_without_gives_spooled_ones(http_files, tmp_path):
    data = ndjson(range(1_500))
    (http_files.root / "a.ndjson").write_bytes(data)
    [ranged] = resolve_inputs([http_files.url("ranged", "a.ndjson")])
    [whole] = resolve_inputs([http_files.url("whole", "a.ndjson")])
    assert isinstance(ranged, RemoteObject) and ranged.serves_ranges and ranged.size == len(data)
    assert isinstance(whole, RemoteObject) and not whole.serves_ranges

    batches, spool = read_all([ranged], tmp_path)
    assert len(batches) > 2 and all(isinstance(b.data_path, RemoteObject) for b in batches)
    assert not list(spool.iterdir())
    http_files.requests.clear()
    assert b"".join(b.read_body() for b in batches) == data
    assert all(method == "GET" and rng and rng.startswith("bytes=") for method, _, rng in http_files.requests)

    batches, spool = read_all([whole], tmp_path)
    assert all(b.spooled for b in batches) and len(list(spool.iterdir())) == len(batches)
    assert b"".join(b.read_body() for b in batches) == data


@pytest.mark.parametrize("kind", ["ranged", "whole"])
async def test_a_run_over_http_delivers_every_record_once(kind, http_files, tmp_path, fast_retry):
    data = ndjson(range(3_000))
    (http_files.root / "in.ndjson").write_bytes(data)
    # throttled attempts are sent again whole: each retry re-reads the batch (by ranges, or its spool)
    options = EmulatorOptions(token=TOKEN, process_ms=1, faults={"throttle": 0.3}, seed=11)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 80_000}, upload={"concurrency": 3})
        report = await pipeline.run_async(
            config, [http_files.url(kind, "in.ndjson")], RunOptions(token=TOKEN, retry_policy=fast_retry)
        )
        assert (report["outcome"], report["exit_code"]) == ("succeeded", 0), report["records"]
        assert_exactly_once(emu.accounting, digests(data))


async def test_a_memory_object_store_runs_like_gcs_or_azure_would(tmp_path, fast_retry):
    fs = fsspec.filesystem("memory")
    data = ndjson(range(2_000))
    fs.pipe("/exports/2026-11-30/part-00000.json", data)  # Spark's name: .json taken in a prefix
    fs.pipe("/exports/2026-11-30/_SUCCESS", b"")
    try:
        inputs = resolve_inputs(["memory://exports/2026-11-30/"])
        assert [i.name for i in inputs] == ["part-00000.json"]
        async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
            config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 70_000})
            report = await pipeline.run_async(
                config, ["memory://exports/2026-11-30/"], RunOptions(token=TOKEN, retry_policy=fast_retry)
            )
            assert report["exit_code"] == 0, report
            assert_exactly_once(emu.accounting, digests(data))
    finally:
        fs.rm("/exports", recursive=True)


def test_urls_are_shown_and_journaled_without_credentials():
    signed = "https://user:secret@host.example:8443/drop/a.ndjson?X-Amz-Signature=abc&X-Amz-Credential=AKIA"
    assert display_url(signed) == "https://host.example:8443/drop/a.ndjson?…"
    assert display_url("s3://bucket/a.ndjson") == "s3://bucket/a.ndjson"
    obj = RemoteObject(url=signed, size=10, etag='"e"')
    recorded = fingerprint(obj)
    assert "secret" not in orjson.dumps(recorded).decode() and "Signature" not in orjson.dumps(recorded).decode()
    assert recorded["url"] is None  # the resume cannot reopen it: it says so rather than keep the secret
    assert str(obj) == "https://host.example:8443/drop/a.ndjson?…"


def test_an_unreachable_signed_url_is_named_without_its_signature():
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/a.ndjson?X-Amz-Signature=deadbeef"
    with pytest.raises(InputError) as caught:
        resolve_inputs([url])
    assert "deadbeef" not in str(caught.value) and f"http://127.0.0.1:{port}/a.ndjson?…" in str(caught.value)


def test_what_is_a_url():
    assert is_url("s3://b/k") and is_url("gs://b/k") and is_url("az://c/k") and is_url("https://h/p")
    assert not is_url("file:///tmp/a.ndjson") and not is_url("exports/a.ndjson") and not is_url("-")

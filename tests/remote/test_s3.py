"""S3 inputs against moto's real server on 127.0.0.1: listing, ranges, spooling, runs, resume."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import orjson
import pytest

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions
from pipeline.errors import InputError
from pipeline.reading.inputs import resolve_inputs
from pipeline.reading.reader import BatchReader
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.sources import RemoteObject

from ..helpers import activity, assert_exactly_once, interrupt_after_uploads, test_config

TOKEN = "s3-token-4f1e"


def ndjson(records: range) -> bytes:
    return b"".join(orjson.dumps(activity(i)) + b"\n" for i in records)


def digests(data: bytes) -> list[bytes]:
    from pipeline import formats

    return [formats.record_digest(line) for line in data.splitlines() if line.strip()]


def read_all(inputs, tmp_path: Path, max_bytes: int = 100_000):
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    options = ReaderOptions(
        document_type="USER_ACTIVITY", mime_type="APPLICATION_X_NDJSON", max_bytes=max_bytes, spool_dir=spool
    )
    return list(BatchReader(inputs, options, on_reject=lambda r: None)), spool


def test_a_prefix_names_its_input_objects_in_name_order(s3):
    s3.put("exports/b.ndjson.gz", gzip.compress(ndjson(range(3))))
    s3.put("exports/a.ndjson", ndjson(range(3)))
    s3.put("exports/notes.txt", b"not an input")
    s3.put("exports/sub/c.ndjson", ndjson(range(3)))  # a "subdirectory": not read
    inputs = resolve_inputs([s3.url("exports/")])
    assert [str(i) for i in inputs] == [s3.url("exports/a.ndjson"), s3.url("exports/b.ndjson.gz")]
    assert all(isinstance(i, RemoteObject) and i.etag and i.size for i in inputs)
    assert [str(i) for i in resolve_inputs([s3.url("exports/*.gz")])] == [s3.url("exports/b.ndjson.gz")]
    assert [str(i) for i in resolve_inputs([s3.url("exports")])] == [str(i) for i in inputs]  # no slash: a prefix too


def test_a_missing_object_or_empty_prefix_is_named(s3):
    with pytest.raises(InputError, match=rf"{s3.url('nope.ndjson')}: no such object"):
        resolve_inputs([s3.url("nope.ndjson")])
    s3.put("only/notes.txt", b"x")
    with pytest.raises(InputError, match="prefix holds no input objects"):
        resolve_inputs([s3.url("only/")])


def test_a_plain_object_is_cut_into_ranges_of_itself_and_a_gz_one_is_spooled(s3, tmp_path):
    plain = ndjson(range(2_000))
    s3.put("in/a.ndjson", plain)
    s3.put("in/b.ndjson.gz", gzip.compress(plain))
    batches, spool = read_all(resolve_inputs([s3.url("in/")]), tmp_path)
    ranged = [b for b in batches if b.source.name == "a.ndjson"]
    spooled = [b for b in batches if b.source.name == "b.ndjson.gz"]
    assert len(ranged) > 3 and len(spooled) == len(ranged)
    assert all(isinstance(b.data_path, RemoteObject) and not b.spooled for b in ranged)  # no local copy
    assert all(b.spooled and Path(b.data_path).parent == spool for b in spooled)
    assert sorted(p.name.split(".")[0] for p in spool.iterdir()) == ["b"] * len(spooled)
    # the bodies, re-read with ranged GETs (twice: a retry reads the same bytes), are the object's records
    assert b"".join(b.read_body() for b in ranged) == plain
    assert [b.read_body() for b in ranged] == [b.read_body() for b in ranged]
    assert b"".join(b.read_body() for b in spooled) == plain
    for b in spooled:
        b.discard_spool()
    assert not list(spool.iterdir())


def test_an_object_replaced_after_it_was_listed_is_not_read_as_if_it_were_the_same(s3, tmp_path):
    s3.put("in/a.ndjson", ndjson(range(500)))
    inputs = resolve_inputs([s3.url("in/a.ndjson")])
    batches, _ = read_all(inputs, tmp_path, max_bytes=50_000)
    s3.put("in/a.ndjson", ndjson(range(1, 501)))  # a new ETag: the conditional ranged GET is refused
    with pytest.raises(InputError, match=r"a\.ndjson: changed since the run listed it \(ETag .* no longer matches\)"):
        batches[0].read_body()


async def test_a_run_over_a_prefix_delivers_every_record_once_with_no_copy_of_plain_objects(s3, tmp_path, fast_retry):
    parts = [ndjson(range(k * 1_500, (k + 1) * 1_500)) for k in range(3)]
    s3.put("run/part-0.ndjson", parts[0])
    s3.put("run/part-1.ndjson.gz", gzip.compress(parts[1]))
    s3.put("run/part-2.ndjson", parts[2])
    spool_seen: set[str] = set()

    def on_event(name, fields):
        if name == "batch_read":
            spool_seen.update(p.name for p in (tmp_path / "runs").glob("*/spool/*"))

    options = EmulatorOptions(token=TOKEN, process_ms=1, faults={"throttle": 0.3}, seed=3)
    async with running_emulator(options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 60_000}, upload={"concurrency": 4})
        report = await pipeline.run_async(
            config, [s3.url("run/")], RunOptions(token=TOKEN, retry_policy=fast_retry, on_event=on_event)
        )
        assert (report["outcome"], report["exit_code"]) == ("succeeded", 0), report
        assert_exactly_once(emu.accounting, digests(b"".join(parts)))
    names = ["part-0.ndjson", "part-1.ndjson.gz", "part-2.ndjson"]
    assert [i["path"] for i in report["inputs"]] == [s3.url(f"run/{name}") for name in names]
    assert spool_seen and all(name.startswith("part-1.ndjson.gz.") for name in spool_seen)  # only the .gz spooled


async def test_a_stopped_s3_run_resumes_exactly_once_and_refuses_a_changed_object(s3, tmp_path, fast_retry):
    parts = [ndjson(range(k * 2_000, (k + 1) * 2_000)) for k in range(2)]
    s3.put("stop/a.ndjson", parts[0])
    s3.put("stop/b.ndjson.gz", gzip.compress(parts[1]))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=5)) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_bytes": 50_000}, upload={"concurrency": 2})
        first = await pipeline.run_async(
            config,
            [s3.url("stop/")],
            RunOptions(token=TOKEN, retry_policy=fast_retry, handle_signals=True, on_event=interrupt_after_uploads(3)),
        )
        assert (first["outcome"], first["exit_code"]) == ("interrupted", 3)
        journal = (Path(first["run_dir"]) / "journal.ndjson").read_bytes()
        assert b'"etag"' in journal and b'"kind":"object"' in journal  # the objects' fingerprints

        second = await pipeline.resume_async(first["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert (second["outcome"], second["exit_code"]) == ("succeeded", 0), second
        assert_exactly_once(emu.accounting, digests(b"".join(parts)))

        third = await pipeline.run_async(
            config,
            [s3.url("stop/")],
            RunOptions(
                token=TOKEN,
                retry_policy=fast_retry,
                handle_signals=True,
                on_event=interrupt_after_uploads(2),
                again=True,  # the same objects a second time, on purpose
            ),
        )
        assert third["exit_code"] == 3
        s3.put("stop/b.ndjson.gz", gzip.compress(parts[1] + ndjson(range(9_000, 9_010))))
        with pytest.raises(InputError, match=rf"{s3.url('stop/b.ndjson.gz')}: cannot resume: the object changed"):
            await pipeline.resume_async(third["run_dir"], RunOptions(token=TOKEN, retry_policy=fast_retry))


async def test_a_killed_s3_run_resumes_exactly_once(s3, tmp_path, fast_retry):
    """SIGKILL of a real ``pipeline run s3://...`` process mid-run, then ``resume``."""
    import asyncio
    import sys

    parts = [ndjson(range(k * 3_000, (k + 1) * 3_000)) for k in range(2)]
    s3.put("kill/a.ndjson", parts[0])
    s3.put("kill/b.ndjson.gz", gzip.compress(parts[1]))
    options = EmulatorOptions(token=TOKEN, process_ms=5, faults={"slow": (0.5, 0.15)}, seed=2)
    async with running_emulator(options) as emu:
        config = tmp_path / "cfg.toml"
        config.write_text(
            f'[api]\nurl = "{emu.base_url}"\ntoken_env = "PIPELINE_TEST_TOKEN"\n'
            "[batch]\nmax_bytes = 60000\n[upload]\nconcurrency = 2\nsettle_window_s = 1\n"
            f'[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n[report]\ndir = "{tmp_path / "runs"}"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--config",
            str(config),
            "-q",
            s3.url("kill/"),
            env=dict(os.environ, PIPELINE_TEST_TOKEN=TOKEN),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        journal = None
        while proc.returncode is None and loop.time() < deadline:  # bounded poll of a condition
            journals = list((tmp_path / "runs").glob("*/journal.ndjson"))
            if journals and journals[0].read_bytes().count(b'"event":"uploaded"') >= 3:
                journal = journals[0]
                break
            await asyncio.sleep(0.02)
        assert journal is not None, "the run uploaded 3 batches within 60 s"
        proc.kill()
        await proc.wait()
        report = await pipeline.resume_async(journal.parent, RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert (report["outcome"], report["exit_code"]) == ("succeeded", 0), report["records"]
        assert_exactly_once(emu.accounting, digests(b"".join(parts)))


def test_validate_takes_a_glob_and_names_the_objects_in_its_plan(s3, capsys):
    from pipeline.cli.entry import main

    s3.put("v/a.ndjson", ndjson(range(100)))
    s3.put("v/b.ndjson.gz", gzip.compress(ndjson(range(100, 150)) + b"not json\n"))
    assert main(["validate", "--json", s3.url("v/*.ndjson*")]) == 1  # one record would be rejected
    answer = orjson.loads(capsys.readouterr().out)
    assert [f["path"] for f in answer["files"]] == [s3.url("v/a.ndjson"), s3.url("v/b.ndjson.gz")]
    assert answer["records"] == 150 and answer["rejects"][0]["file"] == s3.url("v/b.ndjson.gz")
    assert answer["rejects"][0]["line"] == 51

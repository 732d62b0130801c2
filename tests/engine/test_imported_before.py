"""A new run of inputs that a run under the same report.dir already sent is refused (exit 2),
naming that run and what to do instead; ``--again`` imports anyway. Another datamart, a file
written again, a run that sent nothing, or ``again`` let the new run go."""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.imported_before import identity
from pipeline.engine.rundir import RunLock
from pipeline.engine.runner import RunOptions
from pipeline.errors import AlreadyImportedError, UsageError

from ..helpers import test_config, write_ndjson

TOKEN = "again-token-5d1"


def test_what_makes_an_input_the_same_data():
    a = {"path": "/x/exports/a.ndjson", "size": 10, "mtime_ns": 123}
    assert identity(a) == identity({**a, "path": "exports/a.ndjson"}), "named by another relative path"
    assert identity(a) != identity({**a, "mtime_ns": 124}), "written again: new data"
    assert identity(a) != identity({**a, "path": "/x/exports/b.ndjson"})
    assert identity({"path": "-", "kind": "stdin", "size": -1, "mtime_ns": -1}) is None
    assert identity({"path": "/gone", "size": -1, "mtime_ns": -1}) is None
    obj = {"path": "s3://b/a.ndjson", "kind": "object", "url": "s3://b/a.ndjson", "size": 10, "etag": '"e1"'}
    assert identity(obj) is not None and identity(obj) != identity({**obj, "etag": '"e2"'})
    assert identity({**obj, "etag": None, "version_id": None}) is None, "an object without tag: not comparable"


async def _run(config, source, **options) -> dict:
    return await asyncio.wait_for(pipeline.run_async(config, [source], RunOptions(token=TOKEN, **options)), 60)


async def test_a_second_run_of_the_same_file_is_refused_unless_again(tmp_path):
    source = write_ndjson(tmp_path / "a.ndjson", range(200))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        config = test_config(emu.base_url, tmp_path)
        first = await _run(config, source)
        assert first["exit_code"] == 0
        with pytest.raises(AlreadyImportedError) as refused:
            await _run(config, source)
        message = f"{refused.value} {refused.value.hint}"
        assert first["run_id"] in message and "finished: succeeded" in message and "pipeline retry" in message
        assert "--again" in message and isinstance(refused.value, UsageError)
        assert len(emu.accounting.uploads) == first["batches"], "the refused run sent nothing"
        assert len(list((tmp_path / "runs").iterdir())) == 1, "nor left a run directory"

        again = await _run(config, source, again=True)
        assert again["exit_code"] == 0 and len(emu.accounting.uploads) == 2 * first["batches"]

        other_datamart = config.replace(**{"import": {"datamart_id": "2000"}})
        assert (await _run(other_datamart, source))["exit_code"] == 0

        st = source.stat()
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # written again
        assert (await _run(config, source))["exit_code"] == 0


async def test_a_run_that_did_not_finish_is_named_with_its_resume_and_one_that_sent_nothing_is_not(tmp_path):
    source = write_ndjson(tmp_path / "a.ndjson", range(200))
    async with running_emulator(EmulatorOptions(token=TOKEN, process_ms=1)) as emu:
        config = test_config(emu.base_url, tmp_path)
        first = await _run(config, source)
        journal = tmp_path / "runs" / first["run_id"] / "journal.ndjson"
        lines = journal.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines if orjson.loads(line)["event"] != "run_finished"]
        journal.write_bytes(b"".join(kept))  # as if killed before its end
        with pytest.raises(AlreadyImportedError, match="not finished") as refused:
            await _run(config, source)
        assert f"pipeline resume {tmp_path / 'runs' / first['run_id']}" in refused.value.hint
        lock = RunLock(tmp_path / "runs" / first["run_id"])  # as the process running it holds it
        try:
            with pytest.raises(AlreadyImportedError, match="running now") as refused:
                await _run(config, source, allow_concurrent=True)
            assert "let it finish" in refused.value.hint
        finally:
            lock.release()

        sent_nothing = [line for line in kept if orjson.loads(line)["event"] in ("run_started", "import", "batch_plan")]
        journal.write_bytes(b"".join(sent_nothing))
        assert (await _run(config, source))["exit_code"] == 0, "a run that sent nothing imported nothing"

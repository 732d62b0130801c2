"""The error-file shapes the emulator serves on request (``error_files``), and the message of an
execution that SUCCEEDED with failed records."""

from __future__ import annotations

import orjson
import pytest

from pipeline.emulator import EmulatorOptions

from .test_emulator_processing import BAD_OP, GOOD, emulator, new_import, poll, upload

BODY = GOOD % 1 + b"\n" + BAD_OP + b"\n" + GOOD % 2 + b"\n"
EXPECTED = {
    "ndjson": [{"line": 2, "reason": "R", "record": BAD_OP.decode()}],
    "text": [{"record": BAD_OP.decode(), "message": "R"}],
    "line": [{"line_number": 2, "error": "R"}],
}


async def _error_file(shape: str) -> tuple[dict, bytes]:
    async with emulator(error_files=shape) as (_, s):
        imp = await new_import(s)
        exe = await upload(s, imp, BODY)
        done, _ = await poll(s, imp, exe["id"])
        async with s.get("/v1/data_file/data", params={"uri": done["result"]["error_file_uri"]}) as resp:
            assert resp.status == 200
            return done, await resp.read()


@pytest.mark.parametrize("shape", ["ndjson", "text", "line"])
async def test_object_shapes(shape):
    done, body = await _error_file(shape)
    entries = [orjson.loads(x) for x in body.splitlines()]
    reason_key = {"ndjson": "reason", "text": "message", "line": "error"}[shape]
    assert entries[0][reason_key].startswith("operation")
    assert [e | {reason_key: "R"} for e in entries] == EXPECTED[shape]


async def test_raw_and_garbage_shapes():
    _, raw = await _error_file("raw")
    assert raw == BAD_OP + b"\n"
    _, garbage = await _error_file("garbage")
    lines = garbage.splitlines()
    assert len(lines) == 3 and lines[0] == b"ERROR-REPORT v0" and orjson.loads(lines[2])["line"] == 2


async def test_succeeded_with_failed_records_has_an_error_message():
    done, _ = await _error_file("ndjson")
    assert done["status"] == "SUCCEEDED" and done["result"]["total_failure"] == 1
    assert done["error"] == {"message": "1 of 3 records failed; see result.error_file_uri"}


def test_an_unknown_shape_is_refused():
    with pytest.raises(ValueError, match="error_files"):
        EmulatorOptions(error_files="xml")

"""``python -m pipeline.emulator`` as a subprocess: first line, curl walkthrough, clean Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sys

import aiohttp
import pytest

from pipeline.emulator import cli

WALKTHROUGH_LINE = (
    '{"$email_hash":{"$email":"jane@example.com"},"$type":"TOUCH","$session_status":"NO_SESSION",'
    '"$ts":1605262037783,"$events":[{"$event_name":"store-visit","$ts":1605262037783,"$properties":{}}],'
    '"$location":{"$country":"france","$city":"paris","$zip_code":"75001"}}'
)


@contextlib.asynccontextmanager
async def emulator_process(*args: str):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.emulator", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        token_line = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode().strip()
        yield proc, url, token_line
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def curl(*args: str) -> dict:
    proc = await asyncio.create_subprocess_exec("curl", "-sS", *args, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0
    return json.loads(out)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
async def test_curl_walkthrough_then_ctrl_c(tmp_path) -> None:
    async with emulator_process("--token", "t0k", "--process-ms", "20") as (proc, url, token_line):
        assert url.startswith("http://127.0.0.1:") and token_line == "token: t0k"
        auth = ["-H", "Authorization: t0k"]
        imports = f"{url}/v1/datamarts/1509/document_imports"
        body = '{"document_type":"USER_ACTIVITY","mime_type":"APPLICATION_X_NDJSON","encoding":"utf-8","name":"first"}'
        imp = await curl("-X", "POST", imports, *auth, "-H", "Content-Type: application/json", "-d", body)
        assert imp["status"] == "ok" and imp["data"]["document_type"] == "USER_ACTIVITY"
        path = tmp_path / "visit.ndjson"
        path.write_text(WALKTHROUGH_LINE + "\n")
        executions = f"{imports}/{imp['data']['id']}/executions"
        ndjson = ["-H", "Content-Type: application/x-ndjson"]
        exe = await curl("-X", "POST", executions, *auth, *ndjson, "--data-binary", f"@{path}")
        assert exe["data"]["status"] == "PENDING"
        for _ in range(500):
            polled = await curl(f"{executions}/{exe['data']['id']}", *auth)
            if polled["data"]["status"] == "SUCCEEDED":
                break
            await asyncio.sleep(0.01)
        assert polled["data"]["status"] == "SUCCEEDED"
        assert set(polled["data"]) == set(exe["data"])
        assert polled["data"]["result"]["total_success"] == 1
        multipart = await curl(executions, *auth, "-F", f"file=@{path};type=application/x-ndjson")
        assert multipart["data"]["parameters"]["input_file_name"] == "visit.ndjson"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        stderr = (await proc.stderr.read()).decode()
        assert "Traceback" not in stderr


async def test_generated_token_is_printed_and_required() -> None:
    async with emulator_process("--light") as (proc, url, token_line):
        assert token_line.startswith("token: ")
        token = token_line.split()[1]
        async with aiohttp.ClientSession(url) as s:
            async with s.get("/v1/datamarts/1/document_imports") as resp:
                assert resp.status == 401
            async with s.get("/v1/datamarts/1/document_imports", headers={"Authorization": token}) as resp:
                assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_bad_fault_spec_exits_2_naming_the_item() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.emulator", "--port", "0", "--faults", "throttle=0.1,bogus=1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 2 and out == b"" and b"bogus" in err


def test_add_arguments_defaults() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.token, args.light, args.faults) == ("127.0.0.1", 8787, None, False, "")
    args = parser.parse_args(["--port", "0", "--bandwidth", "12.5", "--latency-ms", "30", "--light"])
    assert (args.port, args.bandwidth, args.latency_ms, args.light) == (0, 12.5, 30.0, True)

"""A slow but moving upload is not an error: an upload's deadline grows with its body.

Before, ``api.timeout_s`` was a whole-request deadline: 100 MB needed 333 kB/s to fit in 300 s,
and every attempt over a slower link timed out (then, being ambiguous, was looked up and sent
again). Here the link carries 0.4 MB/s and the larger body takes about 1.5 s against a 1 s timeout.
"""

from __future__ import annotations

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions

from ..helpers import assert_exactly_once, ndjson_digests, test_config, write_ndjson

TOKEN = "slow-link-token-0042"


async def test_uploads_slower_than_the_timeout_succeed_at_the_first_attempt(tmp_path, fast_retry):
    source = write_ndjson(tmp_path / "in.ndjson", range(3_200))  # about 1.1 MB: two batches
    options = EmulatorOptions(token=TOKEN, process_ms=2, bandwidth_mbps=0.4)
    async with running_emulator(options) as emu:
        config = test_config(
            emu.base_url, tmp_path, api={"timeout_s": 1}, batch={"max_bytes": 600_000}, upload={"concurrency": 2}
        )
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN, retry_policy=fast_retry))
        assert report["exit_code"] == 0, report["warnings"]
        assert [e["attempts"] for e in report["executions"]] == [1, 1]
        assert max(e["bytes"] for e in report["executions"]) > 400_000  # its body outlasts the 1 s timeout
        assert_exactly_once(emu.accounting, ndjson_digests(source))

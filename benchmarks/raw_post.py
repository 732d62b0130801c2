"""The raw ceiling: post byte ranges of a file with the plainest aiohttp loop (no reading logic).

    python benchmarks/raw_post.py URL TOKEN CONTENT_TYPE FILE START:END [START:END ...] [--parallel 4]

Each range is one ``POST URL`` with a raw body streamed from the file in 1 MiB chunks (fresh
``read`` each time) and an explicit Content-Length; ``--parallel`` requests run at once on their
own connections. The ranges are computed by the caller before timing (``run.py`` cuts at the
last newline before each 100,000,000-byte mark, as ``split -C`` does), so the only work measured
here is moving bytes from the page cache to the socket. Prints one JSON line: seconds, bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp

CHUNK = 1 << 20


async def post_all(url: str, token: str, ctype: str, path: str, ranges: list[tuple[int, int]], parallel: int) -> int:
    todo = list(ranges)
    sent = 0

    async def body(start: int, end: int):
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            left = end - start
            while left:
                chunk = f.read(min(CHUNK, left))
                left -= len(chunk)
                yield chunk

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while todo:
            start, end = todo.pop(0)
            headers = {"Authorization": token, "Content-Type": ctype, "Content-Length": str(end - start)}
            async with session.post(url, data=body(start, end), headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
            sent += end - start

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        await asyncio.gather(*(worker(session) for _ in range(parallel)))
    return sent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("content_type")
    ap.add_argument("file")
    ap.add_argument("ranges", nargs="+", help="START:END byte ranges")
    ap.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args()
    ranges = [tuple(int(x) for x in r.split(":")) for r in args.ranges]
    t0 = time.perf_counter()
    sent = asyncio.run(post_all(args.url, args.token, args.content_type, args.file, ranges, args.parallel))
    print(json.dumps({"seconds": time.perf_counter() - t0, "bytes": sent}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

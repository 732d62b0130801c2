"""Measure the emulator's intake: MB/s for 100 MB uploads sent by curl, and its peak memory.

Starts ``python -m pipeline.emulator --port 0 --light --process-ms 0`` as a subprocess, creates a
document import, writes a 100 MB NDJSON file to a temporary directory, then posts it ``--count``
times per client: one at a time, then ``--parallel`` at a time. Reports throughput (10^6 bytes
per second of wall time), the emulator's CPU seconds (user + system) per GB received (steadier
than throughput when the clients share the CPUs) and its peak resident memory (``VmHWM`` of
``/proc/PID/status``).

Raw bodies (``Content-Type: application/x-ndjson``), two curl forms, because curl itself can be
the bottleneck:
- ``curl -T``: ``-T FILE -X POST`` streams the file from disk (as the pipeline does);
- ``curl --data-binary``: ``--data-binary @FILE`` first loads the whole file into curl's memory,
  then sends it: on a 2-core machine curl alone tops out near 700 MB/s this way, even into a
  server that discards everything.

Multipart bodies (``multipart/form-data``, the pipeline's default form), two clients:
- ``curl -F``: ``-F type=APPLICATION_X_NDJSON -F "file=@FILE;type=application/x-ndjson"``;
- ``aiohttp multipart``: an aiohttp client in this process sending exactly what the pipeline
  sends (``pipeline.client.multipart.MultipartBody``: preamble, the file read in 1 MiB chunks, epilogue,
  with an exact Content-Length), ``--parallel`` uploads at a time on one event loop.

The ``null sink`` rows (a bare socket server that only ``recv``s) show each client's ceiling.

    python benchmarks/emulator_intake.py                  # light mode, every client
    python benchmarks/emulator_intake.py --clients multipart
    python benchmarks/emulator_intake.py --mode both      # also full mode (every line checked)

Goal on a 2-core machine: light mode >= 1 GB/s intake and < 150 MB peak RSS, raw (``curl -T``)
and multipart (``curl -F``, ``aiohttp multipart``) alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TOKEN = "bench-token"
LINE = (
    '{"$email_hash":{"$email":"user%08d@example.com"},"$type":"TOUCH","$session_status":"NO_SESSION",'
    '"$ts":1605262037783,"$events":[{"$event_name":"store-visit","$ts":1605262037783,"$properties":{}}],'
    '"$location":{"$country":"france","$city":"paris","$zip_code":"75001"}}\n'
)
CURL_FORMS = {
    "curl -T": ["-T"],
    "curl --data-binary": ["--data-binary", "@"],
    "curl -F": ["-F", "type=APPLICATION_X_NDJSON", "-F", "file=@{path};type=application/x-ndjson"],
}
RAW_CLIENTS = ("curl -T", "curl --data-binary")
MULTIPART_CLIENTS = ("curl -F", "aiohttp multipart")
GOAL_CLIENTS = ("curl -T", "curl -F", "aiohttp multipart")


def write_file(path: Path, size: int) -> int:
    """An NDJSON file of at most ``size`` bytes made of whole lines; returns its line count."""
    block = "".join(LINE % i for i in range(4096)).encode()
    lines = written = 0
    with path.open("wb") as f:
        while written + len(block) <= size:
            f.write(block)
            written += len(block)
            lines += 4096
        rest = size - written
        tail = block[: block.rfind(b"\n", 0, rest) + 1] if rest else b""
        f.write(tail)
        lines += tail.count(b"\n")
    return lines


def api(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Authorization": TOKEN})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def vm(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` memory figure in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def curl_upload(url: str, path: Path, form: list[str]) -> None:
    if form[0] == "-F":  # multipart: curl sets the Content-Type (with its boundary) itself
        file_args = [arg.format(path=path) for arg in form]
    else:
        file_args = ["-H", "Content-Type: application/x-ndjson"]
        file_args += [form[0], f"@{path}"] if form[-1] == "@" else [*form, str(path)]
    out = subprocess.run(
        [
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url,
            "-H", f"Authorization: {TOKEN}", *file_args,
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    if out.stdout != "200":
        raise RuntimeError(f"upload answered HTTP {out.stdout}: {out.stderr}")


async def aiohttp_uploads(url: str, path: Path, count: int, workers: int) -> None:
    """``count`` multipart uploads, ``workers`` at a time, with the pipeline's body and headers."""
    import aiohttp

    from pipeline.client.multipart import MultipartBody

    size = path.stat().st_size
    gate = asyncio.Semaphore(workers)

    async def chunks():
        with path.open("rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                yield chunk

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        body = MultipartBody(
            filename=f"bench-{n:05d}.ndjson", content_type="application/x-ndjson", type_value="application/x-ndjson"
        )
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.length(size))}
        async with gate, session.post(url, data=body.stream(chunks()), headers=headers) as resp:
            answer = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"upload answered HTTP {resp.status}: {answer[:300]!r}")

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(headers={"Authorization": TOKEN}, timeout=timeout) as session:
        await asyncio.gather(*(one(session, n) for n in range(count)))


def null_sink() -> str:
    """A bare HTTP sink on a thread: reads and discards each body, answers 200. Returns its URL."""
    server = socket.create_server(("127.0.0.1", 0))

    def handle(conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            headers, _, rest = head.partition(b"\r\n\r\n")
            fields = dict(line.lower().split(b":", 1) for line in headers.split(b"\r\n")[1:])
            if b"100-continue" in fields.get(b"expect", b""):
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            left = int(fields[b"content-length"]) - len(rest)
            buf = memoryview(bytearray(4 << 20))
            while left > 0:
                n = conn.recv_into(buf)
                if not n:
                    break
                left -= n
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/sink"


def timed(url: str, path: Path, client: str, count: int, workers: int) -> float:
    start = time.perf_counter()
    if client == "aiohttp multipart":
        asyncio.run(aiohttp_uploads(url, path, count, workers))
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: curl_upload(url, path, CURL_FORMS[client]), range(count)))
    return time.perf_counter() - start


def row(
    target: str, form: str, label: str, count: int, size: int, elapsed: float, peak: float, cpu: float = 0.0
) -> dict:
    mb = count * size / 1e6
    return {"target": target, "curl": form, "run": label, "MB": mb, "s": elapsed, "MB/s": mb / elapsed,
            "peak": peak, "cpu/GB": cpu / (mb / 1000)}  # fmt: skip


def run_emulator(
    light: bool, path: Path, size: int, lines: int, clients: list[str], args: argparse.Namespace
) -> list[dict]:
    cmd = [sys.executable, "-m", "pipeline.emulator", "--port", "0", "--token", TOKEN, "--process-ms", "0"]
    cmd += ["--per-line-us", "0"] + (["--light"] if light else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rows, uploads = [], 0
    target = "emulator " + ("light" if light else "full")
    try:
        base = proc.stdout.readline().strip()
        imports = f"{base}/v1/datamarts/1/document_imports"
        imp = api(imports, "POST", {"document_type": "USER_ACTIVITY", "mime_type": "APPLICATION_X_NDJSON", "name": "b"})
        executions = f"{imports}/{imp['data']['id']}/executions"
        for client in clients:
            for label, workers in (("sequential", 1), (f"{args.parallel} at a time", args.parallel)):
                cpu = cpu_s(proc.pid)
                elapsed = timed(executions, path, client, args.count, workers)
                cpu = cpu_s(proc.pid) - cpu
                uploads += args.count
                rows.append(row(target, client, label, args.count, size, elapsed, vm(proc.pid, "VmHWM") / 1e6, cpu))
        listed = api(f"{executions}?max_results=1000")
        bad = [e["id"] for e in listed["data"] if e["parameters"]["number_of_lines"] != lines]
        if listed["total"] != uploads or bad:
            raise RuntimeError(f"emulator saw {listed['total']} of {uploads} uploads; wrong line counts in {bad}")
    finally:
        proc.terminate()
        proc.wait(10)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=100.0, help="file size, 10^6 bytes (default 100)")
    parser.add_argument("--count", type=int, default=10, help="uploads per run (default 10)")
    parser.add_argument("--parallel", type=int, default=4, help="uploads at a time in the second run (default 4)")
    parser.add_argument("--mode", choices=("light", "full", "both"), default="light", help="emulator mode(s)")
    parser.add_argument(
        "--clients", choices=("all", "raw", "multipart"), default="all", help="upload forms to measure (default all)"
    )
    parser.add_argument("--no-sink", action="store_true", help="skip the null-sink rows (client ceilings)")
    args = parser.parse_args()
    chosen = {"raw": RAW_CLIENTS, "multipart": MULTIPART_CLIENTS}.get(args.clients, RAW_CLIENTS + MULTIPART_CLIENTS)
    clients = list(chosen)
    if shutil.which("curl") is None:
        print("curl is needed", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="emulator-intake-") as tmp:
        path = Path(tmp) / "upload.ndjson"
        lines = write_file(path, int(args.size_mb * 1e6))
        size = path.stat().st_size
        print(f"file: {size / 1e6:.1f} MB, {lines} lines; {os.cpu_count()} CPUs; {args.count} uploads per run")
        sink = null_sink()
        for client in [] if args.no_sink else clients:
            rows.append(row("null sink", client, "sequential", args.count, size,
                            timed(sink, path, client, args.count, 1), 0))  # fmt: skip
        for light in {"light": [True], "full": [False], "both": [True, False]}[args.mode]:
            rows += run_emulator(light, path, size, lines, clients, args)
    head = f"{'target':<15} {'client':<19} {'run':<12} {'MB':>6} {'seconds':>8} {'MB/s':>7} {'CPU s/GB':>9}"
    head += f" {'peak RSS MB':>12}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        peak = f"{r['peak']:.1f}" if r["peak"] else "-"
        left = f"{r['target']:<15} {r['curl']:<19} {r['run']:<12}"
        cpu = f"{r['cpu/GB']:.2f}" if r["cpu/GB"] else "-"
        print(f"{left} {r['MB']:>6.0f} {r['s']:>8.2f} {r['MB/s']:>7.0f} {cpu:>9} {peak:>12}")
    for client in GOAL_CLIENTS:
        light = [r for r in rows if r["target"] == "emulator light" and r["curl"] == client]
        if light:
            met = all(r["MB/s"] >= 1000 and r["peak"] < 150 for r in light)
            print(f"goal, light mode, {client} (>= 1000 MB/s, peak RSS < 150 MB): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Measure the emulator's intake: MB/s for 100 MB uploads sent by curl, and its peak memory.

Starts ``python -m pipeline.emulator --port 0 --light --process-ms 0`` as a subprocess, creates a
document import, writes a 100 MB NDJSON file to a temporary directory, then posts it ``--count``
times with curl: one at a time, then ``--parallel`` at a time. Reports throughput (10^6 bytes per
second of wall time) and the emulator's peak resident memory (``VmHWM`` of ``/proc/PID/status``).

Two curl forms are measured, because curl itself can be the bottleneck:
- ``-T FILE -X POST`` streams the file from disk (as the pipeline does);
- ``--data-binary @FILE`` first loads the whole file into curl's memory, then sends it: on a
  2-core machine curl alone tops out near 700 MB/s this way, even into a server that discards
  everything. The ``null sink`` rows (a bare socket server that only ``recv``s) show that ceiling.

    python benchmarks/emulator_intake.py                  # light mode, both curl forms
    python benchmarks/emulator_intake.py --mode both      # also full mode (every line checked)

Goal on a 2-core machine: light mode >= 1 GB/s intake and < 150 MB peak RSS.
"""

from __future__ import annotations

import argparse
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
CURL_FORMS = {"curl -T": ["-T"], "curl --data-binary": ["--data-binary", "@"]}


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


def curl_upload(url: str, path: Path, form: list[str]) -> None:
    file_args = [form[0], f"@{path}"] if form[-1] == "@" else [*form, str(path)]
    out = subprocess.run(
        [
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url,
            "-H", f"Authorization: {TOKEN}", "-H", "Content-Type: application/x-ndjson", *file_args,
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    if out.stdout != "200":
        raise RuntimeError(f"upload answered HTTP {out.stdout}: {out.stderr}")


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


def timed(url: str, path: Path, form: list[str], count: int, workers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: curl_upload(url, path, form), range(count)))
    return time.perf_counter() - start


def row(target: str, form: str, label: str, count: int, size: int, elapsed: float, peak: float, idle: float) -> dict:
    mb = count * size / 1e6
    return {"target": target, "curl": form, "run": label, "MB": mb, "s": elapsed, "MB/s": mb / elapsed,
            "peak": peak, "idle": idle}  # fmt: skip


def run_emulator(light: bool, path: Path, size: int, lines: int, args: argparse.Namespace) -> list[dict]:
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
        idle = vm(proc.pid, "VmRSS") / 1e6
        for form_name, form in CURL_FORMS.items():
            for label, workers in (("sequential", 1), (f"{args.parallel} at a time", args.parallel)):
                elapsed = timed(executions, path, form, args.count, workers)
                uploads += args.count
                rows.append(row(target, form_name, label, args.count, size, elapsed, vm(proc.pid, "VmHWM") / 1e6, idle))
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
    args = parser.parse_args()
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
        for form_name, form in CURL_FORMS.items():
            rows.append(row("null sink", form_name, "sequential", args.count, size,
                            timed(sink, path, form, args.count, 1), 0, 0))  # fmt: skip
        for light in {"light": [True], "full": [False], "both": [True, False]}[args.mode]:
            rows += run_emulator(light, path, size, lines, args)
    head = f"{'target':<15} {'client':<19} {'run':<12} {'MB':>6} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        peak = f"{r['peak']:.1f}" if r["peak"] else "-"
        left = f"{r['target']:<15} {r['curl']:<19} {r['run']:<12}"
        print(f"{left} {r['MB']:>6.0f} {r['s']:>8.2f} {r['MB/s']:>7.0f} {peak:>12}")
    light = [r for r in rows if r["target"] == "emulator light" and r["curl"] == "curl -T"]
    if light:
        met = all(r["MB/s"] >= 1000 and r["peak"] < 150 for r in light)
        print(
            f"goal, light mode with streamed uploads (>= 1000 MB/s, peak RSS < 150 MB): {'met' if met else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

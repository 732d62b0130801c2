"""Run a command and measure it: wall time, CPU seconds and peak memory of its whole process tree.

- CPU: ``os.wait4`` gives the child's user+system time plus that of the descendants it reaped; a
  sampler also reads ``/proc/PID/stat`` of every descendant every 20 ms (a process pool's workers
  are reaped by a forkserver the main process may never wait for). The larger of the two counts.
- Memory: ``peak_rss_mb`` is the largest ``VmHWM`` (peak RSS since exec) of any process of the
  tree, read every 20 ms (it only grows, so the last reading before exit is within 20 ms of the
  end). ``ru_maxrss`` is not used: a child's counts the parent's RSS at fork time. ``tree_rss_mb``
  is the largest sampled *sum* of PSS over the tree (what several parallel ``curl`` or validation
  workers hold together, pages they share counted once).
- ``Server`` follows a long-lived process (the emulator): CPU seconds between two marks, and its
  peak RSS since the last mark (``VmHWM``, reset by writing 5 to ``/proc/PID/clear_refs``).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def hwm(pid: int) -> int:
    """Peak RSS in bytes of one process since its exec (``VmHWM``), or 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split among their sharers), or 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_and_rss(pid: int) -> tuple[float, int]:
    """(user+system seconds, RSS bytes) of one process, or (0, 0) if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / TICK, int(fields[21]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0.0, 0


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    tree_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    in_run_s: float = 0.0  # the pipeline's own duration (report.json), without start-up; 0 = n/a
    report: dict | None = None  # the pipeline's report.json, when there is one


def measure(cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> Measured:
    """Run ``cmd`` to its end and measure it (see the module docstring)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cpu_seen: dict[int, float] = {}
    hwm_seen: dict[int, int] = {}
    tree_peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal tree_peak
        while not done.is_set():
            total = 0
            for p in tree(proc.pid):
                cpu_seen[p] = max(cpu_seen.get(p, 0.0), cpu_and_rss(p)[0])
                hwm_seen[p] = max(hwm_seen.get(p, 0), hwm(p))
                total += pss(p)
            tree_peak = max(tree_peak, total)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [
        threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
        for s, b in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = max(usage.ru_utime + usage.ru_stime, sum(cpu_seen.values()))
    return Measured(
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mb=max(hwm_seen.values(), default=0) / 2**20,
        tree_rss_mb=tree_peak / 2**20,
        returncode=proc.returncode,
        stdout=b"".join(out_chunks).decode(errors="replace"),
        stderr=b"".join(err_chunks).decode(errors="replace"),
    )


class Server:
    """A long-lived process whose CPU and peak memory are read between marks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu = 0.0

    def mark(self) -> None:
        self._cpu = cpu_and_rss(self.pid)[0]
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            pass

    def since_mark(self) -> tuple[float, float]:
        """(CPU seconds since the mark, peak RSS MiB since the mark)."""
        return cpu_and_rss(self.pid)[0] - self._cpu, hwm(self.pid) / 2**20

"""``pipeline run`` in a pseudo-terminal: the live display appears, then the final table is right.

The child runs ``python -m pipeline run`` with its stdin, stdout and stderr on a pty; the test reads
everything it draws (with a deadline, so it cannot hang) and kills it if it overruns.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEADLINE_S = 60
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

pytestmark = pytest.mark.skipif(not hasattr(pty, "openpty"), reason="no pseudo-terminals on this platform")


def run_in_pty(argv: list[str], cwd: Path, columns: int = 120) -> tuple[int, str]:
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI", "TERM", "COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", PYTHONIOENCODING="utf-8", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        argv, stdin=child_fd, stdout=child_fd, stderr=child_fd, cwd=cwd, env=env, start_new_session=True
    )
    os.close(child_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(main_fd, 65536)
                except OSError:  # EIO: the child closed its side
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                continue  # drain what is left, then EIO ends the loop
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"pipeline run did not finish within {DEADLINE_S} s: {b''.join(chunks)[-2000:]!r}")
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(main_fd)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_run_in_a_terminal_shows_the_live_display_then_the_summary_table(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(
        "[batch]\nmax_lines = 100\n[poll]\ninterval_s = 0.3\nmax_interval_s = 0.5\n"
        f'[report]\ndir = "{tmp_path / "runs"}"\n'
    )
    argv = [sys.executable, "-m", "pipeline", "run", "--emulator", "--config", str(config)]
    code, raw = run_in_pty([*argv, str(EXAMPLES / "user_activity.ndjson")], cwd=tmp_path)
    assert code == 0, raw[-3000:]
    screen = ANSI.sub("", raw).replace("\r", "")
    # the live display: control sequences (cursor moves) and its rows were drawn while the run worked
    assert "\x1b[" in raw
    assert "pipeline run 2" in screen  # the display's header names the run
    for marker in ("read", "uploaded", "in flight", "ETA", "executions", "pending", "running", "succeeded"):
        assert marker in screen, marker
    assert re.search(r"\d+ batches\s+[\d.]+ kB|\d+ batches\s+[\d.]+ MB", screen)
    # the final table, drawn with box characters
    run_dir = next((tmp_path / "runs").iterdir())
    table = screen[screen.rindex(f"run {run_dir.name}") :]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
        elif len(cells) == 1 and rows:  # a wrapped value
            rows[list(rows)[-1]] += cells[0]
    assert rows["outcome"] == "succeeded (exit 0) on the EMBEDDED EMULATOR: nothing was imported into mediarithmics"
    assert rows["records read"] == "1,000"
    assert rows["rejected"] == "0" and rows["sent"] == "1,000"
    assert rows["succeeded"] == "1,000" and rows["failed"] == "0"
    assert rows["executions"] == "SUCCEEDED 10"
    assert str(run_dir / "report.html") in rows["report"] and (run_dir / "report.html").is_file()

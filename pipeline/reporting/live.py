"""The live terminal display of a run (rich), used only when stderr is a terminal.

Why rich rather than tqdm: the display is several related lines (reading, uploading, executions by
status, records), not one bar; rich's ``Live`` redraws a whole block from a callback in its own
refresh thread, prints event lines above it without tearing it, degrades on dumb terminals, and
draws the end-of-run table with the same library. tqdm is built around one bar per loop.

The display is fed by the same ``Progress`` counters as the plain printer; event lines (errors,
``-v`` retries and status changes) are printed above it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pipeline.reporting.progress import (
    RETRY_NOTICE_S,
    Spacing,
    duration,
    event_text,
    is_error_event,
    is_long_retry,
    redact,
    wanted,
)
from pipeline.reporting.progress_counters import Progress, Snapshot
from pipeline.reporting.summary import human_bytes as mb

#: events printed above the display without -v (with -v: everything -v prints in plain mode)
LIVE_EVENTS = frozenset({"target", "run_started", "import_ready", "reading_finished", "stop_requested"})
#: text that always appears in the display's header (tests look for it)
MARKER = "pipeline run"


def render(s: Snapshot) -> Group:
    """The display for one snapshot: a header, then labelled rows with three bars."""
    head = Text(f"{MARKER} {s.run_id or '…'}", style="bold")
    if s.import_id:
        head.append(f"  import {s.import_id}")
    head.append(f"  elapsed {duration(s.elapsed_s)}", style="dim")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column(width=30)
    grid.add_column()

    total = s.total_bytes
    read_info = f"{mb(s.bytes_read)}" + (f" / {mb(total)}" if total else "")
    read_info += f"  {s.records_read:,} records  {s.batches_read} batches" + ("  done" if s.reading_done else "")
    grid.add_row("read", _bar(s.bytes_read, total), read_info)

    up = f"{s.batches_uploaded} batches  {mb(s.bytes_uploaded)}  in flight {s.uploads_in_flight}"
    if s.upload_limit:
        up += f" (limit {s.upload_limit})"
    if s.upload_rate:
        up += f"  {mb(s.upload_rate)}/s"
    up += "  ETA " + ("done" if s.uploads_done else duration(s.eta_s))
    if s.uploads_failed:
        up += f"  refused {s.uploads_failed}"
    grid.add_row("uploaded", _bar(s.bytes_uploaded, total), up)

    by_status = "  ".join(f"{k} {v}" for k, v in s.done_by_status.items())
    execs = Text(f"pending {s.exec_pending}  running {s.exec_running}  done {s.exec_done}")
    if by_status:
        execs.append(f"  ({by_status})", style="dim")
    still = s.exec_pending + s.exec_running
    if s.uploads_done and still:
        execs.append(f"  {still} still processing after the last upload", style="yellow")
    grid.add_row("executions", _bar(s.exec_done, s.exec_done + still or None), execs)

    records = Text(f"succeeded {s.records_succeeded:,}  ")
    records.append(f"failed {s.records_failed:,}", style="red" if s.records_failed else "")
    records.append(f"  rejected {s.records_rejected:,}", style="yellow" if s.records_rejected else "")
    if s.retries:
        records.append(f"  retries {s.retries}", style="dim")
    grid.add_row("records", "", records)
    return Group(head, grid)


def _bar(done: float, total: float | None) -> ProgressBar:
    if not total:
        return ProgressBar(total=None, width=30)  # unknown total: a pulsing bar
    return ProgressBar(total=total, completed=min(done, total), width=30)


class LiveDisplay:
    """Event sink and context manager: the live block on ``console`` (stderr) while the run works."""

    def __init__(
        self,
        *,
        verbose: bool = False,
        console: Console | None = None,
        secrets: list[str] | None = None,
        refresh_per_second: float = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.verbose = verbose
        self.console = console or Console(stderr=True)
        self.secrets = [s for s in (secrets or []) if s]
        self.progress = Progress()
        self._retry_notices = Spacing(RETRY_NOTICE_S, clock)
        self._live = Live(
            get_renderable=self._renderable,
            console=self.console,
            refresh_per_second=refresh_per_second,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def _renderable(self) -> Any:
        return render(self.progress.snapshot())

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        changed = self.progress(name, fields)
        if self.verbose:
            show = wanted(name, fields, quiet=False, verbose=True, status_changed=changed)
        else:  # the display shows the counts: only errors, landmarks and long retries are printed above it
            show = name in LIVE_EVENTS or is_error_event(name, fields)
            show = show or (is_long_retry(name, fields) and self._retry_notices.due())
        if show:
            line = redact(event_text(name, fields), self.secrets)
            style = "red" if name in ("upload_failed", "poll_error") else ""
            self.console.print(Text(line, style=style), highlight=False)

    def __enter__(self) -> LiveDisplay:
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()


def use_live(*, quiet: bool, log_format: str, console: Console | None = None) -> bool:
    """The live display only on a real terminal, and not with -q or JSON logs."""
    if quiet or log_format != "text":
        return False
    console = console or Console(stderr=True)
    return console.is_terminal and not console.is_dumb_terminal

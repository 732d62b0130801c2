"""Progress counters, plain and JSON printers, the live display's rendering, the summary table."""

from __future__ import annotations

import io
import time

import orjson
from rich.console import Console

from pipeline.reporting.live import MARKER, LiveDisplay, render, use_live
from pipeline.reporting.progress import PlainPrinter, progress_line
from pipeline.reporting.progress_counters import Progress
from pipeline.reporting.summary import plain_summary, rich_summary

SECRET = "s3cr3t-token"
NOW = 1_796_131_205.123  # 2026-12-01T13:20:05.123Z
STAMP = "2026-12-01T13:20:05.123Z "


def unstamped(text: str) -> list[str]:
    """The lines of a plain log, each checked to start with the (patched) time, without it."""
    lines = text.splitlines()
    assert all(line.startswith(STAMP) for line in lines), lines
    return [line.removeprefix(STAMP) for line in lines]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def feed(sink, clock: Clock | None = None) -> None:
    """A small run: 3 batches of 1 MB, one upload retried, one execution still running at the end."""
    events = [
        ("target", {"url": "http://127.0.0.1:1", "embedded": True}),
        (
            "run_started",
            {
                "run_id": "R1",
                "run_dir": "runs/R1",
                "target": "http://127.0.0.1:1",
                "resumed": False,
                "inputs": [{"path": "a.ndjson", "size": 3_000_000, "mtime_ns": 1}],
            },
        ),
        ("import_ready", {"id": "1001", "name": "n", "document_type": "USER_ACTIVITY", "mime_type": "M"}),
    ]
    for b in (1, 2, 3):
        events += [
            ("batch_read", {"batch": b, "records": 1000, "bytes": 1_000_000}),
            ("upload_started", {"batch": b, "bytes": 1_000_000}),
        ]
    events += [
        (
            "retry",
            {"method": "POST", "path": "/x", "attempt": 1, "delay_s": 0.5, "reason": "HTTP 429", "kind": "throttled"},
        ),
        ("batch_uploaded", {"batch": 1, "execution_id": "5001", "records": 1000, "bytes": 1_000_000, "attempts": 2}),
        ("execution_status", {"batch": 1, "execution_id": "5001", "status": "RUNNING"}),
        ("execution_status", {"batch": 1, "execution_id": "5001", "status": "RUNNING"}),
        ("batch_uploaded", {"batch": 2, "execution_id": "5002", "records": 1000, "bytes": 1_000_000, "attempts": 1}),
        (
            "execution_finished",
            {"batch": 1, "execution_id": "5001", "status": "SUCCEEDED", "total_success": 990, "total_failure": 10},
        ),
    ]
    for name, fields in events:
        if clock:
            clock.t += 1
        sink(name, fields)


def test_progress_counts_and_eta():
    clock = Clock()
    progress = Progress(clock=clock)
    feed(progress, clock)
    s = progress.snapshot()
    assert (s.bytes_read, s.records_read, s.batches_read) == (3_000_000, 3000, 3)
    assert (s.batches_uploaded, s.uploads_in_flight, s.bytes_uploaded) == (2, 1, 2_000_000)
    assert (s.exec_pending, s.exec_running, s.exec_done) == (1, 0, 1)
    assert s.done_by_status == {"SUCCEEDED": 1}
    assert (s.records_succeeded, s.records_failed, s.retries) == (990, 10, 1)
    assert s.total_bytes == 3_000_000 and s.upload_rate is not None
    # 2 MB uploaded over the time since the first upload started: 1 MB left at that rate
    assert abs(s.eta_s - 1_000_000 / s.upload_rate) < 1e-6
    assert not s.uploads_done
    progress("batch_uploaded", {"batch": 3, "execution_id": "5003", "records": 1000, "bytes": 1_000_000})
    progress(
        "reading_finished", {"files": [{"path": "a", "records": 3000, "rejected": 4, "bytes": 1, "blank_lines": 0}]}
    )
    s = progress.snapshot()
    assert s.uploads_done and s.eta_s == 0 and s.records_rejected == 4
    line = progress_line(s)
    assert "2 still processing after the last upload" in line
    assert "\x1b" not in line and "\r" not in line


def test_plain_text_printer_levels():
    out = io.StringIO()
    feed(PlainPrinter(stream=out, interval_s=0, wall_clock=lambda: NOW))
    lines = unstamped(out.getvalue())
    assert "batch 1: 1,000 records, 1.0 MB -> execution 5001 after 2 attempts" in lines
    assert not any("retry" in line or "is RUNNING" in line for line in lines)

    out = io.StringIO()
    feed(PlainPrinter(stream=out, verbose=True, interval_s=0, wall_clock=lambda: NOW))
    lines = unstamped(out.getvalue())
    assert "throttled (HTTP 429) by the server: retrying POST /x, attempt 2, next in 0.5 s (HTTP 429)" in lines
    assert lines.count("batch 1: execution 5001 is RUNNING") == 1  # status changes only

    out = io.StringIO()
    printer = PlainPrinter(stream=out, quiet=True, interval_s=0, wall_clock=lambda: NOW)
    feed(printer)
    printer("upload_failed", {"batch": 9, "error": "HTTP 400"})
    printer("execution_finished", {"batch": 2, "execution_id": "5002", "status": "FAILED"})
    assert unstamped(out.getvalue()) == [
        "run R1: run directory runs/R1",  # even -q says where the run's files are
        "batch 9: upload failed: HTTP 400",
        "batch 2: execution 5002 FAILED (0 ok, 0 failed)",
    ]


def test_a_terminal_status_is_said_once_at_verbose():
    """-v used to print "execution 5001 is SUCCEEDED" and then "execution 5001 SUCCEEDED (…)"."""
    out = io.StringIO()
    printer = PlainPrinter(stream=out, verbose=True, interval_s=0, wall_clock=lambda: NOW)
    where = {"batch": 1, "execution_id": "5001", "path": "a.ndjson", "first_line": 1, "last_line": 1000}
    printer("batch_uploaded", where | {"records": 1000, "bytes": 10, "attempts": 1})
    for status in ("PENDING", "RUNNING", "RUNNING", "SUCCEEDED"):
        printer("execution_status", where | {"status": status})
    printer("execution_finished", where | {"status": "SUCCEEDED", "total_success": 1000, "total_failure": 0})
    assert unstamped(out.getvalue()) == [
        "batch 1 (a.ndjson:1-1000): 1,000 records, 10 B -> execution 5001",
        "batch 1 (a.ndjson:1-1000): execution 5001 is RUNNING",
        "batch 1 (a.ndjson:1-1000): execution 5001 SUCCEEDED (1,000 ok, 0 failed)",
    ]


def test_a_request_failing_for_more_than_5_s_is_said_at_the_default_verbosity_once_per_5_s():
    out = io.StringIO()
    clock = Clock()
    printer = PlainPrinter(stream=out, interval_s=0, wall_clock=lambda: NOW, clock=clock)
    refused = "cannot connect (connection refused: ClientConnectorError: Cannot connect to host api:443)"
    retry = {"method": "POST", "path": "/v1/x", "delay_s": 3.2, "reason": refused, "kind": "connect"}
    retry["target"] = "https://api.example"
    printer("retry", retry | {"attempt": 2, "failing_s": 4.9})  # not yet: a short hiccup says nothing
    assert out.getvalue() == ""
    printer("retry", retry | {"attempt": 3, "failing_s": 8.0})
    clock.t += 1
    printer("retry", retry | {"attempt": 3, "failing_s": 9.0})  # another upload, within 5 s: not again
    clock.t += 5
    printer("retry", retry | {"attempt": 4, "failing_s": 14.0})
    assert unstamped(out.getvalue()) == [
        "connection refused by https://api.example: retrying POST /v1/x, attempt 4, next in 3.2 s (failing for 8 s)",
        "connection refused by https://api.example: retrying POST /v1/x, attempt 5, next in 3.2 s (failing for 14 s)",
    ]
    quiet = io.StringIO()
    PlainPrinter(stream=quiet, quiet=True, interval_s=0)("retry", retry | {"attempt": 9, "failing_s": 60.0})
    assert quiet.getvalue() == ""


def test_json_printer_one_valid_object_per_line_and_redacted():
    out = io.StringIO()
    printer = PlainPrinter(stream=out, log_format="json", interval_s=0, secrets=[SECRET])
    feed(printer)
    printer("upload_failed", {"batch": 3, "error": f"server echoed Authorization: {SECRET}"})
    printer("run_finished", {"outcome": "succeeded", "exit_code": 0, "records": {}, "summary": "a\nb"})
    printer.tick()
    lines = out.getvalue().splitlines()
    events = [orjson.loads(line) for line in lines]
    names = [e["event"] for e in events]
    assert names[:3] == ["target", "run_started", "import_ready"]
    assert all(e["ts"].endswith("Z") and e["ts"][10] == "T" and len(e["ts"]) == 24 for e in events)  # ISO, ms
    assert {"retry", "batch_uploaded", "execution_finished", "run_finished", "progress"} <= set(names)
    assert "batch_read" not in names
    assert SECRET not in out.getvalue() and "<token>" in out.getvalue()
    progress = events[-1]
    assert progress["batches_uploaded"] == 2 and progress["exec_done"] == 1


def test_the_ticker_prints_progress_lines_every_interval():
    out = io.StringIO()
    with PlainPrinter(stream=out, interval_s=0.05, wall_clock=lambda: NOW) as printer:
        feed(printer)
        deadline = time.monotonic() + 10
        while out.getvalue().count(" progress ") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [x for x in unstamped(out.getvalue()) if x.startswith("progress ")]
    assert len(lines) >= 2 and "uploaded 2 (1 in flight)" in lines[-1]
    quiet = io.StringIO()
    with PlainPrinter(stream=quiet, quiet=True, interval_s=0.05, wall_clock=lambda: NOW) as printer:
        feed(printer)
        time.sleep(0.15)
    assert unstamped(quiet.getvalue()) == ["run R1: run directory runs/R1"]  # no progress line with -q


def test_live_render_and_display():
    progress = Progress()
    feed(progress)
    console = Console(file=io.StringIO(), width=140, force_terminal=False, color_system=None)
    console.print(render(progress.snapshot()))
    text = console.file.getvalue()
    assert f"{MARKER} R1" in text and "import 1001" in text
    assert "3,000 records" in text and "in flight 1" in text and "ETA" in text
    assert "pending 1  running 0  done 1" in text and "SUCCEEDED 1" in text
    assert "succeeded 990" in text and "failed 10" in text

    term = io.StringIO()
    console = Console(file=term, width=120, force_terminal=True, color_system="standard")
    assert use_live(quiet=False, log_format="text", console=console)
    assert not use_live(quiet=True, log_format="text", console=console)
    assert not use_live(quiet=False, log_format="json", console=console)
    assert not use_live(quiet=False, log_format="text", console=Console(file=io.StringIO()))
    display = LiveDisplay(console=console, secrets=[SECRET], refresh_per_second=20)
    with display:
        feed(display)
        display("upload_failed", {"batch": 3, "error": f"echo {SECRET}"})
        time.sleep(0.15)
    raw = term.getvalue()
    assert MARKER in raw and "\x1b[" in raw and SECRET not in raw and "upload failed" in raw


REPORT = {
    "run_id": "R1",
    "outcome": "completed_with_failures",
    "exit_code": 1,
    "duration_s": 2.0,
    "run_dir": "runs/R1",
    "rejects_path": "runs/R1/rejects.ndjson",
    "inputs": [{"path": "a.ndjson", "bytes": 4_000_000, "records": 990, "rejected": 10, "blank_lines": 0}],
    "records": {"read": 1000, "rejected": 10, "sent": 990, "succeeded": 980, "failed": 10, "pending": 0},
    "executions": [{"status": "SUCCEEDED", "upload": "uploaded"}, {"status": None, "upload": "upload_failed"}],
}


def test_summary_table_plain_and_rich():
    text = plain_summary(REPORT)
    rows = [line.strip().split("  ")[0] for line in text.splitlines()]
    assert rows[:6] == ["outcome", "records read", "rejected", "sent", "succeeded", "failed"]
    assert "executions    SUCCEEDED 1, refused 1" in text
    assert "duration      2.0 s" in text and "throughput    4.0 MB at 2.0 MB/s, 500 records/s" in text
    assert "runs/R1/report.html" in text and "runs/R1/rejects.ndjson" in text
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(rich_summary(REPORT))
    drawn = console.file.getvalue()
    assert "run R1" in drawn and "completed_with_failures (exit 1)" in drawn and "980" in drawn


def test_the_summary_says_where_the_plan_came_from_and_what_the_platform_showed():
    from pipeline.reporting.progress import event_text

    profile = {"slots": 4, "slots_exact": True, "base_s": 1.0, "s_per_mb": 0.0296, "conn_mbps": 48.0}
    profile |= {"link_mbps": 175.0, "max_uploads": None, "learned_from": "R0"}
    plan = {"profile": profile, "shape": "8 batches, the first 4 at 0.25 of the others"}
    plan |= {"modelled_s": 5.4, "default_modelled_s": 6.2}
    text = plain_summary({**REPORT, "platform": {"profile": {**profile, "slots_exact": False}, "plan": plan}})
    assert "batch plan    8 batches, the first 4 at 0.25 of the others, fitted to what run R0 saw" in text
    assert "platform      at least 4 slots, 1.00 s + 29.6 ms/MB per execution, uploads 175 MB/s" in text
    assert "batch plan" not in plain_summary(REPORT) and "platform" not in plain_summary(REPORT)
    told = event_text(
        "batch_plan", {"shape": plan["shape"], "learned_from": "R0", "modelled_s": 5.4, "default_modelled_s": 6.2}
    )
    assert told == (
        "batch plan: 8 batches, the first 4 at 0.25 of the others, fitted to the platform as run R0 saw it "
        "(modelled 5.4 s, the default plan 6.2 s)"
    )


def test_the_adaptive_limit_of_uploads_in_flight_is_shown():
    from pipeline.reporting.progress import event_text, progress_line
    from pipeline.reporting.progress_counters import Progress

    progress = Progress(clock=lambda: 0.0)
    assert progress.snapshot().upload_limit is None
    progress("upload_limit", {"previous": 8, "limit": 2, "in_flight": 2})
    assert "(0 of 2 in flight)" in progress_line(progress.snapshot())
    text = event_text("upload_limit", {"previous": 8, "limit": 2, "in_flight": 2})
    assert text == "uploads in flight: limit down from 8 to 2 (now 2)"

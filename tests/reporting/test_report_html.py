"""report.html: a pure rendering of the report dict (escaped, self-contained, with the timeline), and
a check that it renders in a real headless Chromium (skipped where no Chromium is installed)."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions
from pipeline.reporting.html_charts import percentile
from pipeline.reporting.report import iso
from pipeline.reporting.report_html import render_report_html, write_report_html

from ..helpers import activity, test_config, write_ndjson

TOKEN = "html-test-token"


def execution(n: int, t: float, status: str = "SUCCEEDED", **extra) -> dict:
    def at(s: float | None) -> str | None:
        return None if s is None else f"2026-11-28T03:00:{s:06.3f}Z"

    return {
        "id": str(5000 + n),
        "batch": n,
        "filename": f"R-{n:06d}.ndjson",
        "source": {"path": "/data/a.ndjson", "first_line": n * 10 - 9, "last_line": n * 10, "line_count": 10},
        "bytes": 1000,
        "upload": "uploaded",
        "status": status,
        "total_success": 10 if status == "SUCCEEDED" else None,
        "total_failure": 0,
        "error_file_uri": None,
        "error": None,
        "attempts": 1,
        "read_at": at(t),
        "upload_started_at": at(t + 0.5),
        "uploaded_at": at(t + 1),
        "started_at": at(t + 2) if status != "PENDING" else None,
        "finished_at": at(t + 4) if status not in ("PENDING", "RUNNING") else None,
    } | extra


def sample_report() -> dict:
    return {
        "run_id": "R<1>",
        "outcome": "incomplete",
        "exit_code": 3,
        "started_at": "2026-11-28T03:00:00.000Z",
        "finished_at": "2026-11-28T03:00:20.000Z",
        "duration_s": 20.0,
        "target": "https://api.example/<script>alert(1)</script>",
        "run_dir": "runs/R1",
        "document_import": {"id": "1001", "name": 'night "&" <b>', "document_type": "USER_ACTIVITY"},
        "inputs": [{"path": "/data/a.ndjson", "bytes": 5000, "records": 40, "rejected": 2, "blank_lines": 0}],
        "records": {
            "read": 42,
            "rejected": 2,
            "sent": 40,
            "succeeded": 20,
            "failed": 10,
            "pending": 10,
            "not_delivered": 10,
        },
        "batches": 4,
        "executions": [
            execution(1, 0),
            execution(2, 1, error_file_uri="mics://data_file/x/errors", total_failure=3),
            execution(3, 2, status="FAILED", error="<all> rejected"),
            execution(4, 3, status="RUNNING", attempts=4),
        ],
        "not_delivered": [
            {"batch": 3, "path": "/data/a.ndjson", "first_line": 21, "last_line": 30, "records": 10, "reason": "FAILED"}
        ],
        "rejects_path": "runs/R1/rejects.ndjson",
        "warnings": ["poll timed out <soon>"],
    }


def test_render_is_escaped_self_contained_and_has_the_timeline():
    page = render_report_html(sample_report(), {"missing user identifier": 2, "<weird>": 1})
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "night &quot;&amp;&quot; &lt;b&gt;" in page and "&lt;all&gt; rejected" in page
    assert "R&lt;1&gt;" in page and "&lt;weird&gt;" in page and "poll timed out &lt;soon&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no external resource
    assert "@import" not in page and "<link" not in page
    svg = page[page.index('<svg id="timeline"') : page.index("</svg>")]
    assert svg.count('class="queued"') == 4 and svg.count('class="upload"') == 4
    assert svg.count('class="processing"') == 4  # the RUNNING one is drawn open-ended
    assert 'stroke-dasharray="3,2"' in svg and "not finished when the report was written" in svg
    assert "(4 attempts)" in svg and svg.count("<circle") == 4
    assert '#dc2626"' in svg  # the failed execution
    for text in ("missing user identifier", "mics://data_file/x/errors", "Not delivered", "incomplete"):
        assert text in page


def test_render_without_executions_or_times():
    report = sample_report() | {"executions": [], "inputs": [], "not_delivered": [], "warnings": []}
    page = render_report_html(report, {})
    assert "no batch timing was recorded" in page and "no execution" in page and "<svg" not in page


def test_the_platform_a_run_saw_and_its_plan_s_origin_are_shown_escaped():
    profile = {"slots": 4, "slots_exact": True, "base_s": 1.0, "s_per_mb": 0.0296, "conn_mbps": 48.0}
    profile |= {"link_mbps": 175.0, "max_uploads": None, "learned_from": "<R0>"}
    plan = {"profile": profile, "shape": "8 batches", "modelled_s": 5.4, "default_modelled_s": 6.2}
    page = render_report_html(sample_report() | {"platform": {"profile": profile, "plan": plan}}, {})
    assert "<h2>Platform</h2>" in page and "4 slots, 1.00 s + 29.6 ms/MB per execution" in page
    assert "fitted to what run &lt;R0&gt; saw" in page and "<R0>" not in page
    assert "<h2>Platform</h2>" not in render_report_html(sample_report(), {})


def test_uploads_over_time_show_the_limit_the_uploads_in_flight_and_the_rate():
    timeline = [[0.0, 8, 0, 0], [0.5, 8, 8, 0], [1.0, 2, 2, 20e6], [2.0, 3, 3, 60e6], [3.0, 3, 0, 100e6]]
    throughput = {
        "max_concurrency": 16,
        "adaptive": True,
        "timeline": timeline,
        "peak_in_flight": 8,
        "throttled": 6,
        "pauses": 1,
        "upload_mb_s": 33.3,
        "poll_requests": 12,
        "poll_listings": 3,
    }
    page = render_report_html(sample_report() | {"throughput": throughput}, {})
    svg = page[page.index('<svg id="throughput"') :]
    svg = svg[: svg.index("</svg>")]
    limit = svg[svg.index('class="limit" points="') :].split('"')[3].split()
    assert len(limit) == 2 * len(timeline) - 1  # steps: one corner per change
    assert 'class="in-flight"' in svg and 'class="rate"' in svg and "40.0 MB/s" in svg  # the fastest second
    assert "6 throttled answers" in page and "12 GETs, 3 listing pages" in page and "(adaptive)" in page
    assert "no upload timing was recorded" in render_report_html(sample_report(), {})


def _timeline_of(page: str) -> str:
    return page[page.index('<svg id="timeline"') : page.index("</svg>")]


def test_a_scheduled_execution_is_not_drawn_as_a_failure():
    scheduled = execution(1, 0, status="SCHEDULED", finished_at=None)  # not finished: drawn open-ended
    report = sample_report() | {"executions": [scheduled], "not_delivered": [], "warnings": []}
    page = render_report_html(report, {})
    assert '<span class="">SCHEDULED</span>' in page
    assert "#dc2626" not in _timeline_of(page)


@pytest.mark.parametrize(
    "status, cls, red",
    [
        ("succeeded", "ok", False),
        ("Success", "ok", False),
        ("failed", "bad", True),
        ("executor_not_responding", "bad", True),
        ("WAITING_DEPENDENT_JOB", "", False),
        ("DONE", "", False),  # unknown: neutral, neither success nor failure
    ],
)
def test_the_status_colour_comes_from_the_formats_classification(status, cls, red):
    report = sample_report() | {"executions": [execution(1, 0, status=status)], "not_delivered": [], "warnings": []}
    page = render_report_html(report, {})
    assert f'<span class="{cls}">{status}</span>' in page
    assert ('fill="#dc2626"' in _timeline_of(page)) is red


def test_executions_are_counted_by_their_canonical_status():
    executions = [execution(1, 0, status="succeeded"), execution(2, 1), execution(3, 2, status="DONE")]
    page = render_report_html(sample_report() | {"executions": executions}, {})
    assert "executions: DONE <b>1</b>, SUCCEEDED <b>2</b></p>" in page


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def chromium(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ]
    return subprocess.run([binary, *flags, *args], capture_output=True, timeout=90, check=False)


async def test_report_renders_in_headless_chromium_with_the_timeline(tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium on this machine (as root: apt-get install -y chromium); report.html not rendered")
    source = write_ndjson(tmp_path / "activities.ndjson", [activity(i) for i in range(3000)])
    with source.open("a") as fh:
        fh.write('{"$type": "TOUCH"}\nnot json\n')
    emu_options = EmulatorOptions(token=TOKEN, process_ms=150, per_line_us=100, slots=2, latency_ms=30)
    async with running_emulator(emu_options) as emu:
        config = test_config(emu.base_url, tmp_path, batch={"max_lines": 250}, upload={"concurrency": 3})
        report = await pipeline.run_async(config, [source], RunOptions(token=TOKEN))
    assert report["batches"] == 12 and report["exit_code"] == 1
    page = write_report_html(report)
    assert page == Path(report["run_dir"]) / "report.html"

    shot = tmp_path / "report.png"
    done = chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", page.as_uri())
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 1600)

    dom = chromium(binary, tmp_path, "--dump-dom", page.as_uri()).stdout.decode()
    assert '<svg id="timeline"' in dom
    svg = dom[dom.index('<svg id="timeline"') : dom.index("</svg>")]
    assert svg.count('class="processing"') == 12 and svg.count('class="upload"') == 12
    assert 'id="outcome"' in dom and "completed_with_failures" in dom
    assert "missing required field $ts" in dom and "not valid JSON" in dom  # rejects by reason


# --- many batches: the phases over time and the notable executions ---------------------------------


def many_batches(n: int) -> dict:
    """A report of ``n`` batches, 8 in flight, every 25th retried, batch 7 failed, batch 9 still running."""

    def at(s: float | None) -> str | None:
        return None if s is None else f"2026-11-28T03:{int(s // 60):02d}:{s % 60:06.3f}Z"

    execs = []
    for i in range(1, n + 1):
        t = i * 0.1
        x = execution(i, 0, attempts=2 if i % 25 == 0 else 1)
        x |= {"read_at": at(t), "upload_started_at": at(t + 0.2), "uploaded_at": at(t + 0.8)}
        x |= {"started_at": at(t + 1.0), "finished_at": at(t + 1.5 + (30 if i == 5 else 0))}
        execs.append(x)
    execs[6] |= {"status": "FAILED", "total_success": None, "error": "bad <file>"}
    execs[8] |= {"status": "RUNNING", "finished_at": None}
    return sample_report() | {"executions": execs, "batches": n, "not_delivered": [], "warnings": []}


def test_above_a_few_hundred_batches_the_timeline_is_the_phases_over_time():
    report = many_batches(5000)
    page = render_report_html(report, {})
    assert len(page) < 150_000, "a row per batch would be megabytes"
    svg = _timeline_of(page)
    assert 'class="phases"' in svg and "<rect class=" not in svg and "<circle" not in svg
    for layer in ("queued", "upload", "pending", "processing", "failed"):
        assert f'<polygon class="{layer}"' in svg
    assert 'class="finished"' in svg and "5000 batches" in svg and 'class="failed-marks"' in svg
    durations = page[page.index('<div id="phase-durations">') :]
    durations = durations[: durations.index("</div>")]
    assert 'uploading</td><td class="n">5,000</td><td class="n">0.60 s' in durations
    assert '30.50 s</td><td class="n">5</td>' in durations  # the slowest processing: batch 5
    assert 'not finished when the report was written</td><td class="n">1<' in durations  # batch 9


def test_the_phases_count_the_batches_in_each_phase():
    page = render_report_html(many_batches(400), {})
    svg = _timeline_of(page)
    # 8 batches upload at once (one every 0.1 s, 0.6 s each) and none more: the top of the scale
    uploads = svg[svg.index('<polygon class="upload"') :]
    assert "up to 6.0 batches at once" in uploads[: uploads.index("</polygon>")]


def test_above_a_few_hundred_executions_the_table_lists_the_notable_ones():
    page = render_report_html(many_batches(4000), {})
    table = page[page.index("<h2>Executions</h2>") :]
    rows = re.findall(r"<tr><td class=\"n\">([\d,]+)</td>", table)
    assert rows[:4] == ["7", "9", "25", "50"] and len(rows) == 2 + 4000 // 25  # failed, running, retried
    note = table[table.index('id="executions-note"') :]
    assert "4,000 executions: the 162 notable ones" in note and "of them here" not in note
    assert "the other 3,838 (SUCCEEDED 3,838) succeeded at the first attempt" in note
    assert "bad &lt;file&gt;" in table and "report.json" in note


def test_the_notable_executions_are_capped():
    report = many_batches(400)
    for x in report["executions"]:
        x["attempts"] = 3
    table = render_report_html(report, {})
    table = table[table.index("<h2>Executions</h2>") :]
    assert len(re.findall(r"<tr><td class=\"n\">", table)) == 200 and "the first 200 of them here" in table


def test_a_large_run_with_nothing_notable_says_so():
    report = many_batches(400)
    for x in report["executions"]:
        x |= {"status": "SUCCEEDED", "finished_at": x["finished_at"] or x["started_at"], "attempts": 1, "error": None}
    page = render_report_html(report, {})
    assert "400 executions, none notable: all (SUCCEEDED 400)" in page
    assert "<th>execution</th>" not in page


def test_an_unfinished_run_shows_how_to_resume_it():
    command = "/opt/x/.venv/bin/pipeline resume '/runs/R <1>'"
    page = render_report_html(sample_report() | {"resume_command": command}, {})
    assert 'id="resume"' in page and "/opt/x/.venv/bin/pipeline resume &#x27;/runs/R &lt;1&gt;&#x27;" in page
    assert 'id="resume"' not in render_report_html(sample_report(), {})


# --- 20,000 executions: the aggregate views, under 1 MB, in a real browser ------------------------


def backfill(n: int = 20_000, seed: int = 5) -> dict:
    """A synthetic report of ``n`` executions as a 2 TB backfill writes it: 16 uploads in flight,
    queueing and processing on the server with a long tail, one in 50 failed, one in 40 with failed
    records, one in 30 retried; a throughput timeline of 2,000 samples; 200 input files."""
    rnd = random.Random(seed)
    t0 = 1_795_000_000.0

    def at(t: float | None) -> str | None:
        return iso(t0 + t) if t is not None else None

    execs = []
    for i in range(1, n + 1):
        read = i * 0.5  # 2 batches read a second
        up_start = read + rnd.uniform(0, 0.3)
        uploaded = up_start + rnd.lognormvariate(0.5, 0.4)
        started = uploaded + rnd.expovariate(1 / 3)
        finished = started + rnd.lognormvariate(1.5, 0.6)
        status = "FAILED" if i % 50 == 0 else "SUCCEEDED"
        x = execution(i, 0, status=status, attempts=2 if i % 30 == 0 else 1)
        x |= {
            "filename": f"plan-20261128T030000Z-a1b2c3-shard{i % 8:02d}-{i:06d}.ndjson",
            "source": {
                "path": f"/data/part{i % 200:03d}.ndjson",
                "first_line": 1,
                "last_line": 5000,
                "line_count": 5000,
            },
            "bytes": 100_000_000,
            "total_success": 5000 - (7 if i % 40 == 0 else 0) if status == "SUCCEEDED" else None,
            "total_failure": 7 if i % 40 == 0 else 0,
            "error": "the file could not be parsed" if status == "FAILED" else None,
            "read_at": at(read),
            "upload_started_at": at(up_start),
            "uploaded_at": at(uploaded),
            "started_at": at(started),
            "finished_at": at(finished),
        }
        execs.append(x)
    span = n * 0.5 + 30
    timeline = [[round(k * span / 2000, 3), 16, rnd.randint(8, 16), k * 100_000_000 * n / 2000] for k in range(2001)]
    throughput = {
        "max_concurrency": 16,
        "adaptive": True,
        "timeline": timeline,
        "peak_in_flight": 16,
        "throttled": 40,
        "pauses": 3,
        "upload_mb_s": 190.0,
        "poll_requests": 30_000,
        "poll_listings": 900,
    }
    inputs = [
        {
            "path": f"/data/part{k:03d}.ndjson",
            "bytes": 10_000_000_000,
            "records": 500_000,
            "rejected": 0,
            "blank_lines": 0,
        }
        for k in range(200)
    ]
    failed = [x for x in execs if x["status"] == "FAILED"]
    not_delivered = [
        {
            "batch": x["batch"],
            "path": x["source"]["path"],
            "first_line": 1,
            "last_line": 5000,
            "records": 5000,
            "reason": "FAILED",
        }
        for x in failed
    ]
    succeeded = sum(x["total_success"] or 0 for x in execs)
    records = {"read": n * 5000, "rejected": 0, "sent": n * 5000, "succeeded": succeeded, "pending": 0}
    records |= {"failed": n * 5000 - succeeded, "not_delivered": len(failed) * 5000}
    return sample_report() | {
        "records": records,
        "outcome": "completed_with_failures",
        "exit_code": 1,
        "started_at": at(0),
        "finished_at": at(span),
        "duration_s": span,
        "executions": execs,
        "batches": n,
        "inputs": inputs,
        "not_delivered": not_delivered,
        "warnings": [],
        "throughput": throughput,
    }


AGGREGATE_CHARTS = ("timeline", "throughput", "progress", "dist-upload", "dist-queue", "dist-processing")


def test_20000_executions_make_a_page_under_1_mb_with_every_aggregate_view():
    report = backfill()
    started = time.perf_counter()
    page = render_report_html(report, {})
    took = time.perf_counter() - started
    size = len(page.encode())
    print(f"\n20,000 executions: report.html {size:,} bytes, rendered in {took:.2f} s (under load)")
    assert size < 1_000_000
    for chart in AGGREGATE_CHARTS:
        assert f'<svg id="{chart}"' in page, chart
    assert 'class="bytes-uploaded"' in page and 'class="records-finished"' in page
    for layer in ("queued", "upload", "pending", "processing", "failed"):
        assert f'<polygon class="{layer}"' in page  # executions by state over time, stacked
    for mark in ("p50", "p90", "p99"):
        assert page.count(f'<line class="{mark}"') == 3  # on each distribution
    durations = page[page.index('<div id="phase-durations">') :]
    assert "<th>p50</th><th>p90</th><th>p99</th><th>max</th>" in durations[: durations.index("</div>")]
    slowest = page[page.index('<div id="slowest">') :]
    assert slowest[: slowest.index("</div>")].count("<tr>") == 21  # the header and 20 batches
    failed = page[page.index('<div id="failed-batches">') :]
    failed = failed[: failed.index("</div>")]
    assert "800 batches failed whole or have failed records" in failed  # 400 FAILED, 500 with failures, 100 both
    assert failed.count("<tr>") == 201 and "every one in <code>report.json</code>" in failed
    assert "400 batches not delivered: the first 200 here" in page


def test_the_slowest_batches_are_the_slowest_and_percentiles_are_by_nearest_rank():
    report = many_batches(400)  # batch 5 processes 30 s longer than the others
    page = render_report_html(report, {})
    slowest = page[page.index('<div id="slowest">') :]
    first = re.search(r'<tr><td class="n">([\d,]+)</td>', slowest)
    assert first is not None and first.group(1) == "5"
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
    assert percentile([7.0], 0.9) == 7.0


def test_a_small_run_keeps_its_row_per_batch_and_no_aggregate_section():
    page = render_report_html(sample_report(), {})
    assert "<h2>Timeline</h2>" in page and 'id="progress"' not in page and 'id="slowest"' not in page


async def test_20000_executions_open_in_headless_chromium_with_the_charts_in_the_dom(tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium on this machine (as root: apt-get install -y chromium); report.html not rendered")
    report = backfill() | {"run_dir": str(tmp_path)}
    page = write_report_html(report)
    print(f"\n20,000 executions: report.html {page.stat().st_size:,} bytes")
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title>")
    started = time.perf_counter()
    chromium(binary, tmp_path, "--dump-dom", blank.as_uri())
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    done = chromium(binary, tmp_path, "--dump-dom", page.as_uri())
    loaded = time.perf_counter() - started
    print(
        f"headless Chromium: {loaded:.2f} s to load and dump the page, {baseline:.2f} s for a blank page (under load)"
    )
    dom = done.stdout.decode()
    for chart in AGGREGATE_CHARTS:
        assert f'<svg id="{chart}"' in dom, chart
    assert '<div id="slowest">' in dom and '<div id="failed-batches">' in dom and 'id="phase-durations"' in dom
    assert dom.count('<polygon class="') >= 5 and dom.count('<rect class="bin"') > 10

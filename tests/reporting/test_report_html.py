"""report.html: a pure rendering of the report dict (escaped, self-contained, with the timeline), and
a check that it renders in a real headless Chromium (skipped where no Chromium is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import pipeline
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.runner import RunOptions
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

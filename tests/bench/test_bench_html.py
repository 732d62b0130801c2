"""bench.html in a real headless Chromium: the four charts are in the DOM (skipped without Chromium)."""

from __future__ import annotations

import json

import pytest

from pipeline.bench.bench_html import rates, render_bench_html
from pipeline.cli.entry import main
from tests.reporting.test_report_html import chromium, find_chromium


def test_the_rate_over_time_spreads_each_uploads_bytes_over_its_span():
    uploads = [[0.0, 2.0, 20_000_000], [1.0, 2.0, 10_000_000]]  # 10 MB/s for 2 s, plus 10 MB/s in the second
    assert [round(v) for _, v in rates(uploads, buckets=2)] == [0, 10, 20, 0]


def test_the_page_escapes_labels_and_holds_no_script(tmp_path):
    bench = {
        "bench_id": "b<1>", "target": {"url": "emulator", "emulator": True, "conditions": "none"}, "input":
        {"bytes": 1, "records": 1}, "document_type": "USER_ACTIVITY", "mime_type": "APPLICATION_X_NDJSON",
        "seed": 0, "lower_bound_s": None, "points": [], "cleanup_command": None,
        "recommendation": {"text": "<b>no</b>", "best": None},
    }  # fmt: skip
    page = render_bench_html(bench)
    assert "b&lt;1&gt;" in page and "&lt;b&gt;no&lt;/b&gt;" in page and "<script" not in page


def test_bench_html_renders_its_charts_in_headless_chromium(tmp_path, monkeypatch, capsys):
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium on this machine (as root: apt-get install -y chromium); bench.html not rendered")
    cfg = tmp_path / "fast.toml"
    cfg.write_text(f'[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n[report]\ndir = "{tmp_path / "out"}"\n')
    argv = ["bench", "--emulator", "--config", str(cfg), "--records", "4000", "--record-bytes", "500"]
    argv += ["--sweep", "batch.max_lines=500,2000", "--process-ms", "20", "--bandwidth", "20"]
    assert main(argv) == 0
    (bench_dir,) = (tmp_path / "out").glob("bench-*")
    page = bench_dir / "bench.html"
    dom = chromium(binary, tmp_path, "--dump-dom", page.as_uri()).stdout.decode()
    for chart in ("sweep", "throughput", "concurrency", "processing"):
        assert f'<svg id="{chart}"' in dom, chart
    sweep = dom[dom.index('<svg id="sweep"') :]
    assert sweep[: sweep.index("</svg>")].count('class="point"') == 2
    throughput = dom[dom.index('<svg id="throughput"') :]
    assert throughput[: throughput.index("</svg>")].count('class="rate"') == 2
    processing = dom[dom.index('<svg id="processing"') :]
    executions = sum(
        len(p["processing_samples_s"]) for p in json.loads((bench_dir / "bench.json").read_text())["points"]
    )
    assert processing[: processing.index("</svg>")].count('class="execution"') == executions == 8 + 2
    assert 'id="recommendation"' in dom and "The best end-to-end point" in dom

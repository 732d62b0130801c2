"""``bench.html``: one self-contained page (inline CSS and SVG; no script, no network).

Four charts: upload throughput over time per point (``svg#throughput``), uploads in flight and the
adaptive limit over time (``svg#concurrency``), the processing-time distribution per point
(``svg#processing``: each execution a tick, p50/p90/p99 marked) and the sweep (``svg#sweep``:
end-to-end time per point, its bound beside it); then the table and the recommendation.
"""

from __future__ import annotations

import html
from pathlib import Path

from pipeline.bench.table import COLUMNS, row
from pipeline.bench.types import BenchReport, PointMeasures

W, H, PAD_L, PAD_B, PAD_T, PAD_R = 900, 280, 60, 36, 16, 16
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563",
           "#65a30d", "#7c3aed", "#0d9488", "#b91c1c", "#1d4ed8", "#a16207", "#be185d")  # fmt: skip
CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#111}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px}
td.n{text-align:right}tr.best{background:#dcfce7}
svg{background:#fafafa;border:1px solid #e5e7eb}
.axis{stroke:#9ca3af}.grid{stroke:#e5e7eb}text{font-size:11px;fill:#374151}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px}
p.rec{font-size:15px;background:#eff6ff;padding:10px;border-left:4px solid #2563eb}
"""


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def _frame(
    svg_id: str, title: str, x_max: float, y_max: float, x_label: str, y_label: str, body: str, x_ticks: bool = True
) -> str:
    """An SVG with axes, 4 ticks on each, and ``body`` drawn in data coordinates mapped by ``_Scale``."""
    ticks = []
    for k in range(5):
        x = PAD_L + (W - PAD_L - PAD_R) * k / 4
        y = H - PAD_B - (H - PAD_B - PAD_T) * k / 4
        ticks.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>')
        if x_ticks:
            ticks.append(f'<text x="{x:.1f}" y="{H - PAD_B + 14}" text-anchor="middle">{x_max * k / 4:.3g}</text>')
        ticks.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{y_max * k / 4:.3g}</text>')
    axes = (
        f'<line class="axis" x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}"/>'
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}"/>'
        f'<text x="{(W + PAD_L) / 2}" y="{H - 4}" text-anchor="middle">{e(x_label)}</text>'
        f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle">{e(y_label)}</text>'
    )
    return (
        f'<svg id="{svg_id}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">'
        f"<title>{e(title)}</title>{''.join(ticks)}{axes}{body}</svg>"
    )


class _Scale:
    def __init__(self, x_max: float, y_max: float) -> None:
        self.x_max, self.y_max = x_max or 1.0, y_max or 1.0

    def x(self, v: float) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * v / self.x_max

    def y(self, v: float) -> float:
        return H - PAD_B - (H - PAD_B - PAD_T) * v / self.y_max


def rates(uploads: list[list[float]], buckets: int = 80) -> list[tuple[float, float]]:
    """(time, MB/s) over ``buckets`` equal steps from 0 to the last upload's end: each upload's
    bytes spread evenly over its own span (the bytes of an upload are counted when it is answered,
    so the limiter's byte counts alone would show spikes)."""
    if not uploads:
        return []
    end = max(u[1] for u in uploads)
    step = end / buckets or 1.0
    sent = [0.0] * buckets
    for begin, finish, nbytes in uploads:
        rate = nbytes / max(finish - begin, 1e-6)
        for k in range(int(begin / step), min(buckets, int(finish / step) + 1)):
            overlap = min(finish, (k + 1) * step) - max(begin, k * step)
            if overlap > 0:
                sent[k] += rate * overlap
    return [(0.0, 0.0)] + [((k + 0.5) * step, sent[k] / step / 1e6) for k in range(buckets)] + [(end, 0.0)]


def _polyline(points: list[tuple[float, float]], scale: _Scale, colour: str, css: str, label: str) -> str:
    coords = " ".join(f"{scale.x(x):.1f},{scale.y(y):.1f}" for x, y in points)
    return (
        f'<polyline class="{css}" fill="none" stroke="{colour}" stroke-width="1.6" points="{coords}">'
        f"<title>{e(label)}</title></polyline>"
    )


def throughput_chart(points: list[PointMeasures]) -> str:
    series = [rates(p["uploads"]) for p in points]
    x_max = max((s[-1][0] for s in series if s), default=1.0)
    y_max = max((v for s in series for _, v in s), default=1.0) * 1.1
    scale = _Scale(x_max, y_max)
    body = "".join(_polyline(s, scale, _colour(i), "rate", points[i]["label"]) for i, s in enumerate(series) if s)
    title = "upload throughput over time"
    return _frame("throughput", title, scale.x_max, scale.y_max, "seconds since the client started", "MB/s", body)


def concurrency_chart(points: list[PointMeasures]) -> str:
    x_max = max((p["timeline"][-1][0] for p in points if p["timeline"]), default=1.0)
    y_max = max((max(t[1], t[2]) for p in points for t in p["timeline"]), default=1.0) + 1
    scale = _Scale(x_max, y_max)
    body = []
    for i, p in enumerate(points):
        limit = [(t[0], t[1]) for t in p["timeline"]]
        flying = [(t[0], t[2]) for t in p["timeline"]]
        if limit:
            body.append(_polyline(limit, scale, _colour(i), "limit", f"{p['label']}: limit"))
            body.append(_polyline(flying, scale, _colour(i), "in-flight", f"{p['label']}: in flight").replace(
                'stroke-width="1.6"', 'stroke-width="1" stroke-dasharray="3 2"'))  # fmt: skip
    title = "adaptive limit (solid) and uploads in flight (dashed)"
    return _frame(
        "concurrency", title, scale.x_max, scale.y_max, "seconds since the client started", "uploads", "".join(body)
    )


def processing_chart(points: list[PointMeasures]) -> str:
    """One row per point: a tick per execution's processing time, p50/p90/p99 as taller marks."""
    x_max = max((max(p["processing_samples_s"], default=0) for p in points), default=1.0) * 1.05
    rows = max(1, len(points))
    scale = _Scale(x_max, rows)
    body = []
    for i, p in enumerate(points):
        y = scale.y(rows - i - 0.5)
        ticks = "".join(
            f'<line class="execution" x1="{scale.x(v):.1f}" x2="{scale.x(v):.1f}" y1="{y - 7:.1f}" y2="{y + 7:.1f}" '
            'stroke-width="2"/>'
            for v in p["processing_samples_s"]
        )
        marks = "".join(
            f'<line class="{q}" x1="{scale.x(v):.1f}" x2="{scale.x(v):.1f}" y1="{y - 10:.1f}" y2="{y + 10:.1f}" '
            f'stroke="#111" stroke-width="2"><title>{q} {v:.3f} s</title></line>'
            for q in ("p50", "p90", "p99")
            if (v := p["processing_s"][q]) is not None
        )
        body.append(f'<g stroke="{_colour(i)}" stroke-opacity="0.6"><title>{e(p["label"])}</title>{ticks}</g>{marks}')
    return _frame("processing", "processing time per execution (RUNNING to done)", scale.x_max, rows,
                  "seconds", "point (top: first)", "".join(body))  # fmt: skip


def sweep_chart(points: list[PointMeasures], best: str | None) -> str:
    """End-to-end seconds per point (bars) and its lower bound (a grey bar beside it)."""
    n = max(1, len(points))
    y_max = max((max(p["end_to_end_s"], p["bound_s"] or 0) for p in points), default=1.0) * 1.1
    scale = _Scale(n, y_max)
    slot = (W - PAD_L - PAD_R) / n
    body = []
    for i, p in enumerate(points):
        x = PAD_L + i * slot
        top = scale.y(p["end_to_end_s"])
        fill = "#16a34a" if p["label"] == best else "#2563eb"
        body.append(
            f'<rect class="point" x="{x + slot * 0.1:.1f}" y="{top:.1f}" width="{slot * 0.45:.1f}" '
            f'height="{H - PAD_B - top:.1f}" fill="{fill}">'
            f"<title>{e(p['label'])}: {p['end_to_end_s']:.2f} s</title></rect>"
        )
        if p["bound_s"] is not None:
            btop = scale.y(p["bound_s"])
            body.append(
                f'<rect class="bound" x="{x + slot * 0.57:.1f}" y="{btop:.1f}" width="{slot * 0.3:.1f}" '
                f'height="{H - PAD_B - btop:.1f}" fill="#9ca3af"><title>bound {p["bound_s"]:.2f} s</title></rect>'
            )
        body.append(f'<text x="{x + slot / 2:.1f}" y="{PAD_T + 10}" text-anchor="middle">{i + 1}</text>')
    title = "end-to-end time per point (green: best; grey: its lower bound)"
    return _frame("sweep", title, n, y_max, "point (numbered as in the legend)", "seconds", "".join(body), False)


def _legend(points: list[PointMeasures]) -> str:
    items = "".join(
        f'<span><i style="background:{_colour(i)}"></i>{i + 1}. {e(p["label"])}</span>' for i, p in enumerate(points)
    )
    return f'<p class="legend">{items}</p>'


def _table(report: BenchReport) -> str:
    head = "".join(f"<th>{e(name)}</th>" for name, _ in COLUMNS)
    best = report["recommendation"]["best"]
    body = []
    for p in report["points"]:
        cells = "".join(f'<td class="{"n" if j else ""}">{e(c)}</td>' for j, c in enumerate(row(p)))
        body.append(f'<tr class="{"best" if p["label"] == best else ""}">{cells}</tr>')
    return f'<table id="points"><tr>{head}</tr>{"".join(body)}</table>'


def render_bench_html(report: BenchReport) -> str:
    points = report["points"]
    rec = report["recommendation"]
    target = report["target"]
    conditions = f"; emulator conditions: {e(target['conditions'])}" if target["emulator"] else ""
    bound = f"; lower bound {report['lower_bound_s']:.2f} s" if report["lower_bound_s"] is not None else ""
    cleanup = (
        f"<p>Remove what it wrote: <code>{e(report['cleanup_command'])}</code></p>" if report["cleanup_command"] else ""
    )
    data = report["input"]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>pipeline bench {e(report['bench_id'])}</title>"
        f"<style>{CSS}</style></head><body><h1>pipeline bench {e(report['bench_id'])}</h1>"
        f"<p>{e(report['document_type'])} ({e(report['mime_type'])}), {data['bytes']:,} bytes, {data['records']:,} "
        f"synthetic records per point (seed {report['seed']}), target {e(target['url'])}{conditions}{bound}.</p>"
        f'<p class="rec" id="recommendation">{e(rec["text"])}</p>{cleanup}'
        f"<h2>The sweep</h2>{sweep_chart(points, rec['best'])}{_legend(points)}"
        f"<h2>Upload throughput over time</h2>{throughput_chart(points)}"
        f"<h2>Adaptive concurrency over time</h2>{concurrency_chart(points)}"
        f"<h2>Processing time per execution</h2>{processing_chart(points)}"
        f"<h2>Every point</h2>{_table(report)}</body></html>\n"
    )


def write_bench_html(report: BenchReport, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_bench_html(report), encoding="utf-8")
    tmp.replace(path)
    return path

"""The uploads over time of ``report.html``: an inline SVG of the limit of uploads in flight and the
uploads in flight (steps, left axis), and the upload throughput in MB/s (right axis), from the
report's ``throughput`` section (``engine.throughput``: the limiter's timeline).

Apart from ``report_html`` because it is one chart with its own scales, and the only reader of the
throughput timeline on the page.
"""

from __future__ import annotations

from pipeline.reporting.html_markup import axis_seconds
from pipeline.reporting.types import Report


def _rates(timeline: list[list[float]], bucket_s: float) -> list[tuple[float, float]]:
    """(time, MB/s) per bucket of ``bucket_s`` seconds, from the cumulative bytes of the timeline."""
    rates: list[tuple[float, float]] = []
    t_prev, b_prev = 0.0, 0.0
    for t, _, _, sent in timeline:
        if t - t_prev >= bucket_s:
            rates.append((t, (sent - b_prev) / (t - t_prev) / 1e6))
            t_prev, b_prev = t, sent
    return rates


def throughput_chart(report: Report) -> str:
    """The inline SVG of the uploads over time: the limit of uploads in flight, the uploads in flight
    (steps, left axis) and the upload throughput in MB/s (right axis)."""
    th = report.get("throughput")
    if not th or not th.get("timeline"):
        return '<p class="muted">no upload timing was recorded</p>'
    tl = th["timeline"]
    span = max(tl[-1][0], 1e-3)
    rates = _rates(tl, max(span / 60, 0.25))
    top_n = max(max(p[1] for p in tl), max(p[2] for p in tl), 1)
    top_r = max([r for _, r in rates] + [1e-6])
    left, w, h, pad = 50, 1000, 180, 24

    def x(t: float) -> float:
        return left + t / span * w

    def steps(values: list[tuple[float, float]], scale: float) -> str:
        pts: list[str] = []
        prev: float | None = None
        for t, v in values:
            y = pad + h - v / scale * h
            if prev is not None:
                pts.append(f"{x(t):.1f},{prev:.1f}")
            pts.append(f"{x(t):.1f},{y:.1f}")
            prev = y
        return " ".join(pts)

    limit = steps([(p[0], p[1]) for p in tl], top_n)
    flight = steps([(p[0], p[2]) for p in tl], top_n)
    rate = " ".join(f"{x(t):.1f},{pad + h - r / top_r * h:.1f}" for t, r in rates)
    parts = [
        f'<svg id="throughput" xmlns="http://www.w3.org/2000/svg" width="{left + w + 60}" height="{h + 2 * pad + 16}" '
        f'role="img" aria-label="uploads in flight and throughput over time" font-family="sans-serif" font-size="11">',
        f'<rect x="{left}" y="{pad}" width="{w}" height="{h}" fill="none" stroke="#e5e7eb"/>',
        f'<polyline class="limit" points="{limit}" fill="none" stroke="#9ca3af" stroke-dasharray="4,3"/>',
        f'<polyline class="in-flight" points="{flight}" fill="none" stroke="#3b82f6" stroke-width="1.5"/>',
        f'<polyline class="rate" points="{rate}" fill="none" stroke="#16a34a" stroke-width="1.5"/>',
        f'<text x="{left - 6}" y="{pad + 4}" text-anchor="end" fill="#3b82f6">{top_n:g}</text>',
        f'<text x="{left - 6}" y="{pad + h}" text-anchor="end" fill="#3b82f6">0</text>',
        f'<text x="{left + w + 6}" y="{pad + 4}" fill="#16a34a">{top_r:,.1f} MB/s</text>',
        f'<text x="{left + w + 6}" y="{pad + h}" fill="#16a34a">0</text>',
        f'<text x="{left}" y="{h + 2 * pad + 8}" fill="#6b7280">0 s</text>',
        f'<text x="{left + w}" y="{h + 2 * pad + 8}" text-anchor="end" fill="#6b7280">{axis_seconds(span)}</text>',
        "</svg>",
    ]
    mode = "adaptive" if th.get("adaptive") else "fixed"
    rate_text = f"{th['upload_mb_s']:,.1f} MB/s" if th.get("upload_mb_s") else "-"
    legend = (
        '<p class="legend"><span><span class="sw" style="background:#3b82f6"></span>uploads in flight</span>'
        '<span><span class="sw" style="background:#9ca3af"></span>their limit</span>'
        '<span><span class="sw" style="background:#16a34a"></span>MB/s sent</span></p>'
        f'<p class="muted">at most {th.get("max_concurrency")} uploads in flight ({mode}); uploads at {rate_text}; '
        f"{th.get('throttled', 0):,} throttled answers (429/503), {th.get('pauses', 0):,} pauses; "
        f"polls: {th.get('poll_requests', 0):,} GETs, {th.get('poll_listings', 0):,} listing pages</p>"
    )
    return legend + "".join(parts)

"""The small pieces every section of ``report.html`` is written with: escaping, numbers, tables,
the time axis' steps and labels, and the report's ISO times read as epoch seconds.

Apart from ``report_html`` because each chart and table module of the page (``html_timeline``,
``html_phases``, ``html_throughput``, ``html_executions``, ``html_aggregate``) writes with them.
The times are parsed once per page: ``report_html.render_report_html`` clears ``parsed_ts``'s cache
when the page is done.
"""

from __future__ import annotations

import html
import math
from collections.abc import Set as AbstractSet
from datetime import datetime
from functools import cache
from typing import Any


def e(value: Any) -> str:
    """Escape any value for HTML text or an attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else e(value if value is not None else "-")


def ts(value: object) -> float | None:
    if not value or not isinstance(value, str):
        return None
    return parsed_ts(value)


@cache
def parsed_ts(value: str) -> float | None:
    """An ISO time as epoch seconds. Each execution's times are read by several sections of the
    page (500,000 reads for 20,000 executions, a third of the page's time): parsed once per page,
    the cache cleared when the page is done (``render_report_html``)."""
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def table(headers: list[str], rows: list[list[str]], numeric: AbstractSet[int] = frozenset()) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving 4 to 10 ticks over ``span`` seconds."""
    step = 10.0 ** math.floor(math.log10(span / 5))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 10:
            return step * factor
    return step * 10


def axis_seconds(seconds: float) -> str:
    """Seconds as the time axis writes them (``12 s``, ``0.25 s``)."""
    return f"{seconds:,.0f} s" if seconds >= 10 or seconds == int(seconds) else f"{seconds:,.2g} s"

"""Pages of lists, and the execution as an answer shows it (with the answer-distorting faults).

Pagination: ``first_result`` (default 0), ``max_results`` (default 10, capped at
``max_page_size``: the envelope reports the value used); a negative or non-integer value is a 400
naming it. Faults (see ``faults``): ``ignore_first_result`` and ``page_cap`` on every list;
``oldest_first``, ``list_lag`` and ``list_omit`` on execution lists; ``no_filename`` on every
execution answer; ``unknown_status``, ``status_lower`` and ``status_title`` on a GET by id and in
lists. A page is cut before its items are rendered, so the status dice are drawn once per
execution answered, in the order answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from pipeline.emulator.responses import bad_field, ok_list
from pipeline.emulator.state import STATE, EmulatorState
from pipeline.emulator.store import Execution

T = TypeVar("T")


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_field(name, f"must be an integer (got {raw!r})") from None
    if value < 0:
        raise bad_field(name, f"must not be negative (got {value})")
    return value


def page(request: web.Request, items: Sequence[T], render: Callable[[T], Any] = lambda x: x) -> web.Response:
    """One page of ``items`` in the list envelope; ``render`` turns each item on the page to JSON."""
    st = request.app[STATE]
    opts, plan = st.options, st.plan
    first = _int_param(request, "first_result", 0)
    asked = _int_param(request, "max_results", opts.default_page_size)
    size = min(asked, opts.max_page_size)
    start = 0 if plan.ignore_first_result else first
    length = min(size, plan.page_cap) if plan.page_cap else size
    total: int | None = None if plan.ignore_first_result or plan.page_cap else len(items)
    data = [render(x) for x in items[start : start + length]]
    return ok_list(data, first_result=first, max_results=asked if plan.page_cap else size, total=total)


def listed_executions(st: EmulatorState, import_id: str) -> list[Execution]:
    """The executions a list shows: newest first (or oldest), less the lagging and omitted ones."""
    plan = st.plan
    exes = st.store.executions_newest_first(import_id)
    if plan.oldest_first:
        exes.reverse()
    if plan.list_lag:
        cutoff = time.monotonic() - plan.list_lag
        exes = [e for e in exes if e.created_mono <= cutoff]
    if plan.list_omit:
        exes = [e for e in exes if not st.dice.omit()]
    return exes


#: What ``escape_text`` wraps an execution's error message in: red, a window title, a bell, a reset.
ESCAPED_START, ESCAPED_END = "\x1b[31m\x1b]0;pwned\x07", "\x1b[0m\x07"


def execution_json(st: EmulatorState, exe: Execution, *, distort_status: bool = True) -> dict[str, Any]:
    """The execution as an answer shows it. ``distort_status``: apply the status faults (GET by id
    and lists; the upload and cancel answers show the status as it is)."""
    data = exe.to_json()
    plan = st.plan
    if plan.no_filename:
        opaque = exe.opaque_input_uri
        data["parameters"].update(input_file_name=None, file_uri=opaque)
        if data["result"] is not None:
            data["result"] = {**data["result"], "input_file_name": None, "input_file_uri": opaque}
    if plan.escape_text and isinstance(data.get("error"), dict) and data["error"].get("message"):
        data["error"] = {**data["error"], "message": f"{ESCAPED_START}{data['error']['message']}{ESCAPED_END}"}
    if distort_status:
        status = data["status"]
        if plan.unknown_status and status == "RUNNING":
            status = "IN_PROGRESS"
        case = st.dice.status_case()
        if case == "lower":
            status = status.lower()
        elif case == "title":
            status = status.title()
        data["status"] = status
    return data

"""The API's resource paths (``/v1/datamarts/{id}/document_imports/...``), each segment quoted."""

from __future__ import annotations

from urllib.parse import quote

Id = str | int  # a datamart, import or execution id, as the caller holds it


def _segment(value: Id) -> str:
    return quote(str(value), safe="")


def imports_path(datamart_id: Id, import_id: Id | None = None) -> str:
    """``/v1/datamarts/{d}/document_imports`` or, with ``import_id``, that import."""
    path = f"/v1/datamarts/{_segment(datamart_id)}/document_imports"
    return path if import_id is None else f"{path}/{_segment(import_id)}"


def executions_path(datamart_id: Id, import_id: Id, execution_id: Id | None = None) -> str:
    """An import's ``/executions`` or, with ``execution_id``, that execution."""
    path = imports_path(datamart_id, import_id) + "/executions"
    return path if execution_id is None else f"{path}/{_segment(execution_id)}"

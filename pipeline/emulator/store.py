"""In-memory document imports and executions, and the execution object the API returns.

Ids are decimal strings from per-kind counters (imports from 1001, executions from 5001), so a
run is reproducible. The execution object has every field of the public walkthrough's shape;
fields not known yet are ``null``. Guesses (api.md shows the keys, not always their values):
``import_type`` is ``null``; ``organisation_id`` / ``user_id`` are fixed strings;
``permalink_uri`` is the execution's API path; ``is_retryable`` is ``false``; ``retry_count`` 0;
``num_tasks`` is 1 (one file, one task) once running; ``parameters.number_of_lines`` is the
number of physical lines of the uploaded file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.emulator.intake import FailedLine

ORGANISATION_ID = "1000"
USER_ID = "2000"
DATAFARM_KEY = "DF_EU_EMULATOR"
URI_PREFIX = "mics://data_file/tenants/1000/"


def now_ms() -> int:
    return int(time.time() * 1000)


def _uri(exe: Execution, name: str) -> str:
    return f"{URI_PREFIX}datamarts/{exe.datamart_id}/document_imports/{exe.import_id}/executions/{exe.id}/{name}"


@dataclass
class Execution:
    """One execution: its public fields and what processing needs (never the file's body)."""

    id: str
    import_id: str
    datamart_id: str
    document_type: str
    mime_type: str
    filename: str
    size: int
    lines: int
    records: int
    ok: int
    failed: int
    problem: str | None
    fate: str | None
    digests: bytearray = field(repr=False, default_factory=bytearray)
    failures: list[FailedLine] = field(repr=False, default_factory=list)
    status: str = "PENDING"
    creation_date: int = field(default_factory=now_ms)
    created_mono: float = field(default_factory=time.monotonic, repr=False)  # for ``list_lag``
    start_date: int | None = None
    end_date: int | None = None
    #: When its slot took it and when it ended, on the event loop's clock (see ``processor``).
    started_mono: float | None = field(default=None, repr=False)
    ended_mono: float | None = field(default=None, repr=False)
    num_tasks: int | None = None
    completed_tasks: int | None = None
    erroneous_tasks: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None

    @property
    def input_file_uri(self) -> str:
        return _uri(self, f"input/{self.filename}")

    @property
    def opaque_input_uri(self) -> str:
        """The input file's URI without its name (the ``no_filename`` fault)."""
        return _uri(self, f"input/{self.id}")

    @property
    def error_file_uri(self) -> str:
        return _uri(self, "errors.ndjson")

    def to_json(self) -> dict[str, Any]:
        duration = None
        if self.start_date is not None and self.end_date is not None:
            duration = self.end_date - self.start_date
        return {
            "id": self.id,
            "status": self.status,
            "creation_date": self.creation_date,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "duration": duration,
            "organisation_id": ORGANISATION_ID,
            "user_id": USER_ID,
            "job_type": "DOCUMENT_IMPORT",
            "import_mode": "MANUAL_FILE",
            "import_type": None,
            "num_tasks": self.num_tasks,
            "completed_tasks": self.completed_tasks,
            "erroneous_tasks": self.erroneous_tasks,
            "parameters": {
                "datamart_id": self.datamart_id,
                "document_import_id": self.import_id,
                "mime_type": self.mime_type,
                "document_type": self.document_type,
                "input_file_name": self.filename,
                "file_uri": self.input_file_uri,
                "number_of_lines": self.lines,
                "segment_id": None,
            },
            "result": self.result,
            "error": self.error,
            "cancel_status": None,
            "debug": None,
            "is_retryable": False,
            "permalink_uri": (
                f"/v1/datamarts/{self.datamart_id}/document_imports/{self.import_id}/executions/{self.id}"
            ),
            "retry_count": 0,
        }


class Store:
    """Imports and executions, in memory."""

    def __init__(self) -> None:
        self.imports: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, Execution] = {}
        self.by_import: dict[str, list[str]] = {}
        self.error_files: dict[str, str] = {}  # error file uri -> execution id
        self._next_import = 1001
        self._next_execution = 5001

    def create_import(self, datamart_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        import_id = str(self._next_import)
        self._next_import += 1
        obj = {
            "id": import_id,
            "datafarm_key": DATAFARM_KEY,
            "datamart_id": datamart_id,
            "name": fields["name"],
            "document_type": fields["document_type"],
            "mime_type": fields["mime_type"],
            "encoding": fields.get("encoding") or "utf-8",
            "priority": fields.get("priority") or "MEDIUM",
        }
        self.imports[import_id] = obj
        self.by_import[import_id] = []
        return obj

    def get_import(self, datamart_id: str, import_id: str) -> dict[str, Any] | None:
        obj = self.imports.get(import_id)
        if obj is None or obj["datamart_id"] != datamart_id:
            return None
        return obj

    def delete_import(self, import_id: str) -> None:
        self.imports.pop(import_id, None)
        for exe_id in self.by_import.pop(import_id, []):
            exe = self.executions.pop(exe_id, None)
            if exe is not None:
                self.error_files.pop(exe.error_file_uri, None)

    def new_execution_id(self) -> str:
        exe_id = str(self._next_execution)
        self._next_execution += 1
        return exe_id

    def add_execution(self, exe: Execution) -> None:
        self.executions[exe.id] = exe
        self.by_import.setdefault(exe.import_id, []).append(exe.id)

    def get_execution(self, import_id: str, execution_id: str) -> Execution | None:
        exe = self.executions.get(execution_id)
        if exe is None or exe.import_id != import_id:
            return None
        return exe

    def executions_newest_first(self, import_id: str) -> list[Execution]:
        ids = self.by_import.get(import_id, [])
        return [self.executions[i] for i in reversed(ids) if i in self.executions]

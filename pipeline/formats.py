"""Document types, mime types, execution statuses and the per-type record checks.

This module is shared by the client (the reader validates records before sending them) and the
emulator (which counts each line it receives as a success or a failure): both apply exactly the
same rules, so a record the client accepts is a record the emulator accepts.

The rules follow ``docs/API.md``. Where the documentation is vague we chose:
- a record must carry exactly **one** user identifier; two are rejected ("two identifiers");
- the account identifier is ``user_account_id``, with an optional ``compartment_id`` (without it
  the datamart's default compartment is used);
- ``$email_hash`` of USER_ACTIVITY may be a string or an object ``{"$email": ...}`` / ``{"$hash": ...}``;
- USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS needs at least two identifiers.

All check functions are pure: they return ``None`` for a good record, or a short reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

import orjson

#: The API's limit per uploaded file: 100 MB, read as 100 x 10^6 bytes (the safe reading of docs/API.md).
#: The one definition: the config's range, the reader's cut and the emulator's 413 all use it.
MAX_UPLOAD_BYTES = 100_000_000

NDJSON = "APPLICATION_X_NDJSON"
CSV = "TEXT_CSV"

#: API mime type name -> HTTP Content-Type of an upload.
CONTENT_TYPES: Mapping[str, str] = {NDJSON: "application/x-ndjson", CSV: "text/csv"}

PRIORITIES = frozenset({"LOW", "MEDIUM", "HIGH"})

DOCUMENT_TYPES = (
    "USER_ACTIVITY",
    "USER_PROFILE",
    "USER_SEGMENT",
    "USER_CHOICE",
    "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS",
    "USER_IDENTIFIERS_DELETION",
    "USER_DEVICE_POINTS_DELETION",
    "USER_POINTS_DELETION",
)

#: Known CSV columns (USER_SEGMENT is the only type that accepts CSV).
CSV_COLUMNS = frozenset(
    {
        "operation",
        "expiration_duration",
        "expiration_ts",
        "compartment_id",
        "user_account_id",
        "email_hash",
        "user_agent_id",
        "segment_id",
        "segment_technical_name",
        "data_bag",
    }
)
#: Columns a USER_SEGMENT CSV header must name.
CSV_REQUIRED_COLUMNS = frozenset({"operation", "expiration_duration"})

# --- execution statuses -------------------------------------------------------------------------
# Every classification of a status goes through ``normalize_status``: the server may spell a status
# in any case (``succeeded``, ``Succeeded``) and with stray spaces; the sets hold the upper-case names.


class ExecutionStatus(StrEnum):
    """The execution statuses we know (``docs/API.md``): the public five and the web client's."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING_DEPENDENT_JOB = "WAITING_DEPENDENT_JOB"
    SCHEDULED = "SCHEDULED"
    SUCCEEDED = "SUCCEEDED"
    SUCCESS = "SUCCESS"  # the same as SUCCEEDED
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    LOST = "LOST"
    EXECUTOR_NOT_RESPONDING = "EXECUTOR_NOT_RESPONDING"


def _names(*statuses: ExecutionStatus) -> frozenset[str]:
    return frozenset(s.value for s in statuses)


#: Not started yet: waiting in the server's queue.
WAITING_STATUSES = _names(ExecutionStatus.PENDING, ExecutionStatus.WAITING_DEPENDENT_JOB, ExecutionStatus.SCHEDULED)
#: Terminal, the file was processed (possibly with failed lines: see ``result.total_failure``).
SUCCESS_STATUSES = _names(ExecutionStatus.SUCCEEDED, ExecutionStatus.SUCCESS)
#: Terminal, the execution as a whole failed or was given up.
FAILURE_STATUSES = _names(
    ExecutionStatus.FAILED, ExecutionStatus.CANCELED, ExecutionStatus.LOST, ExecutionStatus.EXECUTOR_NOT_RESPONDING
)
TERMINAL_STATUSES = SUCCESS_STATUSES | FAILURE_STATUSES
KNOWN_STATUSES = _names(*ExecutionStatus)


def normalize_status(status: object) -> str | None:
    """A status as the sets spell it: stripped and upper case. ``None`` for no status (``None``,
    an empty string, or anything that is not a string). An unknown status is normalised too."""
    if not isinstance(status, str):
        return None
    return status.strip().upper() or None


def is_known(status: object) -> bool:
    """True for one of the ``ExecutionStatus`` names, in any case."""
    return normalize_status(status) in KNOWN_STATUSES


def is_terminal(status: object) -> bool:
    """True for a status after which an execution never changes again."""
    return normalize_status(status) in TERMINAL_STATUSES


def is_success(status: object) -> bool:
    """True for a terminal status of a processed file (SUCCEEDED, SUCCESS)."""
    return normalize_status(status) in SUCCESS_STATUSES


def is_failure(status: object) -> bool:
    """True for a terminal status of an execution that failed (FAILED, CANCELED, LOST, ...)."""
    return normalize_status(status) in FAILURE_STATUSES


# --- mime rules ---------------------------------------------------------------------------------


def allowed_mime_types(document_type: str) -> frozenset[str]:
    """Only USER_SEGMENT accepts CSV; every other type is NDJSON only."""
    if document_type == "USER_SEGMENT":
        return frozenset({NDJSON, CSV})
    return frozenset({NDJSON})


#: Spellings met in some documentation pages -> the document type the API knows.
MISSPELLED_DOCUMENT_TYPES: Mapping[str, str] = {"USER_DEVICE_POINT_DELETION": "USER_DEVICE_POINTS_DELETION"}


def spelling_hint(document_type: object) -> str:
    """``"; did you mean ..."`` for a document type some pages misspell, else ``""``."""
    right = MISSPELLED_DOCUMENT_TYPES.get(str(document_type))
    if right is None:
        return ""
    return f"; did you mean {right}? (some documentation pages spell it {document_type}: the API knows {right})"


def check_import_settings(document_type: str, mime_type: str, priority: str | None) -> tuple[str, str] | None:
    """Check a document import's settings. Returns ``(field, reason)`` for the first bad one."""
    if document_type not in DOCUMENT_TYPES:
        return (
            "document_type",
            f"unknown document_type {document_type!r}; known: {', '.join(DOCUMENT_TYPES)}"
            + spelling_hint(document_type),
        )
    if mime_type not in CONTENT_TYPES:
        return "mime_type", f"unknown mime_type {mime_type!r}; known: {', '.join(CONTENT_TYPES)}"
    if mime_type not in allowed_mime_types(document_type):
        return (
            "mime_type",
            f"{document_type} accepts only APPLICATION_X_NDJSON (CSV is for USER_SEGMENT)",
        )
    if priority is not None and priority not in PRIORITIES:
        return "priority", f"unknown priority {priority!r}; known: LOW, MEDIUM, HIGH"
    return None


# --- identifiers --------------------------------------------------------------------------------


def _present(record: Mapping[str, Any], key: str) -> bool:
    value = record.get(key)
    return value is not None and value != ""


def _flat_identifiers(record: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Names of the user identifiers a flat record carries (``prefix`` is ``$`` for activities)."""
    found = []
    if _present(record, prefix + "user_account_id"):
        found.append("user_account_id")
    if _present(record, prefix + "email_hash"):
        found.append("email_hash")
    if _present(record, prefix + "user_agent_id"):
        found.append("user_agent_id")
    return found


def _check_one_identifier(record: Mapping[str, Any], prefix: str = "") -> str | None:
    found = _flat_identifiers(record, prefix)
    if not found:
        names = f"{prefix}user_agent_id, {prefix}user_account_id (+ {prefix}compartment_id), {prefix}email_hash"
        return f"missing user identifier (one of {names})"
    if len(found) > 1:
        return "two identifiers (" + ", ".join(prefix + f for f in found) + "): a line carries exactly one"
    if found[0] == "email_hash" and prefix:
        value = record.get("$email_hash")
        if not isinstance(value, (str, dict)):
            return "$email_hash must be a string or an object"
    return None


_IDENTIFIER_FIELDS = {
    "USER_ACCOUNT": "user_account_id",
    "USER_EMAIL": "hash",
    "USER_AGENT": "user_agent_id",
}


def _check_identifier_object(obj: Any, allowed: Mapping[str, str] = _IDENTIFIER_FIELDS) -> str | None:
    if not isinstance(obj, dict):
        return "identifier must be an object"
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        return f"identifier type must be one of {', '.join(allowed)} (got {kind!r})"
    field = allowed[kind]
    if not _present(obj, field):
        return f"identifier of type {kind} needs '{field}'"
    return None


# --- per-type checks ----------------------------------------------------------------------------


def _need(record: Mapping[str, Any], *keys: str) -> str | None:
    missing = [k for k in keys if not _present(record, k)]
    if missing:
        return "missing required field" + ("s " if len(missing) > 1 else " ") + ", ".join(missing)
    return None


def _check_operation(record: Mapping[str, Any], allowed: Iterable[str]) -> str | None:
    op = record.get("operation")
    allowed = tuple(allowed)
    if op is None:
        return "missing required field operation"
    if op not in allowed:
        return f"operation must be {' or '.join(allowed)} (got {op!r})"
    return None


def _check_activity(r: Mapping[str, Any]) -> str | None:
    reason = _need(r, "$ts", "$type")
    if reason:
        return reason
    if not isinstance(r["$ts"], int) or isinstance(r["$ts"], bool):
        return "$ts must be an integer (epoch milliseconds)"
    events = r.get("$events")
    if events is not None and not isinstance(events, list):
        return "$events must be a list"
    return _check_one_identifier(r, "$")


def _check_profile(r: Mapping[str, Any]) -> str | None:
    reason = _check_operation(r, ("UPSERT", "DELETE")) or _check_one_identifier(r)
    if reason:
        return reason
    if r["operation"] == "UPSERT" and not isinstance(r.get("user_profile"), dict):
        return "operation UPSERT needs a user_profile object"
    return None


def _is_non_negative_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isdigit()


def _check_segment(r: Mapping[str, Any]) -> str | None:
    reason = _check_operation(r, ("UPDATE", "DELETE"))
    if reason:
        return reason
    if r.get("expiration_duration") in (None, ""):
        return "missing required field expiration_duration"
    if not _is_non_negative_int(r["expiration_duration"]):
        return "expiration_duration must be a non-negative integer (minutes)"
    if not (_present(r, "segment_id") or _present(r, "segment_technical_name")):
        return "missing segment (segment_id or segment_technical_name)"
    return _check_one_identifier(r)


def _check_choice(r: Mapping[str, Any]) -> str | None:
    reason = _check_operation(r, ("UPSERT", "DELETE")) or _check_one_identifier(r)
    if reason:
        return reason
    choice = r.get("user_choice")
    if r["operation"] == "UPSERT":  # docs: an UPSERT needs force_replace, user_choice and both its keys
        if not _present(r, "force_replace"):
            return "operation UPSERT needs force_replace"
        if not isinstance(choice, dict):
            return "operation UPSERT needs a user_choice object"
        missing = [k for k in ("$processing_id", "$choice_ts") if not _present(choice, k)]
        if missing:
            return "operation UPSERT needs user_choice." + " and user_choice.".join(missing)
        return None
    if not isinstance(choice, dict) or not _present(choice, "$processing_id"):
        return "missing required field user_choice.$processing_id"
    return None


def _check_association(r: Mapping[str, Any]) -> str | None:
    ids = r.get("identifiers")
    if not isinstance(ids, list):
        return "missing required field identifiers (a list)"
    if len(ids) < 2:
        return "identifiers needs at least two items"
    for i, obj in enumerate(ids):
        reason = _check_identifier_object(obj)
        if reason:
            return f"identifiers[{i}]: {reason}"
    return None


def _check_identifier_deletion(r: Mapping[str, Any]) -> str | None:
    return _check_identifier_object(r)


def _check_device_point_deletion(r: Mapping[str, Any]) -> str | None:
    reason = _check_identifier_object(r, {"USER_AGENT": "user_agent_id"})
    if reason:
        return reason
    uid = str(r["user_agent_id"])
    if not uid.startswith(("vec:", "udp:")):
        return "user_agent_id must start with vec: or udp:"
    return None


def _check_point_deletion(r: Mapping[str, Any]) -> str | None:
    return _check_identifier_object(r, {**_IDENTIFIER_FIELDS, "USER_POINT": "user_point_id"})


_CHECKS = {
    "USER_ACTIVITY": _check_activity,
    "USER_PROFILE": _check_profile,
    "USER_SEGMENT": _check_segment,
    "USER_CHOICE": _check_choice,
    "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS": _check_association,
    "USER_IDENTIFIERS_DELETION": _check_identifier_deletion,
    "USER_DEVICE_POINTS_DELETION": _check_device_point_deletion,
    "USER_POINTS_DELETION": _check_point_deletion,
}


def check_record(document_type: str, record: Any) -> str | None:
    """Check one decoded record against its document type. ``None`` means valid."""
    if not isinstance(record, dict):
        return f"not a JSON object (a JSON {type(record).__name__.replace('dict', 'object')})"
    return _CHECKS[document_type](record)


def check_ndjson_line(document_type: str, line: bytes) -> str | None:
    """Parse one NDJSON line (without its line end) and check it. ``None`` means valid."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid UTF-8"
        return f"not valid JSON: {exc}"
    if not isinstance(record, dict):
        kind = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
        return f"not a JSON object (a JSON {kind.get(type(record), 'null')})"
    return _CHECKS[document_type](record)


# --- CSV ----------------------------------------------------------------------------------------


def check_csv_header(columns: list[str]) -> str | None:
    """Check a USER_SEGMENT CSV header row (already split into column names)."""
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if len(unknown) == len(columns):
        return "no header row: the first line names no known column; every CSV file must start with the header row"
    if unknown:
        return f"unknown CSV column(s) {', '.join(unknown)}; known: {', '.join(sorted(CSV_COLUMNS))}"
    missing = CSV_REQUIRED_COLUMNS - set(columns)
    if missing:
        return f"CSV header lacks column(s) {', '.join(sorted(missing))} (is the header row missing?)"
    if len(set(columns)) != len(columns):
        return "CSV header names a column twice"
    return None


def check_csv_row(header: list[str], row: list[str]) -> str | None:
    """Check one CSV row (already split) of a USER_SEGMENT file."""
    if len(row) != len(header):
        return f"expected {len(header)} fields, got {len(row)}"
    return _check_segment(dict(zip(header, row, strict=True)))


def record_digest(record: bytes) -> bytes:
    """Digest identifying one record: blake2b-128 of its bytes without the trailing line end.

    Used by the emulator's accounting and by tests to prove each record arrived exactly once.
    """
    if record.endswith(b"\n"):
        record = record[:-2] if record.endswith(b"\r\n") else record[:-1]
    return hashlib.blake2b(record, digest_size=16).digest()

"""Errors no retry or resume can fix, and what to tell the user: the cause and the fix.

The run ends at once on one of them: exit 2 (outcome ``nothing_sent``) when nothing was sent yet,
exit 1 (``stopped_on_error``) once some batches were accepted. ``report.json`` (``final_error``),
``report.html`` and ``status`` say the same ``cause`` and ``fix``.

- 401 before anything was sent: the token is wrong. 401 after earlier successes is an expired or
  revoked token, which a new token and ``resume`` fix: not final (the run stays ``incomplete``,
  exit 3), with the hint that temporary tokens last one hour.
- 403: the token's user may not import into the datamart.
- 404 on the import or the datamart: the import is unknown (deleted? another datamart?), or the URL
  is not the API's base URL.
- 400 on the import's creation: the server refuses the import's settings.
"""

from __future__ import annotations

from pipeline.config import Config
from pipeline.errors import ApiError
from pipeline.reporting.types import FinalError

TEMPORARY_TOKENS = "temporary tokens (from a user login) last one hour: a batch job needs a long-term API token"


def token_refused_hint(env: str) -> str:
    """The hint of a 401 after earlier successes: resumable."""
    return f"set a valid token in {env} ({TEMPORARY_TOKENS}), then `pipeline resume` the run"


def final_error_of(exc: ApiError, config: Config, *, creating: bool, import_id: str | None) -> FinalError | None:
    """The cause and fix of ``exc`` when no retry or resume fixes it, else ``None``.

    ``creating``: the request was the document import's creation; ``import_id`` the import the run
    uploads into (None before it has one)."""
    env, datamart, url = config.api.token_env, config.import_.datamart_id, config.api.url
    status = exc.status
    http = f"HTTP {status} {exc.error_code}" if exc.error_code else f"HTTP {status}"  # the server's code kept
    if status == 401:
        cause = f"the API token was refused ({http})"
        fix = f"check {env}: it must hold a valid API token ({TEMPORARY_TOKENS})"
    elif status == 403:
        cause = f"the API token may not import into datamart {datamart} ({http})"
        fix = f"give the token's user the right to import into datamart {datamart}, or fix import.datamart_id"
    elif status == 404 and (creating or not import_id):
        cause = f"the API answered 404 to creating a document import in datamart {datamart}"
        fix = f"check api.url ({url}: the base URL, without /v1) and import.datamart_id"
    elif status == 404:
        cause = f"the document import {import_id} is unknown to the server ({http}): deleted, or of another datamart?"
        fix = f"check import.id and import.datamart_id ({datamart}) and api.url ({url}: without /v1)"
    elif status == 400 and creating:
        cause = f"the server refused to create the document import ({http}: {exc.message})"
        fix = "check the [import] section (document_type, mime_type, encoding, priority, name)"
    else:
        return None
    return {"cause": cause, "fix": fix, "status": str(status)}


def final_hint(error: FinalError) -> str:
    return f"{error['cause']}: {error['fix']}"

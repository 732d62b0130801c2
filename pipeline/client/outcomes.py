"""What an upload ends with: the execution it created, or the word that it may have created one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import ServiceError


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The execution an upload created, after ``attempts`` tries."""

    execution: dict[str, Any]
    attempts: int
    elapsed_s: float


class UploadUnsettled(ServiceError):
    """An upload attempt ended in a way that may have created its execution.

    A connection lost once the body was sent, a timeout, a 5xx (a gateway's 504 while the backend
    goes on), a 2xx that cannot be read, carries an error envelope or has no execution ``id``. The
    client never sends such a file again by itself: the run settles it by looking the file name up
    over a window of time (see ``pipeline.engine.settle``) and sends again only when the window
    ends without a sighting.
    """

    def __init__(self, cause: ServiceError, attempts: int) -> None:
        self.cause = cause
        self.attempts = attempts
        super().__init__(f"{cause} (the upload may have created its execution)")

"""The outcomes of a run (``report.json``'s ``outcome``), one vocabulary; each has one exit code
(``reporting.report.outcome_of`` decides; the README's table says what a scheduler does).
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"  # exit 0: every record accepted, or the errors within the budget
    COMPLETED_WITH_FAILURES = "completed_with_failures"  # exit 1
    #: exit 1: the rejects were over the error budget while reading: the run stopped sending
    TOO_MANY_ERRORS = "too_many_errors"
    #: exit 1: an error no retry or resume can fix (a refused right, an unknown import) after some
    #: batches were accepted; the report's ``final_error`` names the cause and the fix
    STOPPED_ON_ERROR = "stopped_on_error"
    #: exit 2: the same before anything was sent (a refused token, an unknown import or datamart)
    NOTHING_SENT = "nothing_sent"
    INTERRUPTED = "interrupted"  # exit 3
    INCOMPLETE = "incomplete"  # exit 3
    COMPLETED_WITH_DUPLICATES = "completed_with_duplicates"  # exit 4
    #: exit 4: finished, but whether some uploads created their execution cannot be known from this
    #: server by any lookup (it does not report file names, its list cannot be walked to the end):
    #: the report's ``unsettled`` lists them by file and lines; a resume could only ask again
    COMPLETED_WITH_UNKNOWNS = "completed_with_unknowns"

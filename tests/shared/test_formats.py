"""The per-document-type record rules shared by the reader and the emulator."""

import pytest

from pipeline import formats

VALID = {
    "USER_ACTIVITY": b'{"$email_hash":{"$email":"jane@example.com"},"$type":"TOUCH","$session_status":"NO_SESSION",'
    b'"$ts":1605262037783,"$events":[{"$event_name":"store-visit","$ts":1605262037783,"$properties":{}}]}',
    "USER_PROFILE": b'{"operation":"UPSERT","compartment_id":"1000","user_account_id":"u1","force_replace":true,'
    b'"user_profile":{"first_name":"Jane"}}',
    "USER_SEGMENT": b'{"operation":"UPDATE","expiration_duration":0,"compartment_id":"1000","user_account_id":"u1",'
    b'"segment_id":"123"}',
    "USER_CHOICE": b'{"operation":"UPSERT","email_hash":"ab","force_replace":true,'
    b'"user_choice":{"$processing_id":"1","$choice_ts":1}}',
    "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS": b'{"identifiers":[{"type":"USER_ACCOUNT","user_account_id":"u1",'
    b'"compartment_id":"1000"},{"type":"USER_EMAIL","hash":"ab12cd"}]}',
    "USER_IDENTIFIERS_DELETION": b'{"type":"USER_AGENT","user_agent_id":"vec:89998434"}',
    "USER_DEVICE_POINTS_DELETION": b'{"type":"USER_AGENT","user_agent_id":"udp:1"}',
    "USER_POINTS_DELETION": b'{"type":"USER_POINT","user_point_id":"0b7c1f9e-1111-4c3a-9d7e-000000000001"}',
}


@pytest.mark.parametrize("document_type", formats.DOCUMENT_TYPES)
def test_documented_examples_are_valid(document_type):
    assert formats.check_ndjson_line(document_type, VALID[document_type]) is None


@pytest.mark.parametrize(
    "document_type, line, reason",
    [
        ("USER_ACTIVITY", b'{"$type":"TOUCH","$ts":1}', "missing user identifier"),
        (
            "USER_ACTIVITY",
            b'{"$user_agent_id":"vec:1","$email_hash":"x","$type":"TOUCH","$ts":1}',
            "two identifiers",
        ),
        ("USER_ACTIVITY", b'{"$user_agent_id":"vec:1","$type":"TOUCH"}', "missing required field $ts"),
        ("USER_ACTIVITY", b"[1, 2]", "a JSON array"),
        ("USER_ACTIVITY", b'{"$ts": 1', "not valid JSON"),
        ("USER_ACTIVITY", b'{"a": "\xff"}', "invalid UTF-8"),
        ("USER_PROFILE", b'{"operation":"UPSERT","user_agent_id":"vec:1"}', "needs a user_profile"),
        ("USER_PROFILE", b'{"operation":"MERGE","user_agent_id":"vec:1"}', "operation must be"),
        (
            "USER_SEGMENT",
            b'{"operation":"UPDATE","user_agent_id":"vec:1","segment_id":"1"}',
            "expiration_duration",
        ),
        (
            "USER_SEGMENT",
            b'{"operation":"UPDATE","expiration_duration":0,"user_agent_id":"vec:1"}',
            "segment",
        ),
        (
            "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS",
            b'{"identifiers":[{"type":"USER_EMAIL","hash":"a"}]}',
            "two",
        ),
        ("USER_DEVICE_POINTS_DELETION", b'{"type":"USER_AGENT","user_agent_id":"abc"}', "vec: or udp:"),
        ("USER_CHOICE", b'{"operation":"DELETE","user_agent_id":"vec:1","user_choice":{}}', "$processing_id"),
        ("USER_CHOICE", b'{"operation":"UPSERT","user_agent_id":"vec:1","user_choice":{}}', "needs force_replace"),
        (
            "USER_CHOICE",
            b'{"operation":"UPSERT","user_agent_id":"vec:1","force_replace":true,"user_choice":{"$processing_id":"1"}}',
            "needs user_choice.$choice_ts",
        ),
        (
            "USER_CHOICE",
            b'{"operation":"UPSERT","user_agent_id":"vec:1","force_replace":false,"user_choice":{}}',
            "needs user_choice.$processing_id and user_choice.$choice_ts",
        ),
    ],
)
def test_bad_records_name_the_reason(document_type, line, reason):
    result = formats.check_ndjson_line(document_type, line)
    assert result is not None and reason in result


def test_csv_rules_apply_to_user_segment_only():
    assert formats.allowed_mime_types("USER_SEGMENT") == {formats.NDJSON, formats.CSV}
    assert formats.check_import_settings("USER_ACTIVITY", formats.CSV, None)[0] == "mime_type"
    assert formats.check_import_settings("USER_SEGMENT", formats.CSV, "HIGH") is None
    assert formats.check_import_settings("NOPE", formats.NDJSON, None)[0] == "document_type"
    assert formats.check_import_settings("USER_SEGMENT", formats.CSV, "URGENT")[0] == "priority"


def test_csv_header_and_rows():
    header = ["operation", "expiration_duration", "user_account_id", "compartment_id", "segment_id"]
    assert formats.check_csv_header(header) is None
    assert "unknown CSV column" in formats.check_csv_header(header + ["colour"])
    assert "lacks column" in formats.check_csv_header(["user_account_id", "segment_id"])
    assert formats.check_csv_row(header, ["UPDATE", "0", "u1", "1000", "7"]) is None
    assert "expected 5 fields" in formats.check_csv_row(header, ["UPDATE", "0"])


def test_record_digest_ignores_the_line_end():
    assert formats.record_digest(b"abc\n") == formats.record_digest(b"abc\r\n") == formats.record_digest(b"abc")
    assert formats.record_digest(b"abc") != formats.record_digest(b"abd")


def test_status_classes():
    assert formats.is_terminal("SUCCESS") and formats.is_success("SUCCESS")
    assert formats.is_terminal("LOST") and not formats.is_success("LOST")
    assert not formats.is_terminal("RUNNING") and not formats.is_terminal("SOMETHING_NEW")


S = formats.ExecutionStatus
#: status -> (terminal, success, failure), written out rather than derived from the sets under test
CLASSIFICATION = {
    S.PENDING: (False, False, False),
    S.RUNNING: (False, False, False),
    S.WAITING_DEPENDENT_JOB: (False, False, False),
    S.SCHEDULED: (False, False, False),
    S.SUCCEEDED: (True, True, False),
    S.SUCCESS: (True, True, False),
    S.FAILED: (True, False, True),
    S.CANCELED: (True, False, True),
    S.LOST: (True, False, True),
    S.EXECUTOR_NOT_RESPONDING: (True, False, True),
}


def test_the_classification_covers_every_known_status():
    assert set(CLASSIFICATION) == set(S) and len(S) == 10
    assert formats.KNOWN_STATUSES == {s.value for s in S}


@pytest.mark.parametrize("status", list(S), ids=str)
@pytest.mark.parametrize("spell", [str.upper, str.lower, str.title], ids=["upper", "lower", "title"])
def test_each_known_status_is_classified_in_any_case(status, spell):
    spelled = spell(status.value)
    terminal, success, failure = CLASSIFICATION[status]
    assert formats.normalize_status(spelled) == status.value
    assert formats.is_known(spelled)
    assert formats.is_terminal(spelled) is terminal
    assert formats.is_success(spelled) is success
    assert formats.is_failure(spelled) is failure


@pytest.mark.parametrize("status", ["DONE", "IN_PROGRESS", "succeed", "SUCCEEDED_WITH_ERRORS", "FAIL"])
def test_an_unknown_status_is_neither_known_nor_terminal(status):
    assert formats.normalize_status(status) == status.upper()
    assert not formats.is_known(status) and not formats.is_terminal(status)
    assert not formats.is_success(status) and not formats.is_failure(status)


@pytest.mark.parametrize("status", [None, "", "   ", 5, b"SUCCEEDED", ["SUCCEEDED"]])
def test_no_status_is_none_and_classified_as_nothing(status):
    assert formats.normalize_status(status) is None
    assert not formats.is_known(status) and not formats.is_terminal(status)
    assert not formats.is_success(status) and not formats.is_failure(status)


def test_a_status_is_stripped():
    assert formats.normalize_status("  succeeded\n") == "SUCCEEDED" and formats.is_success(" Succeeded ")


def test_the_old_set_names_still_hold_plain_upper_case_names():
    assert formats.SUCCESS_STATUSES == {"SUCCEEDED", "SUCCESS"}
    assert formats.FAILURE_STATUSES == {"FAILED", "CANCELED", "LOST", "EXECUTOR_NOT_RESPONDING"}
    assert formats.TERMINAL_STATUSES == formats.SUCCESS_STATUSES | formats.FAILURE_STATUSES
    assert formats.WAITING_STATUSES == {"PENDING", "WAITING_DEPENDENT_JOB", "SCHEDULED"}
    assert formats.KNOWN_STATUSES == formats.TERMINAL_STATUSES | formats.WAITING_STATUSES | {"RUNNING"}
    assert all(type(name) is str for name in formats.KNOWN_STATUSES)
    assert formats.ExecutionStatus.SUCCEEDED == "SUCCEEDED" and "SUCCEEDED" in formats.SUCCESS_STATUSES


@pytest.mark.parametrize(
    ("document_type", "line"),
    [
        ("USER_ACTIVITY", b'{"$user_account_id":"u1","$type":"TOUCH","$ts":1}'),
        ("USER_PROFILE", b'{"operation":"UPSERT","user_account_id":"u1","user_profile":{}}'),
        ("USER_SEGMENT", b'{"operation":"UPDATE","expiration_duration":0,"user_account_id":"u1","segment_id":"1"}'),
        ("USER_CHOICE", b'{"operation":"DELETE","user_account_id":"u1","user_choice":{"$processing_id":"1"}}'),
    ],
)
def test_compartment_id_is_optional_beside_user_account_id(document_type, line):
    """docs: without compartment_id the datamart's default compartment is used."""
    assert formats.check_ndjson_line(document_type, line) is None


def test_the_singular_device_point_deletion_is_refused_with_the_plural():
    field, reason = formats.check_import_settings("USER_DEVICE_POINT_DELETION", formats.NDJSON, None)
    assert field == "document_type"
    assert "did you mean USER_DEVICE_POINTS_DELETION" in reason

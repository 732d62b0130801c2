"""What ``final_errors`` calls final, and the cause and fix it gives (the 400 on an import's
creation cannot come from the emulator, which checks settings as the config does)."""

from __future__ import annotations

from pipeline.config import Config
from pipeline.engine.final_errors import final_error_of
from pipeline.errors import ApiError

CONFIG = Config(api={"url": "https://api.example.com", "token_env": "MY_TOKEN"}, import_={"datamart_id": "42"})


def test_a_400_on_the_creation_is_final_with_the_import_section_as_the_fix():
    final = final_error_of(ApiError(400, "bad encoding"), CONFIG, creating=True, import_id=None)
    assert final == {
        "cause": "the server refused to create the document import (HTTP 400: bad encoding)",
        "fix": "check the [import] section (document_type, mime_type, encoding, priority, name)",
        "status": "400",
    }


def test_a_400_on_an_upload_and_5xx_are_not_final():
    assert final_error_of(ApiError(400, "x"), CONFIG, creating=False, import_id="7") is None
    assert final_error_of(ApiError(503, "x"), CONFIG, creating=True, import_id=None) is None


def test_404_names_the_url_on_creation_and_the_import_otherwise():
    on_create = final_error_of(ApiError(404, "no"), CONFIG, creating=True, import_id=None)
    assert on_create is not None and "without /v1" in on_create["fix"]
    on_import = final_error_of(ApiError(404, "no"), CONFIG, creating=False, import_id="7")
    assert on_import is not None and "document import 7 is unknown" in on_import["cause"]


def test_401_names_the_token_variable_and_the_hour_of_temporary_tokens():
    final = final_error_of(ApiError(401, "no"), CONFIG, creating=True, import_id=None)
    assert final is not None and "check MY_TOKEN" in final["fix"] and "one hour" in final["fix"]

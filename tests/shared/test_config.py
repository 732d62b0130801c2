"""The TOML config: defaults, checks naming the key, no secret in it."""

from pathlib import Path

import pytest

from pipeline.api_token import check_transport_security, read_token
from pipeline.config import (
    Config,
    check_target,
    config_from_dict,
    load_config,
)
from pipeline.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_defaults_target_nothing_a_run_needs_a_url_or_the_emulator_on_purpose():
    config = load_config(None)
    assert config.api.url == "https://api.mediarithmics.com" and not config.uses_embedded_emulator
    with pytest.raises(ConfigError, match="--emulator") as info:  # the API, with the emulator's datamart id
        check_target(config)
    assert info.value.key == "import.datamart_id" and "MICS_API_TOKEN" in str(info.value)
    check_target(config.replace(**{"import": {"datamart_id": "1502"}}))
    check_target(config.replace(api={"url": "embedded"}))
    check_target(config.replace(api={"url": "http://127.0.0.1:8080"}))  # a local emulator: any datamart
    with pytest.raises(ConfigError, match="--emulator") as info:
        check_target(config.replace(api={"url": ""}))
    assert info.value.key == "api.url"
    assert config.batch.max_bytes == 100_000_000 and config.upload.concurrency == 16
    assert config.upload.adaptive and config.batch.sizing == "adaptive" and config.upload.max_requests_per_s == 0
    assert config.import_.document_type == "USER_ACTIVITY"


def test_example_config_is_valid_and_complete():
    config = load_config(EXAMPLE)
    assert config == Config().replace(api={"url": "https://api.mediarithmics.com"})


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"batch": {"max_bytes": 100_000_001}}, "batch.max_bytes", "between"),
        ({"batch": {"colour": 1}}, "batch.colour", "unknown key"),
        ({"upload": {"concurrency": "4"}}, "upload.concurrency", "must be an integer"),
        ({"batch": {"validate": 1}}, "batch.validate", "true or false"),
        ({"import": {"mime_type": "TEXT_CSV"}}, "import.mime_type", "CSV is for USER_SEGMENT"),
        ({"import": {"document_type": "USER_THING"}}, "import.document_type", "must be one of"),
        ({"import": {"name": "{nope}"}}, "import.name", "bad template"),
        ({"poll": {"interval_s": 10, "max_interval_s": 1}}, "poll.max_interval_s", "at least"),
        ({"api": {"url": "ftp://x"}}, "api.url", "http(s)"),
        ({"imports": {}}, "imports", "unknown section"),
    ],
)
def test_bad_values_name_the_key(data, key, words):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.key == key
    assert words in str(info.value)


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[batch\nmax_bytes = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_ids_may_be_numbers_and_replace_returns_a_checked_copy():
    config = config_from_dict({"import": {"datamart_id": 1234, "id": 55}})
    assert config.import_.datamart_id == "1234" and config.import_.id == "55"
    changed = config.replace(batch={"max_bytes": 2_000_000})
    assert changed.batch.max_bytes == 2_000_000 and config.batch.max_bytes == 100_000_000
    with pytest.raises(ConfigError):
        config.replace(batch={"max_bytes": 10**9})


def test_token_comes_from_the_environment_only():
    config = Config()
    assert read_token(config, {"MICS_API_TOKEN": "s3cret"}) == "s3cret"
    with pytest.raises(ConfigError, match="MICS_API_TOKEN is not set"):
        read_token(config, {})
    assert "s3cret" not in repr(config)


def test_plain_http_only_to_loopback():
    check_transport_security("http://127.0.0.1:8787", False)
    check_transport_security("https://api.mediarithmics.com", False)
    with pytest.raises(ConfigError, match="allow-insecure-http"):
        check_transport_security("http://api.example.com", False)
    check_transport_security("http://api.example.com", True)

"""A token that cannot go into an Authorization header as it is gets refused, without being shown."""

from __future__ import annotations

import pytest

from pipeline.api_token import MAX_TOKEN_BYTES, check_token, read_token
from pipeline.config import Config
from pipeline.errors import ConfigError

SECRET = "SECRET-tok-3141592653589793"


def _refused(token: str, **kwargs: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check_token(token, **kwargs)
    exc = info.value
    assert exc.key == "api.token_env"
    for piece in {token, token[:8], token[-8:]} - {""}:
        assert piece not in str(exc), "the message must not show the token"
    return exc


def test_a_token_with_a_crlf_inside_is_refused():
    exc = _refused(SECRET[:10] + "\r\n" + SECRET[10:], env="MICS_API_TOKEN")
    assert "carriage return (CR) at character 11 of 29" in str(exc)
    assert "MICS_API_TOKEN" in str(exc) and "Windows line ends" in str(exc)


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\n", "line feed (LF)"),
        ("\x00", "NUL byte"),
        ("\t", "tab"),
        ("\x1b", "U+001B"),
        ("\x7f", "U+007F"),
        ("\x85", "U+0085"),
    ],
)
def test_control_characters_are_refused(char, name):
    assert name in str(_refused(SECRET + char + SECRET))


def test_an_oversized_token_is_refused():
    exc = _refused("a" * 5000)
    assert "5,000 bytes long, over 4,096" in str(exc)
    assert "bytes long" in str(_refused("é" * 2100))  # 4,200 bytes in UTF-8
    check_token("a" * MAX_TOKEN_BYTES)


def test_an_empty_token_is_refused():
    assert "empty" in str(_refused(""))


def test_ordinary_tokens_pass():
    for token in (SECRET, "a.b_c~d+e/f=", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "x"):
        check_token(token)


def test_read_token_checks_the_token():
    config = Config()
    with pytest.raises(ConfigError, match="MICS_API_TOKEN.*line feed") as info:
        read_token(config, {"MICS_API_TOKEN": "abc\ndef"})
    assert "abc" not in str(info.value)
    with pytest.raises(ConfigError, match="5,000 bytes"):
        read_token(config, {"MICS_API_TOKEN": "t" * 5000})
    assert read_token(config, {"MICS_API_TOKEN": f"  {SECRET}\r\n"}) == SECRET  # surrounding blanks go
    with pytest.raises(ConfigError, match="MICS_API_TOKEN is not set"):
        read_token(config, {"MICS_API_TOKEN": " \r\n"})

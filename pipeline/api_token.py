"""The API token: read from the environment variable the config names, refused when it could not
go into an ``Authorization`` header as it is, and never sent in clear to anything but loopback.

Apart from ``config``: the config only names the variable (``api.token_env``) and holds no secret;
these are the checks of the secret itself, and of where it may be sent, which the client (each
request's header) and the engine (before a run) make.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline.config import is_loopback_url
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config import Config

MAX_TOKEN_BYTES = 4096  # longer is no API token: most likely a file read by mistake


_CONTROL_NAMES = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\x00": "a NUL byte", "\t": "a tab"}


def read_token(config: Config, environ: Mapping[str, str] = os.environ) -> str:
    """The API token from the environment variable the config names (surrounding blanks removed),
    checked by ``check_token``."""
    token = environ.get(config.api.token_env, "").strip()
    if not token:
        raise ConfigError(
            "api.token_env",
            f"environment variable {config.api.token_env} is not set (it must hold the API token)",
        )
    check_token(token, env=config.api.token_env)
    return token


def check_token(token: str, *, env: str | None = None) -> None:
    """Refuse a token that cannot go into an ``Authorization`` header as it is: empty, over
    ``MAX_TOKEN_BYTES`` (UTF-8), or holding a control character (C0, DEL, C1; CR and LF would split
    the header). ``ConfigError`` on key ``api.token_env``; its message never holds the token.
    ``env`` names the variable the token came from, for the message.
    """
    source = f"the API token (environment variable {env})" if env else "the API token"
    if not token:
        raise ConfigError("api.token_env", f"{source} is empty")
    size = len(token.encode("utf-8", "surrogatepass"))
    if size > MAX_TOKEN_BYTES:
        raise ConfigError(
            "api.token_env", f"{source} is {size:,} bytes long, over {MAX_TOKEN_BYTES:,}: is it really the token?"
        )
    for position, char in enumerate(token, 1):
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            what = _CONTROL_NAMES.get(char, f"a control character (U+{code:04X})")
            why = "; was it read from a file with Windows line ends, or pasted with a line break?"
            raise ConfigError(
                "api.token_env",
                f"{source} holds {what} at character {position} of {len(token)}" + (why if char in "\r\n" else ""),
            )


def check_transport_security(url: str, allow_insecure_http: bool) -> None:
    """Refuse plain http:// to anything but loopback unless explicitly allowed."""
    if urlsplit(url).scheme == "http" and not is_loopback_url(url) and not allow_insecure_http:
        raise ConfigError(
            "api.url",
            f"plain http:// to a non-loopback host would send the token in clear ({url}); "
            "use https:// or pass --allow-insecure-http",
        )

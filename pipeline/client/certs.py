"""aiohttp imported without loading the system's CA certificates until a TLS connection needs them.

aiohttp builds its two default client TLS contexts when ``aiohttp.connector`` is imported, and each
loads the system's trust store (``SSLContext.set_default_verify_paths``): 60-90 ms of every
``pipeline run`` here, a fifth of its start-up, spent even when no TLS connection is ever made (the
emulator, a plain-http proxy on loopback). :func:`import_aiohttp` imports aiohttp with that one call
put off: the contexts are built exactly as aiohttp builds them, and the calls it made are replayed,
on the same contexts and in the same order, just before either is first used to wrap a connection
(or asked for its certificates). A TLS connection thus trusts exactly what it trusted before; it
pays the load once, at its first handshake, instead of every run paying it at start-up.

Nothing changes for an aiohttp already imported (by the caller, or by the emulator), nor for any
other ``SSLContext``: the class attribute is patched only while aiohttp's modules are executed,
and a context gets the loading class only if aiohttp asked it to load the default paths.
"""

from __future__ import annotations

import ssl
import sys
import threading
from typing import Any

_lock = threading.Lock()


class _PathsOnFirstUse(ssl.SSLContext):
    """An aiohttp default context whose ``set_default_verify_paths`` calls were put off: they are
    made (once, whichever thread comes first) before it wraps a connection or lists its CAs."""

    _put_off: int

    def _load_put_off(self) -> None:
        with _lock:
            while self.__dict__.get("_put_off", 0):
                ssl.SSLContext.set_default_verify_paths(self)
                self._put_off -= 1

    def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
        self._load_put_off()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> Any:
        self._load_put_off()
        return super().wrap_bio(*args, **kwargs)

    def get_ca_certs(self, *args: Any, **kwargs: Any) -> Any:
        self._load_put_off()
        return super().get_ca_certs(*args, **kwargs)

    def cert_store_stats(self) -> Any:
        self._load_put_off()
        return super().cert_store_stats()


def import_aiohttp() -> None:
    """Import aiohttp (its client connector) with the trust store's loading put off (see above);
    a no-op when it is already imported."""
    if "aiohttp.connector" in sys.modules:
        return
    asked: list[ssl.SSLContext] = []
    original = ssl.SSLContext.set_default_verify_paths

    def put_off(context: ssl.SSLContext) -> None:
        asked.append(context)

    ssl.SSLContext.set_default_verify_paths = put_off  # type: ignore[method-assign,assignment]
    try:
        import aiohttp.connector  # noqa: F401  (the import is the point)
    finally:
        ssl.SSLContext.set_default_verify_paths = original  # type: ignore[method-assign]
    for context in asked:
        if context.__class__ is ssl.SSLContext:
            context.__class__ = _PathsOnFirstUse
            context._put_off = context.__dict__.get("_put_off", 0) + 1  # type: ignore[attr-defined]
        else:  # a context of another class: load at once, as aiohttp would have
            original(context)

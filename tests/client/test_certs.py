"""aiohttp imported with the trust store's loading put off (``pipeline.client.certs``): nothing is
loaded at start-up, and a TLS connection still trusts exactly the default verify paths.

Each case runs in a fresh interpreter (the loading is put off only when ``pipeline.client`` is what
first imports aiohttp), against a TLS server on 127.0.0.1 whose self-signed certificate is made
with the ``openssl`` command (skipped without it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = r"""
import http.server, ssl, sys, threading

import pipeline.client  # first: it imports aiohttp
import aiohttp
import aiohttp.connector

cert, key = sys.argv[1], sys.argv[2]
put_off = [c.__dict__.get("_put_off") for c in (aiohttp.connector._SSL_CONTEXT_VERIFIED,)]
print("put off at start-up:", put_off)


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()


async def get():
    async with aiohttp.ClientSession() as session:  # aiohttp's default, verified context
        try:
            async with session.get(f"https://127.0.0.1:{server.server_address[1]}/") as resp:
                print("answer:", resp.status, await resp.text())
        except aiohttp.ClientConnectorCertificateError as exc:
            print("refused:", type(exc).__name__)


import asyncio

asyncio.run(get())
print("put off after:", aiohttp.connector._SSL_CONTEXT_VERIFIED.__dict__.get("_put_off"))
"""


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (needed to make a test certificate)")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _client(cert: Path, key: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, str(cert), str(key)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_trust_store_is_loaded_at_the_first_handshake_and_trusted(certificate):
    """SSL_CERT_FILE names the default verify path: trusted only if it was loaded before the
    handshake (after start-up, where it was put off)."""
    out = _client(*certificate, SSL_CERT_FILE=str(certificate[0]))
    assert "put off at start-up: [1]" in out
    assert "answer: 200 hello" in out
    assert "put off after: 0" in out


def test_a_certificate_the_default_paths_do_not_hold_is_still_refused(certificate):
    out = _client(*certificate, SSL_CERT_FILE=os.devnull)
    assert "refused: ClientConnectorCertificateError" in out
    assert "put off after: 0" in out

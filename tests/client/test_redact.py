"""Redaction of the token and of any long enough piece of it; control sequences out of server text."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.client.redact import Redactor, safe_text

TOKEN = "SECRET-tok-3141592653589793"


def _reference(secrets: list[str], text: str, k: int) -> str:
    """The definition, the slow way: every window of ``k`` that is in a secret is covered; each
    covered run becomes one mark; short secrets are replaced whole in what is left."""
    covered = [False] * len(text)
    for s in range(len(text) - k + 1):
        if any(text[s : s + k] in secret for secret in secrets if len(secret) >= k):
            covered[s : s + k] = [True] * k
    pieces, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and covered[j] == covered[i]:
            j += 1
        pieces.append("<token>" if covered[i] else text[i:j])
        i = j
    short = sorted({s for s in secrets if s and len(s) < k}, key=len, reverse=True)
    out = []
    for piece in pieces:
        if piece != "<token>":
            for secret in short:
                piece = piece.replace(secret, "<token>")
        out.append(piece)
    return "".join(out)


def test_the_whole_token_and_its_pieces_go():
    clean = Redactor(TOKEN).clean
    assert clean(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer <token>"
    assert clean(f"{TOKEN}{TOKEN}") == "<token>"
    assert clean("no secret here") == "no secret here"
    assert clean("") == ""
    assert clean(TOKEN[:7] + " and " + TOKEN[-7:]) == TOKEN[:7] + " and " + TOKEN[-7:]  # 7 is not enough
    assert clean("x" + TOKEN[5:13] + "y") == "x<token>y"  # 8 anywhere in it is


def test_a_server_echoing_a_truncated_authorization_header_loses_the_token_part():
    token = "abcdef1234567890" * 4
    echo = f"400, message: Got more than 8190 bytes when reading: b'Authorization: Bearer {token[:12]}...'"
    clean = Redactor(token).clean(echo)
    assert clean == "400, message: Got more than 8190 bytes when reading: b'Authorization: Bearer <token>...'"
    assert "abcdef12" not in clean


def test_a_short_token_is_redacted_only_whole():
    redactor = Redactor("abc123")
    assert redactor.clean("key abc123 and abc12") == "key <token> and abc12"
    assert Redactor("").clean("anything") == "anything"


def test_several_secrets_and_the_min_len():
    redactor = Redactor(["first-secret-value", "tiny", ""], min_len=10)
    assert redactor.clean("a first-secre b secret-va c tiny") == "a <token> b secret-va c <token>"
    with pytest.raises(ValueError):
        Redactor(TOKEN, min_len=1)


def test_the_redactor_does_not_show_the_secret():
    assert TOKEN not in repr(Redactor(TOKEN)) and TOKEN[:8] not in repr(Redactor(TOKEN))


@settings(max_examples=400, deadline=None)
@given(
    secret=st.text(alphabet="abcx-", min_size=0, max_size=30),
    text=st.text(alphabet="abcxy-", max_size=120),
    k=st.integers(min_value=2, max_value=9),
)
def test_clean_agrees_with_the_definition(secret, text, k):
    assert Redactor(secret, min_len=k).clean(text) == _reference([secret], text, k)


@settings(max_examples=200, deadline=None)
@given(secret=st.text(alphabet="ab", min_size=8, max_size=40), data=st.data())
def test_any_piece_of_eight_inside_any_text_goes(secret, data):
    start = data.draw(st.integers(0, len(secret) - 8))
    end = data.draw(st.integers(start + 8, len(secret)))
    around = st.text(alphabet="xyz", max_size=20)
    text = data.draw(around) + secret[start:end] + data.draw(around)
    cleaned = Redactor(secret).clean(text)
    assert "<token>" in cleaned and not any(secret[i : i + 8] in cleaned for i in range(len(secret) - 7))


def test_clean_is_linear_in_the_text():
    token = "0123456789abcdef" * 256  # 4096 characters
    redactor = Redactor(token)
    text = ("GET /v1/datamarts/1000/document_imports HTTP/1.1 x-request-id 9f8e7d6c " * 15_000)[:1_000_000]
    started = time.perf_counter()
    assert redactor.clean(text + token[100:140]).endswith("<token>")
    assert time.perf_counter() - started < 2.0  # a megabyte: about 0.1 s


# --- safe_text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("plain text, accents é and 中文", "plain text, accents é and 中文"),
        ("lines\nand\ttabs stay", "lines\nand\ttabs stay"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[2J\x1b[Hcleared", "cleared"),
        ("\x1b]0;evil title\x07after", "after"),
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1bPdevice control\x1b\\x", "x"),
        ("over\rwrite", "overwrite"),
        ("bell\x07 nul\x00 del\x7f bs\x08", "bell nul del bs"),
        ("\x9b31mC1 CSI\x9d0;t\x9c", "C1 CSI"),
        ("\x1bcreset \x1b(Bcharset \x1b7saved", "reset charset saved"),
        ("\x1b]2;never ended", "2;never ended"),  # unfinished: the text stays, harmless
        ("trailing escape \x1b", "trailing escape "),
    ],
)
def test_safe_text_removes_terminal_controls(raw, safe):
    assert safe_text(raw) == safe


@given(st.text())
def test_safe_text_never_leaves_a_control_character(text):
    cleaned = safe_text(text)
    assert all(ch in "\n\t" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F) for ch in cleaned)
    assert safe_text(cleaned) == cleaned


def test_safe_text_is_quick_on_hostile_input():
    hostile = "\x90" * 200_000 + "\x1b]" * 100_000 + "\x9b" * 100_000
    started = time.perf_counter()
    assert safe_text(hostile) == ""
    assert time.perf_counter() - started < 2.0

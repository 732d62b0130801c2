"""Keeping secrets and terminal controls out of what is printed, logged or written.

``Redactor(token).clean(text)`` replaces the token, and any piece of it of ``min_len`` (8) or more
characters, by ``<token>``: a server may echo a truncated ``Authorization`` header back in an error
message (``Got more than 8190 bytes ... 'Authorization: Bearer abcdef123456...'``), and that piece
is as secret as the whole.

``safe_text(text)`` removes the terminal control sequences and control characters of a string that
came from a server (an error message, a file name) before it reaches a terminal: escape sequences
could otherwise move the cursor, rewrite the screen, set the window title or worse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MARK = "<token>"
MIN_LEN = 8


class Redactor:
    """Replaces a secret, and every piece of it of ``min_len`` characters or more, by ``<token>``.

    ``secrets`` is one secret or several. A secret shorter than ``min_len`` is replaced only as a
    whole. The cost of ``clean`` is linear in the length of the text: one set look-up per
    ``min_len // 2`` characters when no piece of a secret is in it.
    """

    def __init__(self, secrets: str | Iterable[str], min_len: int = MIN_LEN) -> None:
        if min_len < 2:
            raise ValueError(f"min_len must be at least 2, got {min_len}")
        secrets = [secrets] if isinstance(secrets, str) else [s for s in secrets if s]
        self.min_len = min_len
        self._half = min_len // 2
        self._short = sorted({s for s in secrets if s and len(s) < min_len}, key=len, reverse=True)
        long = [s for s in secrets if len(s) >= min_len]
        self._grams = {s[i : i + min_len] for s in long for i in range(len(s) - min_len + 1)}
        self._halves = {g[i : i + self._half] for g in self._grams for i in range(min_len - self._half + 1)}

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._grams) + len(self._short)} secret pieces>, min_len={self.min_len})"

    def clean(self, text: str) -> str:
        """``text`` with every piece of a secret (``min_len`` characters or more) replaced by ``<token>``."""
        spans = self._spans(text) if self._grams else []
        if not spans:
            return self._whole(text)
        out: list[str] = []
        pos = 0
        for start, end in spans:
            out += (self._whole(text[pos:start]), MARK)
            pos = end
        out.append(self._whole(text[pos:]))
        return "".join(out)

    def _whole(self, text: str) -> str:
        for secret in self._short:
            if secret in text:
                text = text.replace(secret, MARK)
        return text

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """The maximal runs of ``text`` covered by windows of ``min_len`` that are pieces of a secret.

        A piece of ``min_len`` characters or more holds a half-window starting at a multiple of
        ``half``: only there are the half-windows looked up, and the full windows around each hit.
        """
        k, h, grams, halves = self.min_len, self._half, self._grams, self._halves
        n = len(text)
        spans: list[tuple[int, int]] = []
        next_start = 0  # full windows starting before this one were looked at already
        for p in range(0, n - h + 1, h):
            if text[p : p + h] not in halves:
                continue
            for s in range(max(next_start, p + h - k, 0), min(p, n - k) + 1):
                if text[s : s + k] in grams:
                    if spans and s <= spans[-1][1]:
                        spans[-1] = (spans[-1][0], s + k)
                    else:
                        spans.append((s, s + k))
            next_start = max(next_start, min(p, n - k) + 1)
        return spans


# CSI (ESC [ or 0x9B) parameters, intermediates, final; OSC / DCS / SOS / PM / APC strings with their
# terminator (BEL or ST); any other escape (ESC, intermediates, final). What is left of an unfinished
# sequence is harmless text once its control characters are gone.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x80-\x9f]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but \t and \n, DEL, C1


def safe_text(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (``\\n`` and ``\\t`` stay)."""
    if text.isprintable():  # the common case: nothing to remove
        return text
    return _CONTROL.sub("", _SEQUENCE.sub("", text))

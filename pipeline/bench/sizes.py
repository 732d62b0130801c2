"""Sizes as people write them (``500MB``, ``2GB``, ``40 GB``, ``1.5e9``) and as we print them.

Decimal units (MB = 10^6 bytes, as the API's 100 MB limit is read); ``KiB``/``MiB``/``GiB`` are binary.
"""

from __future__ import annotations

import re

UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes of ``text``; ``ValueError`` naming what was wrong."""
    match = _SIZE.match(text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in UNITS:
        raise ValueError(f"{text!r} is not a size (e.g. 500MB, 2GB, 40GB; units B, KB, MB, GB, TB, KiB, MiB, GiB)")
    return int(float(match.group(1)) * UNITS[unit])


def show_size(nbytes: float) -> str:
    """``523.4 MB``, ``2.10 GB``: decimal units, three significant figures."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} B"


def show_duration(seconds: float) -> str:
    """``2 h 10 min``, ``14 min``, ``48 s``, ``3.2 s``: what a person reads at a glance."""
    if seconds >= 3600:
        hours, rest = divmod(round(seconds / 60), 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    if seconds >= 600:
        return f"{round(seconds / 60)} min"
    if seconds >= 60:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"

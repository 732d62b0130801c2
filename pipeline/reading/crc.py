"""CRC-32 of batch bodies (``batch.Batch.digest``), with the fastest implementation installed.

``zlib_ng.crc32`` (the ``zlib-ng`` package: carry-less multiplication where the CPU has it) computes
the same CRC-32 as ``zlib.crc32`` (the polynomial of gzip and PNG, same initial value and
chaining), about 4-5 times faster on this machine (0.07 against 0.35 s per GB in cache): on
loopback the reader of CSV spent about a sixth of its time in ``zlib.crc32``. Without the package
(a platform with no wheel), ``zlib.crc32`` gives the same digests, only slower.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

Crc32 = Callable[[bytes | bytearray | memoryview, int], int]


def _fastest() -> Crc32:
    try:
        from zlib_ng.zlib_ng import crc32
    except ImportError:  # no wheel for this platform: the same CRC, from the standard library
        return zlib.crc32
    return crc32


#: ``crc32(data, value)``: ``data``'s CRC-32 chained from ``value`` (0 to start), as ``zlib.crc32``
crc32: Crc32 = _fastest()

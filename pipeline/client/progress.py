"""An upload attempt's deadline that moves with its body: a slow but moving upload is not an error,
a stalled one is.

An upload is given ``stall_s`` (``api.timeout_s``) to show progress, again and again. Progress is a
piece of the body taken by the kernel (``sent``: a slice of a ``sendfile``, a chunk of a stream).
Once the whole body is written (``body_sent``), the rest of the way (the bytes the kernel's send
buffer still holds, a proxy that buffers the body, the server's answer) is given ``stall_s`` plus
what the kernel may hold (the body, up to the send buffer's size) at ``MIN_TAIL_RATE``; and, on
Linux, each drop of the bytes the send queue holds (``SIOCOUTQ``, read every ``TAIL_POLL_S``) gives
``stall_s`` again. The deadline only ever moves later.

So a stalled body is told ``stall_s`` after its last progress, and a slow but moving one is never
cut: before, the deadline was ``api.timeout_s`` plus the whole body at 50 kB/s, which failed every
attempt over a slower link and noticed a stalled 100 MB upload only after 39 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from typing import Any

TAIL_POLL_S = 0.25  # how often the send buffer is read once the body is in it
MIN_TAIL_RATE = 50_000  # bytes/s: the tail's allowance where the kernel does not say what it holds
DEFAULT_SEND_BUFFER = 4 << 20  # bytes: assumed when the socket's SO_SNDBUF cannot be read


class BodyProgress:
    """The deadline of one upload attempt, moved by its body's progress (see the module docstring).

    ``start(timeout)`` takes the ``asyncio.timeout`` the request runs under; ``sent`` and
    ``body_sent`` are called by the body as it goes; ``close`` ends the watch of the tail.
    """

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self._timeout: asyncio.Timeout | None = None
        self._tail: asyncio.Task[None] | None = None

    def start(self, timeout: asyncio.Timeout) -> None:
        self._timeout = timeout
        self._extend(self.stall_s)

    def sent(self, count: int) -> None:
        """``count`` more bytes of the body were taken by the kernel (or the transport)."""
        if count:
            self._extend(self.stall_s)

    def body_sent(self, sock: Any, size: int) -> None:
        """The whole body (``size`` bytes) is written: watch the send buffer drain, then give the
        answer its time. Without the kernel's word, the tail may hold the whole body, up to the
        size of the send buffer."""
        self._extend(self.stall_s + min(size, send_buffer(sock)) / MIN_TAIL_RATE)
        held = unsent_bytes(sock)
        if held:
            self._tail = asyncio.get_running_loop().create_task(self._watch_tail(sock, held))

    def close(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
            self._tail = None

    async def _watch_tail(self, sock: Any, held: int) -> None:
        while held:
            await asyncio.sleep(min(TAIL_POLL_S, self.stall_s / 4))
            now = unsent_bytes(sock)
            if now is None:
                return
            if now < held:
                self._extend(self.stall_s)
            held = now

    def _extend(self, seconds: float) -> None:
        """The deadline no earlier than ``seconds`` from now (never earlier than it was)."""
        if self._timeout is None or self._timeout.expired():
            return
        when, now = self._timeout.when(), asyncio.get_running_loop().time()
        if when is None or when < now + seconds:
            self._timeout.reschedule(now + seconds)


def unsent_bytes(sock: Any) -> int | None:
    """The bytes a TCP socket's send queue still holds (Linux ``SIOCOUTQ``), or None if unknown."""
    fileno = getattr(sock, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
        if fd < 0:
            return None
        out = fcntl.ioctl(fd, termios.TIOCOUTQ, struct.pack("i", 0))
    except (OSError, ValueError, AttributeError):
        return None
    return int(struct.unpack("i", out)[0])


def send_buffer(sock: Any) -> int:
    """The socket's send buffer size (``SO_SNDBUF``), or ``DEFAULT_SEND_BUFFER``."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
    return DEFAULT_SEND_BUFFER

"""The emulator's options: one frozen, keyword-only dataclass with named defaults."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline import formats

if TYPE_CHECKING:
    from pipeline.emulator.faults import FaultPlan

#: The documented upload limit: 100 MB, read as 100 x 10^6 bytes (the safe reading of api.md).
MAX_FILE_BYTES = formats.MAX_UPLOAD_BYTES
#: Extra bytes a multipart body may carry over the file limit (boundaries, part headers, `type`).
MULTIPART_OVERHEAD = 64 * 1024


def new_token() -> str:
    """A random token for an emulator started without one."""
    return "emu-" + secrets.token_urlsafe(18)


@dataclass(frozen=True, kw_only=True)
class EmulatorOptions:
    """How an emulator instance listens, processes uploads and misbehaves.

    The conditions it plays (option, command flag; 0 turns a condition off):

    - ``latency_ms``, ``--latency-ms``: added once per request (a round trip), before the request
      is handled (an upload's body is read after it).
    - ``bandwidth_mbps``, ``--bandwidth MBPS``: upload cap per connection, MB/s (MB = 10^6 bytes).
    - ``uplink_mbps``, ``--uplink MBPS``: upload cap shared by all connections, MB/s: uploads at
      the same time share it fairly, each still held to ``bandwidth_mbps`` (see ``link``).
    - ``max_uploads``, ``--max-uploads N``: at most N uploads in flight (being received or handled);
      one arriving while N are is answered 429 with ``Retry-After: <retry_after_s>`` before its
      body is read, as the ``throttle`` fault is.
    - ``rate_limit``, ``--rate-limit``: requests per second per token (429 with Retry-After beyond).
    - ``slots``, ``--slots`` (at least 1); ``process_ms``, ``--process-ms``; ``per_line_us``,
      ``--per-line-us``: executions are processed in arrival order (FIFO) by ``slots`` parallel
      slots, each holding its slot for ``process_ms + lines * per_line_us``: ``PENDING`` while
      queued, ``RUNNING`` in the slot (see ``processor``).
    - ``faults``, ``--faults``: hostile behaviours (see ``faults``), seeded by ``seed``.

    Defaults keep a test suite fast. ``faults`` is a dict, a spec string or a ``FaultPlan`` (see
    ``faults.py``); ``seed`` makes every random decision reproducible for a given request order.
    What the conditions did is in the accounting: ``throttled`` (429s by reason),
    ``peak_uploads``, ``uploads_in_flight``. ``keep_digests`` (default on) keeps 16 bytes per
    accepted record for ``accounting.accepted``; the command turns it off, since no one can read
    the accounting of a separate process.
    """

    host: str = "127.0.0.1"
    port: int = 0
    token: str = field(default_factory=new_token, repr=False)
    process_ms: float = 20.0
    per_line_us: float = 1.0
    slots: int = 4
    faults: Mapping[str, Any] | str | FaultPlan = field(default_factory=dict)
    seed: int = 0
    rate_limit: float = 0.0
    retry_after_s: int = 1
    latency_ms: float = 0.0
    bandwidth_mbps: float = 0.0
    uplink_mbps: float = 0.0
    max_uploads: int = 0
    light: bool = False
    keep_digests: bool = True
    max_file_bytes: int = MAX_FILE_BYTES
    max_record_bytes: int = 16 * 1024 * 1024
    default_page_size: int = 10
    max_page_size: int = 1000
    #: the shape of the error files (``--error-files``): see ``error_files.ERROR_FILE_SHAPES``
    error_files: str = "ndjson"

    def __post_init__(self) -> None:
        checks = {
            "process_ms": self.process_ms >= 0,
            "per_line_us": self.per_line_us >= 0,
            "slots": self.slots >= 1,
            "rate_limit": self.rate_limit >= 0,
            "retry_after_s": self.retry_after_s >= 0,
            "latency_ms": self.latency_ms >= 0,
            "bandwidth_mbps": self.bandwidth_mbps >= 0,
            "uplink_mbps": self.uplink_mbps >= 0,
            "max_uploads": self.max_uploads >= 0,
            "max_file_bytes": self.max_file_bytes >= 1,
            "max_record_bytes": self.max_record_bytes >= 1,
            "port": 0 <= self.port <= 65535,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"EmulatorOptions.{name}: out of range ({getattr(self, name)!r})")
        from pipeline.emulator.error_files import ERROR_FILE_SHAPES

        if self.error_files not in ERROR_FILE_SHAPES:
            raise ValueError(
                f"EmulatorOptions.error_files: one of {', '.join(ERROR_FILE_SHAPES)} ({self.error_files!r})"
            )
        if not self.token:
            raise ValueError("EmulatorOptions.token: must not be empty")

    def conditions(self) -> str:
        """The network and capacity conditions, for the start-up line (``"none"`` when all are off)."""
        parts = []
        if self.latency_ms:
            parts.append(f"latency {self.latency_ms:g} ms per request")
        if self.bandwidth_mbps:
            parts.append(f"{self.bandwidth_mbps:g} MB/s per connection")
        if self.uplink_mbps:
            parts.append(f"uplink {self.uplink_mbps:g} MB/s shared")
        if self.max_uploads:
            parts.append(f"at most {self.max_uploads} uploads in flight")
        if self.rate_limit:
            parts.append(f"rate limit {self.rate_limit:g} requests/s")
        return ", ".join(parts) or "none"

    def replace(self, **changes: Any) -> EmulatorOptions:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

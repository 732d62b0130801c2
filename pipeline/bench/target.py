"""Where a bench sends: an emulator it starts (one per point, so that each point meets an empty
platform), or the configured API, which a bench writes real documents into.

``EmulatorProcess`` runs ``python -m pipeline.emulator`` as a child process on a free loopback
port with the conditions of ``EmulatorOptions``: the client's CPU and memory are then the client's
alone, and the emulator does not compete with it for the event loop. ``check_allowed`` is the
safety rule against anything else.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.bench.bound import Conditions
from pipeline.bench.sizes import show_size
from pipeline.config import Config, is_loopback_url
from pipeline.emulator.faults import parse_faults
from pipeline.emulator.options import EmulatorOptions
from pipeline.errors import UsageError

START_TIMEOUT_S = 30.0


def emulator_argv(options: EmulatorOptions) -> list[str]:
    """The command that serves an emulator with ``options`` on a free port of 127.0.0.1."""
    argv = [sys.executable, "-m", "pipeline.emulator", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--token", options.token, "--process-ms", f"{options.process_ms:g}"]
    argv += ["--per-line-us", f"{options.per_line_us:g}", "--slots", str(options.slots)]
    argv += ["--seed", str(options.seed), "--rate-limit", f"{options.rate_limit:g}"]
    argv += ["--retry-after", str(options.retry_after_s), "--latency-ms", f"{options.latency_ms:g}"]
    argv += ["--bandwidth", f"{options.bandwidth_mbps:g}", "--uplink", f"{options.uplink_mbps:g}"]
    argv += ["--max-uploads", str(options.max_uploads)]
    faults = parse_faults(options.faults).describe()
    if faults:
        argv += ["--faults", faults]
    return argv + (["--light"] if options.light else [])


def conditions_of(options: EmulatorOptions) -> Conditions:
    """The emulator's conditions in the bound's terms."""
    return Conditions(
        latency_ms=options.latency_ms,
        conn_mbps=options.bandwidth_mbps,
        uplink_mbps=options.uplink_mbps,
        slots=options.slots,
        base_s=options.process_ms / 1000,
        per_record_us=options.per_line_us,
        max_uploads=options.max_uploads,
    )


class EmulatorProcess:
    """One emulator child process: ``url`` once started; ``stop`` ends it (and only it)."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.proc = subprocess.Popen(
            emulator_argv(options), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise UsageError("the emulator did not start (python -m pipeline.emulator printed no URL)")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass(frozen=True)
class Volume:
    """What a bench will write: bytes and records per point, and the points."""

    bytes: int
    records: int
    points: int

    def describe(self) -> str:
        total = show_size(self.bytes * self.points)
        each = f"{self.records:,} synthetic records each"
        return f"{self.points} point(s) x {show_size(self.bytes)} ({each}; {total} in all)"


def check_allowed(
    config: Config,
    *,
    datamart_given: str | None,
    yes: bool,
    volume: Volume,
    ask: Callable[[str], bool] | None,
    what: str = "a bench writes",
) -> None:
    """Against a target that is neither the emulator nor loopback: the datamart id must be given
    explicitly (``--datamart-id`` or ``import.datamart_id`` in the config file) and ``--yes`` passed,
    or ``ask`` (a terminal's confirmation) must say yes to a question naming the datamart and the
    volume. ``UsageError`` (exit 2) before anything is generated or sent."""
    url = config.api.url
    if config.uses_embedded_emulator or is_loopback_url(url):
        return
    datamart = config.import_.datamart_id
    if not datamart_given:
        raise UsageError(
            f"refusing to bench {url} without an explicit datamart: {what} real documents into a datamart "
            f"(the config's default would be datamart {datamart}); name it with --datamart-id or import.datamart_id "
            "in the config file, and pass --yes"
        )
    question = f"{what} {volume.describe()} into datamart {datamart} at {url}"
    if yes:
        return
    if ask is not None and ask(f"{question}. Go on? [y/N] "):
        return
    raise UsageError(f"refusing: {question}; pass --yes to confirm (nothing was sent to datamart {datamart})")

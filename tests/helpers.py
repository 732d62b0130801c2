"""Shared test helpers: realistic input files and the proof that every record arrived exactly once.

Fixtures live in ``conftest.py``; everything else a test module shares is here."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from pipeline import formats
from pipeline.config import config_from_dict
from pipeline.emulator import EmulatorOptions, running_emulator
from pipeline.engine.state import BatchState


def activity(i: int, rnd: random.Random | None = None) -> dict:
    """A valid USER_ACTIVITY record, unique by ``i``, of about 250 to 400 bytes."""
    rnd = rnd or random.Random(i)
    ident = [
        {"$user_agent_id": f"vec:{10_000_000 + i}"},
        {"$user_account_id": f"acc-{i}", "$compartment_id": "1000"},
        {"$email_hash": {"$email": f"user{i}@example.com"}},
    ][i % 3]
    ts = 1_764_300_000_000 + i
    return {
        **ident,
        "$type": rnd.choice(["SITE_VISIT", "APP_VISIT", "TOUCH"]),
        "$session_status": "NO_SESSION",
        "$ts": ts,
        "$events": [
            {
                "$event_name": "page-view",
                "$ts": ts,
                "$properties": {"url": "https://shop.example/p/" + "x" * rnd.randint(0, 120)},
            }
        ],
    }


def write_ndjson(path: Path, records: list[dict] | range, *, line_end: bytes = b"\n") -> Path:
    with path.open("wb") as fh:
        for r in records:
            rec = activity(r) if isinstance(r, int) else r
            fh.write(orjson.dumps(rec) + line_end)
    return path


SEGMENT_HEADER = ["operation", "expiration_duration", "compartment_id", "user_account_id", "segment_id", "data_bag"]


def write_segment_csv(path: Path, n: int) -> Path:
    """A USER_SEGMENT CSV whose data_bag fields hold quoted commas, doubled quotes and newlines."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SEGMENT_HEADER)
    for i in range(n):
        bag = orjson.dumps({"note": f"row {i}, with a comma", "quote": 'say "hi"'}).decode()
        if i % 7 == 0:
            bag += "\nsecond line of the bag"
        writer.writerow(["UPDATE", "0", "1000", f"acc-{i}", "123", bag])
    path.write_text(buf.getvalue(), newline="")
    return path


def ndjson_digests(path: Path, document_type: str = "USER_ACTIVITY") -> list[bytes]:
    """Digests of the valid records of an NDJSON file, in order."""
    out = []
    with path.open("rb") as fh:
        for line in fh:
            body = line.rstrip(b"\r\n")
            if body.strip() and formats.check_ndjson_line(document_type, body) is None:
                out.append(formats.record_digest(body))
    return out


def csv_digests(path: Path) -> list[bytes]:
    """Digests of the records of a CSV file (raw record bytes, header excluded)."""
    data = path.read_bytes()
    records, start, quotes = [], 0, 0
    for pos, byte in enumerate(data):
        if byte == 0x22:
            quotes += 1
        elif byte == 0x0A and quotes % 2 == 0:
            records.append(data[start : pos + 1])
            start = pos + 1
    return [formats.record_digest(r) for r in records[1:]]


def assert_exactly_once(accounting, digests: list[bytes]) -> None:
    accepted = accounting.accepted
    missing = [d for d in digests if d not in accepted]
    twice = {d: ids for d, ids in accepted.items() if len(ids) > 1}
    assert not missing, f"{len(missing)} records never accepted"
    assert not twice, f"{len(twice)} records accepted more than once"
    assert len(accepted) == len(set(digests)), "the server accepted records that were not in the input"


def test_config(url: str, tmp_path: Path, **sections) -> object:
    """A config for tests: fast polling, run directories under tmp_path."""
    data = {
        "api": {"url": url},
        "poll": {"interval_s": 0.02, "max_interval_s": 0.1, "timeout_s": 120},
        "report": {"dir": str(tmp_path / "runs")},
        "upload": {"settle_window_s": 1.0},  # lookups of lost answers: 1 s, not the default minute
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data)


test_config.__test__ = False  # not a test, despite its name


class EmulatorThread:
    """The emulator on its own thread and event loop (``cli.main`` runs ``asyncio.run`` and installs
    signal handlers, so it must run on the main thread). ``call`` runs a function on the emulator's
    loop and returns its result: the emulator's state is only touched from its own thread."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # seen by __enter__ instead of a silent hang
            self._failed = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running_emulator(self.options) as emu:
            self.emu = emu
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        assert self._ready.wait(10), "the emulator did not start"
        if self._failed is not None:
            raise self._failed
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def wait_idle(self) -> None:
        """Every delayed creation done and every execution terminal (bounded: 10 s)."""
        asyncio.run_coroutine_threadsafe(self.emu.wait_idle(), self.loop).result(15)

    @property
    def accounting(self) -> Any:
        return self.emu.accounting

    def upload_posts(self) -> int:
        """POST requests to an execution list the emulator received, whatever it answered."""
        counts = self.call(lambda: dict(self.emu.accounting.requests))
        return counts.get(("POST", "upload"), 0)


def batch_state(number: int = 1, **fields: Any) -> BatchState:
    """A journaled batch of 10 records (lines 1-10 of ``in.ndjson``) named ``run-<number>.ndjson``."""
    base: dict[str, Any] = {
        "path": "in.ndjson",
        "first_line": 1,
        "last_line": 10,
        "records": 10,
        "byte_start": 0,
        "byte_end": 100,
        "size": 100,
        "digest": "d",
        "filename": f"run-{number:06d}.ndjson",
    }
    return BatchState(number=number, **(base | fields))


def runs_home() -> Path:
    """Where a run with the default ``report.dir`` puts its run directory in the tests (the
    ``isolated_state_home`` fixture points ``XDG_STATE_HOME`` at a temporary directory)."""
    return Path(os.environ["XDG_STATE_HOME"]) / "pipeline" / "runs"


class ListingClock:
    """The clock the emulator's listings judge ``list_lag`` by, stopped: set ``now`` to move it. A
    lag then passes when the test says so, not when a loaded machine gets round to the next look.
    Install it with ``monkeypatch.setattr(pipeline.emulator.listing, "time", ListingClock())``
    before anything is uploaded (executions keep their real ``time.monotonic`` creation time)."""

    def __init__(self) -> None:
        import time

        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now


def interrupt_after_uploads(uploads: int) -> Callable[[str, dict[str, Any]], None]:
    """An ``on_event`` that sends this process SIGINT once ``uploads`` batches were uploaded."""
    import signal

    seen = {"n": 0}

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if name == "batch_uploaded":
            seen["n"] += 1
            if seen["n"] == uploads:
                os.kill(os.getpid(), signal.SIGINT)

    return on_event


def interrupt_twice_in_flight(after_uploads: int = 4) -> Callable[[str, dict[str, Any]], None]:
    """An ``on_event`` that sends SIGINT once ``after_uploads`` uploads have started, then again as
    soon as the run says it stops without abandoning: the second signal abandons the uploads in flight."""
    import signal

    started = {"n": 0}

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if name == "upload_started":
            started["n"] += 1
            if started["n"] == after_uploads:
                os.kill(os.getpid(), signal.SIGINT)
        elif name == "stop_requested" and not fields["abandon"]:
            os.kill(os.getpid(), signal.SIGINT)

    return on_event

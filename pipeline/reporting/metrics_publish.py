"""Where the run's metrics go: a Prometheus textfile and a Pushgateway, at every interval and at the end.

- ``write_textfile``: the node exporter's textfile collector reads ``*.prom`` files from a
  directory; the file is written beside its final name and renamed over it (the collector never
  reads half a file). A run that did not succeed keeps the previous file's last-success time.
- ``push``: ``pushadd`` (HTTP POST) to ``<url>/metrics/job/<job>/instance/<instance>``: the families
  pushed replace theirs, the others stay (the last success of an earlier run). A failure to push
  is a warning, never the run's failure: the monitoring being down must not fail an import.
- ``MetricsPublisher``: an event sink and a context manager around the run that publishes every
  ``interval_s`` seconds from the run's events, and once more from the report (``finish``).

The textfile's samples carry a ``job`` label (several jobs may share one collector directory);
on the Pushgateway ``job`` and ``instance`` are the grouping key. No label holds a message, a
path or the token; the Pushgateway URL is redacted (user info) before it is printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.exposition import generate_latest, pushadd_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from pipeline.reporting.metrics import LAST_SUCCESS, MetricsState, MetricValues, registry_of
from pipeline.reporting.types import Report

DEFAULT_JOB = "pipeline"
PUSH_TIMEOUT_S = 10.0


def default_instance() -> str:
    """The Pushgateway ``instance`` when none is given: this machine's name."""
    return socket.gethostname() or "localhost"


def previous_last_success(path: Path) -> float | None:
    """The last-success time a textfile holds (None when the file or the sample is missing)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except ValueError:  # not a textfile we can read: nothing to carry over
        return None
    return None


def write_textfile(path: Path, values: MetricValues, *, job: str) -> None:
    """``values`` in the Prometheus text format at ``path``, atomically (a temporary file in the same
    directory, fsynced, renamed over it); raises ``OSError``."""
    if values.last_success_at is None:  # not a success: the file keeps the last one's time
        values = dataclasses.replace(values, last_success_at=previous_last_success(path))
    data = generate_latest(registry_of(values, {"job": job}))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # the node exporter runs as another user; nothing secret in it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def push(url: str, values: MetricValues, *, job: str, instance: str, timeout_s: float = PUSH_TIMEOUT_S) -> None:
    """Push ``values`` to the Pushgateway at ``url`` (``pushadd``); raises ``OSError`` (``URLError``)."""
    pushadd_to_gateway(
        url, job=job, registry=registry_of(values), grouping_key={"instance": instance}, timeout=timeout_s
    )


def redact_url(url: str) -> str:
    """``url`` without user info (``https://user:secret@host`` -> ``https://host``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class MetricsPublisher:
    """An event sink and a context manager: metrics every ``interval_s`` (0: only at the end) to a
    textfile and/or a Pushgateway; ``finish(report)`` publishes the report's figures.

    ``warn`` is told each failure (a line in the log); failures never raise out of here.
    """

    def __init__(
        self,
        *,
        textfile: Path | None = None,
        pushgateway: str | None = None,
        job: str = DEFAULT_JOB,
        instance: str | None = None,
        interval_s: float = 30.0,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.textfile, self.pushgateway = textfile, pushgateway
        self.job, self.instance = job, instance or default_instance()
        self.interval_s = interval_s
        self.warn = warn
        self.state = MetricsState()
        self._publish_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        self.state(name, fields)

    def publish(self, values: MetricValues) -> None:
        """Write and push ``values`` now; each failure is a warning."""
        with self._publish_lock:
            if self.textfile is not None:
                try:
                    write_textfile(self.textfile, values, job=self.job)
                except OSError as exc:
                    self.warn(f"metrics: cannot write {self.textfile}: {exc.strerror or exc}")
            if self.pushgateway:
                try:
                    push(self.pushgateway, values, job=self.job, instance=self.instance)
                except Exception as exc:  # URLError, HTTPError, a refused connection: the run goes on
                    reason = getattr(exc, "reason", None) or exc
                    self.warn(f"metrics: cannot push to {redact_url(self.pushgateway)}: {reason}")

    def finish(self, report: Report) -> None:
        """The report's figures, published once the run has ended (the ticker stopped first)."""
        self._stop_ticker()
        self._finished = True
        self.publish(self.state.final(report))

    def _ticker(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._finished:
                self.publish(self.state.values())

    def _stop_ticker(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=PUSH_TIMEOUT_S + 5)
            self._thread = None

    def __enter__(self) -> MetricsPublisher:
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._ticker, name="metrics-ticker", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_ticker()

"""The metrics flags of ``run`` and ``resume`` (``--metrics-textfile``, ``--metrics-pushgateway``):
checked before the run starts (a typo in a path is a usage error, not a warning at the end), then
a ``MetricsPublisher`` beside the progress sink."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.engine.events import EventSink
from pipeline.errors import UsageError

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are asked for
    from pipeline.reporting.metrics_publish import MetricsPublisher


def make_publisher(
    args: argparse.Namespace, *, warn: Callable[[str], None], shard: int | None = None
) -> MetricsPublisher | None:
    """The publisher the flags ask for, or None; ``UsageError`` for a textfile whose directory is
    missing or a Pushgateway URL that is not http(s). A shard of a plan (``shard``) pushes as
    ``<host>-shard<K>`` unless ``--metrics-instance`` says otherwise: shards run side by side on one
    machine must not overwrite each other's group on the Pushgateway."""
    textfile = Path(args.metrics_textfile) if getattr(args, "metrics_textfile", None) else None
    pushgateway = getattr(args, "metrics_pushgateway", None)
    if textfile is None and not pushgateway:
        return None
    if textfile is not None and not textfile.parent.is_dir():
        raise UsageError(f"--metrics-textfile {textfile}: its directory {textfile.parent} does not exist")
    if pushgateway and not pushgateway.startswith(("http://", "https://")):
        raise UsageError(f"--metrics-pushgateway must be an http:// or https:// URL, got {pushgateway!r}")
    from pipeline.reporting.metrics_publish import MetricsPublisher, default_instance

    instance = args.metrics_instance
    if instance is None and shard is not None:
        instance = f"{default_instance()}-shard{shard}"
    return MetricsPublisher(
        textfile=textfile,
        pushgateway=pushgateway,
        job=args.metrics_job,
        instance=instance,
        interval_s=args.progress_interval,
        warn=warn,
    )


def fan_out(*sinks: EventSink) -> EventSink:
    """One sink telling every event to each of ``sinks`` in turn."""

    def tell(name: str, fields: dict[str, Any]) -> None:
        for sink in sinks:
            sink(name, fields)

    return tell

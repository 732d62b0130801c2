"""The Pushgateway instance of a run: the flag, else the host, and a shard's own group."""

from __future__ import annotations

import argparse

from pipeline.cli.metrics import make_publisher
from pipeline.reporting.metrics_publish import default_instance


def args(tmp_path, instance=None) -> argparse.Namespace:
    return argparse.Namespace(
        metrics_textfile=str(tmp_path / "pipeline.prom"),
        metrics_pushgateway=None,
        metrics_job="nightly",
        metrics_instance=instance,
        progress_interval=30.0,
    )


def test_a_shard_pushes_as_its_own_instance_unless_told(tmp_path):
    warn = [].append
    assert make_publisher(args(tmp_path), warn=warn).instance == default_instance()
    assert make_publisher(args(tmp_path), warn=warn, shard=3).instance == f"{default_instance()}-shard3"
    assert make_publisher(args(tmp_path, "pod-7"), warn=warn, shard=3).instance == "pod-7"

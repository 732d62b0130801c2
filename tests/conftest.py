"""Fixtures shared by every test package (helpers are in ``tests/helpers.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def fast_retry():
    from pipeline.client.retry import RetryPolicy

    return RetryPolicy(max_attempts=10, base_delay_s=0.01, max_delay_s=0.05)

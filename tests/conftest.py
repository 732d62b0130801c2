"""Fixtures shared by every test package (helpers are in ``tests/helpers.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_state_home(tmp_path_factory, monkeypatch):
    """Run directories default to ``$XDG_STATE_HOME/pipeline/runs``: no test writes into the
    developer's real ``~/.local/state`` (subprocesses inherit the variable)."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture
def fast_retry():
    from pipeline.client.retry import RetryPolicy

    return RetryPolicy(max_attempts=10, base_delay_s=0.01, max_delay_s=0.05)

"""Fixtures shared by every test package (helpers are in ``tests/helpers.py``)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# No per-example deadline (Hypothesis' default is 200 ms): on a loaded CI machine an example may take
# longer, and a time limit is no property of the code. Tests that set their own settings keep them.
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")


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


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch, tmp_path_factory):
    """No test reads the developer's settings: ``$XDG_CONFIG_HOME``, ``$HOME`` and the working
    directory (where ``./pipeline.toml`` would be found) are empty directories of the test's own,
    and no ``PIPELINE_*`` variable of the developer's shell is seen."""
    base = tmp_path_factory.mktemp("settings")
    for name in ("home", "xdg", "cwd"):
        (base / name).mkdir()
    monkeypatch.setenv("HOME", str(base / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(base / "xdg"))
    for name in [n for n in os.environ if n.startswith("PIPELINE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(base / "cwd")

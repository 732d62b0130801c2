"""The parser of one command: ``bench`` and ``emulator`` add their own arguments only when they are
the command (their modules cost 15-25 ms of every run's start-up otherwise)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli.entry import _command_in
from pipeline.cli.parser import build_parser


def _modules_after(code: str, *names: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {names!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()


def test_a_run_parses_without_the_emulator_and_bench_arguments():
    code = "from pipeline.cli.parser import build_parser; build_parser('run').parse_args(['run', 'x.ndjson'])"
    assert _modules_after(code, "pipeline.emulator.cli", "pipeline.emulator.options") == []


@pytest.mark.parametrize("command", ["bench", "emulator", None])
def test_their_own_arguments_are_there_for_them_and_for_help(command):
    sub = next(a for a in build_parser(command)._actions if a.dest == "command")
    for name in ("bench", "emulator") if command is None else (command,):
        assert "--process-ms" in sub.choices[name].format_help()


def test_the_command_is_the_first_word_that_is_not_an_option():
    assert _command_in(["run", "--config", "c.toml", "bench"]) == "run"
    assert _command_in(["--version"]) is None
    assert _command_in([]) is None
    assert _command_in(["emulator", "--port", "0"]) == "emulator"

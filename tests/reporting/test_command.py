"""The `pipeline resume …` command a report prints works from where the user is."""

import os
import sys
from pathlib import Path

from pipeline.reporting.command import program, resume_command


def test_the_installed_command_on_path_is_called_by_its_name(tmp_path: Path):
    script = tmp_path / "bin" / "pipeline"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    assert program(str(script), which=str(script)) == "pipeline"


def test_a_venv_script_not_on_path_is_called_by_its_absolute_path(tmp_path: Path, monkeypatch):
    venv = tmp_path / ".venv" / "bin" / "pipeline"
    venv.parent.mkdir(parents=True)
    venv.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    assert program(".venv/bin/pipeline", which=None) == str(venv)
    other = tmp_path / "elsewhere" / "pipeline"  # another install first on PATH: not this one
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    assert program(".venv/bin/pipeline", which=str(other)) == str(venv)


def test_python_dash_m_and_library_use(tmp_path: Path):
    main = Path(__file__).resolve().parents[2] / "pipeline" / "__main__.py"
    assert program(str(main)) == f"{sys.executable} -m pipeline"
    assert program("/home/me/load.py") == "pipeline"


def test_the_run_directory_is_absolute_and_quoted(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = resume_command("runs/my run")
    assert command.endswith(f"resume '{os.path.join(tmp_path, 'runs/my run')}'")

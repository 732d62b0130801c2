"""How to call this program again, for the ``pipeline resume …`` lines a report and ``status`` print.

``pipeline`` is only right when that name, looked up on ``PATH``, is the program now running: who
installed the README's way runs ``.venv/bin/pipeline`` with no venv on ``PATH``, and a cron job
has a ``PATH`` of its own. Otherwise the command names the program as it was started.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def program(argv0: str | None = None, *, which: str | None | bool = False) -> str:
    """``pipeline``, or the absolute path of the ``pipeline`` script that runs, or ``python -m pipeline``."""
    argv0 = (sys.argv[0] if sys.argv else "") if argv0 is None else argv0
    name = os.path.basename(argv0)
    if name == "__main__.py" and Path(argv0).parent.name == "pipeline":  # python -m pipeline
        return f"{shlex.quote(sys.executable)} -m pipeline"
    if name != "pipeline":  # library use (a script, a notebook, a test): the installed command
        return "pipeline"
    found = shutil.which("pipeline") if which is False else which
    if isinstance(found, str) and os.path.realpath(found) == os.path.realpath(shutil.which(argv0) or argv0):
        return "pipeline"
    return shlex.quote(os.path.abspath(argv0))


def resume_command(run_dir: str | Path) -> str:
    """The command line that resumes the run in ``run_dir``, from any directory."""
    return f"{program()} resume {shlex.quote(os.path.abspath(run_dir))}"

"""The command line: ``entry`` parses arguments (``parser``) and dispatches; each command lives in its own module.

===========  ==============================================================================
module       commands
===========  ==============================================================================
``run``      ``run``, ``resume``: live progress or plain/JSON logs, summary, ``report.html``
``validate`` ``validate``: a dry run that reads and checks everything and sends nothing
``remote``   ``imports list``, ``executions list``, ``executions errors``, ``cancel``
``status``   ``status``: a run's state from its journal, refreshed from the server
``common``   what the commands share: config and token loading, the client for one-off requests
===========  ==============================================================================

Each command function takes the parsed ``argparse.Namespace`` and returns the exit code. Command
modules are imported on dispatch only, so ``pipeline --version`` stays fast.
"""

from pipeline.cli.entry import main, main_entry
from pipeline.cli.parser import build_parser

__all__ = ["build_parser", "main", "main_entry"]

"""The command implementations behind ``pipeline.cli`` (which only parses arguments).

=========  ==============================================================================
module     commands
=========  ==============================================================================
``run``    ``run``, ``resume``: live progress or plain/JSON logs, summary, ``report.html``
``check``  ``validate``: a dry run that reads and checks everything and sends nothing
``remote`` ``imports list``, ``executions list``, ``executions errors``, ``cancel``
``status`` ``status``: a run's state from its journal, refreshed from the server
=========  ==============================================================================

Each command function takes the parsed ``argparse.Namespace`` and returns the exit code.
"""

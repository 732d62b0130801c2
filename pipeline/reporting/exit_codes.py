"""The exit codes a scheduler acts on (the README's table says what to do with each).

Apart from ``report.py`` so that the command line's start-up (``pipeline --version``, a usage
error) does not import the report and the run state to know them.
"""

EXIT_OK = 0  # every record read was accepted
EXIT_FAILURES = 1  # finished; records rejected or executions failed
EXIT_USAGE = 2  # nothing was sent: bad config, input, token or environment
EXIT_UNKNOWN = 3  # not finished or not known yet: resume
EXIT_DUPLICATES = 4  # finished; some records are, or may be, on the server twice

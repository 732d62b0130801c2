"""Starting one validation worker: a fresh ``python`` that imports only ``pipeline``'s checks.

Not ``multiprocessing``'s start methods: each of them (spawn, forkserver) imports the caller's main
module in the worker, so a library script without ``if __name__ == "__main__":`` ran its
``pipeline.run(...)`` again in every worker, and only once its input was large enough for the
reader to start workers (32 MiB): a trap that depended on the data's size. A worker started here
never imports the main module: a script works with or without the guard, at any size.

The worker gets the parent's ``sys.path`` (so it imports the same ``pipeline``, also from a source
tree) and one end of a socket pair, wrapped as a ``multiprocessing.connection.Connection``: tasks
and answers are pickled as they were with a ``multiprocessing`` pipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from multiprocessing.connection import Connection
from socket import socketpair

#: What a worker imports before its first task (so that the first block is not slower).
WORKER_MODULES = ("pipeline.reading.validate", "pipeline.reading.validate_csv", "msgspec.json")
#: What a worker sends once its imports are done: the pool counts it started only then, so that
#: the reader keeps checking blocks itself instead of queueing them behind a worker's imports
#: (first 9 MB batch of a run: 0.59 s, against 0.11 s once the start waited for this)
READY = "ready"
_PATH_ENV = "PIPELINE_WORKER_SYS_PATH"
_BOOT = (
    "import json, os, sys; sys.path[:0] = json.loads(os.environ.pop({env!r})); "
    "from pipeline.reading.worker_process import child_main; child_main(int(sys.argv[1]))"
)


def start_worker() -> tuple[Connection, subprocess.Popen[bytes]]:
    """A worker process and the parent's end of its connection."""
    ours, theirs = socketpair()
    try:
        env = {**os.environ, _PATH_ENV: json.dumps([p for p in sys.path if p])}
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOT.format(env=_PATH_ENV), str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Connection(ours.detach()), process


def child_main(fd: int) -> None:
    """In the worker: import the checks, then serve tasks on ``fd`` until it is closed."""
    import importlib

    for name in WORKER_MODULES:
        importlib.import_module(name)
    from pipeline.reading.blocks import serve

    conn = Connection(fd)
    conn.send(READY)
    serve(conn)

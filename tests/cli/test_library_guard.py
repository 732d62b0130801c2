"""A library script without ``if __name__ == "__main__":`` must not start a second run.

The reader's worker processes (validation, CSV record counting) are started by multiprocessing,
which imports the script's main module in them. An unguarded ``pipeline.run(...)`` would run again
there (a second document import, files sent twice): ``pipeline.run`` refuses, with the fix.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import write_segment_csv

SCRIPT = """
    import sys
    from pathlib import Path

    import pipeline
    import pipeline.reading.reader

    pipeline.reading.reader.POOL_MIN_BYTES = 0  # a pool even for this small file
    config = pipeline.Config().replace(
        api={{"url": "embedded"}},
        report={{"dir": {runs!r}}},
        batch={{"validate": False}},
        **{{"import": {{"document_type": "USER_SEGMENT", "mime_type": "TEXT_CSV"}}}},
    )
    report = pipeline.run(config, [{source!r}])
    print("outcome", report["outcome"])
"""


def test_an_unguarded_script_runs_once_and_is_told_why(tmp_path):
    source = write_segment_csv(tmp_path / "segments.csv", 200)
    runs = tmp_path / "runs"
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(SCRIPT.format(runs=str(runs), source=str(source))))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.stdout.count("outcome") == 1, done.stdout
    assert len(list(runs.iterdir())) == 1  # one run, one document import
    assert 'put the call under `if __name__ == "__main__":`' in done.stderr

"""A library script without ``if __name__ == "__main__":`` works, whatever the size of its input.

The reader's worker processes (validation, CSV record counting) start once an input reaches
``POOL_MIN_BYTES`` (32 MiB). They used to be started by multiprocessing, which imports the script's
main module in them: an unguarded ``pipeline.run(...)`` then ran again in a worker, a trap only
large inputs met. They are fresh interpreters now (``reading/worker_process``) that never import
the main module: the script body runs once, the workers check the records, the run succeeds.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.helpers import write_ndjson, write_segment_csv

SCRIPT = """
    import sys
    from pathlib import Path

    import pipeline
    import pipeline.reading.blocks
    import pipeline.reading.reader

    print("script body ran")
    pipeline.reading.reader.POOL_MIN_BYTES = 0  # workers even for this small file: as a large one would
    started = []
    worker = pipeline.reading.blocks._Worker
    pipeline.reading.blocks._Worker = lambda n: started.append(n) or worker(n)
    config = pipeline.Config().replace(
        api={{"url": "embedded"}},
        report={{"dir": {runs!r}}},
        batch={{"validate": {validate}}},
        **{{"import": {{"document_type": {document_type!r}, "mime_type": {mime_type!r}}}}},
    )
    report = pipeline.run(config, [{source!r}], pipeline.RunOptions(reader_workers=2))
    print("outcome", report["outcome"], report["records"]["succeeded"], "workers", len(started))
"""


@pytest.mark.parametrize(("kind", "validate"), [("csv", True), ("ndjson", True)], ids=["csv", "ndjson"])
def test_an_unguarded_script_runs_once_with_worker_processes(tmp_path, kind, validate):
    if kind == "csv":
        source = write_segment_csv(tmp_path / "segments.csv", 200)
        document_type, mime_type = "USER_SEGMENT", "TEXT_CSV"
    else:
        source = write_ndjson(tmp_path / "activities.ndjson", range(200))
        document_type, mime_type = "USER_ACTIVITY", "APPLICATION_X_NDJSON"
    runs = tmp_path / "runs"
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            SCRIPT.format(
                runs=str(runs),
                source=str(source),
                validate=validate,
                document_type=document_type,
                mime_type=mime_type,
            )
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("script body ran") == 1, done.stdout  # never again in a worker
    assert "outcome succeeded 200 workers 2" in done.stdout, done.stdout + done.stderr
    assert len(list(runs.iterdir())) == 1  # one run, one document import
    assert "Traceback" not in done.stderr

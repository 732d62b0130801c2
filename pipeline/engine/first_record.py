"""Before a new run creates its document import: do the inputs hold one record to send?

The reader is run as the run will run it, but with small batches (``PROBE_BYTES``) and stopped at
the first batch: the usual input answers within its first read. Not ``max_lines = 1``: the cutter
plans every batch of a read before it yields the first, and one batch per line of a 2 MiB read
costs seconds (a 324 MB input took 8 s here, most of a WAN run's start). An input of only bad lines (or only
skipped files) is read whole here, sends nothing, and the run then creates no empty document
import. The rejects met here are dropped: the run's own reading lists them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import cast

from pipeline.config import Config
from pipeline.errors import InputError
from pipeline.reading.reader import Batch, BatchReader
from pipeline.reading.reader_options import ReaderOptions
from pipeline.reading.sizing import BatchSizes
from pipeline.reading.sources import Input, StdinInput

#: the batches' target while looking for a record (a larger record still gets a batch of its own)
PROBE_BYTES = 1 << 16


def inputs_hold_a_record(inputs: Sequence[Input], config: Config) -> bool:
    if any(isinstance(source, StdinInput) for source in inputs):
        return True  # a stream is read once, by the run itself
    with tempfile.TemporaryDirectory(prefix="pipeline-first-record-") as spool:
        options = ReaderOptions(
            document_type=config.import_.document_type,
            mime_type=config.import_.mime_type,
            max_bytes=config.batch.max_bytes,
            sizes=BatchSizes((), PROBE_BYTES),
            validate=config.batch.validate,
            workers=0,  # one record: no worker processes
            spool_dir=Path(spool),
        )
        batches = cast(Generator[Batch, None, None], iter(BatchReader(inputs, options, on_reject=lambda reject: None)))
        try:
            for batch in batches:
                batch.discard_spool()
                return True
        except InputError:
            return True  # an unreadable input: the run's reading reports it as it does
        finally:
            batches.close()  # its files closed now
    return False

"""``python -m pipeline.emulator``: the same as ``pipeline emulator``."""

import sys

from pipeline.emulator.cli import run

if __name__ == "__main__":
    sys.exit(run())

"""``python -m pipeline``: the command line (see ``pipeline.cli``)."""

from pipeline.cli import main_entry

if __name__ == "__main__":
    main_entry()

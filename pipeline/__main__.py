"""``python -m pipeline``: the command line (see ``pipeline.cli.entry``)."""

from pipeline.cli.entry import main_entry

if __name__ == "__main__":
    main_entry()

"""The shipped examples: one valid file per document type, and one with deliberate bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import formats
from pipeline.cli.entry import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _type_of(path: Path) -> str:
    return path.name.split(".")[0].removesuffix("_with_bad_lines").upper()


def test_there_is_an_example_for_every_document_type():
    assert {_type_of(p) for p in EXAMPLES.glob("*.ndjson")} == set(formats.DOCUMENT_TYPES)


@pytest.mark.parametrize(
    "path", sorted(p for p in EXAMPLES.glob("*") if p.is_file()), ids=lambda p: p.name
)  # orchestrators/: not inputs
def test_each_example_validates_as_expected(path, tmp_path, capsys):
    config = tmp_path / "cfg.toml"
    mime = "TEXT_CSV" if path.suffix == ".csv" else "APPLICATION_X_NDJSON"
    config.write_text(f'[import]\ndocument_type = "{_type_of(path)}"\nmime_type = "{mime}"\n')
    code = main(["validate", "--config", str(config), str(path)])
    out = capsys.readouterr().out
    if "bad_lines" in path.name:
        assert code == 1 and "5 rejected" in out
    else:
        assert code == 0, out

"""Issue 13's acceptance, through the command line against the emulator over loopback.

- ``pipeline run FILE`` with no config and no token: exit 2 naming the token and ``--emulator``;
  with ``--emulator -q`` the summary says "emulator" (here).
- A refused token and an unknown import id: exit 2, nothing sent, a report.json whose outcome says
  why (``test_error_budget.test_a_refused_token_exits_2_with_a_report_that_says_why`` and
  ``test_an_unknown_import_id_exits_2_with_a_report_that_says_why``).
- The server refused K of N records: ``failed.ndjson`` has exactly K rows, each at its source file
  and line; ``pipeline retry`` sends exactly those K and, on a run with FAILED executions, exactly
  their records, nothing that succeeded (the emulator's accounting); NDJSON and CSV with quoted
  newlines, with the ``failed.ndjson`` the runs wrote (here, three runs deep: R1, its retry R2, the
  retry of R2).
- ``--max-errors 1%`` with 0.2 % refused: exit 0 and a warning; ``--max-errors 10`` with 37 refused:
  exit 1 (``test_error_budget.test_max_errors_1_percent_with_0_2_percent_refused_exits_0_with_a_warning``
  and ``test_max_errors_10_with_37_refused_exits_1``).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest

from pipeline import formats
from pipeline.cli.entry import main
from pipeline.emulator import EmulatorOptions
from pipeline.emulator.faults import FaultDice, FaultPlan

from ..helpers import SEGMENT_HEADER, EmulatorThread, activity

TOKEN = "issue13-acceptance-token-4b7f"
TOKEN_ENV = "PIPELINE_ISSUE13_TOKEN"


# --- the emulator only when asked ------------------------------------------------------------------


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with no config file anywhere, no token, no PIPELINE_* setting; state under tmp_path."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PIPELINE_") or name == "MICS_API_TOKEN":
            monkeypatch.delenv(name)
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    source = tmp_path / "in.ndjson"
    source.write_bytes(b"".join(orjson.dumps(activity(i)) + b"\n" for i in range(20)))
    return source


def test_no_config_and_no_token_exits_2_naming_the_token_and_the_emulator(nowhere, capsys):
    assert main(["run", str(nowhere)]) == 2
    out, err = capsys.readouterr()
    assert "MICS_API_TOKEN" in err and "--emulator" in err, err
    assert "Traceback" not in out + err
    assert not (nowhere.parent / "xdg_state_home").exists(), "no run directory: nothing was started"


def test_the_emulator_on_purpose_says_so_in_the_quiet_summary(nowhere, capsys):
    assert main(["run", "--emulator", "-q", str(nowhere)]) == 0
    out = capsys.readouterr().out
    assert "emulator" in out.lower() and "nothing was imported into mediarithmics" in out, out
    (report,) = (nowhere.parent / "xdg_state_home").rglob("report.json")
    assert orjson.loads(report.read_bytes())["emulator"] is True


# --- K of N refused, FAILED executions, and the retries -------------------------------------------


class Rec(NamedTuple):
    line: int  # the physical line where it starts
    text: bytes  # without its last line end
    bad: bool  # the server refuses it


def ndjson_source(path: Path, n: int = 1_200, bad_every: int = 40) -> list[Rec]:
    recs = []
    for i in range(n):
        bad = i % bad_every == 7
        body = orjson.dumps({"$type": "TOUCH", "$ts": i, "n": i}) if bad else orjson.dumps(activity(i))
        recs.append(Rec(i + 1, body, bad))
    path.write_bytes(b"".join(r.text + b"\n" for r in recs))
    return recs


def csv_source(path: Path, n: int = 600, bad_every: int = 35) -> list[Rec]:
    """USER_SEGMENT rows, every 5th with a quoted newline in its data_bag; every ``bad_every``-th
    (some of them two lines long) with an operation the server refuses."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SEGMENT_HEADER)
    recs, line = [], 2
    for i in range(n):
        bag = orjson.dumps({"note": f"row {i}, with a comma", "quote": 'say "hi"'}).decode()
        if i % 5 == 0:
            bag += "\nsecond line of the bag"
        bad = i % bad_every == 0
        row = io.StringIO(newline="")
        csv.writer(row, lineterminator="\n").writerow(["BOGUS" if bad else "UPDATE", "0", "1000", f"a{i}", "123", bag])
        text = row.getvalue()
        buf.write(text)
        recs.append(Rec(line, text[:-1].encode(), bad))
        line += text.count("\n")
    path.write_text(buf.getvalue(), newline="")
    assert any(r.bad and b"\n" in r.text for r in recs), "some refused records span two lines"
    return recs


def write_config(tmp_path: Path, url: str, *, is_csv: bool) -> Path:
    imp = 'document_type = "USER_SEGMENT"\nmime_type = "TEXT_CSV"\n' if is_csv else ""
    path = tmp_path / "import.toml"
    path.write_text(
        f'[api]\nurl = "{url}"\ntoken_env = "{TOKEN_ENV}"\ntimeout_s = 30\n'
        f"[import]\n{imp}"
        f'[batch]\nvalidate = false\nsizing = "fixed"\nmax_bytes = {6_000 if is_csv else 20_000}\n'
        "[upload]\nmax_attempts = 3\nsettle_window_s = 1\nconcurrency = 2\n"
        "[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\ntimeout_s = 60\n"
        f'[report]\ndir = "{tmp_path / "runs"}"\n'
    )
    return path


def run_dirs(tmp_path: Path) -> set[Path]:
    return {p.parent for p in (tmp_path / "runs").glob("*/journal.ndjson")}


def command(tmp_path: Path, *argv: str) -> tuple[int, Path, dict[str, Any]]:
    """A ``run`` or ``retry`` that makes one new run directory: its exit code, directory, report."""
    before = run_dirs(tmp_path)
    code = main([*argv])
    (new,) = run_dirs(tmp_path) - before
    report = orjson.loads((new / "report.json").read_bytes())
    assert report["exit_code"] == code
    return code, new, report


class Sent(NamedTuple):
    """What the emulator did with one run's uploads."""

    records: int  # records in its executions' files
    accepted: set[bytes]  # digests of the records it accepted
    refused: list[bytes]  # the records it refused, as it read them


def sent_by(emu: EmulatorThread, report: dict[str, Any]) -> Sent:
    ids = {e["id"] for e in report["executions"]}

    def collect() -> Sent:
        executions = [emu.emu.store.executions[i] for i in ids]
        accepted = {d for d, who in emu.accounting.accepted.items() if set(who) & ids}
        return Sent(sum(e.records for e in executions), accepted, [f.record for e in executions for f in e.failures])

    result: Sent = emu.call(collect)
    return result


def failed_rows(run_dir: Path) -> list[tuple[str, int, str]]:
    rows = [orjson.loads(x) for x in (run_dir / "failed.ndjson").read_bytes().splitlines()]
    assert all(set(r) == {"file", "line", "reason", "record", "execution_id"} and r["reason"] for r in rows)
    return sorted((r["file"], r["line"], r["record"]) for r in rows)


def rows_of(source: Path, recs: list[Rec]) -> list[tuple[str, int, str]]:
    return sorted((str(source), r.line, r.text.decode()) for r in recs)


def in_executions(recs: list[Rec], executions: list[dict[str, Any]]) -> list[Rec]:
    spans = [(e["source"]["first_line"], e["source"]["last_line"]) for e in executions]
    return [r for r in recs if any(lo <= r.line <= hi for lo, hi in spans)]


def digest(rec: Rec) -> bytes:
    return formats.record_digest(rec.text)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[EmulatorThread]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    options = EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0, faults={"failed": 0.4}, seed=7)
    with EmulatorThread(options) as server:
        yield server


def no_more_faults(emu: EmulatorThread) -> None:
    def clear() -> None:
        emu.emu.state.plan = FaultPlan()
        emu.emu.state.dice = FaultDice(FaultPlan(), 0)

    emu.call(clear)


@pytest.mark.parametrize("is_csv", [False, True], ids=["ndjson", "csv-quoted-newlines"])
def test_k_refused_of_n_are_mapped_and_retried_exactly_and_failed_executions_whole(tmp_path, emulator, is_csv):
    source = tmp_path / ("segments.csv" if is_csv else "activities.ndjson")
    recs = csv_source(source) if is_csv else ndjson_source(source)
    bad = [r for r in recs if r.bad]
    config = write_config(tmp_path, emulator.emu.base_url, is_csv=is_csv)

    # R1: some executions FAILED (a fault: no error file), the others SUCCEEDED with refused records
    code, r1, first = command(tmp_path, "run", "-q", "--config", str(config), str(source))
    assert code == 1 and first["outcome"] == "completed_with_failures"
    failed = [e for e in first["executions"] if e["status"] == "FAILED"]
    succeeded = [e for e in first["executions"] if e["status"] == "SUCCEEDED"]
    assert failed and succeeded, "the fault plan must fail some executions, not all"
    refused = in_executions(bad, succeeded)
    in_failed = in_executions(recs, failed)
    assert refused and any(r.bad for r in in_failed), "refusals in both kinds of batches"
    assert failed_rows(r1) == rows_of(source, refused), "K rows, each at its file and line, with its record"
    assert first["refused"]["count"] == len(refused)

    # R2 = retry R1: exactly the K refused and the records of the FAILED executions
    no_more_faults(emulator)
    code, r2, second = command(tmp_path, "retry", "-q", str(r1))
    sent = sent_by(emulator, second)
    assert sent.records == len(refused) + len(in_failed)
    assert sent.accepted == {digest(r) for r in in_failed if not r.bad}, "the FAILED batches' good records"
    assert sorted(sent.refused) == sorted(r.text for r in [*refused, *(r for r in in_failed if r.bad)])
    assert (second["retry_of"]["refused"], second["retry_of"]["not_delivered"]) == (len(refused), len(in_failed))
    assert code == 1 and failed_rows(r2) == rows_of(source, bad), "R2's refusals at the original lines"
    assert not [w for w in second["warnings"] if "does not read as it was sent" in w]

    # R3 = retry R2 (a retry's batches are pieces far apart): exactly the K refused again
    code, r3, third = command(tmp_path, "retry", "-q", str(r2))
    sent = sent_by(emulator, third)
    assert code == 1 and sent.records == len(bad) and not sent.accepted
    assert sorted(sent.refused) == sorted(r.text for r in bad)
    assert failed_rows(r3) == rows_of(source, bad)

    # every good record accepted exactly once over the three runs
    good = {digest(r) for r in recs if not r.bad}
    accepted = emulator.call(lambda: dict(emulator.accounting.accepted))
    assert set(accepted) == good and all(len(who) == 1 for who in accepted.values())

"""Issue 13, API facts learnt since, through the CLI against the embedded emulator (which shares
``formats`` with the reader): ``compartment_id`` is optional beside ``user_account_id``; a USER_CHOICE
UPSERT needs ``force_replace``, ``user_choice``, ``$processing_id`` and ``$choice_ts``; the singular
``USER_DEVICE_POINT_DELETION`` of some pages is refused with a hint to the plural."""

from __future__ import annotations

import orjson

from pipeline.cli.entry import main


def _run(tmp_path, capsys, lines: list[dict], document_type: str) -> tuple[int, dict | None, str]:
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    config = tmp_path / "cfg.toml"
    config.write_text(
        f'[import]\ndocument_type = "{document_type}"\n[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n'
        f'[report]\ndir = "{tmp_path / "runs"}"\n'
    )
    code = main(["run", "-q", "--emulator", "--config", str(config), str(src)])
    out, err = capsys.readouterr()
    reports = list((tmp_path / "runs").glob("*/report.json"))
    return code, orjson.loads(reports[0].read_bytes()) if reports else None, out + err


def test_user_account_id_without_compartment_id_is_sent_and_accepted(tmp_path, capsys):
    lines = [{"operation": "UPSERT", "user_account_id": f"u{i}", "user_profile": {"n": i}} for i in range(50)]
    code, report, text = _run(tmp_path, capsys, lines, "USER_PROFILE")
    assert code == 0, text
    assert report["records"]["rejected"] == 0 and report["records"]["succeeded"] == 50


def test_a_user_choice_upsert_needs_force_replace_and_choice_ts(tmp_path, capsys):
    good = {"operation": "UPSERT", "user_agent_id": "vec:1", "force_replace": True}
    lines = [
        {**good, "user_choice": {"$processing_id": "p", "$choice_ts": 1}},
        {"operation": "UPSERT", "user_agent_id": "vec:2", "user_choice": {"$processing_id": "p", "$choice_ts": 1}},
        {**good, "user_choice": {"$processing_id": "p"}},
        {"operation": "DELETE", "user_agent_id": "vec:3", "user_choice": {"$processing_id": "p"}},
    ]
    code, report, text = _run(tmp_path, capsys, lines, "USER_CHOICE")
    assert code == 1, text
    assert report["records"]["succeeded"] == 2 and report["records"]["rejected"] == 2
    assert ":2: operation UPSERT needs force_replace" in text
    assert ":3: operation UPSERT needs user_choice.$choice_ts" in text


def test_the_singular_device_point_deletion_is_refused_with_the_plural(tmp_path, capsys):
    lines = [{"type": "USER_AGENT", "user_agent_id": "vec:1"}]
    code, report, text = _run(tmp_path, capsys, lines, "USER_DEVICE_POINT_DELETION")
    assert code == 2 and report is None
    assert "import.document_type" in text and "did you mean USER_DEVICE_POINTS_DELETION" in text

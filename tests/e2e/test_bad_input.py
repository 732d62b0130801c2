"""Bad input, refused cleanly: each case names the file and line (or the config key) and the reason.

Runs go through the command line (``cli.main``) against the embedded emulator, as a user would.
"""

from __future__ import annotations

import gzip
import os
import zlib

import orjson
import pytest

from pipeline.cli.entry import main

from ..helpers import activity

GOOD = orjson.dumps(activity(1)).decode()
GOOD2 = orjson.dumps(activity(2)).decode()


def _config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "cfg.toml"
    path.write_text(
        f'[api]\nurl = "embedded"\n[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n'
        f'[report]\ndir = "{tmp_path / "runs"}"\n' + extra
    )
    return str(path)


def _run(tmp_path, capsys, *inputs, extra: str = "", args=()):
    code = main(["run", "-q", "--emulator", "--config", _config(tmp_path, extra), *args, *map(str, inputs)])
    out, err = capsys.readouterr()
    return code, out, err


def _rejects(tmp_path):
    files = list((tmp_path / "runs").glob("*/rejects.ndjson"))
    assert len(files) == 1
    return [orjson.loads(line) for line in files[0].read_bytes().splitlines()]


def _report(tmp_path):
    (path,) = (tmp_path / "runs").glob("*/report.json")
    return orjson.loads(path.read_bytes())


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- records rejected, listed, run goes on (exit 1) ---------------------------------------------

REJECTED = {
    "invalid UTF-8": (b'{"$user_agent_id": "vec:\xff\xfe", "$type": "TOUCH", "$ts": 1}\n', "UTF-8"),
    "JSON array": (f"[{GOOD},\n{GOOD2}]\n".encode(), "array"),
    "pretty-printed JSON": (b'{\n  "$user_agent_id": "vec:1",\n  "$type": "TOUCH",\n  "$ts": 1\n}\n', "JSON"),
    "missing required fields": (b'{"$user_agent_id": "vec:1", "$type": "TOUCH"}\n', "missing required field $ts"),
    "two identifiers": (b'{"$user_agent_id": "v", "$email_hash": "h", "$type": "T", "$ts": 1}\n', "two identifiers"),
    "binary file": (b"\x00\x01\x02garbage\x00" * 100, "binary file"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_bad_records_are_rejected_with_file_line_and_reason(case, tmp_path, capsys):
    data, words = REJECTED[case]
    path = _write(tmp_path, "in.ndjson", (GOOD + "\n").encode() + data)
    code, out, _ = _run(tmp_path, capsys, path)
    assert code == 1
    rejects = _rejects(tmp_path)
    assert rejects and all(r["file"] == str(path) and r["line"] >= 1 for r in rejects)
    assert any(words in r["reason"] for r in rejects), rejects
    assert f"{path}:" in out  # the summary's details name file:line: reason
    report = _report(tmp_path)
    if case == "binary file":  # a file skipped whole: reported apart, not as a rejected record
        (skipped,) = report["skipped_files"]
        assert skipped["path"] == str(path) and words in skipped["reason"] and report["records"]["rejected"] == 0
        return
    sample = report["rejects_sample"]
    assert sample and sample[0]["file"] == str(path) and words in " ".join(x["reason"] for x in sample)


def test_a_record_over_max_bytes_is_rejected_without_stopping_the_run(tmp_path, capsys):
    big = orjson.dumps(activity(3) | {"pad": "x" * 5000}).decode()
    path = _write(tmp_path, "in.ndjson", f"{GOOD}\n{big}\n{GOOD2}\n".encode())
    code, out, _ = _run(tmp_path, capsys, path, extra="[batch]\nmax_bytes = 2048\n")
    assert code == 1
    (reject,) = _rejects(tmp_path)
    assert reject["line"] == 2 and "max_bytes" in reject["reason"]
    assert _report(tmp_path)["records"]["succeeded"] == 2


def test_csv_problems_are_rejected_with_line_and_reason(tmp_path, capsys):
    header = "operation,expiration_duration,compartment_id,user_account_id,segment_id\n"
    no_header = _write(tmp_path, "a.csv", b"UPDATE,0,1000,u1,123\n")
    unknown = _write(tmp_path, "b.csv", b"operation,expiration_duration,colour\nUPDATE,0,red\n")
    open_quote = _write(tmp_path, "c.csv", (header + 'UPDATE,0,1000,u2,123\nUPDATE,0,1000,"u3,123\n').encode())
    extra = '[import]\ndocument_type = "USER_SEGMENT"\nmime_type = "TEXT_CSV"\n'
    code, out, _ = _run(tmp_path, capsys, no_header, unknown, open_quote, extra=extra)
    assert code == 1
    by_file = {r["file"]: r for r in _rejects(tmp_path)}
    assert "no header row" in by_file[str(no_header)]["reason"] and by_file[str(no_header)]["line"] == 1
    assert "unknown CSV column" in by_file[str(unknown)]["reason"]
    assert "unterminated quoted field" in by_file[str(open_quote)]["reason"] and by_file[str(open_quote)]["line"] == 3
    assert _report(tmp_path)["records"]["succeeded"] == 1


# --- accepted as they are (exit 0) --------------------------------------------------------------

ACCEPTED = {
    "BOM": b"\xef\xbb\xbf" + f"{GOOD}\n{GOOD2}\n".encode(),
    "CRLF line ends": f"{GOOD}\r\n{GOOD2}\r\n".encode(),
    "blank lines": f"\n{GOOD}\n\n  \n{GOOD2}\n\n".encode(),
    "last line without newline": f"{GOOD}\n{GOOD2}".encode(),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_harmless_oddities_are_accepted(case, tmp_path, capsys):
    path = _write(tmp_path, "in.ndjson", ACCEPTED[case])
    code, out, err = _run(tmp_path, capsys, path)
    assert code == 0, out + err
    assert _report(tmp_path)["records"]["succeeded"] == 2


def test_gzipped_input_is_accepted(tmp_path, capsys):
    path = tmp_path / "in.ndjson.gz"
    path.write_bytes(gzip.compress(f"{GOOD}\n{GOOD2}\n".encode()))
    code, out, _ = _run(tmp_path, capsys, path)
    assert code == 0 and _report(tmp_path)["records"]["succeeded"] == 2


def test_an_empty_file_is_a_warning_not_a_failure(tmp_path, capsys):
    empty = _write(tmp_path, "empty.ndjson", b"")
    full = _write(tmp_path, "full.ndjson", f"{GOOD}\n".encode())
    code, out, _ = _run(tmp_path, capsys, empty, full)
    assert code == 0
    assert _report(tmp_path)["warnings"] == [f"{empty}: no records in it (empty file)"]
    assert f"warning: {empty}: no records in it (empty file)" in out


# --- usage errors: nothing sent (exit 2) --------------------------------------------------------


def test_missing_file(tmp_path, capsys):
    code, _, err = _run(tmp_path, capsys, tmp_path / "nope.ndjson")
    assert code == 2 and str(tmp_path / "nope.ndjson") in err and "no such file" in err.lower()
    assert not (tmp_path / "runs").exists()


def test_directory_without_input_files(tmp_path, capsys):
    folder = tmp_path / "empty_dir"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    code, _, err = _run(tmp_path, capsys, folder)
    assert code == 2 and str(folder) in err and "no input files" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: an unreadable file cannot be made")
def test_unreadable_file(tmp_path, capsys):
    path = _write(tmp_path, "secret.ndjson", b"{}\n")
    path.chmod(0)
    code, _, err = _run(tmp_path, capsys, path)
    assert code == 2 and str(path) in err


def test_csv_for_a_type_other_than_user_segment(tmp_path, capsys):
    path = _write(tmp_path, "in.csv", b"operation,expiration_duration\nUPDATE,0\n")
    code, _, err = _run(tmp_path, capsys, path)
    assert code == 2 and "import.mime_type" in err and "USER_SEGMENT" in err


@pytest.mark.parametrize(
    "extra, key",
    [
        ("[batch]\ncolour = 1\n", "batch.colour"),
        ('[upload]\nconcurrency = "four"\n', "upload.concurrency"),
        ("[batch]\nmax_bytes = 100000001\n", "batch.max_bytes"),
    ],
)
def test_config_errors_name_the_key(extra, key, tmp_path, capsys):
    path = _write(tmp_path, "in.ndjson", f"{GOOD}\n".encode())
    code, _, err = _run(tmp_path, capsys, path, extra=extra)
    assert code == 2 and f"{tmp_path / 'cfg.toml'}: {key}: " in err  # the file and the key
    assert not (tmp_path / "runs").exists()


def test_a_missing_token_variable_stops_before_anything_is_sent(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MICS_API_TOKEN", raising=False)
    path = _write(tmp_path, "in.ndjson", f"{GOOD}\n".encode())
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[api]\nurl = "http://127.0.0.1:9"\n[report]\ndir = "{tmp_path / "runs"}"\n')
    code = main(["run", "-q", "--config", str(cfg), str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "MICS_API_TOKEN is not set" in err


def test_plain_http_to_a_remote_host_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MICS_API_TOKEN", "x")
    path = _write(tmp_path, "in.ndjson", f"{GOOD}\n".encode())
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        '[api]\nurl = "http://api.example.com"\n[import]\ndatamart_id = "1502"\n'
        f'[report]\ndir = "{tmp_path / "runs"}"\n'
    )
    code = main(["run", "-q", "--config", str(cfg), str(path)])
    assert code == 2 and "--allow-insecure-http" in capsys.readouterr().err


def test_a_truncated_gzip_sends_what_was_read_and_says_why_the_rest_was_not(tmp_path, capsys):
    data = gzip.compress(("\n".join(orjson.dumps(activity(i)).decode() for i in range(3000)) + "\n").encode())
    path = _write(tmp_path, "in.ndjson.gz", data[: len(data) // 2])
    code, _, _ = _run(tmp_path, capsys, path, extra="[batch]\nmax_bytes = 65536\n")
    report = _report(tmp_path)
    assert code == 1 and report["outcome"] == "completed_with_failures"
    assert any("truncated" in w and str(path) in w for w in report["warnings"]), report["warnings"]
    decoded = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data[: len(data) // 2])
    whole_lines = decoded.count(b"\n")  # everything gzip could decode is sent; the partial last line is not
    assert report["records"]["succeeded"] == whole_lines < 3000


def test_a_config_left_on_the_embedded_emulator_is_refused_without_emulator(tmp_path, capsys):
    # a cron job with api.url = "embedded" left from an example would import nothing, every night, exit 0
    path = _write(tmp_path, "in.ndjson", f"{GOOD}\n".encode())
    code = main(["run", "-q", "--config", _config(tmp_path), str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "--emulator" in err and "imports nothing" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_no_config_and_no_emulator_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "in.ndjson", f"{GOOD}\n".encode())
    code = main(["run", "-q", str(path)])
    err = capsys.readouterr().err
    # the API by default, whose datamart must be named: the message says so, with the token and --emulator
    assert code == 2 and "import.datamart_id" in err and "MICS_API_TOKEN" in err and "--emulator" in err


def test_a_run_on_the_emulator_says_so_in_the_summary_and_the_report(tmp_path, capsys):
    path = _write(tmp_path, "in.ndjson", f"{GOOD}\n".encode())
    code = main(["run", "--emulator", "--config", _config(tmp_path), str(path)])
    out = capsys.readouterr().out
    assert code == 0 and "EMBEDDED EMULATOR: nothing was imported into mediarithmics" in out
    report = _report(tmp_path)
    assert report["emulator"] is True
    html = next((tmp_path / "runs").glob("*/report.html")).read_text()
    assert "EMBEDDED EMULATOR" in html

"""Settings from the environment and flags, through the command line: precedence flag >
environment > file > default, errors that name their origin, the config file found at
./pipeline.toml or $XDG_CONFIG_HOME/pipeline/config.toml, ``pipeline config show``, and no way to
reach the embedded emulator by accident. The conftest's autouse fixture gives each test an empty
HOME, XDG_CONFIG_HOME and working directory."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from pipeline.cli.entry import main
from pipeline.config_keys import config_keys
from pipeline.emulator import EmulatorOptions

from ..helpers import EmulatorThread, runs_home

TOKEN = "settings-test-token-7c1d"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAST_POLLING = {"PIPELINE_POLL_INTERVAL_S": "0.02", "PIPELINE_POLL_MAX_INTERVAL_S": "0.1"}


@pytest.fixture
def emulator(monkeypatch):
    monkeypatch.setenv("MICS_API_TOKEN", TOKEN)
    with EmulatorThread(EmulatorOptions(token=TOKEN, process_ms=1, per_line_us=0)) as server:
        yield server


def show(capsys, *argv: str) -> dict:
    assert main(["config", "show", "--json", *argv]) == 0
    return orjson.loads(capsys.readouterr().out)


def keys_of(shown: dict) -> dict[str, dict]:
    return {k["key"]: k for k in shown["keys"]}


# --- the acceptance run: no TOML file at all ------------------------------------------------------


def test_run_from_the_environment_and_flags_with_no_config_file(emulator, monkeypatch, capsys):
    for name, value in FAST_POLLING.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIPELINE_IMPORT_DATAMART_ID", "1502")
    source = str(EXAMPLES / "user_profile.ndjson")
    argv = ["run", "-v", "--document-type", "USER_PROFILE", "--url", emulator.emu.base_url, source]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "config: no config file" in captured.err  # -v says which file was used
    imports = emulator.call(lambda: list(emulator.emu.store.imports.values()))
    assert [(i["datamart_id"], i["document_type"]) for i in imports] == [("1502", "USER_PROFILE")]
    report = orjson.loads(next(runs_home().iterdir()).joinpath("report.json").read_bytes())
    assert report["outcome"] == "succeeded" and report["records"]["succeeded"] > 0
    assert report["target"] == emulator.emu.base_url and not report["emulator"]
    assert report["config_origin"] == {
        "file": None,
        "found_as": None,
        "set_by": {
            "import.datamart_id": "PIPELINE_IMPORT_DATAMART_ID",
            "poll.interval_s": "PIPELINE_POLL_INTERVAL_S",
            "poll.max_interval_s": "PIPELINE_POLL_MAX_INTERVAL_S",
            "import.document_type": "--document-type",
            "api.url": "--url",
        },
    }


def test_the_report_names_the_config_file_found(emulator, monkeypatch, capsys):
    Path("pipeline.toml").write_text(
        f'[api]\nurl = "{emulator.emu.base_url}"\n[poll]\ninterval_s = 0.02\nmax_interval_s = 0.1\n'
    )
    assert main(["run", "-v", "--concurrency", "2", str(EXAMPLES / "user_activity.ndjson")]) == 0
    assert "config: pipeline.toml (found in the current directory)" in capsys.readouterr().err
    report = orjson.loads(next(runs_home().iterdir()).joinpath("report.json").read_bytes())
    origin = report["config_origin"]
    assert (origin["file"], origin["found_as"]) == ("pipeline.toml", "found in the current directory")
    assert origin["set_by"]["api.url"] == "pipeline.toml" and origin["set_by"]["upload.concurrency"] == "--concurrency"


# --- precedence -----------------------------------------------------------------------------------


def test_precedence_flag_over_environment_over_file_over_default(tmp_path, monkeypatch, capsys):
    config = tmp_path / "import.toml"
    config.write_text(
        '[batch]\nmax_bytes = 2000000\nmax_lines = 7\n[upload]\nconcurrency = 4\n[api]\nurl = "https://x.example"\n'
    )
    monkeypatch.setenv("PIPELINE_BATCH_MAX_BYTES", "3000000")
    monkeypatch.setenv("PIPELINE_UPLOAD_CONCURRENCY", "5")
    monkeypatch.setenv("PIPELINE_BATCH_VALIDATE", "false")
    keys = keys_of(show(capsys, "--config", str(config), "--max-bytes", "4000000"))
    assert keys["batch.max_bytes"] | {"env": None} == {
        "key": "batch.max_bytes",
        "value": 4_000_000,
        "source": "flag",
        "origin": "--max-bytes",
        "env": None,
    }
    assert (keys["upload.concurrency"]["value"], keys["upload.concurrency"]["source"]) == (5, "environment")
    assert keys["upload.concurrency"]["origin"] == "PIPELINE_UPLOAD_CONCURRENCY"
    assert (keys["batch.validate"]["value"], keys["batch.validate"]["source"]) == (False, "environment")
    assert (keys["batch.max_lines"]["value"], keys["batch.max_lines"]["origin"]) == (7, str(config))
    assert (keys["api.url"]["value"], keys["api.url"]["source"]) == ("https://x.example", "file")
    assert (keys["poll.timeout_s"]["value"], keys["poll.timeout_s"]["source"]) == (21600.0, "default")


def test_config_show_lists_every_key_with_its_source_and_never_the_token(monkeypatch, capsys):
    monkeypatch.setenv("MICS_API_TOKEN", TOKEN)
    monkeypatch.setenv("PIPELINE_IMPORT_DATAMART_ID", "1502")
    assert main(["config", "show", "--url", "https://api.example"]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and TOKEN[:8] not in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:] if "." in line.split()[0]}
    assert set(rows) == {k.dotted for k in config_keys()}  # every key, derived from the dataclasses
    assert rows["import.datamart_id"] == ["1502", "environment", "PIPELINE_IMPORT_DATAMART_ID"]
    assert rows["api.url"] == ["https://api.example", "flag", "--url"]
    assert rows["report.dir"] == ['""', "default"]  # empty: the XDG state directory (config.runs_base)
    assert "MICS_API_TOKEN is set" in out
    shown = show(capsys)
    assert shown["token"] == {"env": "MICS_API_TOKEN", "set": True}
    assert TOKEN not in orjson.dumps(shown).decode()
    assert {k["env"] for k in shown["keys"]} == {f"PIPELINE_{k.section}_{k.name}".upper() for k in config_keys()}


# --- errors that name their origin -------------------------------------------------------------


@pytest.mark.parametrize(
    "env, argv, message",
    [
        ({"PIPELINE_BATCH_MAX_BYTES": "1000000000"}, [], "error: PIPELINE_BATCH_MAX_BYTES: must be between 1,024 and"),
        ({}, ["--max-bytes", "12x"], "error: --max-bytes: must be an integer, got '12x'"),
        ({}, ["--concurrency", "65"], "error: --concurrency: must be between 1 and 64, got 65"),
        ({"PIPELINE_BATCH_VALIDATE": "maybe"}, [], "error: PIPELINE_BATCH_VALIDATE: must be true or false"),
        ({"PIPELINE_IMPORT_DOCUMENT_TYPE": "USER_THING"}, [], "error: PIPELINE_IMPORT_DOCUMENT_TYPE: must be one of"),
        ({}, ["--url", "ftp://x"], "error: --url: must be an http(s) URL"),
        ({}, ["--import-id", " "], "error: --import-id: must not be empty"),
    ],
)
def test_a_bad_value_names_its_origin(env, argv, message, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "show", *argv]) == 2
    assert capsys.readouterr().err.split(" ", 1)[1].startswith(message)  # after the timestamp
    assert main(["run", *argv, str(EXAMPLES / "user_activity.ndjson")]) == 2  # run checks the same way
    assert capsys.readouterr().err.split(" ", 1)[1].startswith(message)


def test_a_bad_file_value_names_the_file_and_the_key(tmp_path, capsys):
    config = tmp_path / "import.toml"
    config.write_text("[batch]\nmax_bytes = 5\n")
    assert main(["validate", "--config", str(config), str(EXAMPLES / "user_activity.ndjson")]) == 2
    err = capsys.readouterr().err
    assert err.split(" ", 1)[1].startswith(f"error: {config}: batch.max_bytes: must be between 1,024")
    assert (
        main(["validate", "--config", str(config), "--max-bytes", "2048", str(EXAMPLES / "user_activity.ndjson")]) == 0
    )
    config.write_text("[batch]\ncolour = 1\n")
    assert main(["config", "show", "--config", str(config)]) == 2
    assert capsys.readouterr().err.split(" ", 1)[1].startswith(f"error: {config}: batch.colour: unknown key")


def test_unknown_and_empty_variables_are_warned_about_with_the_nearest_key(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_BATCH_MAXBYTES", "3")
    monkeypatch.setenv("PIPELINE_IMPORT_DATAMART_ID", "")
    monkeypatch.setenv("PIPELINE_ZZZ", "1")
    shown = show(capsys)
    assert keys_of(shown)["import.datamart_id"]["source"] == "default"
    assert shown["warnings"] == [
        "PIPELINE_IMPORT_DATAMART_ID is set but empty: ignored",
        "PIPELINE_BATCH_MAXBYTES is set but is no setting (ignored); did you mean PIPELINE_BATCH_MAX_BYTES?",
        "PIPELINE_ZZZ is set but is no setting (ignored); `pipeline config show` lists the settings",
    ]
    monkeypatch.setenv("PIPELINE_API_TOKEN_ENV", "PIPELINE_MY_TOKEN")  # the token's variable is no unknown
    monkeypatch.setenv("PIPELINE_MY_TOKEN", TOKEN)
    monkeypatch.delenv("PIPELINE_ZZZ")
    monkeypatch.delenv("PIPELINE_BATCH_MAXBYTES")
    assert main(["config", "show"]) == 0
    captured = capsys.readouterr()
    assert "PIPELINE_MY_TOKEN is set but" not in captured.err and "PIPELINE_MY_TOKEN is set" in captured.out


# --- which file -----------------------------------------------------------------------------------


def test_the_config_file_is_found_in_the_working_directory_then_the_user_config(tmp_path, capsys):
    user = Path(os.environ["XDG_CONFIG_HOME"]) / "pipeline" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[upload]\nconcurrency = 3\n")
    shown = show(capsys)
    assert (shown["config_file"], keys_of(shown)["upload.concurrency"]["origin"]) == (str(user), str(user))
    Path("pipeline.toml").write_text("[upload]\nconcurrency = 2\n")
    shown = show(capsys)
    assert shown["config_file"] == "pipeline.toml" and shown["found_as"] == "found in the current directory"
    assert keys_of(shown)["upload.concurrency"]["value"] == 2
    given = tmp_path / "given.toml"
    given.write_text("[upload]\nconcurrency = 1\n")
    shown = show(capsys, "--config", str(given))
    assert keys_of(shown)["upload.concurrency"]["value"] == 1 and shown["found_as"] == "given with --config"


def test_without_xdg_config_home_the_user_config_is_under_home(monkeypatch, capsys):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    user = Path(os.environ["HOME"]) / ".config" / "pipeline" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[import]\ndatamart_id = "77"\n')
    assert keys_of(show(capsys))["import.datamart_id"]["value"] == "77"


def test_the_suite_never_reads_the_developers_settings():
    """The conftest fixture: HOME, XDG_CONFIG_HOME and the working directory are the test's own."""
    repo = Path(__file__).resolve().parents[2]
    assert Path.cwd() != repo and not Path("pipeline.toml").exists()
    assert Path(os.environ["HOME"]) != Path(os.path.expanduser("~root"))
    assert not any(Path(os.environ["XDG_CONFIG_HOME"]).iterdir())
    assert not [n for n in os.environ if n.startswith("PIPELINE_")]


# --- the emulator only on purpose ---------------------------------------------------------------


@pytest.mark.parametrize(
    "env, argv, origin",
    [({}, ["--url", "embedded"], "flag --url"), ({"PIPELINE_API_URL": "embedded"}, [], "environment PIPELINE_API_URL")],
)
def test_embedded_from_the_environment_or_a_flag_is_refused_like_from_a_file(env, argv, origin, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run", *argv, str(EXAMPLES / "user_activity.ndjson")]) == 2
    err = capsys.readouterr().err
    assert f'is "embedded" ({origin})' in err and "--emulator" in err
    assert not runs_home().exists()


def test_emulator_flag_and_url_flag_conflict_but_the_emulator_beats_the_environment(monkeypatch, capsys):
    source = str(EXAMPLES / "user_activity.ndjson")
    assert main(["run", "--emulator", "--url", "https://api.example", source]) == 2
    assert "give --url or --emulator, not both" in capsys.readouterr().err
    monkeypatch.setenv("PIPELINE_API_URL", "https://api.example")
    for name, value in FAST_POLLING.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "-q", "--emulator", source]) == 0
    assert "emulator" in capsys.readouterr().out.lower()


def test_no_config_anywhere_is_refused_naming_the_datamart_the_token_and_the_emulator(capsys):
    assert main(["run", str(EXAMPLES / "user_activity.ndjson")]) == 2
    err = capsys.readouterr().err
    assert "import.datamart_id" in err and "MICS_API_TOKEN" in err and "--emulator" in err


# --- which command takes which flag ---------------------------------------------------------------


def test_validate_takes_the_reading_flags_only(capsys):
    source = str(EXAMPLES / "user_profile.ndjson")
    assert main(["validate", "--document-type", "USER_PROFILE", "--max-bytes", "4096", source]) == 0
    assert "USER_PROFILE" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--url", "https://x.example", source])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv", [["run"], ["validate"], ["config", "show"]])
def test_help_names_the_flags_and_their_variables(argv, capsys):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert "--max-bytes N" in out and "PIPELINE_BATCH_MAX_BYTES" in out and "pipeline.toml" in out
    assert "example:" in out

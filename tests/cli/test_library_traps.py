"""Issue 13, the library's traps, each through ``pipeline.run`` against the embedded emulator:
sections given as dicts, the ``on_event`` signature and a callback that raises, ``run()`` inside a
running event loop. (The unguarded ``__main__`` script: ``test_library_guard.py``.)"""

from __future__ import annotations

import asyncio

import pytest

import pipeline
from tests.helpers import write_ndjson


def _config(tmp_path, **sections):
    return pipeline.Config(
        api={"url": "embedded"}, report={"dir": str(tmp_path / "runs")}, poll={"interval_s": 0.02}, **sections
    )


def test_sections_given_as_dicts_are_converted_and_checked(tmp_path):
    config = _config(tmp_path, import_={"document_type": "USER_ACTIVITY"})
    assert isinstance(config.api, pipeline.config.ApiSettings) and config.api.url == "embedded"
    report = pipeline.run(config, [write_ndjson(tmp_path / "in.ndjson", range(20))])
    assert report["outcome"] == "succeeded" and report["records"]["succeeded"] == 20
    with pytest.raises(pipeline.ConfigError, match="api.urll': unknown key"):
        pipeline.Config(api={"urll": "x"})
    with pytest.raises(pipeline.ConfigError, match="'batch': must be a dict of its keys or a BatchSettings"):
        pipeline.Config(batch=3)
    with pytest.raises(pipeline.ConfigError, match="batch.max_bytes"):
        pipeline.Config(batch={"max_bytes": "big"})


def test_a_callback_with_one_argument_is_refused_before_anything(tmp_path):
    options = pipeline.RunOptions(on_event=lambda event: None)
    with pytest.raises(pipeline.UsageError, match=r"on_event must accept two arguments: on_event\(event"):
        pipeline.run(_config(tmp_path), [write_ndjson(tmp_path / "in.ndjson", range(5))], options)
    assert not (tmp_path / "runs").exists()


def test_a_callback_that_raises_is_reported_once_and_the_run_goes_on(tmp_path, capsys):
    calls = []

    def on_event(event: str, fields: dict) -> None:
        calls.append(event)
        raise ValueError("listener bug")

    options = pipeline.RunOptions(on_event=on_event)
    report = pipeline.run(_config(tmp_path), [write_ndjson(tmp_path / "in.ndjson", range(50))], options)
    assert report["outcome"] == "succeeded" and report["records"]["succeeded"] == 50
    assert len(calls) == 1  # not called again
    told = [w for w in report["warnings"] if "on_event callback raised ValueError: listener bug" in w]
    assert len(told) == 1
    assert capsys.readouterr().err.count("on_event callback raised") == 1


def test_a_well_typed_callback_gets_every_event_with_its_fields(tmp_path):
    seen: list[tuple[str, dict]] = []
    options = pipeline.RunOptions(on_event=lambda event, fields: seen.append((event, fields)))
    pipeline.run(_config(tmp_path), [write_ndjson(tmp_path / "in.ndjson", range(10))], options)
    names = [name for name, _ in seen]
    assert names[0] == "target" and names[-1] == "run_finished"
    assert all(isinstance(name, str) and isinstance(fields, dict) for name, fields in seen)


def test_run_inside_a_running_loop_says_to_use_run_async(tmp_path):
    config = _config(tmp_path)
    source = write_ndjson(tmp_path / "in.ndjson", range(5))

    async def notebook_cell():
        with pytest.raises(pipeline.UsageError, match=r"use `await pipeline.run_async\(...\)`"):
            pipeline.run(config, [source])
        with pytest.raises(pipeline.UsageError, match=r"await pipeline.resume_async"):
            pipeline.resume(tmp_path / "nothing")
        return await pipeline.run_async(config, [source])  # what it says works

    assert asyncio.run(notebook_cell())["outcome"] == "succeeded"


def test_a_config_that_is_not_one_is_refused(tmp_path):
    with pytest.raises(pipeline.UsageError, match="config must be a pipeline.Config"):
        pipeline.run({"api": {"url": "embedded"}}, [write_ndjson(tmp_path / "in.ndjson", range(5))])

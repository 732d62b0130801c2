"""What a run learns of the platform from its executions, and which earlier run a new one learns from."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from pipeline.engine.platform_profile import MAX_LOOKED_AT, keep_profile, learned_profile, profile_of
from pipeline.reading.platform_model import PlatformProfile

from ..helpers import batch_state

MB = 1_000_000
T0 = 1_800_000_000.0
PROFILE = {"slots": 4, "slots_exact": True, "base_s": 1.0, "s_per_mb": 0.03, "conn_mbps": 50.0, "link_mbps": 200.0}
PROFILE |= {"max_uploads": None, "learned_from": "old"}


def done(number: int, mb: float, start: float, end: float, *, up: tuple[float, float] = (0.0, 0.5), **fields):
    """A batch whose execution SUCCEEDED, processed from ``start`` to ``end`` (seconds after T0),
    uploaded over ``up``."""
    return batch_state(
        number,
        size=int(mb * MB),
        status="SUCCEEDED",
        started_at=T0 + start,
        finished_at=T0 + end,
        upload_started_at=T0 + up[0],
        uploaded_at=T0 + up[1],
        **fields,
    )


def queue_on_two_slots():
    """Four executions of 1 s + 0.1 s/MB on 2 slots: the 3rd and 4th wait, and start as a slot frees."""
    return [
        done(1, 5, 0.5, 2.0),  # 1.5 s
        done(2, 10, 0.6, 2.6),  # 2 s
        done(3, 10, 2.0, 4.0, up=(0.0, 1.0)),  # started the moment no. 1 ended
        done(4, 20, 2.6, 5.6, up=(0.0, 1.5)),  # 3 s, the moment no. 2 ended
    ]


def test_a_queue_shows_the_slots_and_the_fit_shows_the_processing_time():
    p = profile_of(queue_on_two_slots(), None, run_id="r1", planned_from=None)
    assert p is not None
    assert (p.slots, p.slots_exact) == (2, True)
    assert p.base_s == pytest.approx(1.0) and p.s_per_mb == pytest.approx(0.1)
    assert p.conn_mbps == pytest.approx(20.0)  # 10 MB in 0.5 s
    assert p.link_mbps == pytest.approx(45 / 1.5)  # 45 MB while some upload was in flight: 0.0-1.5 s
    assert p.max_uploads is None and p.learned_from == "r1"


def test_without_a_queue_the_slots_are_only_a_floor():
    batches = [done(1, 5, 0.5, 2.0), done(2, 10, 0.6, 2.6), done(3, 10, 2.3, 4.3)]  # no start at an end
    p = profile_of(batches, None, run_id="r1", planned_from=None)
    assert p is not None and (p.slots, p.slots_exact) == (2, False)


def test_a_floor_does_not_lower_what_an_earlier_run_found_exact_and_a_larger_one_raises_it():
    batches = [done(1, 5, 0.5, 2.0), done(2, 10, 0.6, 2.6), done(3, 10, 2.3, 4.3)]
    exact4 = PlatformProfile(4, True, 1.0, 0.1, 20.0, 50.0, None, "r0")
    p = profile_of(batches, None, run_id="r1", planned_from=exact4)
    assert p is not None and (p.slots, p.slots_exact) == (4, True)
    floor1 = PlatformProfile(1, False, 1.0, 0.1, 20.0, 50.0, None, "r0")
    p = profile_of(batches, None, run_id="r1", planned_from=floor1)
    assert p is not None and (p.slots, p.slots_exact) == (2, False)


def test_batches_of_one_size_borrow_the_fit_of_the_profile_they_were_planned_from():
    same = [done(1, 10, 0.5, 2.5), done(2, 10, 0.6, 2.6)]
    assert profile_of(same, None, run_id="r1", planned_from=None) is None
    earlier = PlatformProfile(4, True, 0.7, 0.05, 20.0, 50.0, None, "r0")
    p = profile_of(same, None, run_id="r1", planned_from=earlier)
    assert p is not None and (p.base_s, p.s_per_mb) == (0.7, 0.05)


def test_failures_and_executions_without_dates_teach_nothing():
    batches = [done(1, 5, 0.5, 2.0), batch_state(2, size=MB, status="FAILED", started_at=T0, finished_at=T0 + 9)]
    batches.append(batch_state(3, size=MB, status="SUCCEEDED"))
    assert profile_of(batches, None, run_id="r1", planned_from=None) is None


def test_a_throttled_run_keeps_the_limit_it_ended_on():
    throughput = {"throttled": 3, "timeline": [[0.0, 8, 0, 0], [1.0, 2, 2, 5]], "upload_mb_s": 40.0}
    p = profile_of(queue_on_two_slots(), throughput, run_id="r1", planned_from=None)  # type: ignore[arg-type]
    assert p is not None and p.max_uploads == 2


def _run_dir(base: Path, name: str, *, url: str, outcome: str, profile: dict | None, mtime: float, emulator=False):
    """A run directory as a run leaves it: its journal's first line, and what ``keep_profile`` keeps."""
    run_dir = base / name
    run_dir.mkdir(parents=True)
    first = {"event": "run_started", "target": url, "config": {"import": {"datamart_id": 1, "document_type": "UA"}}}
    (run_dir / "journal.ndjson").write_bytes(orjson.dumps(first) + b"\n")
    report = {"run_id": name, "outcome": outcome, "finished_at": name, "emulator": emulator}
    keep_profile(run_dir, {**report, "platform": {"profile": profile, "plan": None}})  # type: ignore[typeddict-item]
    os.utime(run_dir / "journal.ndjson", (mtime, mtime))
    return run_dir


def test_the_newest_finished_run_to_the_same_place_is_learned_from(tmp_path):
    config = {"import": {"datamart_id": 1, "document_type": "UA"}}
    kept = PlatformProfile(4, True, 1.0, 0.03, 50.0, 200.0, None, "old").to_json()
    newer = {**kept, "learned_from": "new"}
    _run_dir(tmp_path, "a-old", url="https://api.example/", outcome="succeeded", profile=kept, mtime=1000)
    _run_dir(tmp_path, "b-new", url="https://api.example", outcome="completed_with_failures", profile=newer, mtime=2000)
    _run_dir(tmp_path, "c-other", url="https://other.example", outcome="succeeded", profile=newer, mtime=3000)
    _run_dir(tmp_path, "d-stopped", url="https://api.example", outcome="interrupted", profile=newer, mtime=4000)
    emulated = {**kept, "learned_from": "emulated"}
    _run_dir(
        tmp_path, "e-emu", url="https://api.example", outcome="succeeded", profile=emulated, mtime=5000, emulator=True
    )
    assert sorted(p.parent.name for p in tmp_path.glob("*/platform.json")) == ["a-old", "b-new", "c-other"]
    found = learned_profile(tmp_path, "https://api.example", config)
    assert found is not None and found.learned_from == "new"
    assert learned_profile(tmp_path, "https://api.example", {"import": {"datamart_id": 2}}) is None
    assert learned_profile(tmp_path / "none", "https://api.example", config) is None


def test_a_run_that_no_longer_finishes_for_good_keeps_no_stale_profile(tmp_path):
    run_dir = _run_dir(tmp_path, "r", url="https://api.example", outcome="succeeded", profile=PROFILE, mtime=1000)
    assert (run_dir / "platform.json").is_file()
    keep_profile(run_dir, {"run_id": "r", "outcome": "succeeded", "finished_at": "x", "emulator": False})  # type: ignore[typeddict-item]
    assert not (run_dir / "platform.json").exists()


def test_a_profile_that_cannot_be_written_costs_the_run_nothing(tmp_path, monkeypatch):
    from pipeline.engine import platform_profile

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(platform_profile, "write_json_atomically", full_disk)
    report = {"run_id": "r", "outcome": "succeeded", "finished_at": "x", "emulator": False}
    keep_profile(tmp_path, {**report, "platform": {"profile": PROFILE, "plan": None}})  # type: ignore[typeddict-item]
    assert not (tmp_path / "platform.json").exists()


def test_only_the_newest_runs_to_the_place_are_looked_at(tmp_path):
    config = {"import": {"datamart_id": 1, "document_type": "UA"}}
    _run_dir(tmp_path, "old", url="https://api.example", outcome="succeeded", profile=PROFILE, mtime=1000)
    _run_dir(tmp_path, "other", url="https://other.example", outcome="succeeded", profile=None, mtime=9000)
    for k in range(MAX_LOOKED_AT - 1):  # newer runs of the place that kept nothing (one execution each, say)
        _run_dir(tmp_path, f"n{k}", url="https://api.example", outcome="succeeded", profile=None, mtime=2000 + k)
    assert learned_profile(tmp_path, "https://api.example", config) is not None  # another place is not counted
    _run_dir(tmp_path, "last", url="https://api.example", outcome="succeeded", profile=None, mtime=8000)
    assert learned_profile(tmp_path, "https://api.example", config) is None


def test_a_start_a_millisecond_before_the_end_it_waited_for_is_still_a_handover():
    batches = queue_on_two_slots()
    batches[2].started_at -= 0.001  # server dates are whole ms, each rounded on its own
    p = profile_of(batches, None, run_id="r1", planned_from=None)
    assert p is not None and (p.slots, p.slots_exact) == (2, True)

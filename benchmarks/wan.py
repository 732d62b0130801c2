"""The WAN scenarios of ``run.py --scenario wan``: their parameters, the lower bound, the report.

Three scenarios, each an emulator whose link and platform are shaped by the parameters below:

| scenario | latency | per connection | uplink | slots | per execution | per record | uploads |
|---|---|---|---|---|---|---|---|
| link | 40 ms | 10 MB/s | 60 MB/s | 16 | 0.5 s | 1 us | any number |
| platform | 20 ms | 50 MB/s | 200 MB/s | 4 | 1 s | 10 us | any number |
| throttled | 40 ms | 20 MB/s | 100 MB/s | 16 | 0.5 s | 1 us | 2 in flight, more get 429 + Retry-After 1 s |

``--wan-params`` changes them (``parse_params``), ``--vary SEED`` draws other values of the same
kinds (``vary``); the time no client can beat on a scenario is ``pipeline.bench.bound.lower_bound_s``.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime

from pipeline.bench.bound import usable_link_mbps


@dataclass(frozen=True)
class WanParams:
    latency_ms: float  # added to every request (emulator --latency-ms)
    conn_mbps: float  # upload bandwidth per connection, MB/s (--bandwidth)
    uplink_mbps: float  # upload bandwidth shared by every connection, MB/s (--uplink)
    slots: int  # executions processed at once (--slots)
    base_s: float  # processing time per execution (--process-ms)
    per_record_us: float  # processing time per record (--per-line-us)
    max_uploads: int = 0  # uploads in flight at most, more get 429 (--max-uploads); 0: no cap
    retry_after_s: int = 1  # Retry-After of those 429 (--retry-after)

    def usable_link_mbps(self) -> float:
        """What the link gives a client that opens as many connections as it may."""
        return usable_link_mbps(self)

    def describe(self) -> str:
        cap = (
            f"{self.max_uploads} uploads in flight (429 + Retry-After {self.retry_after_s} s)"
            if self.max_uploads
            else "uploads not capped"
        )
        return (
            f"latency {self.latency_ms:g} ms, {self.conn_mbps:g} MB/s per connection, "
            f"uplink {self.uplink_mbps:g} MB/s, {self.slots} slots, "
            f"{self.base_s:g} s + {self.per_record_us:g} us/record per execution, {cap}"
        )


#: short name -> (title, default parameters, goal of pipeline / bound)
SCENARIOS: dict[str, tuple[str, WanParams, float]] = {
    "link": ("link-bound", WanParams(40, 10, 60, 16, 0.5, 1), 1.5),
    "platform": ("platform-bound", WanParams(20, 50, 200, 4, 1.0, 10), 2.0),
    "throttled": ("throttled", WanParams(40, 20, 100, 16, 0.5, 1, max_uploads=2, retry_after_s=1), 1.5),
}
GOAL_SHELL = 1.3  # xargs -P 4 curl / pipeline, at least

#: ``--wan-params`` keys -> WanParams fields
KEYS = {
    "latency": "latency_ms",
    "conn": "conn_mbps",
    "uplink": "uplink_mbps",
    "slots": "slots",
    "base": "base_s",
    "per_record_us": "per_record_us",
    "cap": "max_uploads",
    "retry_after": "retry_after_s",
}
INT_FIELDS = {f.name for f in fields(WanParams) if f.type == "int"}


def parse_params(specs: list[str], names: list[str]) -> dict[str, dict[str, float]]:
    """``--wan-params`` values -> {scenario: {field: value}}.

    A spec is ``[scenario:]key=value,key=value``; several specs may be joined by ``;`` or given
    as several options. Without ``scenario:`` it applies to every chosen scenario.
    """
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    for spec in specs:
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            target, _, body = part.rpartition(":")
            targets = [target] if target else names
            for t in targets:
                if t not in SCENARIOS:
                    raise ValueError(f"--wan-params: unknown scenario {t!r} (known: {', '.join(SCENARIOS)})")
            for item in filter(None, (i.strip() for i in body.split(","))):
                key, eq, value = item.partition("=")
                if not eq or key.strip() not in KEYS:
                    raise ValueError(f"--wan-params: {item!r} is not key=value with a key among {', '.join(KEYS)}")
                name = KEYS[key.strip()]
                try:
                    number = int(value) if name in INT_FIELDS else float(value)
                except ValueError:
                    raise ValueError(f"--wan-params: {item!r}: not a number") from None
                if number < 0 or (name in ("conn_mbps", "uplink_mbps", "slots") and number <= 0):
                    raise ValueError(f"--wan-params: {item!r}: out of range")
                for t in targets:
                    if t in out:
                        out[t][name] = number
    return out


def vary(name: str, params: WanParams, seed: int) -> WanParams:
    """Other values of the same kinds, drawn from ``seed`` (and the scenario's name): latency
    10-80 ms, 5-50 MB/s per connection, uplink 40-300 MB/s, 2-32 slots, 0.2-2 s per execution,
    0.5-20 us per record; a scenario with an upload cap keeps one (1-8 uploads, Retry-After 1-3 s)."""
    rng = random.Random(f"{seed}/{name}")
    drawn = WanParams(
        latency_ms=rng.randint(10, 80),
        conn_mbps=round(rng.uniform(5, 50), 1),
        uplink_mbps=round(rng.uniform(40, 300)),
        slots=rng.randint(2, 32),
        base_s=round(rng.uniform(0.2, 2.0), 2),
        per_record_us=round(rng.uniform(0.5, 20), 1),
    )
    if params.max_uploads:
        drawn = replace(drawn, max_uploads=rng.randint(1, 8), retry_after_s=rng.randint(1, 3))
    return drawn


def scenario_params(names: list[str], specs: list[str], seed: int | None) -> dict[str, WanParams]:
    """Defaults, then ``--vary``, then ``--wan-params`` (explicit values win)."""
    overrides = parse_params(specs, names)
    out = {}
    for n in names:
        p = SCENARIOS[n][1]
        if seed is not None:
            p = vary(n, p, seed)
        out[n] = replace(p, **overrides[n])
    return out


def model_cases(seeds: str) -> list[tuple[str, WanParams]]:
    """The three scenarios, then each drawn again from every ``--vary`` seed of ``seeds`` ("1,2,3"),
    labelled ``name`` and ``name:seed``: the cases the models of ``plan_sim*.py`` rank plans over."""
    names = list(SCENARIOS)
    cases = list(scenario_params(names, [], None).items())
    for seed in (int(s) for s in seeds.split(",") if s):
        cases += [(f"{name}:{seed}", p) for name, p in scenario_params(names, [], seed).items()]
    return cases


# --- the emulator's flags -------------------------------------------------------------------------


def emulator_flags() -> set[str]:
    """The long options ``python -m pipeline.emulator`` knows (``--uplink``, ``--max-uploads`` are new)."""
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.emulator", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", out))


def emulator_args(p: WanParams, known: set[str]) -> tuple[list[str], list[str]]:
    """(emulator arguments, flags this emulator does not know yet and that were left out)."""
    want: list[tuple[str, float]] = [
        ("--latency-ms", p.latency_ms),
        ("--bandwidth", p.conn_mbps),
        ("--uplink", p.uplink_mbps),
        ("--slots", p.slots),
        ("--process-ms", p.base_s * 1000),
        ("--per-line-us", p.per_record_us),
    ]
    if p.max_uploads:
        want += [("--max-uploads", p.max_uploads), ("--retry-after", p.retry_after_s)]
    args, missing = [], []
    for flag, value in want:
        if flag in known:
            args += [flag, f"{value:g}"]
        else:
            missing.append(flag)
    return args, missing


# --- the pipeline's report ------------------------------------------------------------------------

#: report.json keys of today's report; any other top-level key is a newer section, kept as it is
KNOWN_REPORT_KEYS = {
    "run_id",
    "outcome",
    "exit_code",
    "started_at",
    "finished_at",
    "duration_s",
    "target",
    "emulator",
    "run_dir",
    "document_import",
    "inputs",
    "records",
    "batches",
    "executions",
    "not_delivered",
    "duplicates",
    "unsettled",
    "rejects_path",
    "rejects_by_reason",
    "rejects_sample",
    "warnings",
    "resume_command",
}


def _t(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def report_facts(report: dict | None) -> dict:
    """What the run report says about where the time went (tolerant of missing keys): batches,
    attempts, the upload span, when the last execution ended and when the pipeline saw it, and any
    section newer than this script (e.g. ``throughput``, ``polls``), copied as it is."""
    if not report:
        return {}
    ex = [e for e in report.get("executions") or [] if isinstance(e, dict)]
    t0 = _t(report.get("started_at"))
    facts: dict = {
        "outcome": report.get("outcome"),
        "duration_s": report.get("duration_s"),
        "batches": report.get("batches"),
        "executions": len(ex),
        "attempts": sum(int(e.get("attempts") or 0) for e in ex),
    }
    if ex:
        facts["batch_mb_max"] = max(int(e.get("bytes") or 0) for e in ex) / 1e6
    if t0 is not None:

        def rel(key: str, first: bool = False) -> float | None:
            times = [t for t in (_t(e.get(key)) for e in ex) if t is not None]
            return round((min(times) if first else max(times)) - t0, 3) if times else None

        facts["first_upload_s"] = rel("upload_started_at", first=True)
        facts["last_uploaded_s"] = rel("uploaded_at")
        facts["last_finished_s"] = rel("finished_at")  # the server's end date
        facts["last_polled_s"] = rel("polled_at")  # when the pipeline saw it
        if facts["last_finished_s"] is not None and facts["last_polled_s"] is not None:
            facts["seen_after_end_s"] = round(facts["last_polled_s"] - facts["last_finished_s"], 3)
    th = report.get("throughput")  # timeline: [t, limit, in flight, bytes sent] points
    if isinstance(th, dict) and isinstance(th.get("timeline"), list):
        flights = [p[2] for p in th["timeline"] if isinstance(p, (list, tuple)) and len(p) > 2]
        facts["peak_in_flight"] = max(flights, default=None)
    for key, value in report.items():
        if key not in KNOWN_REPORT_KEYS:
            facts[key] = value
    return facts


def _flat(prefix: str, value: object, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, float):
        out.append(f"{prefix}={value:.3g}")
    elif isinstance(value, (int, str, bool)) or value is None:
        out.append(f"{prefix}={value}")


def describe_facts(facts: dict) -> list[str]:
    """Lines for the table: the timeline, then newer sections' scalar values."""
    if not facts:
        return ["pipeline report: none found"]

    def s(key: str) -> str:
        v = facts.get(key)
        return f"{v:.2f} s" if isinstance(v, (int, float)) else "?"

    peak = f" (at most {facts['peak_in_flight']:g} in flight)" if facts.get("peak_in_flight") is not None else ""
    lines = [
        f"pipeline report: {facts.get('batches')} batches (largest {facts.get('batch_mb_max', 0):.1f} MB), "
        f"{facts.get('attempts')} upload attempts{peak}; uploads from {s('first_upload_s')} to {s('last_uploaded_s')}, "
        f"last execution ended at {s('last_finished_s')}, seen at {s('last_polled_s')}, "
        f"run {s('duration_s')}"
    ]
    for key, value in facts.items():
        if key in KNOWN_REPORT_KEYS or key in _DERIVED or value is None:
            continue
        flat: list[str] = []
        _flat("" if isinstance(value, dict) else key, value, flat)
        if flat:
            more = f" (+{len(flat) - 12} more in the JSON)" if len(flat) > 12 else ""
            lines.append(f"report {key}: " + ", ".join(flat[:12]) + more)
    return lines


_DERIVED = {
    "executions",
    "attempts",
    "batch_mb_max",
    "first_upload_s",
    "last_uploaded_s",
    "last_finished_s",
    "last_polled_s",
    "seen_after_end_s",
    "peak_in_flight",
}


def retries(facts: dict) -> int | None:
    """Upload attempts beyond one per batch (the pipeline), or the 429s curl was answered (the
    shell contenders: ``http_429``, counted in their stderr)."""
    if "http_429" in facts:
        return facts["http_429"]
    if isinstance(facts.get("attempts"), int) and isinstance(facts.get("executions"), int) and facts["executions"]:
        return facts["attempts"] - facts["executions"]
    return None


def params_json(p: WanParams) -> dict:
    return {**asdict(p), "usable_link_mbps": p.usable_link_mbps()}

"""Fault injection: parse a fault spec and make seeded, reproducible decisions.

Spec string: comma-separated ``kind=value`` items, e.g.
``"throttle=0.1,error5xx=0.05,reset_before=0.02,drop_after=0.02,slow=0.1:2s,lost=0.01,failed=0.01,poll5xx=0.05"``.
The dict form takes the same kinds: ``{"throttle": 0.1, "slow": "0.1:2s", "page_cap": 3}``.
Value syntax by kind (P a probability in [0, 1]; D a duration: ``2s``, ``500ms`` or a bare number
of seconds; a "flag" is on for any P > 0, so write ``=1``):
- ``P``          throttle, error5xx, reset_before, drop_after, lost, failed, poll5xx, list_omit,
                 error_envelope, no_id, status_lower, status_title, echo_auth
- ``P:D``        slow, gateway504, slow_create (dict: ``"P:D"``, ``(P, D)`` with D in seconds or
                 a duration string, or a bare P: then D is 1 s)
- flag           ignore_first_result, oldest_first, no_filename, unknown_status, retry_after_date,
                 exec404, escape_text
- ``D``          list_lag
- ``S``          clock_skew: seconds, may be negative (``3600``, ``-90``, ``-500ms``)
- ``N``          page_cap (integer >= 1), revoke_after, forbid_after (integers >= 0)
- ``N:D``        outage_after (dict: ``"N:D"``, ``(N, D)`` or a bare N: then D is 1 s)

Kinds and what they do. Uploads (``POST .../executions``):
- ``throttle``     answered 429 with ``Retry-After: <retry_after_s>``
- ``error5xx``     answered 500, 502 or 503 (chosen by the seeded RNG; 503 carries Retry-After)
- ``reset_before`` connection reset (RST) before the body is read; nothing is created
- ``echo_auth``    answered 400 in plain text as aiohttp answers an oversized header, quoting the
                   start of the token: ``400, message: Got more than 8190 bytes when reading Header
                   value is too long: 'Authorization: <first 24 chars>...'``; nothing is created
- ``gateway504``   body read and checked, then answered at once 504 with an HTML page
                   (``<h1>504 Gateway Time-out</h1>``, text/html); the execution is created D later
                   in the background (store, accounting, processor)
- ``slow_create``  body read, the execution created only D later, and the normal answer sent then
                   (a client that gave up earlier still finds the execution at D)
- ``error_envelope`` execution created, answered 200 with an error envelope (``error_code`` INTERNAL)
- ``no_id``        execution created, answered 200 with the execution without its ``id``
- ``drop_after``   execution created, then the connection is closed with no answer
- ``slow``         answer delayed by D (the execution exists meanwhile)
  Precedence when several hit one upload: throttle, error5xx, reset_before, echo_auth, gateway504;
  then slow_create (delays the creation), the answer (error_envelope before no_id), drop_after, slow.
Executions:
- ``lost`` / ``failed``  the execution ends ``LOST`` / ``FAILED`` with ``error.message`` (accepts nothing)
- ``poll5xx``      ``GET .../executions/{id}`` answered 500, 502 or 503
- ``exec404``      ``GET .../executions/{id}`` answered 404 (listings still work)
- ``no_filename``  ``input_file_name`` is null in ``parameters`` and ``result`` of every answer, and
                   ``file_uri`` / ``input_file_uri`` name ``input/<execution id>``, not the file
- ``status_lower`` / ``status_title``  each execution in a GET by id or a listing spells its status
                   ``succeeded`` / ``Succeeded`` (lower wins when both hit)
- ``unknown_status`` a RUNNING execution reads ``IN_PROGRESS``; other statuses unchanged
- ``escape_text``  an execution's ``error.message`` carries terminal escape sequences (colour, a
                   window title, a bell), as a hostile or careless server's text may
Listings (``list_lag``, ``list_omit``, ``oldest_first``: execution listings only; ``page_cap``,
``ignore_first_result``: every listing):
- ``list_lag``     an execution is listed only D after its creation (GET by id works at once)
- ``list_omit``    each listing leaves out each execution with probability P
- ``oldest_first`` executions are listed oldest first
- ``ignore_first_result`` always the first page; ``first_result`` is echoed as sent, no ``total``
- ``page_cap``     pages hold at most N items, no ``total``, ``max_results`` echoes the request
Service:
- ``retry_after_date`` every ``Retry-After`` (throttle, rate limit, 503s) is an HTTP date: server
                   clock + the seconds it would have said
- ``clock_skew``   server clock = real time + S: the ``Date`` header of every response (and the
                   dates of ``retry_after_date``) follow it; execution dates do not
- ``revoke_after`` once N executions were created, every request is a 401 ``token revoked``
                   (``error_code`` INVALID_TOKEN) until ``EmulatorState.restore_token()``
- ``forbid_after`` once N executions were created, every request is a 403 (``error_code``
                   FORBIDDEN: the token's user lost the right to the datamart); 0: from the first
- ``outage_after`` once N executions were created, every request is a 503 with Retry-After for D
                   seconds; ``EmulatorState.set_outage(on)`` switches an outage on or off by hand

Each decision point has its own RNG seeded from ``(seed, point)``: the decisions for uploads
depend only on the seed and the order of uploads, those for polls on the order of polls; each
random kind added after the first eight (gateway504, slow_create, error_envelope, no_id, echo_auth,
list_omit, status_lower, status_title) has an RNG of its own, drawn once per decision point
whatever its probability, so adding one never shifts the others.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

KINDS = (
    "throttle", "error5xx", "reset_before", "drop_after", "slow", "lost", "failed", "poll5xx",
    "gateway504", "slow_create", "list_lag", "list_omit", "ignore_first_result", "page_cap",
    "oldest_first", "no_filename", "error_envelope", "no_id", "status_lower", "status_title",
    "unknown_status", "retry_after_date", "clock_skew", "echo_auth", "revoke_after", "exec404",
    "outage_after", "forbid_after", "escape_text",
)  # fmt: skip
#: Kinds whose value is ``P:D``, and the field holding their D.
TIMED = {"slow": "slow_s", "gateway504": "gateway504_s", "slow_create": "slow_create_s"}
DEFAULT_SLOW_S = 1.0
DEFAULT_DELAY_S = 1.0
_DURATION = re.compile(r"^\s*(-?)(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """Probability of each fault kind (0 = never, 1 = always) and the kinds' other values."""

    throttle: float = 0.0
    error5xx: float = 0.0
    reset_before: float = 0.0
    drop_after: float = 0.0
    slow: float = 0.0
    slow_s: float = DEFAULT_SLOW_S
    lost: float = 0.0
    failed: float = 0.0
    poll5xx: float = 0.0
    gateway504: float = 0.0
    gateway504_s: float = DEFAULT_DELAY_S
    slow_create: float = 0.0
    slow_create_s: float = DEFAULT_DELAY_S
    list_lag: float = 0.0  # seconds
    list_omit: float = 0.0
    ignore_first_result: float = 0.0
    page_cap: int = 0  # 0: no cap
    oldest_first: float = 0.0
    no_filename: float = 0.0
    error_envelope: float = 0.0
    no_id: float = 0.0
    status_lower: float = 0.0
    status_title: float = 0.0
    unknown_status: float = 0.0
    retry_after_date: float = 0.0
    clock_skew: float = 0.0  # seconds, may be negative
    echo_auth: float = 0.0
    revoke_after: int | None = None  # None: never
    exec404: float = 0.0
    outage_after: int | None = None  # None: never
    outage_s: float = DEFAULT_DELAY_S
    forbid_after: int | None = None  # None: never
    escape_text: float = 0.0

    def active(self) -> dict[str, float]:
        """The kinds in use, with their main value (probability, count, seconds)."""
        out: dict[str, float] = {}
        for kind in KINDS:
            value = getattr(self, kind)
            if value is not None and (value != 0 or kind in ("revoke_after", "outage_after", "forbid_after")):
                out[kind] = value
        return out

    def describe(self) -> str:
        """The plan as a spec string (``parse_faults(plan.describe()) == plan``); "" when empty."""
        items = []
        for kind, value in self.active().items():
            text = _num(value)
            if kind in TIMED:
                text += f":{_num(getattr(self, TIMED[kind]))}s"
            elif kind == "outage_after":
                text += f":{_num(self.outage_s)}s"
            elif kind in ("list_lag", "clock_skew"):
                text += "s"
            items.append(f"{kind}={text}")
        return ",".join(items)


def _num(value: float) -> str:
    return format(value, ".15g")


def _duration(text: Any, item: str, *, signed: bool = False) -> float:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise ValueError(f"fault {item!r}: bad duration {text!r} (use e.g. 2s or 500ms)")
        value = float(m.group(2)) * (-1 if m.group(1) else 1)
        value = value / 1000 if m.group(3) == "ms" else value
    if value < 0 and not signed:
        raise ValueError(f"fault {item!r}: duration {text!r} must not be negative")
    return value


def _probability(value: Any, item: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"fault {item!r}: probability {value!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"fault {item!r}: probability {p} is not between 0 and 1")
    return p


def _count(value: Any, item: str, minimum: int) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        n = int(value) if isinstance(value, (int, float)) else int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"fault {item!r}: {value!r} is not an integer") from None
    if n < minimum:
        raise ValueError(f"fault {item!r}: {n} is below {minimum}")
    return n


def _pair(value: Any) -> tuple[Any, Any | None]:
    """``"A:B"`` or ``(A, B)`` -> (A, B); a bare A -> (A, None)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    if isinstance(value, str) and ":" in value:
        first, second = value.split(":", 1)
        return first, second
    return value, None


def _values(kind: str, value: Any, item: str) -> dict[str, Any]:
    """The FaultPlan fields one ``kind=value`` item sets."""
    if kind in TIMED:
        prob, dur = _pair(value)
        out: dict[str, Any] = {kind: _probability(prob, item)}
        if dur is not None:
            out[TIMED[kind]] = _duration(dur, item)
        return out
    if kind == "outage_after":
        n, dur = _pair(value)
        out = {kind: _count(n, item, 0)}
        if dur is not None:
            out["outage_s"] = _duration(dur, item)
        return out
    if kind == "list_lag":
        return {kind: _duration(value, item)}
    if kind == "clock_skew":
        return {kind: _duration(value, item, signed=True)}
    if kind == "page_cap":
        return {kind: _count(value, item, 1)}
    if kind in ("revoke_after", "forbid_after"):
        return {kind: _count(value, item, 0)}
    return {kind: _probability(value, item)}


def parse_faults(spec: str | Mapping[str, Any] | FaultPlan | None) -> FaultPlan:
    """Parse a spec string or dict into a ``FaultPlan``. Raises ``ValueError`` naming the bad item."""
    if spec is None:
        return FaultPlan()
    if isinstance(spec, FaultPlan):
        return spec
    items: list[tuple[str, Any, str]] = []
    if isinstance(spec, str):
        for raw in spec.split(","):
            raw = raw.strip()
            if not raw:
                continue
            if "=" not in raw:
                raise ValueError(f"fault {raw!r}: expected kind=value")
            kind, value = (s.strip() for s in raw.split("=", 1))
            items.append((kind, value, raw))
    elif isinstance(spec, Mapping):
        items = [(str(k), v, f"{k}={v}") for k, v in spec.items()]
    else:
        raise ValueError(f"faults: expected a spec string or a dict, got {type(spec).__name__}")
    values: dict[str, Any] = {}
    for kind, value, item in items:
        if kind not in KINDS:
            raise ValueError(f"fault {item!r}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
        values.update(_values(kind, value, item))
    return FaultPlan(**values)


#: Kinds drawn outside uploads that have an RNG of their own.
_OWN = ("list_omit", "status_lower", "status_title")


class UploadExtras(NamedTuple):
    """The decisions of the newer upload kinds for one upload."""

    gateway504: bool
    slow_create: bool
    error_envelope: bool
    no_id: bool
    echo_auth: bool


class FaultDice:
    """Seeded decisions for each decision point (upload, execution fate, poll, listing, answer)."""

    def __init__(self, plan: FaultPlan, seed: int = 0) -> None:
        self.plan = plan
        self._upload = random.Random(f"{seed}:upload")
        self._fate = random.Random(f"{seed}:fate")
        self._poll = random.Random(f"{seed}:poll")
        self._own = {kind: random.Random(f"{seed}:{kind}") for kind in (*UploadExtras._fields, *_OWN)}

    def upload_fault(self) -> tuple[str | None, int]:
        """The fault for one upload: (kind or None, 5xx status). Always draws the same numbers."""
        rng, plan = self._upload, self.plan
        rolls = [rng.random() for _ in range(4)]
        status = rng.choice((500, 502, 503))
        for kind, roll in zip(("throttle", "error5xx", "reset_before", "drop_after"), rolls, strict=True):
            if roll < getattr(plan, kind):
                return kind, status
        return None, status

    def upload_delay(self) -> float:
        """Seconds to delay an upload's answer (the ``slow`` fault), 0 when not slow."""
        return self.plan.slow_s if self._upload.random() < self.plan.slow else 0.0

    def upload_extras(self) -> UploadExtras:
        """The newer upload kinds for one upload: one draw from each kind's own RNG."""
        return UploadExtras(*(self._hit(kind) for kind in UploadExtras._fields))

    def fate(self) -> str | None:
        """``"LOST"``, ``"FAILED"`` or ``None`` for a new execution."""
        lost, failed = self._fate.random(), self._fate.random()
        if lost < self.plan.lost:
            return "LOST"
        if failed < self.plan.failed:
            return "FAILED"
        return None

    def poll_fault(self) -> int | None:
        """A 5xx status for one execution poll, or ``None``."""
        roll, status = self._poll.random(), self._poll.choice((500, 502, 503))
        return status if roll < self.plan.poll5xx else None

    def omit(self) -> bool:
        """Whether a listing leaves out one execution (``list_omit``)."""
        return self._hit("list_omit")

    def status_case(self) -> str | None:
        """``"lower"``, ``"title"`` or ``None`` for one execution in an answer."""
        lower, title = self._hit("status_lower"), self._hit("status_title")
        return "lower" if lower else "title" if title else None

    def _hit(self, kind: str) -> bool:
        threshold: float = getattr(self.plan, kind)
        return self._own[kind].random() < threshold


class RateLimiter:
    """A token bucket per API token: ``rate`` requests per second, bursts up to ``max(1, rate)``."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str) -> float:
        """Take one token. Returns 0 when allowed, else the seconds until a token is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

"""The caller's ``RunOptions.on_event``, checked before a run and kept from stopping it.

``on_event(event, fields)`` is called for every event of the run, on the event loop's thread:
``event`` is an :class:`~pipeline.engine.events.Event` (a ``str``: ``"batch_uploaded"``...),
``fields`` a ``dict`` of JSON-ready values (what ``--log-format json`` prints). It should return
quickly (it runs between the run's steps).

- A callable that cannot take those two positional arguments (``lambda e: ...``) is refused before
  anything is done, with a ``UsageError`` saying the signature.
- A callback that raises is reported once (on stderr and in the report's warnings) and not called
  again; the run goes on: a listener never decides the outcome of an import.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from pipeline.engine.events import EventSink
from pipeline.errors import UsageError

SIGNATURE = "on_event(event: str, fields: dict[str, Any]) -> None"


def check_event_sink(on_event: object) -> None:
    """A ``UsageError`` unless ``on_event`` is None or can be called with two positional arguments."""
    if on_event is None:
        return
    if not callable(on_event):
        raise UsageError(f"RunOptions.on_event must be a callable {SIGNATURE}, got {type(on_event).__name__}")
    try:
        inspect.signature(on_event).bind(None, {})
    except TypeError:
        raise UsageError(
            f"RunOptions.on_event must accept two arguments: {SIGNATURE} (event is a pipeline Event, fields "
            f"a dict); {getattr(on_event, '__name__', on_event)!r} does not"
        ) from None
    except ValueError:  # no signature to read (some builtins): trust it
        return


class GuardedSink:
    """``on_event`` that never raises into the run: its first error is told once, then it is dropped."""

    def __init__(self, on_event: EventSink) -> None:
        self._on_event: EventSink | None = on_event
        self.error: str | None = None  # what the callback raised, for the report's warnings

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event, fields)
        except Exception as exc:
            self._on_event = None
            self.error = (
                f"the on_event callback raised {type(exc).__name__}: {exc} (on event {event}); it was not "
                "called again, the run went on"
            )
            print(f"pipeline: warning: {self.error}", file=sys.stderr)


def guarded(on_event: EventSink | None) -> GuardedSink | None:
    return GuardedSink(on_event) if on_event is not None else None

"""How a run tells the outside world what it is doing.

The trainer calls a `Reporter`; the CLI renders it with rich (`console.RichReporter`), the
trackers listen through `tracking.TrackingReporter`, and the Python API passes none
(`NullReporter`). A protocol, so any object with these four methods will do.
"""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """How the engine tells the outside world what it is doing (the CLI renders it with rich)."""

    def start(self, total_steps: int, done_steps: int, epochs: int) -> None: ...
    def advance(self, step: int, epoch: int) -> None: ...
    def log(self, record: dict[str, Any]) -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    def start(self, total_steps: int, done_steps: int, epochs: int) -> None:
        pass

    def advance(self, step: int, epoch: int) -> None:
        pass

    def log(self, record: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass

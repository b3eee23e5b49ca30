"""What the runtime tells an observer (the server's Prometheus metrics, say).

The runtime calls these few methods at the points that matter and knows nothing
about what listens: server/metrics.py implements them with prometheus_client,
and without an observer :data:`NULL_OBSERVER` does nothing. Store commits are
observed in the oplog layer (golemish.oplog.observe, methods ``committed``).
Each call is made outside any guest code and costs a few microseconds at most.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def invoked(self, component: str, outcome: str, seconds: float) -> None:
        """An invocation ended: outcome ok, error or suspended."""

    def recovered(self, mode: str, seconds: float) -> None:
        """A worker was made live: mode snapshot, replay or fresh (just created)."""

    def snapshotted(self, stored_bytes: int, seconds: float) -> None:
        """A snapshot was written; ``stored_bytes`` of new compressed pages."""

    def committed(self, entries: int, seconds: float, synced: bool) -> None:
        """The store wrote a batch holding ``entries`` oplog entries."""


class NullObserver:
    def invoked(self, component: str, outcome: str, seconds: float) -> None:
        pass

    def recovered(self, mode: str, seconds: float) -> None:
        pass

    def snapshotted(self, stored_bytes: int, seconds: float) -> None:
        pass

    def committed(self, entries: int, seconds: float, synced: bool) -> None:
        pass


NULL_OBSERVER = NullObserver()


def recovery_mode(report_mode: str) -> str:
    """RecoveryReport.mode -> the metric's label: snapshot or replay.

    A mid-call snapshot is a snapshot; a manual update's saved state is loaded like
    one (no replay from Create), so it counts as a snapshot too.
    """
    return "replay" if report_mode == "replay" else "snapshot"

"""Reading the markers of a worker's history out of its oplog for the planners.

The planners in :mod:`recovery` take (index, kind) pairs plus small maps of what
some entries say (where a Rewind or Revert goes back to, which version an Update
installs). This module reads those maps; it decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golemish.oplog import Revert, Rewind, Update, WorkerOplog


@dataclass
class History:
    """The kinds from ``start`` on and the fields the planners need."""

    kinds: list[tuple[int, int]]
    rewinds: dict[int, int] = field(default_factory=dict)
    reverts: dict[int, int] = field(default_factory=dict)
    #: Update entry index -> (version, mode).
    updates: dict[int, tuple[int, str]] = field(default_factory=dict)


def read_history(oplog: WorkerOplog, start: int = 1) -> History:
    """Skim the oplog from ``start``; only marker entries are decoded."""
    h = History(list(oplog.kinds(start)))
    for index, kind in h.kinds:
        if kind in (Rewind.KIND, Revert.KIND, Update.KIND):
            e = oplog.get(index)
            if isinstance(e, Rewind):
                h.rewinds[index] = e.to
            elif isinstance(e, Revert):
                h.reverts[index] = e.to
            elif isinstance(e, Update):
                h.updates[index] = (e.version, e.mode)
    return h

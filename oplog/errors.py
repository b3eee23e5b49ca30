"""Errors of the storage layer, and the root of every golemish error.

The tree (runtime errors live in ``golemish.runtime.errors`` and hang off the
same root)::

    GolemishError
    └── StoreError                 storage failed or cannot be used
        ├── StoreInUseError        another process owns the store
        ├── StoreClosedError       the store was closed under us
        ├── NoStoreError           no golemish store where one was expected
        ├── ReadOnlyStoreError     a write to a store opened for reading
        ├── FencedError            a write from an owner whose lease has moved on
        └── CorruptionError        a stored record failed its checksum or decode

The root lives here, in the lowest layer, because ``golemish.oplog`` must not
import the runtime, yet both layers raise errors that callers catch as one kind.
"""

from __future__ import annotations


class GolemishError(Exception):
    """Root of all golemish errors. ``str(err)`` is a one-line message for users."""

    #: A terminal error will fail again if retried unchanged; a retryable one may not.
    retryable: bool = False


class StoreError(GolemishError):
    """The store failed or cannot be used."""


class StoreInUseError(StoreError):
    """Another process holds the store's lock."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"store {path} is in use by {who}; wait for it to finish")

    retryable = True


class StoreClosedError(StoreError):
    """The store was used after ``close()``."""


class NoStoreError(StoreError):
    """There is no golemish store at the path (nothing was created there)."""

    def __init__(self, path: str, hint: str = "") -> None:
        self.path = path
        super().__init__(f"no golemish store at {path}; " + (
            hint or "create one with `golemish store init` or `golemish deploy`, or pick "
                    "another with --home"))


class ReadOnlyStoreError(StoreError):
    """The store was opened for reading (``readonly=True``) and something tried to write."""


class FencedError(StoreError):
    """A fenced write was refused: the writer's lease on the worker has moved on
    (another owner took it, or it expired). Nothing of the batch was written."""

    def __init__(self, message: str, detail: str = "") -> None:
        self.detail = detail
        super().__init__(message + (f" ({detail})" if detail else ""))


class CorruptionError(StoreError):
    """A stored record failed verification.

    Fields say what was being read and where, so that tooling can report it
    without parsing the message.
    """

    def __init__(self, what: str, key: str, detail: str, *, index: int | None = None,
                 hint: str = "") -> None:
        self.what = what
        self.key = key
        self.index = index
        self.detail = detail
        self.hint = hint
        where = f"{key} index {index}" if index is not None else key
        msg = f"corrupt {what} at {where}: {detail}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

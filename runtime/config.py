"""RuntimeConfig: the settings of one Runtime, with their defaults and environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from golemish.oplog.backends.group_commit import GroupConfig

from .clock import SYSTEM, Clock
from .crash import CrashPoints
from .errors import ArgumentError
from .host import http
from .limits import DEFAULT_MAX_BYTES
from .observe import Observer
from .snapshot.capture import SnapshotConfig
from .snapshot.policy import SnapshotPolicy

DEFAULT_HOME = ".golemish"


@dataclass
class RuntimeConfig:
    """Settings for one Runtime. ``home`` is a directory (RocksDB), a ``postgres://`` URL
    or ``memory://``."""

    home: str = field(default_factory=lambda: os.environ.get("GOLEMISH_HOME", DEFAULT_HOME))
    #: fsync every commit (power-loss safety) instead of relying on the WAL alone.
    sync: bool = False
    #: Group commit of synced writes: how long a leader waits for company (default
    #: ``GOLEMISH_COMMIT_WINDOW_MS`` or 0.2 ms) and the most batches per fsync.
    group_commit: GroupConfig = field(default_factory=GroupConfig)
    #: Linear memory cap per worker, in bytes.
    memory_limit: int = 256 << 20
    #: Wall-clock bound on one invocation, in seconds (epoch interruption).
    time_limit: float = 60.0
    crash: CrashPoints | None = None
    #: Default snapshot policy; a worker's own policy (``worker config``) overrides it.
    snapshot_policy: SnapshotPolicy = field(default_factory=lambda: SnapshotPolicy.parse(
        os.environ.get("GOLEMISH_SNAPSHOT_POLICY", "adaptive")))
    snapshots: SnapshotConfig = field(default_factory=SnapshotConfig)
    #: "auto"/"snapshot": newest valid snapshot plus the oplog tail; "replay": from Create.
    recovery: str = "auto"
    #: Hosts (``host`` or ``host:port``, ``*`` for any) every worker may reach over HTTP.
    #: Nothing else is reachable, loopback included; components and workers add their
    #: own. ``GOLEMISH_HTTP_ALLOW`` is a comma-separated list.
    http_allow: tuple[str, ...] = field(default_factory=lambda: tuple(
        h for h in os.environ.get("GOLEMISH_HTTP_ALLOW", "").split(",") if h.strip()))
    #: A durable sleep longer than this suspends the worker instead of blocking.
    suspend_after_s: float = 2.0
    #: Largest module ``deploy`` accepts, in bytes.
    max_component_bytes: int = field(default_factory=lambda: _env_mib(
        "GOLEMISH_MAX_COMPONENT_MIB", DEFAULT_MAX_BYTES))
    #: "keep" every oplog entry live, or "archive" those older than the oldest kept
    #: snapshot into zstd chunks (still readable, still replayable).
    oplog_retention: str = field(
        default_factory=lambda: os.environ.get("GOLEMISH_OPLOG_RETENTION", "keep"))
    #: Create the store if there is none at ``home``. The CLI passes False for every
    #: command but `deploy` and `store init`, so a mistyped --home is an error.
    create: bool = True
    #: Open the store for reading only (also while another process writes to it).
    readonly: bool = False
    #: SIGINT/SIGTERM interrupt running guest code (Interrupted) instead of waiting for
    #: it or killing the process; the CLI sets this. Only from the main thread.
    catch_signals: bool = False
    #: Directory of this machine's compiled-code files (checked against the sha256 the
    #: store records before each load). Default: ``cache`` in a RocksDB store's
    #: directory; for a shared (PostgreSQL) store ``$GOLEMISH_CACHE_DIR`` or
    #: ``~/.cache/golemish/compiled``, since each executor keeps its own.
    cache_dir: str | None = field(default_factory=lambda: os.environ.get("GOLEMISH_CACHE_DIR"))
    #: Where durable time comes from (guest clocks, sleeps, wake times, timestamps);
    #: the test kit passes a virtual clock. See runtime/clock.py.
    clock: Clock = SYSTEM
    #: Told of invocations, recoveries, snapshots and store commits (runtime/observe.py);
    #: the server's metrics pass one.
    observer: Observer | None = None
    #: Run as one of several executors sharing a PostgreSQL store (runtime/cluster.py).
    cluster: Any = None

    def __post_init__(self) -> None:
        self.http_allow = tuple(http.normalize_rules(self.http_allow))


def _env_mib(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        mib = float(text)
    except ValueError:
        mib = 0
    if not mib > 0:
        raise ArgumentError(f"{name}={text!r}: expected a positive number of MiB")
    return int(mib * (1 << 20))

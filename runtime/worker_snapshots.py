"""A worker's snapshots: dirty tracking of the live instance, capture into the store
(one atomic batch), the host-side state a snapshot carries, and mid-call snapshots of
stackful workers. When to take one is the policy's call (snapshot/policy.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from golemish.oplog import Manifest, Snapshot, codec

from .bases import base_id
from .host.vfs import MAX_BYTES as FS_MAX_BYTES
from .host.wasi_files import FileWasi
from .snapshot.capture import MemoryImage, SnapshotError

if TYPE_CHECKING:
    from .engine import Instance
    from .snapshot.stackful import Stackful
    from .worker import Worker


def host_blob(w: Worker, midcall: list[Any] | None = None) -> bytes:
    """Host-side state a snapshot carries: retry policy, asyncify buffer, mid-call,
    the worker's filesystem with its descriptor table (when it has one)."""
    stack = w.midcall.state() if w.midcall is not None else None
    fs = w.wasi.fs if isinstance(w.wasi, FileWasi) else None
    if fs is not None and fs.used_bytes() > FS_MAX_BYTES:
        raise SnapshotError(f"its files hold more than {FS_MAX_BYTES >> 20} MiB")
    return codec.encode([w.host_api.state(), stack, midcall,
                         fs.state() if fs is not None else None])


def host_parts(manifest: Manifest) -> tuple[bytes, list[int] | None, list[Any] | None,
                                             bytes | None]:
    """(retry policy blob, asyncify buffer, mid-call position, filesystem) of a snapshot.

    A blob of another shape (an older format) makes the snapshot unusable rather
    than the recovery fail: an older snapshot or replay is used instead.
    """
    if not manifest.host:
        return b"", None, None, None
    try:
        parts = codec.decode(manifest.host)
        retry, stack, midcall = parts[:3]
        fs = parts[3] if len(parts) == 4 else None  # 3 parts: from before files
        ok = (len(parts) in (3, 4) and (fs is None or isinstance(fs, bytes))
              and isinstance(retry, bytes) and (stack is None or len(stack) == 2)
              and (midcall is None or (len(midcall) in (3, 4)
                                       and isinstance(midcall[0], int))))
    except (codec.DecodeError, TypeError, ValueError):
        ok = False
    if not ok:
        raise SnapshotError("its host state is in a format this version does not read")
    return retry, stack, midcall, fs


def tracking(w: Worker) -> bool:
    return w.durable and not w.meta.get("snapshots_disabled")


def track(w: Worker, base: Manifest | None) -> None:
    """Start dirty tracking of the live instance, relative to ``base``."""
    assert w.instance is not None
    if w.image is not None:  # started on the fresh instance: initialisation ran since
        w.image.tables = {t: w.instance.table_size(t) for t in w.layout.tables}
    elif tracking(w):
        snaps, cfg = w.rt.store.snapshots, w.rt.config.snapshots
        if base is not None and base.shared != snaps.shared:
            base = None  # restored from the other format: capture every page once
        bid = base.base if base is not None else ""
        if not bid and snaps.shared:
            # Stored bases hold their pages whatever this instance's history.
            known = base_id(w.component["hash"], cfg.page_size)
            bid = known if snaps.pages.base(known) is not None else ""
        w.image = MemoryImage(w.instance, w.layout, cfg, base, bid)


def track_fresh(w: Worker, inst: Instance) -> None:
    """Start dirty tracking on a fresh instance, relative to its base (stored once
    per component): its first snapshot then hashes only the pages written since."""
    if not tracking(w):
        return
    cfg = w.rt.config.snapshots
    # A store writing format 1 keeps every page in the worker's space: no base.
    base = w.rt.bases.for_fresh(inst, w.component["hash"], cfg.page_size) \
        if w.rt.store.snapshots.shared else None
    w.image = MemoryImage(inst, w.layout, cfg, base,
                          base_id(w.component["hash"], cfg.page_size)
                          if base is not None else "")


def snapshot_costs(w: Worker) -> list[float]:
    """Measured costs of the kept snapshots, for the policy's estimate."""
    costs = []
    for index in w.rt.store.snapshots.indexes(w.id):
        if index <= w.oplog.last_index:
            entry = w.oplog.get(index)
            if isinstance(entry, Snapshot):
                costs.append(entry.duration_ns / 1e9)
    return costs


def midcall_due(w: Worker, st: Stackful) -> bool:
    """At a host call inside an invocation: is a mid-call snapshot due?"""
    if w.image is None:
        return False
    in_call = time.perf_counter() - max(st.invocation_t0, w.policy_state.last_perf)
    return w.policy_state.midcall_due(in_call, st.calls, st.in_call)


def snapshot_midcall(w: Worker, invocation: int, tail_from: int) -> Snapshot | None:
    """A snapshot while the guest's stack is unwound into memory (see stackful)."""
    assert w.midcall is not None
    saved = [[n, t, b] for n, (t, b) in w.midcall._saved_globals.items()]
    position: list[Any] = [invocation, tail_from, saved]
    if w.midcall.core_args is not None:  # a typed call: its lowered arguments
        position.append(list(w.midcall.core_args))
    entry = w.snapshot(midcall=position)
    w.midcall.calls = w.midcall.in_call = 0
    return entry


def snapshot(w: Worker, *, full: bool = False, midcall: list[Any] | None = None
             ) -> Snapshot | None:
    """Capture memory and globals now (between invocations, or unwound mid-call).

    None if not possible. ``full`` captures every page as if there were no
    earlier snapshot.
    """
    w.ensure_ready()
    if w.image is None:
        return None
    t0 = time.perf_counter_ns()
    index = w.oplog.last_index + 1
    snaps = w.rt.store.snapshots
    try:
        manifest, new, changed = w.image.capture(
            index, w.component["hash"], lambda h: snaps.has_page(w.id, h), full=full,
            host=host_blob(w, midcall))
    except SnapshotError as e:
        w.image.close()
        w.image = None
        w.meta = dict(w.meta, snapshots_disabled=str(e))
        w.rt.store.put_worker(w.meta)
        return None
    page_ops, stored = snaps.page_ops(w.id, new)
    entry = Snapshot(manifest.memory_size, manifest.page_size, changed, stored,
                     w.image.tracker_name, time.perf_counter_ns() - t0)
    w.rt.crash.hit("mid-snapshot-write")
    w.rt.store.write_snapshot(w.oplog, entry, manifest, page_ops,
                              w.rt.config.snapshots.keep,
                              archive=w.rt.config.oplog_retention == "archive",
                              fetch=page_reader(w, manifest))
    w.rt.crash.hit("after-snapshot-write")
    w.image.committed(manifest)
    # The policy budgets the whole cost, write and pruning included (duration_ns
    # in the entry can only cover what happened before it was written).
    w.policy_state.snapshotted((time.perf_counter_ns() - t0) / 1e9)
    w.rt.observer.snapshotted(stored, (time.perf_counter_ns() - t0) / 1e9)
    return entry


def page_reader(w: Worker, manifest: Manifest) -> Callable[[bytes], bytes]:
    """Bytes of a page of ``manifest`` from live memory (unchanged since capture)."""
    where: dict[bytes, int] = {}

    def read(h: bytes) -> bytes:
        inst = w.instance
        assert inst is not None
        if not where:
            for p, got in enumerate(manifest.hashes()):
                where.setdefault(got, p)
        if h not in where:
            raise SnapshotError(f"page {h.hex()} is not in the snapshot")
        return inst.read(where[h] * manifest.page_size, manifest.page_size)
    return read


def maybe_snapshot(w: Worker) -> Snapshot | None:
    if w.image is not None and w.policy_state.due():
        return w.snapshot()
    return None
